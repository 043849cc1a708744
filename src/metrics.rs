//! Prometheus metrics. Label values are drawn only from small closed sets (sources,
//! states, status codes): never from alert labels, fingerprints or hosts.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::alert::Source;
use crate::incident::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub source: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemediationLabels {
    /// Recipe names come from the operator's recipe files: a bounded set.
    pub recipe: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EscalationLabels {
    /// Channel names come from the config: a bounded set.
    pub channel: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecipeLabel {
    pub recipe: String,
}

pub struct Metrics {
    registry: Registry,
    pub alerts_received: Family<SourceLabel, Counter>,
    pub alert_duplicates: Family<SourceLabel, Counter>,
    pub alerts_resolved: Family<SourceLabel, Counter>,
    pub truncated_alerts: Counter,
    pub incidents: Family<OutcomeLabel, Counter>,
    pub webhook_duration: Family<RequestLabels, Histogram>,
    pub remediations: Family<RemediationLabels, Counter>,
    pub success_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub escalations: Family<EscalationLabels, Counter>,
    pub outbox_pending: Gauge,
    pub ssh_command_duration: Histogram,
    pub breaker_open: Family<RecipeLabel, Gauge>,
    /// 1 while the fleet error budget's pause is active (as last seen by the pause gate).
    pub error_budget_tripped: Gauge,
    /// 1 when the last config load (the start, or a reload) succeeded, else 0.
    pub config_last_reload_successful: Gauge,
    pub config_last_reload_success_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("salve");
        let alerts_received = Family::<SourceLabel, Counter>::default();
        registry.register(
            "alerts_received",
            "Alerts received in webhook notifications, by source (re-sends included)",
            alerts_received.clone(),
        );
        let alert_duplicates = Family::<SourceLabel, Counter>::default();
        registry.register(
            "alert_duplicates",
            "Alerts that joined an existing incident (re-sends, HA copies), by source",
            alert_duplicates.clone(),
        );
        let alerts_resolved = Family::<SourceLabel, Counter>::default();
        registry.register(
            "alerts_resolved",
            "Incidents marked resolved by a resolved notification, by source",
            alerts_resolved.clone(),
        );
        let truncated_alerts = Counter::default();
        registry.register(
            "alertmanager_truncated_alerts",
            "Alerts Alertmanager dropped from notifications (truncatedAlerts > 0): raise max_alerts on its side",
            truncated_alerts.clone(),
        );
        let incidents = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "incidents",
            "Incidents by outcome: of planning (matched, unmatched, refused, dry_run) and of remediation (succeeded, failed, verify_failed, breaker_open, rate_limited, interrupted, resolved_before_run)",
            incidents.clone(),
        );
        let webhook_duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "webhook_request_duration_seconds",
            "Webhook request duration, by source and HTTP status code",
            webhook_duration.clone(),
        );
        let remediations = Family::<RemediationLabels, Counter>::default();
        registry.register(
            "remediations",
            "Remediations by recipe and outcome (succeeded, failed, verify_failed, breaker_open, rate_limited, interrupted, resolved_before_run)",
            remediations.clone(),
        );
        let success_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "auto_remediation_success_ratio",
            "Verified successes over remediations attempted, all time (healthy: 0.7 and up)",
            success_ratio.clone(),
        );
        let escalations = Family::<EscalationLabels, Counter>::default();
        registry.register(
            "escalations",
            "Escalations accepted by a channel, by channel and reason",
            escalations.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "escalation_outbox_pending",
            "Escalations written but not yet accepted by their channel",
            outbox_pending.clone(),
        );
        let ssh_command_duration = Histogram::new(exponential_buckets(0.002, 2.0, 16));
        registry.register(
            "ssh_command_duration_seconds",
            "Duration of remediation and diagnostic commands over SSH",
            ssh_command_duration.clone(),
        );
        let breaker_open = Family::<RecipeLabel, Gauge>::default();
        registry.register(
            "breaker_open",
            "Open circuit breakers (breaker keys whose recipe hit max_runs in its window), by recipe",
            breaker_open.clone(),
        );
        let error_budget_tripped = Gauge::default();
        registry.register(
            "error_budget_tripped",
            "1 while the fleet error budget has paused every remediation (until salve resume)",
            error_budget_tripped.clone(),
        );
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "1 when the last config load (start, SIGHUP or POST /-/reload) succeeded, 0 when it was refused",
            config_last_reload_successful.clone(),
        );
        let config_last_reload_success_timestamp =
            Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load",
            config_last_reload_success_timestamp.clone(),
        );
        // Pre-create the closed label sets so every series exists from the first scrape.
        for source in Source::ALL {
            let label = SourceLabel {
                source: source.as_str(),
            };
            alerts_received.get_or_create(&label).inc_by(0);
            alert_duplicates.get_or_create(&label).inc_by(0);
            alerts_resolved.get_or_create(&label).inc_by(0);
        }
        for state in [
            State::Matched,
            State::Unmatched,
            State::Refused,
            State::DryRun,
            State::Notified,
        ] {
            incidents
                .get_or_create(&OutcomeLabel {
                    outcome: state.as_str(),
                })
                .inc_by(0);
        }
        Arc::new(Metrics {
            registry,
            alerts_received,
            alert_duplicates,
            alerts_resolved,
            truncated_alerts,
            incidents,
            webhook_duration,
            remediations,
            success_ratio,
            escalations,
            outbox_pending,
            ssh_command_duration,
            breaker_open,
            error_budget_tripped,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
        })
    }

    /// A config load (start or reload) ended: `successful` or refused.
    pub fn config_reloaded(&self, successful: bool) {
        self.config_last_reload_successful
            .set(i64::from(successful));
        if successful {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64());
            self.config_last_reload_success_timestamp.set(now);
        }
    }

    pub fn remediation(&self, recipe: &str, outcome: State) {
        self.remediations
            .get_or_create(&RemediationLabels {
                recipe: recipe.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn source(source: Source) -> SourceLabel {
        SourceLabel {
            source: source.as_str(),
        }
    }

    pub fn incident_outcome(&self, state: State) {
        self.incidents
            .get_or_create(&OutcomeLabel {
                outcome: state.as_str(),
            })
            .inc();
    }

    /// Adds `by` to `counter`, stopping at `u64::MAX` instead of wrapping to 0: some
    /// increments are whatever a sender claims (Alertmanager's `truncatedAlerts`).
    pub fn saturating_inc_by(counter: &Counter, by: u64) {
        let _ = counter.inner().fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |now| Some(now.saturating_add(by)),
        );
    }

    /// The registry in the OpenMetrics text format that Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fed_by_senders_saturate_instead_of_wrapping() {
        let metrics = Metrics::new();
        Metrics::saturating_inc_by(&metrics.truncated_alerts, u64::MAX);
        Metrics::saturating_inc_by(&metrics.truncated_alerts, u64::MAX);
        Metrics::saturating_inc_by(&metrics.truncated_alerts, 1);
        assert_eq!(metrics.truncated_alerts.get(), u64::MAX);
        assert!(
            metrics
                .encode()
                .contains("salve_alertmanager_truncated_alerts_total 18446744073709551615"),
            "{}",
            metrics.encode()
        );
    }
}
