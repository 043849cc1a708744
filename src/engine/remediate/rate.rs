//! The remediation rate limits (`[limits]`): token buckets overall and per host (governor's
//! GCRA), on tokio's clock so `tokio::time::pause`/`advance` drive them. Several replicas
//! split the rates: each takes `rate / live replicas` (at least 1 per minute), rebuilt when
//! the number of live replicas changes, so together they never exceed the configured rate
//! (unless it is below the number of replicas). Waiting is a loop of
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

/// The token buckets of one share of the rates.
struct Buckets {
    overall: DirectLimiter,
    per_host: KeyedLimiter,
    /// The live replicas the rates are split across.
    replicas: usize,
}

/// The remediation rate limits: token buckets overall and per host.
pub struct RateLimits {
    buckets: std::sync::RwLock<std::sync::Arc<Buckets>>,
    clock: TokioClock,
    settings: LimitSettings,
}

impl RateLimits {
    /// Buckets for `[limits]`, as configured (a 0 the config check refuses reads as 1).
    pub fn new(settings: &LimitSettings) -> RateLimits {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        RateLimits {
            buckets: std::sync::RwLock::new(std::sync::Arc::new(Self::buckets(
                settings, &clock, 1,
            ))),
            clock,
            settings: settings.clone(),
        }
    }

    fn buckets(settings: &LimitSettings, clock: &TokioClock, replicas: usize) -> Buckets {
        let share = |n: u32| {
            let each = (n as usize / replicas.max(1)).max(1);
            let each = u32::try_from(each).unwrap_or(u32::MAX);
            Quota::per_minute(NonZeroU32::new(each).expect("max(1) is non-zero"))
        };
        Buckets {
            overall: RateLimiter::direct_with_clock(
                share(settings.remediations_per_minute),
                clock.clone(),
            ),
            per_host: RateLimiter::hashmap_with_clock(
                share(settings.per_host_per_minute),
                clock.clone(),
            ),
            replicas: replicas.max(1),
        }
    }

    /// Split the rates across `replicas` live replicas (new buckets when the number changed).
    pub fn set_replicas(&self, replicas: usize) {
        let replicas = replicas.max(1);
        if self.current().replicas == replicas {
            return;
        }
        let buckets = Self::buckets(&self.settings, &self.clock, replicas);
        *self.buckets.write().expect("rate buckets lock") = std::sync::Arc::new(buckets);
        tracing::info!(
            replicas,
            "remediation rate limits split across the live replicas"
        );
    }

    fn current(&self) -> std::sync::Arc<Buckets> {
        self.buckets.read().expect("rate buckets lock").clone()
    }

    /// Wait for a token from both buckets, at most `max_wait`; `Err(waited)` if none came.
    /// The per-host token is taken first so a busy host does not drain the overall bucket
    /// while it waits.
    pub(super) async fn wait(&self, host: &str) -> Result<(), Duration> {
        let started = Instant::now();
        let host = host.to_owned();
        let buckets = self.current();
        let both = async {
            while let Err(not_until) = buckets.per_host.check_key(&host) {
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
            }
            while let Err(not_until) = buckets.overall.check() {
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
            }
        };
        tokio::time::timeout(self.settings.max_wait, both)
            .await
            .map_err(|_| started.elapsed())
    }

    pub(super) fn describe(&self) -> String {
        let replicas = self.current().replicas;
        let split = if replicas > 1 {
            format!(", split across {replicas} replicas")
        } else {
            String::new()
        };
        format!(
            "{}/min overall, {}/min per host{split}",
            self.settings.remediations_per_minute, self.settings.per_host_per_minute
        )
    }
}
