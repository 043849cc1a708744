//! Approval links: the signed, expiring token an approve/deny link carries, and its check.
//! A token names one incident, one action, the plan it was issued for (its digest) and a
//! nonce, and is HMAC-SHA256-signed with `[approval] key`; the store makes it single-use
//! (one decision per approval request). This module never decides or writes anything: it
//! signs and verifies text.

use std::fmt;
use std::io::Read;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::incident::IncidentId;
use crate::secret::Secret;

/// What a link asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Approve,
    Deny,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Approve => "approve",
            LinkAction::Deny => "deny",
        }
    }

    fn parse(text: &str) -> Option<LinkAction> {
        match text {
            "approve" => Some(LinkAction::Approve),
            "deny" => Some(LinkAction::Deny),
            _ => None,
        }
    }
}

/// What a valid token says (its signature held and it had not expired when checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaim {
    pub incident: IncidentId,
    pub action: LinkAction,
    pub expires_at: DateTime<Utc>,
    /// The digest of the plan the link was issued for (`Plan::digest`).
    pub plan_digest: String,
    /// The approval request the link belongs to; a new request (a new plan) has a new one.
    pub nonce: String,
}

/// Why a token is not accepted. Said to whoever holds the link, so it names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is malformed")]
    Malformed,
    #[error("this link's signature is not valid (altered, or signed with another key)")]
    BadSignature,
    #[error("this link is for another action")]
    WrongAction,
    #[error("this link expired at {0}")]
    Expired(DateTime<Utc>),
}

/// Signs and checks approval tokens with the `[approval] key`, and builds the links.
#[derive(Clone)]
pub struct LinkSigner {
    key: Secret,
    /// The externally reachable URL of salve, without a trailing slash.
    base_url: String,
}

impl fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSigner")
            .field("key", &self.key)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl LinkSigner {
    pub fn new(key: Secret, base_url: &str) -> LinkSigner {
        LinkSigner {
            key,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// The token for `action` on the approval request (`incident`, `plan_digest`, `nonce`,
    /// `expires_at`): `ID.ACTION.EXPIRES.DIGEST.NONCE.MAC`, all URL-safe.
    pub fn token(&self, claim: &LinkClaim) -> String {
        let payload = format!(
            "{}.{}.{}.{}.{}",
            claim.incident.0,
            claim.action.as_str(),
            claim.expires_at.timestamp(),
            claim.plan_digest,
            claim.nonce
        );
        let signature = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The link a human follows: `BASE/approve/TOKEN` or `BASE/deny/TOKEN`.
    pub fn link(&self, claim: &LinkClaim) -> String {
        format!(
            "{}/{}/{}",
            self.base_url,
            claim.action.as_str(),
            self.token(claim)
        )
    }

    /// The claim of `token` if its signature holds (compared in constant time), it is for
    /// `action` and it has not expired at `now`.
    pub fn verify(
        &self,
        token: &str,
        action: LinkAction,
        now: DateTime<Utc>,
    ) -> Result<LinkClaim, LinkError> {
        let (payload, signature) = token.rsplit_once('.').ok_or(LinkError::Malformed)?;
        let signature = hex::decode(signature).map_err(|_| LinkError::Malformed)?;
        self.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| LinkError::BadSignature)?;
        let parts: Vec<&str> = payload.split('.').collect();
        let [id, act, expires, digest, nonce] = parts[..] else {
            return Err(LinkError::Malformed);
        };
        let claim = LinkClaim {
            incident: IncidentId(id.parse().map_err(|_| LinkError::Malformed)?),
            action: LinkAction::parse(act).ok_or(LinkError::Malformed)?,
            expires_at: DateTime::from_timestamp(
                expires.parse().map_err(|_| LinkError::Malformed)?,
                0,
            )
            .ok_or(LinkError::Malformed)?,
            plan_digest: digest.to_owned(),
            nonce: nonce.to_owned(),
        };
        if claim.action != action {
            return Err(LinkError::WrongAction);
        }
        if claim.expires_at <= now {
            return Err(LinkError::Expired(claim.expires_at));
        }
        Ok(claim)
    }
}

/// A fresh nonce for an approval request: 16 bytes from the kernel's CSPRNG, as hex.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Not a secret (the HMAC key is): uniqueness is what matters here.
        let now = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&now.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new(Secret::new("k3y".into()), "https://salve.example/")
    }

    fn claim(action: LinkAction) -> LinkClaim {
        LinkClaim {
            incident: IncidentId(42),
            action,
            expires_at: DateTime::from_timestamp(2_000_000_000, 0).unwrap(),
            plan_digest: "ab".repeat(32),
            nonce: "cd".repeat(16),
        }
    }

    fn before_expiry() -> DateTime<Utc> {
        DateTime::from_timestamp(1_999_999_000, 0).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_to_its_claim() {
        let s = signer();
        let token = s.token(&claim(LinkAction::Approve));
        assert_eq!(
            s.verify(&token, LinkAction::Approve, before_expiry()),
            Ok(claim(LinkAction::Approve))
        );
        assert!(
            s.link(&claim(LinkAction::Deny))
                .starts_with("https://salve.example/deny/42.deny.")
        );
    }

    #[test]
    fn a_tampered_token_or_another_key_is_refused() {
        let s = signer();
        let token = s.token(&claim(LinkAction::Approve));
        for tampered in [
            token.replacen("42.", "43.", 1),
            token.replacen("2000000000", "2000000999", 1),
            token.replacen(&"ab".repeat(32), &"ef".repeat(32), 1),
            token.replacen(&"cd".repeat(16), &"00".repeat(16), 1),
        ] {
            assert_eq!(
                s.verify(&tampered, LinkAction::Approve, before_expiry()),
                Err(LinkError::BadSignature),
                "{tampered}"
            );
        }
        let other = LinkSigner::new(Secret::new("other".into()), "https://salve.example");
        assert_eq!(
            other.verify(&token, LinkAction::Approve, before_expiry()),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            s.verify("garbage", LinkAction::Approve, before_expiry()),
            Err(LinkError::Malformed)
        );
    }

    #[test]
    fn a_token_is_for_one_action_and_expires() {
        let s = signer();
        let token = s.token(&claim(LinkAction::Approve));
        assert_eq!(
            s.verify(&token, LinkAction::Deny, before_expiry()),
            Err(LinkError::WrongAction)
        );
        let expiry = claim(LinkAction::Approve).expires_at;
        assert_eq!(
            s.verify(&token, LinkAction::Approve, expiry),
            Err(LinkError::Expired(expiry))
        );
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(new_nonce(), new_nonce());
        assert_eq!(new_nonce().len(), 32);
    }
}
