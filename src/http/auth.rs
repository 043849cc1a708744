//! Webhook and API credentials: bearer token or basic auth, as Alertmanager's
//! `http_config` sends them, compared in constant time; the API's own named, scoped
//! tokens; the `Host` check of the credential-less loopback default. Never logs a
//! credential.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ApiScope, ApiToken};
use crate::secret::Secret;

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

/// Who may use the incidents/breakers API.
#[derive(Clone, Default)]
pub struct ApiAccess {
    pub tokens: Vec<ApiToken>,
    /// Only to tell "that is the webhook credential" apart from a wrong token.
    pub webhook: Credentials,
    /// No credential of any kind is configured and salve listens on loopback: the API is
    /// open to whoever passes the `Host` check (the embedded default, for a local CLI-like
    /// use). Anywhere else the API needs a token.
    pub open: bool,
}

/// Why an API request is refused; 401 for no or unknown credentials, 403 for a known
/// credential that may not do this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiDenied {
    Missing,
    Invalid,
    WebhookCredential,
    NoTokensConfigured,
    Scope { name: String, has: ApiScope },
}

impl ApiDenied {
    pub fn status(&self) -> u16 {
        match self {
            ApiDenied::Missing | ApiDenied::Invalid => 401,
            _ => 403,
        }
    }

    pub fn reason(&self, needed: ApiScope) -> String {
        match self {
            ApiDenied::Missing => "missing credentials: send Authorization: Bearer <a [server.api] token>".into(),
            ApiDenied::Invalid => "invalid credentials".into(),
            ApiDenied::WebhookCredential => "the webhook credential may only post alerts; reading incidents and resetting breakers needs a token from [server.api]".into(),
            ApiDenied::NoTokensConfigured => "the API is closed: no [server.api] tokens are configured".into(),
            ApiDenied::Scope { name, has } => format!(
                "token {name:?} has scope {:?}; this needs {:?}",
                has.as_str(),
                needed.as_str()
            ),
        }
    }
}

/// What `by` says for a request the open (credential-less loopback) API accepted.
pub const ANONYMOUS: &str = "anonymous (loopback, no credentials configured)";

impl ApiAccess {
    /// The caller's name (recorded for what it changes), or why it is refused.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        needed: ApiScope,
    ) -> Result<String, ApiDenied> {
        if self.open {
            return Ok(ANONYMOUS.to_owned());
        }
        let presented = authorization.and_then(|header| {
            let (scheme, value) = header.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| value.trim())
                .filter(|value| !value.is_empty())
        });
        // Every token is compared (no early exit), so timing says nothing about which.
        let mut matched: Option<&ApiToken> = None;
        if let Some(presented) = presented {
            for token in &self.tokens {
                if constant_time_eq(presented.as_bytes(), token.token.expose().as_bytes()) {
                    matched = Some(token);
                }
            }
        }
        match matched {
            Some(token) if token.scope >= needed => Ok(token.name.clone()),
            Some(token) => Err(ApiDenied::Scope {
                name: token.name.clone(),
                has: token.scope,
            }),
            None if authorization.is_some()
                && self.webhook.configured()
                && self.webhook.accepts(authorization) =>
            {
                Err(ApiDenied::WebhookCredential)
            }
            None if self.tokens.is_empty() => Err(ApiDenied::NoTokensConfigured),
            None if authorization.is_none() => Err(ApiDenied::Missing),
            None => Err(ApiDenied::Invalid),
        }
    }
}

/// A `Host` header (or HTTP/2 authority) that names this machine's loopback:
/// `localhost`, `127.0.0.0/8` or `[::1]`, each with or without a port. Anything else
/// (`evil.example`, which a DNS-rebinding page resolves to 127.0.0.1) is not.
pub fn is_loopback_host(host: &str) -> bool {
    let port_ok = |port: &str| port.parse::<u16>().is_ok() && !port.starts_with('+');
    if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        let after_ok = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return after_ok
            && inside
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|address| address.is_loopback());
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if port.is_some_and(|port| !port_ok(port)) {
        return false;
    }
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:9095",
            "127.0.0.1",
            "127.0.0.1:9095",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:9095",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:9095",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1:notaport",
            "127.0.0.1:+80",
            "127.0.0.1:99999",
            "128.0.0.1",
            "0.0.0.0",
            "[::2]",
            "[::1",
            "[::1]x",
            "::1",
            "10.0.0.1:9095",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    fn access() -> ApiAccess {
        ApiAccess {
            tokens: vec![
                ApiToken {
                    name: "viewer".into(),
                    token: Secret::new("read-token".into()),
                    scope: ApiScope::Read,
                },
                ApiToken {
                    name: "ops".into(),
                    token: Secret::new("operate-token".into()),
                    scope: ApiScope::Operate,
                },
            ],
            webhook: Credentials {
                bearer_token: Some(Secret::new("webhook-token".into())),
                basic: None,
            },
            open: false,
        }
    }

    #[test]
    fn api_tokens_by_scope_and_the_webhook_credential_refused() {
        let access = access();
        let read = ApiScope::Read;
        let operate = ApiScope::Operate;
        assert_eq!(
            access.authorize(Some("Bearer read-token"), read),
            Ok("viewer".into())
        );
        assert_eq!(
            access.authorize(Some("Bearer read-token"), operate),
            Err(ApiDenied::Scope {
                name: "viewer".into(),
                has: read
            })
        );
        assert_eq!(
            access.authorize(Some("Bearer operate-token"), operate),
            Ok("ops".into())
        );
        assert_eq!(
            access.authorize(Some("Bearer operate-token"), read),
            Ok("ops".into())
        );
        assert_eq!(
            access.authorize(Some("Bearer webhook-token"), read),
            Err(ApiDenied::WebhookCredential)
        );
        assert_eq!(access.authorize(None, read), Err(ApiDenied::Missing));
        assert_eq!(
            access.authorize(Some("Bearer "), read),
            Err(ApiDenied::Invalid)
        );
        assert_eq!(
            access.authorize(Some("Bearer nope"), read),
            Err(ApiDenied::Invalid)
        );
        assert_eq!(
            access.authorize(Some("Basic cmVhZC10b2tlbg=="), read),
            Err(ApiDenied::Invalid)
        );
        let closed = ApiAccess {
            tokens: Vec::new(),
            ..access.clone()
        };
        assert_eq!(
            closed.authorize(None, read),
            Err(ApiDenied::NoTokensConfigured)
        );
        assert_eq!(
            closed.authorize(Some("Bearer webhook-token"), read),
            Err(ApiDenied::WebhookCredential)
        );
    }

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
