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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    /// Channel names come from the config: a bounded set.
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub commit: &'static str,
}

/// The states an incident ends in: each incident is counted once in
/// `salve_incidents_total`, under the first of these it reaches. The others (`received`,
/// `matched`, `remediating`, `verifying`, `awaiting_approval`) are on the way to one.
pub const FINAL_OUTCOMES: [State; 14] = [
    State::Unmatched,
    State::Refused,
    State::DryRun,
    State::Notified,
    State::Succeeded,
    State::Failed,
    State::VerifyFailed,
    State::BreakerOpen,
    State::RateLimited,
    State::ResolvedBeforeRun,
    State::Interrupted,
    State::Paused,
    State::Denied,
    State::ApprovalExpired,
];

/// The outcomes `salve_remediations_total` counts a recipe's remediations under.
pub const REMEDIATION_OUTCOMES: [State; 7] = [
    State::Succeeded,
    State::Failed,
    State::VerifyFailed,
    State::BreakerOpen,
    State::RateLimited,
    State::ResolvedBeforeRun,
    State::Paused,
];

/// The commit salve was built from, when the build knew it.
pub const GIT_COMMIT: &str = match option_env!("SALVE_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// The two exposition formats `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text, what the registry encodes.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text004,
}

impl Format {
    pub const OPENMETRICS_CONTENT_TYPE: &str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
    pub const TEXT_004_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

    /// The format an `Accept` header asks for: OpenMetrics only when it is offered and
    /// weighted at least as high as plain text (Prometheus asks so); otherwise — plain
    /// `text/plain`, `*/*`, no header — the 0.0.4 text every scraper reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let (mut openmetrics, mut text) = (None::<f32>, None::<f32>);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut quality = 1.0_f32;
            for parameter in parts {
                if let Some((name, value)) = parameter.split_once('=')
                    && name.trim().eq_ignore_ascii_case("q")
                {
                    quality = value.trim().parse().unwrap_or(0.0);
                }
            }
            let slot = match media_type.as_str() {
                "application/openmetrics-text" => &mut openmetrics,
                "text/plain" => &mut text,
                _ => continue,
            };
            *slot = Some(slot.map_or(quality, |seen| seen.max(quality)));
        }
        match (openmetrics, text) {
            (Some(om), text) if om > 0.0 && om >= text.unwrap_or(0.0) => Format::OpenMetrics,
            _ => Format::Text004,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => Format::OPENMETRICS_CONTENT_TYPE,
            Format::Text004 => Format::TEXT_004_CONTENT_TYPE,
        }
    }
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
    /// Replicas sharing the store whose lease runs, this one included (last heartbeat).
    pub replicas_live: Gauge,
    /// From salve receiving an alert to the first command of its remediation being sent.
    pub alert_to_first_command: Histogram,
    /// Deliveries a channel did not accept (each attempt, a digest once), by channel.
    pub escalation_delivery_failures: Family<ChannelLabel, Counter>,
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
            "Incidents by final outcome, each incident once: unmatched, refused, dry_run, notified, succeeded, failed, verify_failed, breaker_open, rate_limited, resolved_before_run, interrupted, paused, denied, approval_expired",
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
        let replicas_live = Gauge::default();
        registry.register(
            "replicas_live",
            "Replicas sharing the store whose lease runs, this one included (as of its last heartbeat)",
            replicas_live.clone(),
        );
        let alert_to_first_command = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register(
            "alert_to_first_command_seconds",
            "From salve receiving an alert to the first command of its remediation being sent",
            alert_to_first_command.clone(),
        );
        let escalation_delivery_failures = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "escalation_delivery_failures",
            "Escalation deliveries a channel did not accept (each attempt; a digest counts once), by channel",
            escalation_delivery_failures.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1: the version and git commit of this salve",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: GIT_COMMIT,
            })
            .set(1);
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
            // The accepted answer's series, so the first request moves a rate.
            let _ = webhook_duration.get_or_create(&RequestLabels {
                source: source.as_str(),
                code: 200,
            });
        }
        for state in FINAL_OUTCOMES {
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
            replicas_live,
            alert_to_first_command,
            escalation_delivery_failures,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
        })
    }

    /// Creates `recipe`'s remediation series at 0 (those it has not yet), so a rate sees
    /// its first remediation.
    pub fn remediation_series(&self, recipe: &str) {
        for outcome in REMEDIATION_OUTCOMES {
            let _ = self.remediations.get_or_create(&RemediationLabels {
                recipe: recipe.to_owned(),
                outcome: outcome.as_str(),
            });
        }
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

    /// Counts an incident that reached its final `state`; a state on the way (`matched`,
    /// `awaiting_approval`...) is not an outcome and is not counted.
    pub fn incident_outcome(&self, state: State) {
        if !FINAL_OUTCOMES.contains(&state) {
            return;
        }
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

    /// The registry in `format`.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text004 => openmetrics_to_text_004(&self.encode()),
        }
    }
}

/// Rewrites OpenMetrics text (as prometheus-client writes it) in the Prometheus text
/// format 0.0.4: no `# EOF` and no `# UNIT`; a counter family is named with its `_total`
/// (0.0.4 names a family by its samples) and loses its `_created` samples; `info` becomes a
/// gauge named `_info`, `unknown` becomes `untyped`, `gaugehistogram` a histogram;
/// exemplars are dropped. HELP texts pass as they are: salve's are static and hold
/// neither a backslash nor a line break (a test checks).
pub fn openmetrics_to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    let mut counter_family: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').map_or("", |(_, text)| text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "unknown" => (family.to_owned(), "untyped"),
                "gaugehistogram" => (family.to_owned(), "histogram"),
                "stateset" => (family.to_owned(), "gauge"),
                other => (family.to_owned(), other),
            };
            counter_family = (kind == "counter").then_some(family);
            if let Some(text) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = without_exemplar(line);
        if let Some(family) = counter_family
            && sample_name(sample) == format!("{family}_created")
        {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// A sample line's metric name.
fn sample_name(sample: &str) -> &str {
    let end = sample.find(['{', ' ']).unwrap_or(sample.len());
    &sample[..end]
}

/// A sample line without its OpenMetrics exemplar (` # {...} value`), which may follow
/// the value; a `#` inside a quoted label value is not one.
fn without_exemplar(sample: &str) -> &str {
    let after_labels = match sample.find('{') {
        Some(open) if open < sample.find(' ').unwrap_or(usize::MAX) => {
            let (mut quoted, mut escaped) = (false, false);
            let mut close = sample.len();
            for (offset, byte) in sample.bytes().enumerate().skip(open + 1) {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b'}' if !quoted => {
                        close = offset + 1;
                        break;
                    }
                    _ => {}
                }
            }
            close
        }
        _ => 0,
    };
    match sample[after_labels..].find(" # ") {
        Some(at) => &sample[..after_labels + at],
        None => sample,
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

    #[test]
    fn prometheus_gets_openmetrics_when_it_prefers_it_and_text_004_otherwise() {
        let check = |accept: Option<&str>, expected: Format| {
            assert_eq!(Format::negotiate(accept), expected, "Accept: {accept:?}");
        };
        // Prometheus 2.x's default Accept header.
        check(
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            Format::OpenMetrics,
        );
        // `scrape_protocols: [PrometheusText0.0.4]`.
        check(
            Some("text/plain;version=0.0.4;q=0.9,*/*;q=0.1"),
            Format::Text004,
        );
        check(Some("text/plain; version=0.0.4"), Format::Text004);
        check(Some("*/*"), Format::Text004);
        check(None, Format::Text004);
        check(
            Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
            Format::Text004,
        );
        check(Some("application/openmetrics-text;q=0"), Format::Text004);
        check(
            Some("Application/OpenMetrics-Text; version=1.0.0"),
            Format::OpenMetrics,
        );
    }

    #[test]
    fn openmetrics_becomes_text_004_family_by_family() {
        let openmetrics = concat!(
            "# HELP app_requests Requests served.\n",
            "# TYPE app_requests counter\n",
            "app_requests_total{code=\"200\"} 3\n",
            "app_requests_created{code=\"200\"} 1700000000.0\n",
            "# HELP app_spent_seconds Time spent.\n",
            "# TYPE app_spent_seconds counter\n",
            "# UNIT app_spent_seconds seconds\n",
            "app_spent_seconds_total 1.5 # {trace=\"a # b\"} 0.5\n",
            "# HELP app_queue Queue length.\n",
            "# TYPE app_queue gauge\n",
            "app_queue{name=\"x # {y}\"} 2\n",
            "# HELP app_build Build.\n",
            "# TYPE app_build info\n",
            "app_build_info{version=\"1\"} 1\n",
            "# HELP app_latency_seconds Latency.\n",
            "# TYPE app_latency_seconds histogram\n",
            "app_latency_seconds_sum 0.25\n",
            "app_latency_seconds_count 1\n",
            "app_latency_seconds_bucket{le=\"0.5\"} 1\n",
            "app_latency_seconds_bucket{le=\"+Inf\"} 1\n",
            "# HELP app_other Other.\n",
            "# TYPE app_other unknown\n",
            "app_other 7\n",
            "# EOF\n",
        );
        let expected = concat!(
            "# HELP app_requests_total Requests served.\n",
            "# TYPE app_requests_total counter\n",
            "app_requests_total{code=\"200\"} 3\n",
            "# HELP app_spent_seconds_total Time spent.\n",
            "# TYPE app_spent_seconds_total counter\n",
            "app_spent_seconds_total 1.5\n",
            "# HELP app_queue Queue length.\n",
            "# TYPE app_queue gauge\n",
            "app_queue{name=\"x # {y}\"} 2\n",
            "# HELP app_build_info Build.\n",
            "# TYPE app_build_info gauge\n",
            "app_build_info{version=\"1\"} 1\n",
            "# HELP app_latency_seconds Latency.\n",
            "# TYPE app_latency_seconds histogram\n",
            "app_latency_seconds_sum 0.25\n",
            "app_latency_seconds_count 1\n",
            "app_latency_seconds_bucket{le=\"0.5\"} 1\n",
            "app_latency_seconds_bucket{le=\"+Inf\"} 1\n",
            "# HELP app_other Other.\n",
            "# TYPE app_other untyped\n",
            "app_other 7\n",
        );
        assert_eq!(openmetrics_to_text_004(openmetrics), expected);
    }

    #[test]
    fn salves_own_metrics_in_text_004_name_each_family_by_its_samples() {
        let metrics = Metrics::new();
        metrics.ssh_command_duration.observe(0.1);
        let text = metrics.encode_as(Format::Text004);
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                assert!(!rest.contains('\\'), "HELP needs escaping in 0.0.4: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                family = name.to_owned();
            } else {
                let name = sample_name(line);
                let suffixes = ["", "_sum", "_count", "_bucket"];
                assert!(
                    suffixes.iter().any(|s| name == format!("{family}{s}")),
                    "sample {name} outside its family {family}"
                );
            }
        }
    }

    #[test]
    fn every_final_outcome_exists_at_zero_and_only_final_outcomes_count() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        for state in FINAL_OUTCOMES {
            let series = format!(
                "salve_incidents_total{{outcome=\"{}\"}} 0\n",
                state.as_str()
            );
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        for state in State::ALL {
            metrics.incident_outcome(state);
        }
        assert!(!metrics.encode().contains("outcome=\"matched\""));
        let counted: u64 = State::ALL
            .into_iter()
            .map(|state| {
                metrics
                    .incidents
                    .get_or_create(&OutcomeLabel {
                        outcome: state.as_str(),
                    })
                    .get()
            })
            .sum();
        assert_eq!(counted, FINAL_OUTCOMES.len() as u64);
    }

    #[test]
    fn build_info_names_the_version_and_commit() {
        let text = Metrics::new().encode_as(Format::Text004);
        let series = format!(
            "salve_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            GIT_COMMIT
        );
        assert!(text.contains(&series), "{text}");
    }
}
