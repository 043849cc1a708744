//! The remediator's clock: intervals are measured on tokio's clock (`tokio::time::Instant`,
//! `sleep`), so `tokio::time::pause`/`advance` drive verification windows, holds and rate
//! limits; wall-clock timestamps the remediator computes for the store (hold ends, breaker
//! windows, when a cut command is surely over) come from `Clock::now_utc`. It never reads
//! `std::time::Instant`.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Where the remediator's wall-clock time comes from.
#[derive(Debug, Clone)]
pub struct Clock {
    /// `None`: the system's UTC clock. `Some((utc, at))`: `utc` at tokio instant `at`, then
    /// moving with tokio's clock (paused and advanced by tests).
    tokio_origin: Option<(DateTime<Utc>, Instant)>,
}

impl Clock {
    /// The system's UTC clock (`Utc::now()`), as salve has always used. Not derived from
    /// tokio's clock in production: that one stops while the machine is suspended and does
    /// not follow the system clock's corrections, and the store's timestamps must agree with
    /// other processes sharing it.
    pub fn system() -> Clock {
        Clock { tokio_origin: None }
    }

    /// `utc` now, then moving with tokio's clock: under `tokio::time::pause` wall time moves
    /// only when the test advances it.
    pub fn tokio_from(utc: DateTime<Utc>) -> Clock {
        Clock {
            tokio_origin: Some((utc, Instant::now())),
        }
    }

    /// The current wall-clock time.
    pub fn now_utc(&self) -> DateTime<Utc> {
        match self.tokio_origin {
            None => Utc::now(),
            Some((utc, at)) => {
                let elapsed =
                    chrono::Duration::from_std(at.elapsed()).unwrap_or(chrono::Duration::MAX);
                utc.checked_add_signed(elapsed)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }
}
