//! Retention: keeps the journal a good size by deleting finished incidents older than
//! `store.retention`, at start and hourly, in bounded batches through the store's writer,
//! then checkpointing the WAL. It never decides what may be deleted (the store's
//! `prune_finished` does) and never holds the writer for more than one batch at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// Incidents deleted per write: one batch is one short transaction among the others.
const BATCH: usize = 200;

/// How often retention looks again after its pass at start.
const EVERY: Duration = Duration::from_secs(3600);

pub struct Retention {
    pub store: Arc<dyn Store>,
    /// `store.retention`.
    pub window: Duration,
}

impl Retention {
    /// Prune at once, then every hour, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.prune_once(&shutdown).await {
                Ok(0) => {}
                Ok(pruned) => {
                    tracing::info!(pruned, window = %humantime::format_duration(self.window), "retention: finished incidents deleted")
                }
                Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again later"),
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass: batches until none is full (or `shutdown`), then a checkpoint when
    /// anything went. Returns how many incidents were deleted.
    pub async fn prune_once(&self, shutdown: &CancellationToken) -> Result<usize, StoreError> {
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        let mut pruned = 0;
        loop {
            let now = Utc::now();
            let cutoff = now
                .checked_sub_signed(window)
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
            let batch = self.store.prune_finished(cutoff, now, BATCH).await?;
            pruned += batch;
            if batch < BATCH || shutdown.is_cancelled() {
                break;
            }
            // Let intake's writes in between batches.
            tokio::task::yield_now().await;
        }
        if pruned > 0 {
            self.store.checkpoint().await?;
        }
        Ok(pruned)
    }
}
