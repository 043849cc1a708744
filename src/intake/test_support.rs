//! Helpers shared by the intake parsers' unit tests: sample bodies and expected values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// The directory of captured and hand-written sample bodies.
pub(super) fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intake")
}

/// The bytes of the sample body `name`.
pub(super) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap()
}

pub(super) fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A label or annotation map from `(name, value)` pairs.
pub(super) fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
