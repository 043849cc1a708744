//! Grafana unified-alerting webhook → canonical alerts, and its optional HMAC signature.
//! It must never accept a signed request whose MAC or timestamp it has not checked in
//! constant time, and never turn Grafana's extra URLs or values into labels.
//!
//! Shape (grafana/alerting `receivers/webhook/v1/webhook.go` `webhookMessage`, embedding
//! `templates/template_data.go` `ExtendedData`): Alertmanager's payload with
//! `version: "1"`, plus top-level `orgId`, `title`, `state` (`alerting`/`ok`), `message`,
//! and per alert `silenceURL`, `dashboardURL`, `panelURL`, `values`, `valueString`,
//! `imageURL`. Times are Go `time.Time` in Grafana's local zone (`…+02:00`); they are
//! normalised to UTC. The extras are ignored: only `generatorURL` is kept.
//!
//! Signature (grafana/alerting `http/hmac.go`): hex HMAC-SHA256 of the body, or of
//! `timestamp + ":" + body` when a timestamp header is configured; the timestamp is Unix
//! time in whole seconds, decimal (`strconv.FormatInt(now.Unix(), 10)`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::alertmanager::parse_monitor_payload;
use super::json;
use super::{IntakeError, Limits, Notification};
use crate::alert::Source;

/// The header Grafana puts the signature in when the contact point leaves "Header" empty
/// (`defaultHeaderName` in grafana/alerting `http/hmac.go`).
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Grafana-Alert-Signature";

/// The default that Grafana's UI placeholder and docs state instead. It differs from what
/// the code sends; an operator who typed it into Grafana will have Grafana send this one.
pub const DOCUMENTED_SIGNATURE_HEADER: &str = "X-Grafana-Alerting-Signature";

/// Top-level fields of Grafana's pre-9 ("legacy") alerting webhook, which has no alert list.
const LEGACY_FIELDS: [&str; 4] = ["evalMatches", "ruleName", "ruleId", "ruleUrl"];

pub fn parse(body: &[u8], limits: &Limits) -> Result<Notification, IntakeError> {
    parse_value(&json::parse_body(body)?, limits)
}

pub(super) fn parse_value(document: &Value, limits: &Limits) -> Result<Notification, IntakeError> {
    let top = json::expect_object(document, "")?;
    if !top.contains_key("alerts") && LEGACY_FIELDS.iter().any(|key| top.contains_key(*key)) {
        return Err(IntakeError::Unsupported(
            "legacy Grafana alerting payload (ruleName/evalMatches, no alerts list); \
             use a Grafana Alerting webhook contact point"
                .into(),
        ));
    }
    // `version` is "1" today; any value is accepted, since the alert shape is what
    // matters and Grafana has not changed it between versions.
    parse_monitor_payload(top, Source::Grafana, limits)
}

/// Checks Grafana's HMAC-SHA256 signature of `body`.
///
/// * `signature_hex`: the signature header's value (`None` when absent).
/// * `timestamp`: `None` when no timestamp header is configured; when one is configured,
///   pass `Some(value)`, or `Some("")` if the request lacks it, which is rejected — a
///   missing timestamp must never downgrade to a body-only check.
/// * A timestamp more than `max_skew` away from `now` (either direction) is rejected as
///   stale, after the MAC has been checked, so only authentic replays are called stale.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    signature_hex: Option<&str>,
    timestamp: Option<&str>,
    now: DateTime<Utc>,
    max_skew: Duration,
) -> Result<(), IntakeError> {
    let reject = |reason: &str| Err(IntakeError::Signature(reason.to_owned()));
    // An empty key would make every signature computable by anyone.
    if secret.is_empty() {
        return reject("no HMAC secret is configured");
    }
    let Some(signature_hex) = signature_hex.map(str::trim).filter(|s| !s.is_empty()) else {
        return reject("missing signature header");
    };
    // Checked before decoding so an oversized header costs nothing.
    let signature = match signature_hex.len() {
        64 => hex::decode(signature_hex).ok(),
        _ => None,
    };
    let Some(signature) = signature else {
        return reject("signature is not 64 hexadecimal digits (hex HMAC-SHA256)");
    };

    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    let sent_at = match timestamp.map(str::trim) {
        None => None,
        Some("") => return reject("missing timestamp header"),
        Some(text) => {
            // Only plain decimal digits: "+5" or " 5" would sign a different string
            // than the one Grafana formatted.
            let seconds = text
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<i64>().ok())
                .flatten();
            let Some(seconds) = seconds else {
                return reject("timestamp is not a Unix time in seconds");
            };
            mac.update(text.as_bytes());
            mac.update(b":");
            Some(seconds)
        }
    };
    mac.update(body);
    // verify_slice compares in constant time.
    if mac.verify_slice(&signature).is_err() {
        return reject("signature does not match the body");
    }

    if let Some(seconds) = sent_at {
        let skew = (i128::from(now.timestamp()) - i128::from(seconds)).unsigned_abs();
        if skew > u128::from(max_skew.as_secs()) {
            return Err(IntakeError::Signature(format!(
                "stale timestamp: {seconds} is {skew} s away from now, more than the allowed {} s",
                max_skew.as_secs()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, AlertStatus, Fingerprint};
    use crate::intake::test_support::{fixture, strings, utc};

    #[test]
    fn firing_payload_with_zone_offsets_parses_exactly() {
        let parsed = parse(&fixture("grafana-firing.json"), &Limits::default()).unwrap();
        assert_eq!(parsed.truncated_alerts, 0);
        assert_eq!(parsed.alerts.len(), 2);
        let labels = strings(&[
            ("alertname", "High memory usage"),
            ("instance", "web1:9100"),
            ("team", "blue"),
            ("zone", "us-1"),
        ]);
        let expected = Alert {
            source: Source::Grafana,
            // Grafana sent "c6eadffa33fcdf37", a hash over labels that include the private
            // ones it strips from the payload: salve uses the labels' own, like every route.
            fingerprint: Fingerprint::of_labels(&labels),
            status: AlertStatus::Firing,
            labels,
            annotations: strings(&[
                ("description", "The system has high memory usage"),
                ("runbook_url", "https://runbooks.example/1234"),
                ("summary", "This alert was triggered for zone us-1"),
            ]),
            // 09:51:03.157076+02:00 is 07:51:03.157076 UTC.
            starts_at: Some(utc("2021-10-12T07:51:03.157076Z")),
            ends_at: None,
            generator_url: Some("https://grafana.example/alerting/grafana/1afz29v7z/view".into()),
            external_url: Some("https://grafana.example/".into()),
        };
        assert_eq!(parsed.alerts[0], expected);
        assert_eq!(
            parsed.alerts[1].starts_at,
            Some(utc("2021-10-12T07:56:03.157076Z"))
        );
        assert_eq!(
            parsed.alerts[1].fingerprint,
            Fingerprint::of_labels(&parsed.alerts[1].labels)
        );
    }

    #[test]
    fn resolved_payload_keeps_its_end_in_utc() {
        let parsed = parse(&fixture("grafana-resolved.json"), &Limits::default()).unwrap();
        let alert = &parsed.alerts[0];
        assert_eq!(alert.status, AlertStatus::Resolved);
        assert_eq!(alert.ends_at, Some(utc("2021-10-12T08:01:03.157076Z")));
        assert_eq!(alert.source, Source::Grafana);
    }

    #[test]
    fn any_version_is_accepted_and_legacy_payloads_are_not() {
        let base = r#""orgId":1,"state":"ok","alerts":[{"status":"resolved","labels":{"a":"b"},
            "startsAt":"2021-10-12T09:51:03+02:00","endsAt":"2021-10-12T09:52:03+02:00"}]"#;
        for version in [r#""version":"1","#, "", r#""version":"2","#] {
            let body = format!("{{{version}{base}}}");
            assert!(parse(body.as_bytes(), &Limits::default()).is_ok(), "{body}");
        }
        let error =
            parse(&fixture("rejected-grafana-legacy.json"), &Limits::default()).unwrap_err();
        assert!(matches!(error, IntakeError::Unsupported(_)), "{error}");
    }

    #[test]
    fn limits_apply_to_grafana_too() {
        let limits = Limits {
            max_alerts: 1,
            ..Limits::default()
        };
        let error = parse(&fixture("grafana-firing.json"), &limits).unwrap_err();
        assert_eq!(
            error,
            IntakeError::TooLarge("alerts: 2 alerts exceed the limit of 1 (max_alerts)".into())
        );
    }

    // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
    const KEY: &[u8] = b"Jefe";
    const BODY: &[u8] = b"what do ya want for nothing?";
    const SIGNATURE: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    // HMAC-SHA256(key "Jefe", "1795829317:what do ya want for nothing?"), computed with
    // `openssl dgst -sha256 -hmac Jefe` and Python's hmac module.
    const TIMESTAMP: &str = "1795829317";
    const SIGNATURE_WITH_TIMESTAMP: &str =
        "51083e680a5e26fd6f354f6528d9ecd20dbdc4296f7ccab136bb50dab474955e";
    const SKEW: Duration = Duration::from_secs(300);

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn check(signature: Option<&str>, timestamp: Option<&str>, now: i64) -> Result<(), String> {
        verify_signature(KEY, BODY, signature, timestamp, at(now), SKEW).map_err(|e| match e {
            IntakeError::Signature(reason) => reason,
            other => panic!("expected a Signature error, got {other:?}"),
        })
    }

    const NOW: i64 = 1_795_829_317;

    #[test]
    fn good_signature_without_timestamp() {
        assert_eq!(check(Some(SIGNATURE), None, NOW), Ok(()));
        assert_eq!(check(Some(&SIGNATURE.to_uppercase()), None, NOW), Ok(()));
        assert_eq!(check(Some(&format!(" {SIGNATURE} ")), None, NOW), Ok(()));
    }

    #[test]
    fn good_signature_with_timestamp_within_skew() {
        let signature = Some(SIGNATURE_WITH_TIMESTAMP);
        assert_eq!(check(signature, Some(TIMESTAMP), NOW), Ok(()));
        assert_eq!(check(signature, Some(TIMESTAMP), NOW + 300), Ok(()));
        assert_eq!(check(signature, Some(TIMESTAMP), NOW - 300), Ok(()));
    }

    #[test]
    fn bad_signatures_are_rejected() {
        let flipped = format!("0{}", &SIGNATURE[1..]);
        assert_eq!(
            check(Some(&flipped), None, NOW),
            Err("signature does not match the body".into())
        );
        // A body-only signature is not valid once a timestamp is part of the signed string,
        // and the other way round.
        assert!(check(Some(SIGNATURE), Some(TIMESTAMP), NOW).is_err());
        assert!(check(Some(SIGNATURE_WITH_TIMESTAMP), None, NOW).is_err());
        // A different timestamp than the one signed.
        assert!(check(Some(SIGNATURE_WITH_TIMESTAMP), Some("1795829318"), NOW).is_err());
        let other_body = verify_signature(KEY, b"tampered", Some(SIGNATURE), None, at(NOW), SKEW);
        assert!(other_body.is_err());
        let not_hex = "z".repeat(64);
        assert!(
            check(Some(&not_hex), None, NOW)
                .unwrap_err()
                .contains("64 hexadecimal digits")
        );
        assert!(
            check(Some(&SIGNATURE[..63]), None, NOW)
                .unwrap_err()
                .contains("64 hexadecimal")
        );
        let prefixed = format!("sha256={SIGNATURE}");
        assert!(check(Some(&prefixed), None, NOW).is_err());
    }

    #[test]
    fn missing_signature_or_timestamp_is_rejected() {
        assert_eq!(
            check(None, None, NOW),
            Err("missing signature header".into())
        );
        assert_eq!(
            check(Some("  "), None, NOW),
            Err("missing signature header".into())
        );
        let signature = Some(SIGNATURE_WITH_TIMESTAMP);
        assert_eq!(
            check(signature, Some(""), NOW),
            Err("missing timestamp header".into())
        );
        for bad in ["+1795829317", "1795829317000x", "1.5", "-1"] {
            assert_eq!(
                check(signature, Some(bad), NOW),
                Err("timestamp is not a Unix time in seconds".into()),
                "{bad}"
            );
        }
        let empty_secret = verify_signature(b"", BODY, Some(SIGNATURE), None, at(NOW), SKEW);
        assert!(matches!(empty_secret, Err(IntakeError::Signature(_))));
    }

    #[test]
    fn stale_timestamps_are_rejected_both_ways() {
        let signature = Some(SIGNATURE_WITH_TIMESTAMP);
        let late = check(signature, Some(TIMESTAMP), NOW + 301).unwrap_err();
        assert_eq!(
            late,
            "stale timestamp: 1795829317 is 301 s away from now, more than the allowed 300 s"
        );
        assert!(
            check(signature, Some(TIMESTAMP), NOW - 301)
                .unwrap_err()
                .starts_with("stale")
        );
        // Milliseconds instead of seconds (not what Grafana sends) can never be fresh.
        let millis = check(signature, Some("1795829317000"), NOW).unwrap_err();
        assert_eq!(millis, "signature does not match the body");
    }
}
