//! The web UI's login sessions: an API token is exchanged once for a random session id
//! kept in an `HttpOnly; SameSite=Strict; Path=/ui` cookie, with a CSRF token of its own
//! that every form carries. Sessions live in memory only: a restart logs everyone out.
//! Never stores or logs the API token itself, only its name and scope.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiScope;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "salve_ui_session";
/// The login form's own CSRF cookie (there is no session to hold it yet).
pub const LOGIN_COOKIE: &str = "salve_ui_login";
/// A session ends this long after login, used or not (an on-call shift, with margin).
pub const SESSION_LIFETIME: Duration = Duration::hours(12);
/// At most this many sessions are kept; beyond it the oldest is dropped. Only holders of a
/// valid token (or loopback users of the open default) can create one.
const MAX_SESSIONS: usize = 1000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The API token's name (what `by` records), or the open default's anonymous name.
    pub by: String,
    pub scope: ApiScope,
    /// Every POST of this session must carry it.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl Session {
    pub fn may_operate(&self) -> bool {
        self.scope >= ApiScope::Operate
    }
}

/// The sessions of this process, by id.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `by`; its id (the cookie value), or `None` when the kernel gave no
    /// randomness (no session is better than a guessable one).
    pub fn create(&self, by: String, scope: ApiScope, now: DateTime<Utc>) -> Option<String> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, session| session.expires_at > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.expires_at)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                by,
                scope,
                csrf,
                expires_at: now + SESSION_LIFETIME,
            },
        );
        Some(id)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(id) {
            Some(session) if session.expires_at > now => Some(session.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(id);
    }
}

/// 32 bytes from the kernel's CSPRNG, as hex.
pub fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .ok()?;
    Some(hex::encode(bytes))
}

/// Equal in time independent of where they differ (both sides hashed first).
pub fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    !expected.is_empty() && bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=/ui`, `Secure` when the request
/// came over https (directly or as a proxy's `X-Forwarded-Proto`/`Forwarded` says: adding
/// `Secure` only narrows where the browser sends it). `max_age` 0 deletes it.
pub fn cookie(name: &str, value: &str, max_age_seconds: i64, secure: bool) -> String {
    let mut cookie =
        format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}");
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_removed() {
        let sessions = Sessions::default();
        let now = Utc::now();
        let id = sessions
            .create("ops".into(), ApiScope::Operate, now)
            .unwrap();
        let session = sessions.get(&id, now).unwrap();
        assert_eq!(session.by, "ops");
        assert!(session.may_operate());
        assert_eq!(session.csrf.len(), 64);
        assert!(sessions.get(&id, now + SESSION_LIFETIME).is_none());
        assert!(sessions.get(&id, now).is_none(), "expired ones are dropped");
        let id = sessions
            .create("viewer".into(), ApiScope::Read, now)
            .unwrap();
        assert!(!sessions.get(&id, now).unwrap().may_operate());
        sessions.remove(&id);
        assert!(sessions.get(&id, now).is_none());
    }

    #[test]
    fn csrf_comparison() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(
            !same_secret("", ""),
            "an empty expected token matches nothing"
        );
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let set = cookie(SESSION_COOKIE, "x", 60, false);
        assert_eq!(
            set,
            "salve_ui_session=x; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert!(cookie(SESSION_COOKIE, "x", 60, true).ends_with("; Secure"));
    }
}
