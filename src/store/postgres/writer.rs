//! Intake's group commit on PostgreSQL: one task takes every ingest queued while the last
//! transaction committed and journals them all in one transaction (a savepoint per
//! request, so one bad request fails alone), then answers each caller after the commit.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::alert::Alert;
use crate::store::{Ingested, StoreError};

/// Ingests in one transaction at most.
pub(super) const MAX_BATCH: usize = 256;

pub(super) struct IngestRequest {
    pub(super) alerts: Vec<Alert>,
    pub(super) received_at: DateTime<Utc>,
    pub(super) reply: oneshot::Sender<Result<Vec<Ingested>, StoreError>>,
}

pub(super) fn gone() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".to_owned())
}

/// Start the writer task; it ends when every sender is dropped.
pub(super) fn start(pool: Pool, commits: Arc<AtomicU64>) -> mpsc::Sender<IngestRequest> {
    let (requests, mut queue) = mpsc::channel::<IngestRequest>(4 * MAX_BATCH);
    tokio::spawn(async move {
        let _ = (&pool, &commits);
        while let Some(request) = queue.recv().await {
            let _ = request.reply.send(Err(StoreError::Unavailable(
                "ingest is not implemented for PostgreSQL yet".into(),
            )));
        }
    });
    requests
}
