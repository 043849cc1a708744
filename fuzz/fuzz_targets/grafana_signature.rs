//! `salve::intake::grafana::verify_signature` on arbitrary headers, body, secret and clock:
//! never panics, refuses only with a `Signature` error, and agrees with an independent HMAC:
//! a correct signature of a fresh request is accepted, anything else is refused.
#![no_main]

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use salve::intake::IntakeError;
use salve::intake::grafana::verify_signature;
use sha2::Sha256;

#[derive(Debug, Arbitrary)]
struct Request<'a> {
    secret: &'a [u8],
    body: &'a [u8],
    /// The signature header as sent: free text, or (when `sign` is set) the right MAC.
    signature: Option<&'a str>,
    sign: bool,
    /// The timestamp header: free text, or Grafana's decimal seconds.
    timestamp: Option<&'a str>,
    timestamp_seconds: Option<i64>,
    now_seconds: i64,
    max_skew_seconds: u64,
}

fuzz_target!(|request: Request<'_>| {
    let now = DateTime::<Utc>::from_timestamp(request.now_seconds, 0).unwrap_or_default();
    let max_skew = Duration::from_secs(request.max_skew_seconds);
    let seconds_text = request.timestamp_seconds.map(|seconds| seconds.to_string());
    let timestamp = seconds_text.as_deref().or(request.timestamp);

    let expected_mac = {
        let mut mac = Hmac::<Sha256>::new_from_slice(request.secret).expect("any key length");
        if let Some(timestamp) = timestamp {
            mac.update(timestamp.trim().as_bytes());
            mac.update(b":");
        }
        mac.update(request.body);
        hex::encode(mac.finalize().into_bytes())
    };
    let signature = match request.sign {
        true => Some(expected_mac.as_str()),
        false => request.signature,
    };

    let result = verify_signature(
        request.secret,
        request.body,
        signature,
        timestamp,
        now,
        max_skew,
    );
    match &result {
        Err(IntakeError::Signature(reason)) => assert!(!reason.is_empty()),
        Err(other) => panic!("not a signature error: {other:?}"),
        Ok(()) => {}
    }

    // What must be accepted: a non-empty secret, the right MAC (any hex case, surrounding
    // blanks allowed), and a timestamp, if configured, of plain digits within the skew.
    let mac_matches = signature
        .map(str::trim)
        .is_some_and(|sent| sent.eq_ignore_ascii_case(&expected_mac));
    let fresh = match timestamp.map(str::trim) {
        None => true,
        Some(text) => {
            !text.is_empty()
                && text.bytes().all(|b| b.is_ascii_digit())
                && text.parse::<i64>().is_ok_and(|seconds| {
                    (i128::from(now.timestamp()) - i128::from(seconds)).unsigned_abs()
                        <= u128::from(max_skew.as_secs())
                })
        }
    };
    let should_accept = !request.secret.is_empty() && mac_matches && fresh;
    assert_eq!(result.is_ok(), should_accept, "{request:?} → {result:?}");
});
