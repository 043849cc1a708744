//! The approval gate (issue 12): an approve-mode plan passes only once a human approved
//! this very plan (its digest); otherwise it is put in `awaiting_approval` with a fresh
//! request (nonce, expiry) and leaves the queue — the escalation stage pages the links.
//! The decision itself is taken by the store (link, CLI or API), never here; expiry is
//! `expire_due`, called by the engine each pass.

use std::time::Duration;

use crate::incident::IncidentId;
use crate::store::{Store, StoreError};

use super::Remediator;
use super::gates::{Admission, Refusal, RunPlan};

/// How long a plan waits for a decision unless `[approval] timeout` says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl Remediator {
    /// Approval: a plan of an approve-mode recipe runs only if approved as it is now.
    pub(super) async fn approval_gate(&self, run: &RunPlan) -> Admission<()> {
        if !run.plan.approval {
            return Ok(());
        }
        let digest = run.plan.digest();
        let request = self.store.approval(run.id).await?;
        if let Some(request) = &request
            && request.decision.as_deref() == Some("approved")
            && request.plan_digest == digest
        {
            return Ok(());
        }
        // Saturating: a timeout past chrono's range waits "forever", it does not panic.
        let expires_at = chrono::Duration::from_std(self.approval_timeout)
            .ok()
            .and_then(|timeout| self.clock.now_utc().checked_add_signed(timeout))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let nonce = crate::approval::new_nonce();
        match self
            .store
            .request_approval(run.id, &digest, &nonce, expires_at)
            .await
        {
            // Someone else moved it first: theirs stands.
            Ok(()) | Err(StoreError::StateConflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(incident = %run.id, recipe = run.recipe(), expires_at = %expires_at, "awaiting approval");
        self.wake.notify_one();
        Err(Refusal::Over)
    }
}

/// Ends approval requests past their time (`approval_expired`) or whose alert resolved
/// (`resolved_before_run`). The times are in the store, so a restart loses none.
pub async fn expire_due(store: &dyn Store) -> Result<Vec<IncidentId>, StoreError> {
    let ended = store.expire_approvals(chrono::Utc::now()).await?;
    for id in &ended {
        tracing::info!(incident = %id, "approval request ended without a decision");
    }
    Ok(ended)
}
