//! The remediation rate limits (`[limits]`): token buckets overall and per host (governor's
//! GCRA), on tokio's clock so `tokio::time::pause`/`advance` drive them. Waiting is a loop of
//! `check` and `tokio::time::sleep`: governor's own `until_ready` sleeps on another timer
//! and reads the system clock, which paused time does not move.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::config::LimitSettings;

/// governor's view of tokio's clock: the time since the limits were built.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: Instant,
}

impl GovernorClock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;
type KeyedLimiter =
    RateLimiter<String, HashMapStateStore<String>, TokioClock, NoOpMiddleware<Duration>>;

/// The remediation rate limits: token buckets overall and per host.
pub struct RateLimits {
    overall: DirectLimiter,
    per_host: KeyedLimiter,
    clock: TokioClock,
    settings: LimitSettings,
}

impl RateLimits {
    /// Buckets for `[limits]`, as configured (a 0 the config check refuses reads as 1).
    pub fn new(settings: &LimitSettings) -> RateLimits {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"));
        let clock = TokioClock {
            origin: Instant::now(),
        };
        RateLimits {
            overall: RateLimiter::direct_with_clock(
                quota(settings.remediations_per_minute),
                clock.clone(),
            ),
            per_host: RateLimiter::hashmap_with_clock(
                quota(settings.per_host_per_minute),
                clock.clone(),
            ),
            clock,
            settings: settings.clone(),
        }
    }

    /// Wait for a token from both buckets, at most `max_wait`; `Err(waited)` if none came.
    /// The per-host token is taken first so a busy host does not drain the overall bucket
    /// while it waits.
    pub(super) async fn wait(&self, host: &str) -> Result<(), Duration> {
        let started = Instant::now();
        let host = host.to_owned();
        let both = async {
            while let Err(not_until) = self.per_host.check_key(&host) {
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
            }
            while let Err(not_until) = self.overall.check() {
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
            }
        };
        tokio::time::timeout(self.settings.max_wait, both)
            .await
            .map_err(|_| started.elapsed())
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{}/min overall, {}/min per host",
            self.settings.remediations_per_minute, self.settings.per_host_per_minute
        )
    }
}
