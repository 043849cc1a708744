//! Host holds: hosts nothing may start on before a given time, because a command salve
//! stopped waiting for (a timeout, a lost session, a crash) may still run there until the
//! target's `timeout` backstop ends it. This is the in-memory copy, measured on tokio's
//! clock; the store keeps the durable one (`Store::hold_host`, restored at startup).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::recipe::shell::remote_lifetime;

/// Why a host is held (`host_held` events).
pub(super) const HELD_AFTER_CRASH: &str =
    "a command salve ran on this host before it last stopped may still be running";
pub(super) const HELD_AFTER_CUT: &str = "a command salve stopped waiting for (timeout or lost connection) may still be running on this host until the target's timeout backstop ends it";

/// The hosts held now, by inventory name.
#[derive(Debug, Default)]
pub(super) struct HostHolds {
    by_host: HashMap<String, Hold>,
}

#[derive(Debug)]
struct Hold {
    until: Instant,
    why: String,
}

impl HostHolds {
    /// Holds `host` for `left` from now, or keeps the later hold it already has.
    pub(super) fn hold(&mut self, host: &str, left: Duration, why: &str) {
        let until = Instant::now() + left;
        match self.by_host.get_mut(host) {
            Some(hold) if hold.until >= until => {}
            Some(hold) => {
                *hold = Hold {
                    until,
                    why: why.to_owned(),
                }
            }
            None => {
                self.by_host.insert(
                    host.to_owned(),
                    Hold {
                        until,
                        why: why.to_owned(),
                    },
                );
            }
        }
    }

    /// How long `host` is still held, and why, if it is.
    pub(super) fn left(&self, host: &str) -> Option<(Duration, String)> {
        let hold = self.by_host.get(host)?;
        let left = hold.until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| (left, hold.why.clone()))
    }
}

/// When a command sent at most `connect_bound` after `started_at`, with the recipe's
/// `timeout`, has surely ended on the target: the target's `timeout` backstop kills it at
/// the latest `remote_lifetime` after it started.
pub(super) fn surely_over(
    started_at: DateTime<Utc>,
    connect_bound: Duration,
    timeout: Duration,
) -> DateTime<Utc> {
    saturating_after(started_at, connect_bound + remote_lifetime(timeout))
}

/// `at + duration`, or the end of time where that does not fit.
fn saturating_after(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| at.checked_add_signed(duration))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
