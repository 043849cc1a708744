// The `grafana_signature` fuzz target's whole check, shared word for word by the fuzz target
// (fuzz/src/lib.rs: `pub mod grafana_signature`) and the test suite's replay of its seeds and
// saved crashes (src/fuzz_regressions.rs includes this file with `#[path]`), so both decode an
// input file alike and judge it alike. The including module provides `IntakeError` and
// `verify_signature` (salve's `intake::IntakeError` and `intake::grafana::verify_signature`).
//
// An input is plain bytes, mostly text, so a seed is written by hand and a crash file can be
// read: five lines, then the body.
//
//   line 1  the HMAC secret (bytes)
//   line 2  the signature header: `=VALUE`, or `!` for the right MAC, or anything else: absent
//   line 3  the timestamp header: `=VALUE`, or anything else: absent (no timestamp configured)
//   line 4  now, Unix seconds (decimal; anything else: 0)
//   line 5  the allowed skew in seconds (decimal; anything else: 0)
//   rest    the request body (bytes, to the end)
//
// A missing line is empty. Header values that are not UTF-8 are not requests (an HTTP header
// reaches `verify_signature` as text): such an input is skipped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{IntakeError, verify_signature};

/// One request as the target reads it from its input bytes.
#[derive(Debug)]
pub struct Request<'a> {
    pub secret: &'a [u8],
    /// The signature header: `Some(None)` asks for the right MAC of this request.
    pub signature: Option<Option<&'a str>>,
    pub timestamp: Option<&'a str>,
    pub now_seconds: i64,
    pub max_skew_seconds: u64,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Reads a request from `data` (see the layout above); `None` when a header is not UTF-8.
    pub fn decode(data: &'a [u8]) -> Option<Request<'a>> {
        let mut rest = data;
        let mut line = || take_line(&mut rest);
        let secret = line();
        let signature = match line() {
            [b'!', ..] => Some(None),
            [b'=', value @ ..] => Some(Some(std::str::from_utf8(value).ok()?)),
            _ => None,
        };
        let timestamp = match line() {
            [b'=', value @ ..] => Some(std::str::from_utf8(value).ok()?),
            _ => None,
        };
        let number = |line: &[u8]| std::str::from_utf8(line).ok().map(str::to_owned);
        let now_seconds = number(line())
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        let max_skew_seconds = number(line())
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        Some(Request {
            secret,
            signature,
            timestamp,
            now_seconds,
            max_skew_seconds,
            body: rest,
        })
    }
}

/// The bytes up to the next newline (or the end), moving `rest` past the newline.
fn take_line<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let all: &'a [u8] = rest;
    match all.iter().position(|&byte| byte == b'\n') {
        Some(end) => {
            *rest = &all[end + 1..];
            &all[..end]
        }
        None => {
            *rest = &[];
            all
        }
    }
}

/// `verify_signature` on the request in `data`: never panics, refuses only with a
/// `Signature` error, and agrees with an independent HMAC: a correct signature of a fresh
/// request is accepted, anything else is refused. Returns whether it was accepted (`None`:
/// not a request).
pub fn check(data: &[u8]) -> Option<bool> {
    let request = Request::decode(data)?;
    let now = DateTime::<Utc>::from_timestamp(request.now_seconds, 0).unwrap_or_default();
    let max_skew = Duration::from_secs(request.max_skew_seconds);
    let timestamp = request.timestamp;

    let expected_mac = {
        let mut mac = Hmac::<Sha256>::new_from_slice(request.secret).expect("any key length");
        if let Some(timestamp) = timestamp {
            mac.update(timestamp.trim().as_bytes());
            mac.update(b":");
        }
        mac.update(request.body);
        hex::encode(mac.finalize().into_bytes())
    };
    let signature = match request.signature {
        Some(None) => Some(expected_mac.as_str()),
        Some(Some(sent)) => Some(sent),
        None => None,
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
    Some(result.is_ok())
}
