//! What decides whether a run may start, and the operator's controls: the breaker and
//! `begin_run` (one run per host, under advisory locks), host holds, diagnostics claims,
//! pauses and the error budget, approvals, retention.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::incident::{Event, IncidentId};
use crate::store::{
    ApprovalDecision, ApprovalOutcome, ApprovalRequest, BreakerLimit, BreakerResetOutcome,
    BreakerStatus, BudgetState, BudgetTrip, DiagnosticsClaim, HostHold, LinkProof, NewPause, Pause,
    RunGate, RunRecord, StoreError,
};

use super::PgStore;
use super::core::not_ported;

#[allow(clippy::too_many_arguments)]
pub(super) async fn begin_run(
    store: &PgStore,
    id: IncidentId,
    recipe: &str,
    target: &str,
    key: &str,
    limit: BreakerLimit,
    started: Event,
    first_step: Option<Event>,
    now: DateTime<Utc>,
) -> Result<RunGate, StoreError> {
    let _ = (
        store, id, recipe, target, key, limit, started, first_step, now,
    );
    not_ported!("begin_run")
}

pub(super) async fn hold_host(
    store: &PgStore,
    host: &str,
    until: DateTime<Utc>,
    why: &str,
) -> Result<(), StoreError> {
    let _ = (store, host, until, why);
    not_ported!("hold_host")
}

pub(super) async fn host_holds(store: &PgStore) -> Result<Vec<HostHold>, StoreError> {
    let _ = store;
    not_ported!("host_holds")
}

pub(super) async fn runs_in_window(
    store: &PgStore,
    recipe: &str,
    key: &str,
    window: Duration,
) -> Result<Vec<RunRecord>, StoreError> {
    let _ = (store, recipe, key, window);
    not_ported!("runs_in_window")
}

pub(super) async fn breakers(store: &PgStore) -> Result<Vec<BreakerStatus>, StoreError> {
    let _ = store;
    not_ported!("breakers")
}

pub(super) async fn reset_breaker(
    store: &PgStore,
    recipe: &str,
    key: &str,
    by: &str,
) -> Result<BreakerResetOutcome, StoreError> {
    let _ = (store, recipe, key, by);
    not_ported!("reset_breaker")
}

pub(super) async fn claim_diagnostics(
    store: &PgStore,
    recipe: &str,
    target: &str,
    id: IncidentId,
    window: Option<Duration>,
) -> Result<DiagnosticsClaim, StoreError> {
    let _ = (store, recipe, target, id, window);
    not_ported!("claim_diagnostics")
}

pub(super) async fn request_approval(
    store: &PgStore,
    id: IncidentId,
    plan_digest: &str,
    nonce: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let _ = (store, id, plan_digest, nonce, expires_at);
    not_ported!("request_approval")
}

pub(super) async fn approval(
    store: &PgStore,
    id: IncidentId,
) -> Result<Option<ApprovalRequest>, StoreError> {
    let _ = (store, id);
    not_ported!("approval")
}

pub(super) async fn decide_approval(
    store: &PgStore,
    id: IncidentId,
    decision: ApprovalDecision,
    by: &str,
    link: Option<LinkProof>,
) -> Result<ApprovalOutcome, StoreError> {
    let _ = (store, id, decision, by, link);
    not_ported!("decide_approval")
}

pub(super) async fn expire_approvals(
    store: &PgStore,
    now: DateTime<Utc>,
) -> Result<Vec<IncidentId>, StoreError> {
    let _ = (store, now);
    not_ported!("expire_approvals")
}

pub(super) async fn create_pause(store: &PgStore, pause: NewPause) -> Result<Pause, StoreError> {
    let _ = (store, pause);
    not_ported!("create_pause")
}

pub(super) async fn resume_pauses(
    store: &PgStore,
    id: Option<i64>,
    by: &str,
) -> Result<Vec<Pause>, StoreError> {
    let _ = (store, id, by);
    not_ported!("resume_pauses")
}

pub(super) async fn active_pauses(
    store: &PgStore,
    now: DateTime<Utc>,
) -> Result<Vec<Pause>, StoreError> {
    let _ = (store, now);
    not_ported!("active_pauses")
}

pub(super) async fn error_budget(
    store: &PgStore,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<BudgetState, StoreError> {
    let _ = (store, window, now);
    not_ported!("error_budget")
}

pub(super) async fn trip_error_budget(
    store: &PgStore,
    trip: BudgetTrip,
    now: DateTime<Utc>,
) -> Result<Option<Pause>, StoreError> {
    let _ = (store, trip, now);
    not_ported!("trip_error_budget")
}

pub(super) async fn prune_finished(
    store: &PgStore,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    batch: usize,
) -> Result<usize, StoreError> {
    let _ = (store, cutoff, now, batch);
    not_ported!("prune_finished")
}
