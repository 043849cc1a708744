//! salve's own webhook format (`POST /hooks/generic`, documented in
//! `docs/generic-webhook.md`) → canonical alerts. Strict, because it is ours: an unknown
//! field, an invalid label name or a missing `alertname` is an error, never ignored.
//! It must never accept an alert that the Alertmanager route would identify differently.

use serde_json::Value;

use super::json::{self, NameRule};
use super::{IntakeError, Limits, Notification};
use crate::alert::{Alert, AlertStatus, Fingerprint, Source};

/// Every field an alert object may have. Kept in the order the docs list them, because the
/// unknown-field error prints this list.
const ALERT_FIELDS: [&str; 7] = [
    "labels",
    "annotations",
    "status",
    "fingerprint",
    "startsAt",
    "endsAt",
    "generatorURL",
];

pub fn parse(body: &[u8], limits: &Limits) -> Result<Notification, IntakeError> {
    parse_value(&json::parse_body(body)?, limits)
}

/// Either `{"alerts": [alert, …]}` or one alert object; the `alerts` key decides.
pub(super) fn parse_value(document: &Value, limits: &Limits) -> Result<Notification, IntakeError> {
    let top = json::expect_object(document, "")?;
    let alerts = if top.contains_key("alerts") {
        json::deny_unknown_fields(top, "", &["alerts"])?;
        let list = json::expect_array(json::required(top, "", "alerts")?, "alerts")?;
        if list.is_empty() {
            return Err(IntakeError::Malformed(
                "alerts: empty list; send at least one alert".into(),
            ));
        }
        if list.len() > limits.max_alerts {
            return Err(IntakeError::TooLarge(format!(
                "alerts: {} alerts exceed the limit of {} (max_alerts)",
                list.len(),
                limits.max_alerts
            )));
        }
        list.iter()
            .enumerate()
            .map(|(index, value)| parse_alert(value, &json::element("alerts", index), limits))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![parse_alert(document, "", limits)?]
    };
    Ok(Notification {
        alerts,
        truncated_alerts: 0,
    })
}

fn parse_alert(value: &Value, path: &str, limits: &Limits) -> Result<Alert, IntakeError> {
    let object = json::expect_object(value, path)?;
    json::deny_unknown_fields(object, path, &ALERT_FIELDS)?;
    let field = |key: &str| json::child(path, key);

    let labels_path = field("labels");
    let labels = json::string_map(
        json::required(object, path, "labels")?,
        &labels_path,
        NameRule::Prometheus,
        limits,
    )?;
    // Recipes match on alertname and `salve gaps` groups by it: an alert without one
    // could never be handled or reported usefully.
    if labels.get("alertname").is_none_or(String::is_empty) {
        return Err(IntakeError::Malformed(format!(
            "{labels_path}: must include a non-empty \"alertname\""
        )));
    }
    let annotations =
        json::optional_string_map(object, path, "annotations", NameRule::Prometheus, limits)?;
    let status = match json::optional(object, "status") {
        None => AlertStatus::Firing,
        Some(value) => json::status(value, &field("status"))?,
    };
    // The identity is computed from the labels, exactly as Alertmanager computes it, so the
    // same labels are the same alert on every route and no sender can claim another
    // alert's incident. A sent `fingerprint` is only checked: ours is a strict format, and
    // one that disagrees with the labels is a sender's bug (or an attempt), never ignored.
    let fingerprint = Fingerprint::of_labels(&labels);
    if let Some(value) = json::optional(object, "fingerprint") {
        let sent = json::expect_str(value, &field("fingerprint"))?;
        if sent != fingerprint.as_str() {
            return Err(IntakeError::Malformed(format!(
                "{}: {} does not match the labels, whose fingerprint is \"{fingerprint}\"; \
                 salve computes it from the labels, so leave the field out",
                field("fingerprint"),
                json::quote(sent)
            )));
        }
    }
    let starts_at = json::optional_time(object, path, "startsAt")?;
    let ends_at = json::optional_time(object, path, "endsAt")?;
    let generator_url = json::optional_text(object, path, "generatorURL", limits)?;
    Ok(Alert {
        source: Source::Generic,
        fingerprint,
        status,
        labels,
        annotations,
        starts_at,
        ends_at,
        generator_url,
        external_url: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_support::{fixture, utc};
    use std::collections::BTreeMap;

    fn reason(body: &str) -> String {
        parse(body.as_bytes(), &Limits::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn single_alert_with_defaults() {
        let parsed = parse(
            br#"{"labels":{"alertname":"ServiceDown"}}"#,
            &Limits::default(),
        );
        let alert = parsed.unwrap().alerts.remove(0);
        let labels: BTreeMap<String, String> =
            [("alertname".to_owned(), "ServiceDown".to_owned())].into();
        assert_eq!(alert, Alert::firing_generic(labels));
    }

    #[test]
    fn documented_samples_parse() {
        let single = parse(&fixture("generic-single.json"), &Limits::default()).unwrap();
        let alert = &single.alerts[0];
        assert_eq!(alert.alertname(), Some("ServiceDown"));
        assert_eq!(alert.labels["service"], "nginx");
        assert_eq!(alert.starts_at, Some(utc("2026-11-28T01:28:37Z")));
        assert_eq!(
            alert.generator_url.as_deref(),
            Some("https://monitor.example/checks/42")
        );

        let list = parse(&fixture("generic-list.json"), &Limits::default()).unwrap();
        assert_eq!(list.truncated_alerts, 0);
        assert_eq!(list.alerts[0].status, AlertStatus::Firing);
        let resolved = &list.alerts[1];
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(
            resolved.fingerprint,
            Fingerprint::of_labels(&resolved.labels)
        );
        assert_eq!(resolved.starts_at, Some(utc("2026-11-28T00:10:00Z")));
        assert_eq!(resolved.ends_at, Some(utc("2026-11-28T01:00:00Z")));
    }

    #[test]
    fn every_example_in_the_docs_parses() {
        let path = format!("{}/docs/generic-webhook.md", env!("CARGO_MANIFEST_DIR"));
        let page = std::fs::read_to_string(path).unwrap();
        let examples: Vec<&str> = page
            .split("```json\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert_eq!(examples.len(), 2, "the page shows two examples");
        for example in examples {
            let parsed = parse(example.as_bytes(), &Limits::default());
            assert!(parsed.is_ok(), "{parsed:?} for {example}");
        }
    }

    #[test]
    fn nulls_count_as_absent() {
        let body = r#"{"labels":{"alertname":"A"},"annotations":null,"status":null,
            "fingerprint":null,"startsAt":null,"endsAt":null,"generatorURL":null}"#;
        let alert = parse(body.as_bytes(), &Limits::default())
            .unwrap()
            .alerts
            .remove(0);
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.starts_at, None);
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert_eq!(
            reason(r#"{"lables":{"alertname":"A"}}"#),
            "lables: unknown field; expected one of labels, annotations, status, \
             fingerprint, startsAt, endsAt, generatorURL"
        );
        assert!(
            reason(r#"{"alerts":[{"labels":{"alertname":"A"},"severity":"x"}]}"#)
                .starts_with("alerts[0].severity: unknown field;")
        );
        assert_eq!(
            reason(r#"{"alerts":[],"labels":{}}"#),
            "labels: unknown field; expected one of alerts"
        );
    }

    #[test]
    fn labels_are_checked_strictly() {
        assert_eq!(reason(r#"{"status":"firing"}"#), "labels: missing");
        assert_eq!(
            reason(r#"{"labels":{}}"#),
            "labels: must include a non-empty \"alertname\""
        );
        assert_eq!(
            reason(r#"{"labels":{"alertname":""}}"#),
            "labels: must include a non-empty \"alertname\""
        );
        assert_eq!(
            reason(r#"{"labels":{"alertname":"A","bad-name":"x"}}"#),
            "labels: invalid name \"bad-name\": must match [a-zA-Z_][a-zA-Z0-9_]*"
        );
        assert_eq!(
            reason(r#"{"labels":{"alertname":"A"},"annotations":{"9x":"y"}}"#),
            "annotations: invalid name \"9x\": must match [a-zA-Z_][a-zA-Z0-9_]*"
        );
        assert_eq!(
            reason(r#"{"alerts":[{"labels":{"alertname":"A"}},{"labels":{"alertname":true}}]}"#),
            "alerts[1].labels.alertname: expected a string, found boolean"
        );
    }

    #[test]
    fn other_fields_are_validated() {
        assert_eq!(
            reason(r#"{"labels":{"alertname":"A"},"status":"ok"}"#),
            "status: expected \"firing\" or \"resolved\", found \"ok\""
        );
        assert_eq!(
            reason(r#"{"labels":{"alertname":"A"},"fingerprint":5}"#),
            "fingerprint: expected a string, found number"
        );
        assert!(
            reason(r#"{"labels":{"alertname":"A"},"endsAt":"yesterday"}"#)
                .starts_with("endsAt: invalid RFC 3339 time \"yesterday\"")
        );
        assert_eq!(
            reason(r#"{"alerts":[]}"#),
            "alerts: empty list; send at least one alert"
        );
        assert_eq!(
            reason(r#"{"alerts":{}}"#),
            "alerts: expected a list, found object"
        );
    }

    #[test]
    fn a_fingerprint_must_be_the_labels_own() {
        let labels: BTreeMap<String, String> = [("alertname".to_owned(), "A".to_owned())].into();
        let own = Fingerprint::of_labels(&labels);
        let body = format!(r#"{{"labels":{{"alertname":"A"}},"fingerprint":"{own}"}}"#);
        let alert = parse(body.as_bytes(), &Limits::default())
            .unwrap()
            .alerts
            .remove(0);
        assert_eq!(alert.fingerprint, own);

        // Another alert's fingerprint (here the captured DiskFull's), a custom one, an
        // empty one: refused with the reason, never used as the identity.
        for sent in ["10fd2ebfb5d5241b", "disk-web2-var", ""] {
            let body = format!(r#"{{"labels":{{"alertname":"A"}},"fingerprint":"{sent}"}}"#);
            assert_eq!(
                reason(&body),
                format!(
                    "fingerprint: \"{sent}\" does not match the labels, whose fingerprint is \"{own}\"; \
                     salve computes it from the labels, so leave the field out"
                )
            );
        }
        let long = "\u{1b}[2J".repeat(10_000);
        let body =
            serde_json::json!({"alerts": [{"labels": {"alertname": "A"}, "fingerprint": long}]});
        let reason = reason(&body.to_string());
        assert!(
            reason.starts_with("alerts[0].fingerprint: \"\\u{1b}[2J"),
            "{reason}"
        );
        assert!(
            reason.len() < 300 && !reason.contains('\u{1b}'),
            "{reason:?}"
        );
    }

    #[test]
    fn every_limit_is_enforced() {
        let limits = Limits {
            max_alerts: 1,
            max_labels: 1,
            max_name_bytes: 9,
            max_value_bytes: 4,
        };
        let too_large = |body: &str| match parse(body.as_bytes(), &limits) {
            Err(IntakeError::TooLarge(reason)) => reason,
            other => panic!("expected TooLarge for {body}, got {other:?}"),
        };
        assert!(parse(br#"{"labels":{"alertname":"A"}}"#, &limits).is_ok());
        assert!(
            too_large(r#"{"alerts":[{"labels":{"alertname":"A"}},{"labels":{"alertname":"B"}}]}"#)
                .ends_with("(max_alerts)")
        );
        assert!(too_large(r#"{"labels":{"alertname":"A","b":"c"}}"#).ends_with("(max_labels)"));
        assert!(
            too_large(r#"{"labels":{"alertname":"A"},"annotations":{"a":"1","b":"2"}}"#)
                .ends_with("(max_labels)")
        );
        assert!(too_large(r#"{"labels":{"alertname_x":"A"}}"#).ends_with("(max_name_bytes)"));
        assert!(too_large(r#"{"labels":{"alertname":"ABCDE"}}"#).ends_with("(max_value_bytes)"));
        assert!(
            too_large(r#"{"labels":{"alertname":"A"},"generatorURL":"http://x"}"#)
                .starts_with("generatorURL: value is 8 bytes")
        );
    }

    #[test]
    fn hostile_values_pass_through_byte_for_byte() {
        let parsed = parse(&fixture("generic-hostile-values.json"), &Limits::default()).unwrap();
        let alert = &parsed.alerts[0];
        assert_eq!(alert.labels["alertname"], "Disk\"Full'; shutdown -h now");
        assert_eq!(alert.labels["mountpoint"], "/mnt/$(id)/`uname`/;|&>");
        assert_eq!(alert.labels["host"], "web1\n127.0.0.1 evil");
        assert_eq!(
            alert.labels["note"],
            "naïve — 日本語 \u{1F525} \u{200B}zero-width"
        );
        assert_eq!(alert.annotations["summary"], "%s %n {{7*7}} ${7*7} \\x00");
        // The fingerprint is computed from the raw bytes, exactly as Alertmanager would.
        assert_eq!(alert.fingerprint, Fingerprint::of_labels(&alert.labels));
    }
}
