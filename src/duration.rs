//! Durations as people write them in settings, recipes and stored plans: humantime text
//! (`5s`, `10m`, `1h 30m`). One parser for all of them; a leaf that imports nothing from
//! the crate.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses humantime text; everything `humantime::parse_duration` accepts.
pub fn parse(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// `deserialize_with` for settings: the error quotes the text (a duration is never a secret).
pub fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}
