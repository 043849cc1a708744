//! Intake: turns a webhook body (bytes) into canonical [`Alert`]s, one parser per source.
//! Pure functions only — no HTTP, no I/O, no clock except the one passed in — and alert
//! text is carried byte for byte, never interpreted, trimmed or executed.
//!
//! The HTTP layer maps [`IntakeError::Malformed`], [`IntakeError::Unsupported`] and
//! [`IntakeError::TooLarge`] to 400 with the message as the reason, and
//! [`IntakeError::Signature`] to 401. The body-size limit (413) is enforced before parsing.

pub mod alertmanager;
pub mod generic;
pub mod grafana;
mod json;
#[cfg(test)]
mod test_support;

/// Untrusted text quoted for an error message: escaped, and bounded whatever its length.
pub(crate) use json::quote;

use serde_json::Value;

use crate::alert::{Alert, Source};

/// Bounds on one notification, checked while parsing so that one hostile request cannot
/// make the journal store megabytes per alert or thousands of alerts. The `[intake]` keys of
/// the same names are read straight into it (`config::IntakeSettings`); each must be > 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Alerts in one notification.
    pub max_alerts: usize,
    /// Entries in one alert's `labels`, and separately in its `annotations`.
    pub max_labels: usize,
    /// Bytes in one label or annotation name.
    pub max_name_bytes: usize,
    /// Bytes in one label or annotation value, `generatorURL` or `externalURL`.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Alertmanager sends every alert of a group in each notification; 1000 is far
            // above real groups and far below what would hurt the store.
            max_alerts: 1000,
            max_labels: 128,
            max_name_bytes: 256,
            // Annotations carry descriptions and runbook text, sometimes long.
            max_value_bytes: 16 * 1024,
        }
    }
}

/// One webhook delivery, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub alerts: Vec<Alert>,
    /// Alerts the sender dropped because of its own `max_alerts` (Alertmanager and Grafana
    /// `truncatedAlerts`, saturated into `0..=u64::MAX`); always 0 for the generic hook.
    pub truncated_alerts: u64,
}

/// Why a body was refused. The message is precise enough to fix the sender: it names the
/// JSON path, the limit, or serde_json's line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed but a version or variant salve does not speak.
    #[error("unsupported payload: {0}")]
    Unsupported(String),
    /// Over one of the [`Limits`].
    #[error("over limit: {0}")]
    TooLarge(String),
    /// Grafana HMAC signature missing, wrong or stale.
    #[error("signature rejected: {0}")]
    Signature(String),
}

impl IntakeError {
    /// The reason alone, without the kind prefix of `Display`.
    pub fn reason(&self) -> &str {
        match self {
            IntakeError::Malformed(reason)
            | IntakeError::Unsupported(reason)
            | IntakeError::TooLarge(reason)
            | IntakeError::Signature(reason) => reason,
        }
    }
}

/// Parses a body that arrived on the route of `source`.
pub fn parse(source: Source, body: &[u8], limits: &Limits) -> Result<Notification, IntakeError> {
    match source {
        Source::Alertmanager => alertmanager::parse(body, limits),
        Source::Grafana => grafana::parse(body, limits),
        Source::Generic => generic::parse(body, limits),
    }
}

/// Parses a body of unknown origin (for `salve simulate`): guesses the source from the
/// top-level fields, after unwrapping a capture file (`{"headers": …, "body": …}`).
pub fn detect_and_parse(body: &[u8], limits: &Limits) -> Result<Notification, IntakeError> {
    let document = json::parse_body(body)?;
    let document = unwrap_capture(document)?;
    match detect(&document) {
        Source::Alertmanager => alertmanager::parse_value(&document, limits),
        Source::Grafana => grafana::parse_value(&document, limits),
        Source::Generic => generic::parse_value(&document, limits),
    }
}

/// The capture files of the test bed (and of tools like it) hold the request with its
/// headers; the webhook body is the `body` field, as an object or as a JSON string.
fn unwrap_capture(document: Value) -> Result<Value, IntakeError> {
    match document {
        Value::Object(mut top)
            if top.get("headers").is_some_and(Value::is_object) && top.contains_key("body") =>
        {
            match top.remove("body").unwrap_or_default() {
                Value::String(raw) => json::parse_body(raw.as_bytes()).map_err(|e| {
                    IntakeError::Malformed(format!("body (captured): {}", e.reason()))
                }),
                inner => Ok(inner),
            }
        }
        other => Ok(other),
    }
}

/// Which parser a document is meant for. Grafana is checked by its own top-level fields
/// (`orgId`, `state`) because its payload otherwise looks like Alertmanager's; a document
/// with `version` or `groupKey` but not version "4" still goes to the Alertmanager parser
/// so that the user sees "version … is not supported" instead of "unknown field".
fn detect(document: &Value) -> Source {
    let Some(top) = document.as_object() else {
        return Source::Generic;
    };
    let version_4 = top.get("version").and_then(Value::as_str) == Some(alertmanager::VERSION);
    if version_4 && top.contains_key("groupKey") {
        Source::Alertmanager
    } else if top.contains_key("orgId") || top.contains_key("state") {
        Source::Grafana
    } else if top.contains_key("version") || top.contains_key("groupKey") {
        Source::Alertmanager
    } else {
        Source::Generic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;
    use crate::intake::test_support::fixtures_dir;

    /// What detect_and_parse must make of each sample: the source of every alert and their
    /// count, or the kind of error. Every file in the directory must be listed, so a new
    /// sample cannot be added without saying what it is.
    fn expectation(file: &str) -> Result<(Source, usize), &'static str> {
        match file {
            "alertmanager-0.25-firing.json" | "alertmanager-0.25-resolved.json" => {
                Ok((Source::Alertmanager, 1))
            }
            "alertmanager-hostile-values.json" => Ok((Source::Alertmanager, 2)),
            "grafana-firing.json" => Ok((Source::Grafana, 2)),
            "grafana-resolved.json" => Ok((Source::Grafana, 1)),
            "generic-single.json" => Ok((Source::Generic, 1)),
            "generic-list.json" => Ok((Source::Generic, 2)),
            "generic-hostile-values.json" => Ok((Source::Generic, 1)),
            "rejected-alertmanager-version-3.json" => Err("unsupported"),
            "rejected-grafana-legacy.json" => Err("unsupported"),
            "rejected-generic-typo.json" => Err("malformed"),
            "rejected-generic-bad-label-name.json" => Err("malformed"),
            "rejected-not-json.json" => Err("malformed"),
            other => panic!("fixture {other} has no expectation in intake::tests::expectation"),
        }
    }

    fn error_kind(error: &IntakeError) -> &'static str {
        match error {
            IntakeError::Malformed(_) => "malformed",
            IntakeError::Unsupported(_) => "unsupported",
            IntakeError::TooLarge(_) => "too large",
            IntakeError::Signature(_) => "signature",
        }
    }

    #[test]
    fn detect_and_parse_classifies_every_sample() {
        let mut seen = 0;
        for entry in std::fs::read_dir(fixtures_dir()).expect("tests/fixtures/intake exists") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let body = std::fs::read(&path).unwrap();
            let got = detect_and_parse(&body, &Limits::default());
            match (expectation(&name), got) {
                (Ok((source, count)), Ok(notification)) => {
                    assert_eq!(notification.alerts.len(), count, "{name}");
                    assert!(
                        notification.alerts.iter().all(|a| a.source == source),
                        "{name}"
                    );
                }
                (Err(kind), Err(error)) => assert_eq!(error_kind(&error), kind, "{name}: {error}"),
                (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
            }
            seen += 1;
        }
        assert!(seen >= 10, "only {seen} samples found");
    }

    #[test]
    fn parse_dispatches_by_route() {
        let body = br#"{"labels":{"alertname":"X"}}"#;
        let alerts = parse(Source::Generic, body, &Limits::default())
            .unwrap()
            .alerts;
        assert_eq!(alerts[0].source, Source::Generic);
        // The same body on the Alertmanager route is not an Alertmanager payload.
        let error = parse(Source::Alertmanager, body, &Limits::default()).unwrap_err();
        assert_eq!(error, IntakeError::Malformed("version: missing".into()));
        let error = parse(Source::Grafana, body, &Limits::default()).unwrap_err();
        assert_eq!(error, IntakeError::Malformed("alerts: missing".into()));
    }

    #[test]
    fn capture_wrapper_with_a_raw_string_body_is_unwrapped() {
        let body = br#"{"headers":{},"body":"{\"labels\":{\"alertname\":\"X\"},\"status\":\"resolved\"}"}"#;
        let alerts = detect_and_parse(body, &Limits::default()).unwrap().alerts;
        assert_eq!(alerts[0].status, AlertStatus::Resolved);
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let error = detect_and_parse(b"{\n  \"labels\": {,}\n}", &Limits::default()).unwrap_err();
        assert_eq!(error_kind(&error), "malformed");
        assert!(error.reason().contains("line 2 column 14"), "{error}");
        let error = parse(Source::Alertmanager, b"", &Limits::default()).unwrap_err();
        assert!(error.reason().starts_with("invalid JSON: EOF"), "{error}");
    }

    #[test]
    fn non_object_bodies_are_malformed_for_every_source() {
        for source in Source::ALL {
            let error = parse(source, b"[1,2]", &Limits::default()).unwrap_err();
            assert_eq!(
                error.reason(),
                "body: expected an object, found array",
                "{source}"
            );
        }
    }
}
