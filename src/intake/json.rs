//! Path-aware reading of a parsed webhook body: every error names where in the document
//! the problem is (`alerts[1].labels.severity: …`). It must never alter a string it passes
//! on, never echo an unbounded piece of the input into an error, and never panic.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};

use super::{IntakeError, Limits};
use crate::alert::AlertStatus;

/// How much of an offending value or key an error message quotes, in characters of its
/// escaped rendering. Errors go back to the sender and into logs, so a 16 KiB hostile value
/// (or one made of control characters, each escaped to several) must not be copied into them.
const QUOTE_CHARS: usize = 100;

/// Parses the raw body. serde_json's message already carries line and column.
pub(super) fn parse_body(body: &[u8]) -> Result<Value, IntakeError> {
    serde_json::from_slice(body).map_err(|e| IntakeError::Malformed(format!("invalid JSON: {e}")))
}

/// The JSON type name of a value, for "expected X, found Y" messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The path of `key` inside the object at `parent`; the root's fields have no prefix.
/// Keys that are not plain identifiers are quoted (and shortened) so a hostile key cannot
/// forge or bloat the path.
pub(super) fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= QUOTE_CHARS
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", quote(key)),
    }
}

pub(super) fn element(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path to show for the document itself.
pub(super) fn display_path(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

/// A quoted, escaped, length-bounded rendering of untrusted text for an error message:
/// at most [`QUOTE_CHARS`] characters between the quotes, every control character escaped
/// (`\n`, `\u{1b}`), and when cut, the text's full length: `"abc…"…(20000 bytes)`.
pub(crate) fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    let mut shown = 0;
    for ch in text.chars() {
        let escaped: String = match ch {
            '"' => "\\\"".into(),
            '\\' => "\\\\".into(),
            // escape_debug also escapes `'`, which str's Debug does not.
            '\'' => "'".into(),
            other => other.escape_debug().collect(),
        };
        let width = escaped.chars().count();
        if shown + width > QUOTE_CHARS {
            quoted.push_str(&format!("\"…({} bytes)", text.len()));
            return quoted;
        }
        shown += width;
        quoted.push_str(&escaped);
    }
    quoted.push('"');
    quoted
}

fn malformed(path: &str, message: impl std::fmt::Display) -> IntakeError {
    IntakeError::Malformed(format!("{}: {message}", display_path(path)))
}

pub(super) fn expect_object<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, IntakeError> {
    value.as_object().ok_or_else(|| {
        malformed(
            path,
            format_args!("expected an object, found {}", kind(value)),
        )
    })
}

/// A field that must be present and not null.
pub(super) fn required<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Value, IntakeError> {
    match object.get(key) {
        None | Some(Value::Null) => Err(malformed(&child(parent, key), "missing")),
        Some(value) => Ok(value),
    }
}

/// A field that may be absent; JSON `null` counts as absent because Go and JavaScript
/// senders emit it for unset values.
pub(super) fn optional<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

pub(super) fn expect_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, IntakeError> {
    value.as_str().ok_or_else(|| {
        malformed(
            path,
            format_args!("expected a string, found {}", kind(value)),
        )
    })
}

pub(super) fn expect_array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], IntakeError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| malformed(path, format_args!("expected a list, found {}", kind(value))))
}

/// An optional free-text field such as `generatorURL`: a string within the value limit;
/// empty counts as absent (Go senders write `""` for unset strings).
pub(super) fn optional_text(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
    limits: &Limits,
) -> Result<Option<String>, IntakeError> {
    let Some(value) = optional(object, key) else {
        return Ok(None);
    };
    let path = child(parent, key);
    let text = expect_str(value, &path)?;
    check_value_len(text, &path, limits)?;
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// An optional count such as `truncatedAlerts`; absent means 0. The sender's count is only
/// reported (a log line, a metric), so an absurd one saturates rather than failing the
/// notification: negative is 0, anything past `u64::MAX` (sent as a float) is `u64::MAX`.
/// Anything but a number is refused without echoing it.
pub(super) fn optional_count(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<u64, IntakeError> {
    match optional(object, key) {
        None => Ok(0),
        // `as` saturates (and maps NaN to 0), which is exactly the rule.
        Some(Value::Number(number)) => Ok(number
            .as_u64()
            .unwrap_or_else(|| number.as_f64().map_or(0, |float| float as u64))),
        Some(other) => Err(malformed(
            &child(parent, key),
            format_args!("expected a non-negative integer, found {}", kind(other)),
        )),
    }
}

/// Which label and annotation names a source may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameRule {
    /// Any non-empty name: real Alertmanager and Grafana traffic is never refused for a
    /// name their own validation let through.
    NonEmpty,
    /// Prometheus label names, `[a-zA-Z_][a-zA-Z0-9_]*`: our own format is strict.
    Prometheus,
}

fn is_prometheus_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A `labels` or `annotations` object: a map of string to string within every bound.
/// Values are copied byte for byte; nothing is trimmed, normalised or unescaped twice.
pub(super) fn string_map(
    value: &Value,
    path: &str,
    rule: NameRule,
    limits: &Limits,
) -> Result<BTreeMap<String, String>, IntakeError> {
    let object = value.as_object().ok_or_else(|| {
        malformed(
            path,
            format_args!("expected a map of strings, found {}", kind(value)),
        )
    })?;
    if object.len() > limits.max_labels {
        return Err(IntakeError::TooLarge(format!(
            "{path}: {} entries exceed the limit of {} (max_labels)",
            object.len(),
            limits.max_labels
        )));
    }
    let mut map = BTreeMap::new();
    for (name, value) in object {
        if name.is_empty() {
            return Err(malformed(path, "empty name"));
        }
        refuse_nul(name, path)?;
        if name.len() > limits.max_name_bytes {
            return Err(IntakeError::TooLarge(format!(
                "{path}: name {} is {} bytes, over the limit of {} (max_name_bytes)",
                quote(name),
                name.len(),
                limits.max_name_bytes
            )));
        }
        if rule == NameRule::Prometheus && !is_prometheus_name(name) {
            return Err(malformed(
                path,
                format_args!(
                    "invalid name {}: must match [a-zA-Z_][a-zA-Z0-9_]*",
                    quote(name)
                ),
            ));
        }
        let entry_path = child(path, name);
        let text = value.as_str().ok_or_else(|| {
            malformed(
                &entry_path,
                format_args!("expected a string, found {}", kind(value)),
            )
        })?;
        check_value_len(text, &entry_path, limits)?;
        map.insert(name.clone(), text.to_owned());
    }
    Ok(map)
}

/// An optional [`string_map`] field: absent is an empty map.
pub(super) fn optional_string_map(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
    rule: NameRule,
    limits: &Limits,
) -> Result<BTreeMap<String, String>, IntakeError> {
    match optional(object, key) {
        None => Ok(BTreeMap::new()),
        Some(value) => string_map(value, &child(parent, key), rule, limits),
    }
}

pub(super) fn check_value_len(text: &str, path: &str, limits: &Limits) -> Result<(), IntakeError> {
    refuse_nul(text, path)?;
    if text.len() > limits.max_value_bytes {
        return Err(IntakeError::TooLarge(format!(
            "{path}: value is {} bytes, over the limit of {} (max_value_bytes)",
            text.len(),
            limits.max_value_bytes
        )));
    }
    Ok(())
}

/// A NUL character (U+0000) is refused whatever the field: no monitor sends one, and
/// PostgreSQL cannot store it in text, so accepting it would journal the alert on SQLite
/// and answer 503 forever on PostgreSQL. One answer on both stores: 400, naming the field.
fn refuse_nul(text: &str, path: &str) -> Result<(), IntakeError> {
    if text.contains('\0') {
        return Err(malformed(
            path,
            "contains a NUL character (U+0000), which salve does not accept",
        ));
    }
    Ok(())
}

/// An RFC 3339 time, normalised to UTC. Go's zero time `0001-01-01T00:00:00Z` — what
/// Alertmanager and Grafana write for "not set" — and anything before 1970 become `None`.
pub(super) fn time(value: &Value, path: &str) -> Result<Option<DateTime<Utc>>, IntakeError> {
    let text = expect_str(value, path)?;
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| {
        malformed(
            path,
            format_args!("invalid RFC 3339 time {} ({e})", quote(text)),
        )
    })?;
    let utc = parsed.with_timezone(&Utc);
    Ok((utc.year() >= 1970).then_some(utc))
}

/// An optional [`time`] field: absent (or a zero time) is `None`.
pub(super) fn optional_time(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<DateTime<Utc>>, IntakeError> {
    match optional(object, key) {
        None => Ok(None),
        Some(value) => time(value, &child(parent, key)),
    }
}

pub(super) fn status(value: &Value, path: &str) -> Result<AlertStatus, IntakeError> {
    let text = expect_str(value, path)?;
    AlertStatus::parse(text).ok_or_else(|| {
        malformed(
            path,
            format_args!("expected \"firing\" or \"resolved\", found {}", quote(text)),
        )
    })
}

/// Fails when `object` has a key outside `known`: for our own format, a typo must be an
/// error rather than a silently ignored field.
pub(super) fn deny_unknown_fields(
    object: &Map<String, Value>,
    parent: &str,
    known: &[&str],
) -> Result<(), IntakeError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(key) => Err(malformed(
            &child(parent, key),
            format_args!("unknown field; expected one of {}", known.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        assert_eq!(child("", "alerts"), "alerts");
        assert_eq!(child("alerts[0].labels", "job"), "alerts[0].labels.job");
        assert_eq!(child("labels", "a.b"), "labels[\"a.b\"]");
        assert_eq!(child("labels", "x\ny"), "labels[\"x\\ny\"]");
        let long = "k".repeat(500);
        assert!(child("labels", &long).len() < 150);
    }

    #[test]
    fn quote_never_splits_a_character() {
        let text = "é".repeat(200);
        let quoted = quote(&text);
        assert!(quoted.ends_with("…(400 bytes)"), "{quoted}");
        assert_eq!(quoted.chars().filter(|&c| c == 'é').count(), QUOTE_CHARS);
    }

    #[test]
    fn quote_is_bounded_and_escaped_whatever_the_text() {
        // Control characters escape to several characters each: the bound is on what is
        // shown, not on what was sent.
        for hostile in [
            "\u{1b}[2J".repeat(5000),
            "\r\nforged line\x07\x08".repeat(3000),
            "9".repeat(1 << 20),
            "\u{202e}\u{9b}\u{7f}".repeat(1000),
        ] {
            let quoted = quote(&hostile);
            assert!(quoted.chars().count() <= QUOTE_CHARS + 30, "{quoted}");
            assert!(
                quoted.ends_with(&format!("…({} bytes)", hostile.len())),
                "{quoted}"
            );
            assert!(!quoted.chars().any(char::is_control), "{quoted:?}");
        }
        assert_eq!(quote("a\"b\\c'd"), r#""a\"b\\c'd""#);
        assert_eq!(quote("short"), "\"short\"");
    }

    #[test]
    fn counts_saturate_instead_of_failing() {
        let count = |value: Value| {
            let object = json!({ "truncatedAlerts": value });
            optional_count(object.as_object().unwrap(), "", "truncatedAlerts")
        };
        assert_eq!(count(json!(7)), Ok(7));
        assert_eq!(count(json!(u64::MAX)), Ok(u64::MAX));
        assert_eq!(count(json!(-1)), Ok(0));
        assert_eq!(count(json!(i64::MIN)), Ok(0));
        assert_eq!(count(json!(1e300)), Ok(u64::MAX));
        assert_eq!(count(json!(-1e300)), Ok(0));
        assert_eq!(count(json!(2.5)), Ok(2));
        assert_eq!(count(Value::Null), Ok(0));
        let huge: Value = serde_json::from_str(&"9".repeat(300)).unwrap();
        assert_eq!(count(huge), Ok(u64::MAX));
        let error = count(json!("9".repeat(100_000))).unwrap_err().to_string();
        assert_eq!(
            error,
            "truncatedAlerts: expected a non-negative integer, found string"
        );
        let error = count(json!({"a": [[[["deep"]]]]})).unwrap_err().to_string();
        assert_eq!(
            error,
            "truncatedAlerts: expected a non-negative integer, found object"
        );
    }

    #[test]
    fn prometheus_names() {
        for good in ["a", "_", "alertname", "__name__", "A9_b"] {
            assert!(is_prometheus_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a.b", "é", "a b"] {
            assert!(!is_prometheus_name(bad), "{bad}");
        }
    }

    #[test]
    fn times_normalise_to_utc_and_zero_means_unset() {
        let at = |text: &str| time(&json!(text), "t");
        assert_eq!(
            at("2021-10-12T09:51:03.157076+02:00")
                .unwrap()
                .unwrap()
                .to_rfc3339(),
            "2021-10-12T07:51:03.157076+00:00"
        );
        assert_eq!(
            at("2026-11-28T01:28:37.123456789Z")
                .unwrap()
                .unwrap()
                .timestamp_subsec_nanos(),
            123_456_789
        );
        assert_eq!(at("0001-01-01T00:00:00Z").unwrap(), None);
        assert_eq!(at("1969-12-31T23:59:59Z").unwrap(), None);
        let err = at("x").unwrap_err().to_string();
        assert!(err.starts_with("t: invalid RFC 3339 time \"x\""), "{err}");
        let err = time(&json!(5), "t").unwrap_err().to_string();
        assert_eq!(err, "t: expected a string, found number");
    }
}
