//! Incidents and their journal: state changes, reads, listings, reports. The shared
//! helpers every other file uses to write the journal live here.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::incident::{Event, Incident, IncidentId, State};
use crate::plan::Plan;
use crate::store::{Gap, IncidentDetail, IncidentFilter, StoreError};

use super::rows::{state_from_text, time_text};
use super::{PgStore, pg_error};

/// Until a function is ported: an honest error, never a silent answer.
macro_rules! not_ported {
    ($name:literal) => {
        Err(StoreError::Unavailable(format!(
            "{} is not implemented for PostgreSQL yet",
            $name
        )))
    };
}
pub(super) use not_ported;

/// Append `event` to `id`'s journal at `at` (the caller's transaction).
pub(super) async fn journal(
    client: &impl GenericClient,
    id: IncidentId,
    at: &str,
    event: &Event,
) -> Result<(), StoreError> {
    let (kind, detail) = event.to_row();
    client
        .execute(
            "INSERT INTO events (incident_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
            &[&id.0, &at, &kind, &detail.to_string()],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// The incident's state, locking its row until the transaction ends.
pub(super) async fn current_state_for_update(
    client: &impl GenericClient,
    id: IncidentId,
) -> Result<State, StoreError> {
    let row = client
        .query_opt(
            "SELECT state FROM incidents WHERE id = $1 FOR UPDATE",
            &[&id.0],
        )
        .await
        .map_err(pg_error)?
        .ok_or(StoreError::NotFound(id))?;
    state_from_text(0, &row.get::<_, String>(0))
}

/// `StateConflict` unless `id` is in `expected` (its row locked until the transaction ends).
pub(super) async fn expect_state(
    client: &impl GenericClient,
    id: IncidentId,
    expected: State,
) -> Result<(), StoreError> {
    let found = current_state_for_update(client, id).await?;
    if found == expected {
        Ok(())
    } else {
        Err(StoreError::StateConflict {
            id,
            expected,
            found,
        })
    }
}

pub(super) fn now_text() -> String {
    time_text(Utc::now())
}

pub(super) async fn incidents_in_state(
    store: &PgStore,
    state: State,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let _ = (store, state, limit);
    not_ported!("incidents_in_state")
}

pub(super) async fn record_plan(
    store: &PgStore,
    id: IncidentId,
    from: State,
    to: State,
    plan: &Plan,
) -> Result<(), StoreError> {
    let _ = (store, id, from, to, plan);
    not_ported!("record_plan")
}

pub(super) async fn transition(
    store: &PgStore,
    id: IncidentId,
    from: State,
    to: State,
    reason: Option<String>,
    event: Event,
) -> Result<(), StoreError> {
    let _ = (store, id, from, to, reason, event);
    not_ported!("transition")
}

pub(super) async fn append_event(
    store: &PgStore,
    id: IncidentId,
    event: Event,
) -> Result<(), StoreError> {
    let _ = (store, id, event);
    not_ported!("append_event")
}

pub(super) async fn gaps(store: &PgStore, limit: usize) -> Result<Vec<Gap>, StoreError> {
    let _ = (store, limit);
    not_ported!("gaps")
}

pub(super) async fn remediation_totals(store: &PgStore) -> Result<(i64, i64), StoreError> {
    let _ = store;
    not_ported!("remediation_totals")
}

pub(super) async fn list_incidents(
    store: &PgStore,
    before: Option<IncidentId>,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let _ = (store, before, limit);
    not_ported!("list_incidents")
}

pub(super) async fn incidents_matching(
    store: &PgStore,
    filter: &IncidentFilter,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let _ = (store, filter, limit);
    not_ported!("incidents_matching")
}

pub(super) async fn incident_details(
    store: &PgStore,
    before: Option<IncidentId>,
    limit: usize,
) -> Result<Vec<IncidentDetail>, StoreError> {
    let _ = (store, before, limit);
    not_ported!("incident_details")
}

pub(super) async fn incident(
    store: &PgStore,
    id: IncidentId,
) -> Result<Option<IncidentDetail>, StoreError> {
    let _ = (store, id);
    not_ported!("incident")
}

pub(super) async fn count_by_state(store: &PgStore) -> Result<Vec<(State, i64)>, StoreError> {
    let _ = store;
    not_ported!("count_by_state")
}

#[allow(dead_code)]
fn _uses(_: DateTime<Utc>) {}
