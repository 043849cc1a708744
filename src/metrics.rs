//! Prometheus metrics. Label values are drawn only from small closed sets (sources,
//! states, status codes): never from alert labels, fingerprints or hosts.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

pub struct Metrics {
    registry: Registry,
    pub alerts_received: Family<SourceLabel, Counter>,
    pub alert_duplicates: Family<SourceLabel, Counter>,
    pub alerts_resolved: Family<SourceLabel, Counter>,
    pub truncated_alerts: Counter,
    pub incidents: Family<OutcomeLabel, Counter>,
    pub webhook_duration: Family<RequestLabels, Histogram>,
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
            "Incidents by outcome: of planning (matched, unmatched, refused, dry_run) and of remediation (succeeded, failed, verify_failed, resolved_before_run)",
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
        })
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

    /// The registry in the OpenMetrics text format that Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
