//! Secrets: a value that deserialises from a string and prints as `[redacted]`, given
//! inline or in a `*_file`. A leaf: it imports nothing from the crate, and never lets a
//! secret reach `Debug`, logs or an error message.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A secret value: deserialises from a string, prints as `[redacted]`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(SecretString::from(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret's text is refused: empty or only whitespace (a `*_file` holding just a
/// newline, `VAR=" "`) would otherwise read as "credentials configured".
pub const BLANK_SECRET: &str = "a secret must not be empty or whitespace-only";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Err(serde::de::Error::custom(BLANK_SECRET));
        }
        Ok(Secret::new(text))
    }
}

/// A secret given inline or in a file (trailing newline trimmed), not both.
pub fn secret_from(
    name: &str,
    inline: Option<Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("{name} and {name}_file are both set; choose one")),
        (Some(secret), None) => Ok(Some(secret)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{name}_file {}: {e}", path.display()))?;
            if text.trim().is_empty() {
                return Err(format!(
                    "{name}_file {}: the file is empty or holds only whitespace ({BLANK_SECRET})",
                    path.display()
                ));
            }
            Ok(Some(Secret::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            )))
        }
        (None, None) => Ok(None),
    }
}
