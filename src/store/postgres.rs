//! The PostgreSQL store: several salve replicas share one database and behave as one
//! salve. Every cross-replica invariant is a row, a constraint or a lock in the database,
//! never memory: one incident per alert key (a unique index, and an advisory lock per
//! fingerprint while ingesting), claims with `FOR UPDATE SKIP LOCKED`, an owner (the
//! replica's number, its fencing token) on each incident a replica runs, one run per host
//! (an advisory lock per host in `begin_run`), and leases on the server's clock
//! (`replicas.rs`). Intake batches concurrent webhooks into one transaction (`writer.rs`),
//! as the SQLite store does.
//!
//! The rows have the SQLite store's shapes and text formats (times as RFC 3339 text with
//! nine fractional digits), so both stores read and order them alike. One file per
//! concern, as in `sqlite/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};

use crate::alert::Alert;
use crate::incident::{EscalationReason, Event, Incident, IncidentId, State};
use crate::plan::Plan;
use crate::secret::Secret;
use crate::store::{
    ApprovalDecision, ApprovalOutcome, ApprovalRequest, BreakerLimit, BreakerResetOutcome,
    BreakerStatus, BudgetState, BudgetTrip, DiagnosticsClaim, FollowUpCandidate, FollowUpItem, Gap,
    Heartbeat, HostHold, IncidentDetail, IncidentFilter, Ingested, LinkProof, NewPause, OutboxItem,
    Pause, RunGate, RunRecord, Store, StoreError,
};

mod core;
#[cfg(test)]
mod core_tests;
mod gates;
#[cfg(test)]
mod gates_tests;
mod outbox;
#[cfg(test)]
mod outbox_tests;
mod replicas;
mod rows;
mod schema;
mod tls;
mod writer;

/// How to reach the server: `store.url` and what goes beside it.
#[derive(Clone)]
pub struct PgConnect {
    /// `postgres://USER@HOST:PORT/DB?sslmode=…`, without a password.
    pub url: String,
    /// From `store.password_file` or `SALVE_STORE__PASSWORD`; never in the URL.
    pub password: Option<Secret>,
    /// PEM CA certificate(s) the server's certificate must chain to (else the platform's).
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl std::fmt::Debug for PgConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnect")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: Pool,
    /// One connection for heartbeats (`replicas.rs`).
    lease_pool: Pool,
    /// This process's replica number once it joined (0: not a replica, e.g. a CLI command).
    replica: AtomicI64,
    /// How long a replica's lease lasts past its last heartbeat.
    lease: std::sync::Mutex<Duration>,
    /// Ingests wait here for the writer's next batch (`writer.rs`).
    ingests: mpsc::Sender<writer::IngestRequest>,
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl PgStore {
    /// Connect, migrate (once, under an advisory lock, however many replicas start
    /// together) and start the intake writer.
    pub async fn connect(connect: &PgConnect) -> Result<PgStore, StoreError> {
        let config = server_config(connect)?;
        let tls = tls::connector(connect.ca_file.as_deref())?;
        let make_pool = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| StoreError::Config(format!("store {}: {e}", connect.url)))
        };
        let pool = make_pool(connect.pool_size.max(2))?;
        // The lease's own connection: a heartbeat never waits behind a busy pool.
        let lease_pool = make_pool(1)?;
        {
            let mut client = get(&pool).await.map_err(|e| match e {
                StoreError::Unavailable(why) => {
                    StoreError::Config(format!("store {}: {why}", connect.url))
                }
                other => other,
            })?;
            schema::migrate(&mut client).await?;
        }
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ingests = writer::start(pool.clone(), Arc::clone(&commits));
        tracing::info!(url = %connect.url, schema_version = schema::latest_version(), "store opened (PostgreSQL)");
        Ok(PgStore {
            pool,
            lease_pool,
            replica: AtomicI64::new(0),
            lease: std::sync::Mutex::new(Duration::from_secs(15)),
            ingests,
            commits,
        })
    }

    /// Transactions the intake writer committed so far (group commit: fewer than ingests).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        get(&self.pool).await
    }

    /// This process's replica number (0 before `join_replicas`).
    fn me(&self) -> i64 {
        self.replica.load(Ordering::Relaxed)
    }

    fn lease(&self) -> Duration {
        *self.lease.lock().expect("lease lock")
    }
}

async fn get(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(format!("cannot get a database connection: {other}")),
    })
}

/// `url` parsed, with the password beside it; a password inside the URL is refused (it
/// would show wherever the URL is logged).
fn server_config(connect: &PgConnect) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = connect
        .url
        .parse()
        .map_err(|e| StoreError::Config(format!("store.url is not a PostgreSQL URL: {e}")))?;
    if config.get_password().is_some() {
        return Err(StoreError::Config(
            "store.url must not hold a password; use store.password_file or SALVE_STORE__PASSWORD"
                .into(),
        ));
    }
    if let Some(password) = &connect.password {
        config.password(password.expose());
    }
    if config.get_application_name().is_none() {
        config.application_name("salve");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok(config)
}

/// A driver error in words an operator can act on: the server's own message and SQLSTATE
/// when it sent one, else the cause (connection refused, TLS, …).
pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        return StoreError::Unavailable(format!(
            "database: {}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ));
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    StoreError::Unavailable(text)
}

#[async_trait]
impl Store for PgStore {
    async fn ingest(
        &self,
        alerts: Vec<Alert>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Ingested>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.ingests
            .send(writer::IngestRequest {
                alerts,
                received_at,
                reply,
            })
            .await
            .map_err(|_| writer::gone())?;
        answer.await.map_err(|_| writer::gone())?
    }

    async fn incidents_in_state(
        &self,
        state: State,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        core::incidents_in_state(self, state, limit).await
    }

    async fn record_plan(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        plan: &Plan,
    ) -> Result<(), StoreError> {
        core::record_plan(self, id, from, to, plan).await
    }

    async fn record_plans(
        &self,
        plans: &[(IncidentId, State, State, &Plan)],
    ) -> Vec<Result<(), StoreError>> {
        match core::record_plans(self, plans).await {
            Ok(results) => results,
            Err(e) => plans
                .iter()
                .map(|_| Err(StoreError::Unavailable(e.to_string())))
                .collect(),
        }
    }

    async fn transition(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        reason: Option<String>,
        event: Event,
    ) -> Result<(), StoreError> {
        core::transition(self, id, from, to, reason, event).await
    }

    async fn append_event(&self, id: IncidentId, event: Event) -> Result<(), StoreError> {
        core::append_event(self, id, event).await
    }

    async fn begin_run(
        &self,
        id: IncidentId,
        recipe: &str,
        target: &str,
        key: &str,
        limit: BreakerLimit,
        started: Event,
        first_step: Option<Event>,
        now: DateTime<Utc>,
    ) -> Result<RunGate, StoreError> {
        gates::begin_run(
            self, id, recipe, target, key, limit, started, first_step, now,
        )
        .await
    }

    async fn hold_host(
        &self,
        host: &str,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        gates::hold_host(self, host, until, why).await
    }

    async fn host_holds(&self) -> Result<Vec<HostHold>, StoreError> {
        gates::host_holds(self).await
    }

    async fn runs_in_window(
        &self,
        recipe: &str,
        key: &str,
        window: Duration,
    ) -> Result<Vec<RunRecord>, StoreError> {
        gates::runs_in_window(self, recipe, key, window).await
    }

    async fn breakers(&self) -> Result<Vec<BreakerStatus>, StoreError> {
        gates::breakers(self).await
    }

    async fn reset_breaker(
        &self,
        recipe: &str,
        key: &str,
        by: &str,
    ) -> Result<BreakerResetOutcome, StoreError> {
        gates::reset_breaker(self, recipe, key, by).await
    }

    async fn request_approval(
        &self,
        id: IncidentId,
        plan_digest: &str,
        nonce: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        gates::request_approval(self, id, plan_digest, nonce, expires_at).await
    }

    async fn approval(&self, id: IncidentId) -> Result<Option<ApprovalRequest>, StoreError> {
        gates::approval(self, id).await
    }

    async fn decide_approval(
        &self,
        id: IncidentId,
        decision: ApprovalDecision,
        by: &str,
        link: Option<LinkProof>,
    ) -> Result<ApprovalOutcome, StoreError> {
        gates::decide_approval(self, id, decision, by, link).await
    }

    async fn expire_approvals(&self, now: DateTime<Utc>) -> Result<Vec<IncidentId>, StoreError> {
        gates::expire_approvals(self, now).await
    }

    async fn incidents_to_escalate(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        outbox::incidents_to_escalate(self, limit).await
    }

    async fn enqueue_escalation(
        &self,
        id: IncidentId,
        reason: EscalationReason,
        channels: &[String],
        payload: &serde_json::Value,
    ) -> Result<(), StoreError> {
        outbox::enqueue_escalation(self, id, reason, channels, payload).await
    }

    async fn due_escalations(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        outbox::due_escalations(self, limit).await
    }

    async fn escalation_sent(&self, item: &OutboxItem) -> Result<(), StoreError> {
        outbox::escalation_sent(self, item).await
    }

    async fn escalation_failed(
        &self,
        item: &OutboxItem,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        outbox::escalation_failed(self, item, error, next_attempt_at).await
    }

    async fn outbox_pending(&self) -> Result<i64, StoreError> {
        outbox::outbox_pending(self).await
    }

    async fn claim_diagnostics(
        &self,
        recipe: &str,
        target: &str,
        id: IncidentId,
        window: Option<Duration>,
    ) -> Result<DiagnosticsClaim, StoreError> {
        gates::claim_diagnostics(self, recipe, target, id, window).await
    }

    async fn new_digest(
        &self,
        channel: &str,
        reason: &str,
        size: usize,
    ) -> Result<i64, StoreError> {
        outbox::new_digest(self, channel, reason, size).await
    }

    async fn digest_sent(&self, digest: i64, items: &[OutboxItem]) -> Result<(), StoreError> {
        outbox::digest_sent(self, digest, items).await
    }

    async fn digest_failed(
        &self,
        digest: i64,
        items: &[OutboxItem],
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        outbox::digest_failed(self, digest, items, error, next_attempt_at).await
    }

    async fn gaps(&self, limit: usize) -> Result<Vec<Gap>, StoreError> {
        core::gaps(self, limit).await
    }

    async fn remediation_totals(&self) -> Result<(i64, i64), StoreError> {
        core::remediation_totals(self).await
    }

    async fn list_incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        core::list_incidents(self, before, limit).await
    }

    async fn incidents_matching(
        &self,
        filter: &IncidentFilter,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        core::incidents_matching(self, filter, limit).await
    }

    async fn prune_finished(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        gates::prune_finished(self, cutoff, now, batch).await
    }

    async fn checkpoint(&self) -> Result<(), StoreError> {
        // The server manages its own write-ahead log (checkpoints, autovacuum).
        Ok(())
    }

    async fn incident_details(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<IncidentDetail>, StoreError> {
        core::incident_details(self, before, limit).await
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>, StoreError> {
        core::incident(self, id).await
    }

    async fn count_by_state(&self) -> Result<Vec<(State, i64)>, StoreError> {
        core::count_by_state(self).await
    }

    async fn create_pause(&self, pause: NewPause) -> Result<Pause, StoreError> {
        gates::create_pause(self, pause).await
    }

    async fn resume_pauses(&self, id: Option<i64>, by: &str) -> Result<Vec<Pause>, StoreError> {
        gates::resume_pauses(self, id, by).await
    }

    async fn active_pauses(&self, now: DateTime<Utc>) -> Result<Vec<Pause>, StoreError> {
        gates::active_pauses(self, now).await
    }

    async fn error_budget(
        &self,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<BudgetState, StoreError> {
        gates::error_budget(self, window, now).await
    }

    async fn trip_error_budget(
        &self,
        trip: BudgetTrip,
        now: DateTime<Utc>,
    ) -> Result<Option<Pause>, StoreError> {
        gates::trip_error_budget(self, trip, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    async fn follow_up_candidates(
        &self,
        limit: usize,
    ) -> Result<Vec<FollowUpCandidate>, StoreError> {
        outbox::follow_up_candidates(self, limit).await
    }

    async fn decide_follow_ups(
        &self,
        decisions: Vec<(FollowUpCandidate, bool)>,
    ) -> Result<(), StoreError> {
        outbox::decide_follow_ups(self, decisions).await
    }

    async fn due_follow_ups(&self, limit: usize) -> Result<Vec<FollowUpItem>, StoreError> {
        outbox::due_follow_ups(self, limit).await
    }

    async fn follow_up_sent(&self, item: &FollowUpItem) -> Result<(), StoreError> {
        outbox::follow_up_sent(self, item).await
    }

    async fn follow_up_failed(
        &self,
        item: &FollowUpItem,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        outbox::follow_up_failed(self, item, error, next_attempt_at).await
    }

    async fn join_replicas(&self, name: &str, lease: Duration) -> Result<i64, StoreError> {
        replicas::join(self, name, lease).await
    }

    async fn heartbeat(&self) -> Result<Heartbeat, StoreError> {
        replicas::heartbeat(self).await
    }

    async fn leave_replicas(&self) -> Result<(), StoreError> {
        replicas::leave(self).await
    }

    async fn claim_matched(
        &self,
        limit: usize,
        max_hosts: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        replicas::claim_matched(self, limit, max_hosts).await
    }

    async fn claim_orphans(&self) -> Result<Vec<Incident>, StoreError> {
        replicas::claim_orphans(self).await
    }
}
