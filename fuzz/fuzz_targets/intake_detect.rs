//! `salve::intake::detect_and_parse` (what `salve simulate` runs on a file) on arbitrary
//! bytes, capture wrappers included: never panics, keeps `salve_fuzz::check_parser`'s
//! invariants, and on a plain body gives exactly what the detected route's parser gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use salve::intake::{self, Limits};
use serde_json::Value;

/// A capture file (`{"headers": {…}, "body": …}`) is unwrapped before detection, so only a
/// plain body can be compared with a route's parse of the same bytes.
fn is_capture(body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(top)) => {
            top.get("headers").is_some_and(Value::is_object) && top.contains_key("body")
        }
        _ => false,
    }
}

fuzz_target!(|body: &[u8]| {
    salve_fuzz::check_parser(body, intake::detect_and_parse);
    if let Ok(notification) = intake::detect_and_parse(body, &Limits::default())
        && let Some(first) = notification.alerts.first()
        && !is_capture(body)
    {
        let by_route = intake::parse(first.source, body, &Limits::default());
        assert_eq!(
            by_route.as_ref(),
            Ok(&notification),
            "detect_and_parse and the {} route disagree",
            first.source
        );
    }
});
