//! Webhook and API credentials: bearer token or basic auth, as Alertmanager's
//! `http_config` sends them, compared in constant time. Never logs a credential.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

#[derive(Clone, Default)]
pub struct Credentials {
    pub bearer_token: Option<Secret>,
    pub basic: Option<(String, Secret)>,
}

/// Equal in time independent of where they differ and of their lengths: both sides are
/// hashed first, so only the digests are compared.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let a = Sha256::digest(a);
    let b = Sha256::digest(b);
    a.as_slice().ct_eq(b.as_slice()).into()
}

impl Credentials {
    pub fn configured(&self) -> bool {
        self.bearer_token.is_some() || self.basic.is_some()
    }

    /// Whether an `Authorization` header value is acceptable. With no credentials
    /// configured everything is (the config refuses that off loopback).
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        if !self.configured() {
            return true;
        }
        let Some(header) = authorization else {
            return false;
        };
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return match &self.bearer_token {
                Some(token) => constant_time_eq(value.as_bytes(), token.expose().as_bytes()),
                None => false,
            };
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, password)) = &self.basic else {
                return false;
            };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return false;
            };
            let user_ok = constant_time_eq(&decoded[..colon], user.as_bytes());
            let password_ok = constant_time_eq(&decoded[colon + 1..], password.expose().as_bytes());
            return user_ok & password_ok;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn bearer_and_basic() {
        let credentials = Credentials {
            bearer_token: Some(Secret::new("s3cret".into())),
            basic: Some(("am".into(), Secret::new("pw:with:colons".into()))),
        };
        assert!(credentials.accepts(Some("Bearer s3cret")));
        assert!(credentials.accepts(Some("bearer s3cret")));
        assert!(!credentials.accepts(Some("Bearer s3cre")));
        assert!(!credentials.accepts(Some("Bearer s3cret2")));
        assert!(!credentials.accepts(None));
        assert!(!credentials.accepts(Some("")));
        assert!(credentials.accepts(Some(&basic("am", "pw:with:colons"))));
        assert!(!credentials.accepts(Some(&basic("am", "pw"))));
        assert!(!credentials.accepts(Some(&basic("root", "pw:with:colons"))));
        assert!(!credentials.accepts(Some("Basic !!!notbase64")));
        assert!(!credentials.accepts(Some("Digest s3cret")));
    }

    #[test]
    fn nothing_configured_accepts_all() {
        assert!(Credentials::default().accepts(None));
    }

    #[test]
    fn bearer_only_refuses_basic() {
        let credentials = Credentials {
            bearer_token: Some(Secret::new("t".into())),
            basic: None,
        };
        assert!(!credentials.accepts(Some(&basic("t", "t"))));
    }
}
