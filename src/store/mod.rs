//! The journal. Everything salve knows about incidents lives behind the `Store` trait;
//! no SQL exists outside this module. SQLite (`sqlite.rs`) is the embedded default;
//! a PostgreSQL implementation can fill the same trait for several replicas.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::alert::Alert;
use crate::incident::{Event, Incident, IncidentId, State};
use crate::plan::Plan;

pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not commit or read (disk, lock, I/O). Intake answers 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A store URL or schema problem found at open time.
    #[error("store configuration: {0}")]
    Config(String),
    /// A state change that the current state does not allow (lost a race, or a bug).
    #[error("incident {id}: expected state {expected}, found {found}")]
    StateConflict {
        id: IncidentId,
        expected: State,
        found: State,
    },
    #[error("incident {0} not found")]
    NotFound(IncidentId),
}

/// What ingesting one alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub id: IncidentId,
    /// A new incident; `false` for a re-send or HA copy of a known one.
    pub created: bool,
    /// This notification moved the incident from firing to resolved.
    pub resolved_now: bool,
}

/// A journal entry to write; the store stamps the time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub detail: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: &str, detail: serde_json::Value) -> NewEvent {
        NewEvent {
            kind: kind.to_owned(),
            detail,
        }
    }
}

/// An incident with its journal, for history and the API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    pub events: Vec<Event>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Journal the alerts of one notification; returns only once they are durable.
    /// Concurrent callers share commits (group commit). Keyed by
    /// (source, fingerprint, startsAt): a known key updates last-seen, the receive
    /// counter and the alert status, and never creates a second incident.
    async fn ingest(
        &self,
        alerts: Vec<Alert>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Ingested>, StoreError>;

    /// Incidents waiting in `state`, oldest first.
    async fn incidents_in_state(
        &self,
        state: State,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Record the plan and move `id` from `from` to `to`, journaling both, atomically.
    async fn record_plan(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        plan: &Plan,
    ) -> Result<(), StoreError>;

    /// Move `id` from `from` to `to` and journal `event`, atomically; `StateConflict`
    /// (and nothing written) when the incident is not in `from`. `reason`, when set,
    /// replaces the incident's reason.
    async fn transition(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        reason: Option<String>,
        event: NewEvent,
    ) -> Result<(), StoreError>;

    /// Journal one event (a step starting or ending, a check poll) without a state change.
    async fn append_event(&self, id: IncidentId, event: NewEvent) -> Result<(), StoreError>;

    /// Newest first.
    async fn list_incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError>;

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>, StoreError>;

    /// Number of incidents per state (for metrics at startup and `/readyz`).
    async fn count_by_state(&self) -> Result<Vec<(State, i64)>, StoreError>;

    /// Cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
