//! What every intake fuzz target asserts besides "no panic": an accepted notification keeps
//! within the limits it was parsed under, a refusal says why in a bounded message, and the
//! limits act monotonically (loosening them never rejects what tighter ones accepted).

use salve::alert::{AlertStatus, Fingerprint};
use salve::intake::grafana::verify_signature;
use salve::intake::{IntakeError, Limits, Notification};

/// The `grafana_signature` target's input layout and check (shared with the test suite).
pub mod grafana_signature;

/// Limits small enough for short fuzz inputs to hit every one of them.
pub const TIGHT: Limits = Limits {
    max_alerts: 3,
    max_labels: 4,
    max_name_bytes: 12,
    max_value_bytes: 40,
};

/// An error message goes back to the sender and into logs: it quotes at most 100 escaped
/// characters of any input string (`intake::json::quote`), so it stays short whatever the body.
const MAX_REASON_BYTES: usize = 2048;

/// Runs `parse` under [`TIGHT`] and under the defaults and checks both results, and that
/// they agree: a body accepted under the tight limits is accepted under the defaults with
/// the same result, and a body accepted under the defaults whose contents fit the tight
/// limits is accepted under them too.
pub fn check_parser(
    body: &[u8],
    parse: impl Fn(&[u8], &Limits) -> Result<Notification, IntakeError>,
) {
    let tight = parse(body, &TIGHT);
    let default = parse(body, &Limits::default());
    check_result(&tight, &TIGHT);
    check_result(&default, &Limits::default());
    match (&tight, &default) {
        (Ok(tight), Ok(default)) => assert_eq!(tight, default, "limits changed the parse"),
        (Ok(_), Err(error)) => {
            panic!("accepted under tight limits, refused under defaults: {error}")
        }
        (Err(error), Ok(notification)) if fits(notification, &TIGHT) => {
            panic!("refused under tight limits although the result fits them: {error}")
        }
        _ => {}
    }
}

/// The invariants of one parse result under `limits`.
pub fn check_result(result: &Result<Notification, IntakeError>, limits: &Limits) {
    match result {
        Ok(notification) => check_notification(notification, limits),
        Err(error) => check_error(error),
    }
}

pub fn check_error(error: &IntakeError) {
    let reason = error.reason();
    assert!(!reason.trim().is_empty(), "empty reason in {error:?}");
    assert!(
        reason.len() <= MAX_REASON_BYTES,
        "reason of {} bytes: {reason:?}",
        reason.len()
    );
    // A parser never judges signatures: that error would become a 401 instead of a 400.
    assert!(!matches!(error, IntakeError::Signature(_)), "{error:?}");
    assert!(!error.to_string().is_empty());
}

pub fn check_notification(notification: &Notification, limits: &Limits) {
    assert!(
        fits(notification, limits),
        "accepted notification exceeds {limits:?}: {notification:?}"
    );
    let Some(first) = notification.alerts.first() else {
        return;
    };
    for alert in &notification.alerts {
        // One delivery comes from one source.
        assert_eq!(alert.source, first.source);
        assert!(
            Fingerprint::parse(alert.fingerprint.as_str()).is_ok(),
            "{alert:?}"
        );
        assert!(
            alert
                .labels
                .keys()
                .chain(alert.annotations.keys())
                .all(|name| !name.is_empty()),
            "{alert:?}"
        );
        // Go's zero time and pre-1970 times mean "unset" and become None.
        for time in [alert.starts_at, alert.ends_at].into_iter().flatten() {
            assert!(time.timestamp() >= 0, "{alert:?}");
        }
        // Empty URLs mean "unset" too.
        for url in [&alert.generator_url, &alert.external_url]
            .into_iter()
            .flatten()
        {
            assert!(!url.is_empty(), "{alert:?}");
        }
        assert!(matches!(
            alert.status,
            AlertStatus::Firing | AlertStatus::Resolved
        ));
    }
}

/// Whether every bounded quantity of `notification` is within `limits`.
pub fn fits(notification: &Notification, limits: &Limits) -> bool {
    notification.alerts.len() <= limits.max_alerts
        && notification.alerts.iter().all(|alert| {
            [&alert.labels, &alert.annotations].into_iter().all(|map| {
                map.len() <= limits.max_labels
                    && map.iter().all(|(name, value)| {
                        name.len() <= limits.max_name_bytes && value.len() <= limits.max_value_bytes
                    })
            }) && [&alert.generator_url, &alert.external_url]
                .into_iter()
                .flatten()
                .all(|url| url.len() <= limits.max_value_bytes)
        })
}
