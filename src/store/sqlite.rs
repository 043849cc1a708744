//! The embedded SQLite store: one file, WAL, `synchronous=FULL`, group commit through a
//! single writer thread, reads on their own connections. It never acknowledges a write
//! before the fsync of the transaction holding it, and never writes outside that thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::alert::Alert;
use crate::incident::{EscalationReason, Event, Incident, IncidentId, State};
use crate::plan::Plan;
use crate::store::{
    ApprovalDecision, ApprovalOutcome, ApprovalRequest, BreakerLimit, BreakerResetOutcome,
    BreakerStatus, BudgetState, BudgetTrip, DiagnosticsClaim, Gap, HostHold, IncidentDetail,
    IncidentFilter, Ingested, LinkProof, NewPause, OutboxItem, Pause, RunGate, RunRecord, Store,
    StoreError,
};
use crate::store::{FollowUpCandidate, FollowUpItem};

mod approvals;
mod breaker;
mod escalation;
mod filter;
mod followups;
mod holds;
mod outbox;
mod pauses;
mod replicas;
mod reports;
mod retention;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;

use rows::{INCIDENT_COLUMNS, event_from_row, incident_from_row, state_from_text};
use writer::{JournalChange, PlanChange, WriteOp, unavailable};

/// How long a statement waits for a lock held by another connection (a CLI command
/// on the same file, a checkpoint) before the store reports itself unavailable. Tests
/// shorten it so that a lock they hold on purpose fails fast.
const BUSY_TIMEOUT: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(5)
};

/// Queued writes beyond this make callers wait in `send`: backpressure instead of
/// unbounded memory when the disk cannot keep up.
const WRITE_QUEUE: usize = 4 * writer::MAX_BATCH;

/// Read connections. Two let the engine's polling and an API read proceed together.
const READERS: usize = 2;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    /// `None` only while shutting down; dropping it lets the writer drain and exit.
    requests: Option<mpsc::Sender<WriteOp>>,
    writer_thread: Option<JoinHandle<()>>,
    readers: Arc<ReaderPool>,
    commits: Arc<AtomicU64>,
    /// This process's replica number once it joined (0: not a replica, e.g. a CLI command).
    replica: Arc<std::sync::atomic::AtomicI64>,
    lease: Arc<Mutex<Duration>>,
}

impl SqliteStore {
    /// Open (creating if needed) the database named by a store URL: `sqlite://salve.db`
    /// or `sqlite://./salve.db` (relative to the working directory) or
    /// `sqlite:///var/lib/salve/salve.db`.
    pub fn open(url: &str) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_path(&path_from_url(url)?)
    }

    /// Open (creating if needed) the database file at `path` and migrate its schema.
    pub fn open_path(path: &Path) -> Result<SqliteStore, StoreError> {
        // The writer connection first: it sets WAL (persistent in the file) and runs
        // the migrations before any reader looks at the schema.
        let mut write_connection = connect(path, Role::Writer)?;
        schema::migrate(&mut write_connection)?;
        let readers = (0..READERS)
            .map(|_| connect(path, Role::Reader).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;

        let (requests, queue) = mpsc::channel(WRITE_QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer_commits = Arc::clone(&commits);
        let writer_thread = std::thread::Builder::new()
            .name("salve-store-writer".to_owned())
            .spawn(move || writer::run(write_connection, queue, writer_commits))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store writer thread: {e}"))
            })?;
        tracing::info!(path = %path.display(), schema_version = schema::latest_version(), "store opened");
        Ok(SqliteStore {
            path: path.to_owned(),
            requests: Some(requests),
            writer_thread: Some(writer_thread),
            readers: Arc::new(ReaderPool {
                connections: readers,
                next: AtomicUsize::new(0),
                permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
            }),
            commits,
            replica: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            lease: Arc::new(Mutex::new(Duration::from_secs(15))),
        })
    }

    /// This process's replica number (0 before `join_replicas`).
    fn me(&self) -> i64 {
        self.replica.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions committed by the writer so far. Fewer commits than write calls
    /// means group commit is sharing fsyncs.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stop accepting writes, let the writer finish what is queued, and wait for it.
    /// Dropping the store does the same; `close` also reports a writer that had died.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        // The writer's `blocking_recv` returns `None` once the last sender is gone and
        // the queue is empty, so queued writes still commit.
        self.requests.take();
        match self.writer_thread.take() {
            Some(thread) => thread.join().map_err(|_| {
                StoreError::Unavailable("the store writer thread had panicked".to_owned())
            }),
            None => Ok(()),
        }
    }

    /// Send one write to the writer and wait for the commit of the batch holding it.
    async fn write<W: writer::Write>(&self, write: W) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or_else(writer_gone)?;
        // Both ends fail only when the writer thread is gone (it panicked): answer
        // Unavailable rather than hang, so intake returns 503 and the monitor retries.
        requests
            .send(writer::request(write, reply))
            .await
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Run `work` in the writer's next batch transaction and wait for its commit.
    async fn write_with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(writer::WithConnection::new(work)).await
    }

    /// Run a query on a read connection, off the async runtime.
    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        // The permit goes with the blocking task: a caller that stops waiting does not
        // free it while the query still holds a connection.
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the store's readers are closed".to_owned()))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            readers.with(query)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))?
        .map_err(unavailable)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Joining waits at most for the batch in progress; the result was already
        // reported to each caller of the writes involved.
        let _ = self.shutdown();
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".to_owned())
}

/// The file a `sqlite://PATH` store URL names (`salve check` and the read-only commands
/// look at it without opening it).
pub fn path_of_url(url: &str) -> Result<PathBuf, StoreError> {
    path_from_url(url)
}

/// Whether the store at `url` could be opened, without creating or changing anything: an
/// existing journal is opened read-only; a missing one needs a directory to be created in.
pub fn probe(url: &str) -> Result<(), StoreError> {
    let path = path_from_url(url)?;
    if !path.exists() {
        return match os_cause(&path) {
            Some(cause) => Err(StoreError::Config(format!(
                "store {}: cannot be created: {cause}",
                path.display()
            ))),
            None => Ok(()),
        };
    }
    let failed = |e: rusqlite::Error| {
        StoreError::Config(match os_cause(&path) {
            Some(cause) => format!("store {}: {e}: {cause}", path.display()),
            None => format!("store {}: {e}", path.display()),
        })
    };
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    })
    .map_err(failed)?;
    Ok(())
}

/// Why the OS refuses `path`, in its words, when SQLite only says "unable to open
/// database file": the directory is missing, or the file or directory is not writable.
fn os_cause(path: &Path) -> Option<String> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(parent) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("no such directory {}", parent.display()));
        }
        Err(e) => return Some(format!("{}: {e}", parent.display())),
        Ok(meta) if !meta.is_dir() => {
            return Some(format!("{} is not a directory", parent.display()));
        }
        Ok(_) => {}
    }
    if path.exists() {
        return std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .err()
            .map(|e| e.to_string());
    }
    None
}

/// `sqlite://PATH` → PATH. `sqlite:///abs` keeps its leading slash.
fn path_from_url(url: &str) -> Result<PathBuf, StoreError> {
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Err(StoreError::Config(format!(
            "store url {url:?} is not a sqlite:// url (expected sqlite://salve.db or sqlite:///abs/path)"
        )));
    };
    if path.is_empty() {
        return Err(StoreError::Config(format!(
            "store url {url:?} names no file"
        )));
    }
    // sqlx-style options (?mode=rwc) would silently become part of the file name.
    if path.contains('?') {
        return Err(StoreError::Config(format!(
            "store url {url:?} has query options; salve takes none, name only the file"
        )));
    }
    Ok(PathBuf::from(path))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
    /// A short-lived connection for a WAL checkpoint.
    Maintenance,
}

/// Prepared statements kept per connection: more than the writer and readers use.
const STATEMENT_CACHE: usize = 128;

fn connect(path: &Path, role: Role) -> Result<Connection, StoreError> {
    let config_error =
        |e: rusqlite::Error| StoreError::Config(format!("store {}: {e}", path.display()));
    // No SQLITE_OPEN_URI: a file name is a file name, never parsed as `file:` options.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| match os_cause(path) {
        Some(cause) => StoreError::Config(format!("store {}: {e}: {cause}", path.display())),
        None => config_error(e),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(config_error)?;
    // rusqlite keeps 16 prepared statements by default; the writer cycles through more
    // than that (ingest's lookups, plans, journal, breaker, outbox), and an evicted
    // statement is parsed again on its next use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(config_error)?;
    match role {
        Role::Writer => {
            // Before WAL: a new file takes the mode without a VACUUM. Not fatal: another
            // process may hold the file (its VACUUM then waits for a later open), and
            // without it retention still deletes, the file only keeps its size.
            if let Err(e) = incremental_auto_vacuum(&conn) {
                tracing::warn!(path = %path.display(), error = %e, "store: cannot switch to incremental auto-vacuum now; freed pages stay in the file");
            }
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
                .map_err(config_error)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Config(format!(
                    "store {}: cannot use WAL journal mode (got {mode}); is it on a network filesystem?",
                    path.display()
                )));
            }
            // FULL, never NORMAL: in WAL mode NORMAL skips the fsync at commit, and an
            // acknowledged alert could vanish in a power cut (DESIGN.md invariant 4).
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(config_error)?;
        }
        Role::Maintenance => {}
        Role::Reader => {
            // Readers never write; SQLite enforces it.
            conn.pragma_update(None, "query_only", true)
                .map_err(config_error)?;
        }
    }
    Ok(conn)
}

/// Put the file in `auto_vacuum = INCREMENTAL` so retention can give pages back
/// (`incremental_vacuum` after each prune). A new file takes it at once; a file created
/// before retention needs one full VACUUM, done here once, at open (it cannot run inside
/// a migration's transaction).
fn incremental_auto_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
    if mode == INCREMENTAL {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", INCREMENTAL)?;
    let pages: i64 = conn.pragma_query_value(None, "page_count", |row| row.get(0))?;
    if pages > 0 {
        tracing::info!(
            pages,
            "store: switching the file to incremental auto-vacuum (one VACUUM)"
        );
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}

struct ReaderPool {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    /// One permit per connection, taken before a read leaves the runtime: reads beyond
    /// the pool wait here as tasks, not as blocking threads parked on a connection's
    /// lock (each such thread costs a malloc arena: a storm's reads once doubled salve's
    /// thread count and added a third to its peak RSS).
    permits: Arc<tokio::sync::Semaphore>,
}

impl ReaderPool {
    fn with<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        // Take a free connection if there is one, else queue on one in turn.
        for connection in &self.connections {
            match connection.try_lock() {
                Ok(guard) => return query(&guard),
                // A panic in an earlier read leaves the connection itself intact.
                Err(TryLockError::Poisoned(poisoned)) => return query(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let guard = self.connections[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        query(&guard)
    }
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Up to `limit` incidents with an id below `before` (all when `None`), newest first: one
/// page of a listing.
fn incidents_below(
    conn: &Connection,
    before: Option<IncidentId>,
    limit: usize,
) -> rusqlite::Result<Vec<Incident>> {
    select_incidents(
        conn,
        &format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
        ),
        params![before.map_or(i64::MAX, |id| id.0), sql_limit(limit)],
    )
}

fn select_incidents(
    conn: &Connection,
    sql: &str,
    bind: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Incident>> {
    conn.prepare_cached(sql)?
        .query_map(bind, incident_from_row)?
        .collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(
        &self,
        alerts: Vec<Alert>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Ingested>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        self.write(writer::Ingest {
            alerts,
            received_at,
        })
        .await
    }

    async fn incidents_in_state(
        &self,
        state: State,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.read(move |conn| {
            select_incidents(
                conn,
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state = ?1 ORDER BY id LIMIT ?2"
                ),
                params![state.as_str(), sql_limit(limit)],
            )
        })
        .await
    }

    async fn record_plan(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        plan: &Plan,
    ) -> Result<(), StoreError> {
        let plan_json = serde_json::to_string(plan)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the plan: {e}")))?;
        let change = PlanChange {
            id,
            target: plan.target.as_ref().map(|target| target.name.clone()),
            from,
            to,
            plan_json,
            reason: plan.reason.clone(),
            event: Event::Planned {
                outcome: plan.outcome,
                recipe: plan.recipe.clone(),
                mode: plan.mode,
                state: to,
            },
            at: Utc::now(),
        };
        self.write(change).await
    }

    async fn transition(
        &self,
        id: IncidentId,
        from: State,
        to: State,
        reason: Option<String>,
        event: Event,
    ) -> Result<(), StoreError> {
        let change = JournalChange {
            id,
            me: self.me(),
            expect: Some(from),
            to: Some(to),
            reason,
            event,
            at: Utc::now(),
        };
        self.write(change).await
    }

    async fn append_event(&self, id: IncidentId, event: Event) -> Result<(), StoreError> {
        let change = JournalChange {
            id,
            me: self.me(),
            expect: None,
            to: None,
            reason: None,
            event,
            at: Utc::now(),
        };
        self.write(change).await
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
        let (recipe, target, key) = (recipe.to_owned(), target.to_owned(), key.to_owned());
        let me = self.me();
        self.write_with(move |conn| {
            let events = (&started, first_step.as_ref());
            let breaker = (recipe.as_str(), target.as_str(), key.as_str());
            breaker::begin_run(conn, me, id, breaker, limit, events, now)
        })
        .await
    }

    async fn runs_in_window(
        &self,
        recipe: &str,
        key: &str,
        window: Duration,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let (recipe, key) = (recipe.to_owned(), key.to_owned());
        self.read(move |conn| breaker::runs_in_window(conn, &recipe, &key, window, Utc::now()))
            .await
    }

    async fn hold_host(
        &self,
        host: &str,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        let (host, why) = (host.to_owned(), why.to_owned());
        self.write_with(move |conn| holds::hold_host(conn, &host, until, &why, Utc::now()))
            .await
    }

    async fn host_holds(&self) -> Result<Vec<HostHold>, StoreError> {
        self.read(|conn| holds::host_holds(conn, Utc::now())).await
    }

    async fn breakers(&self) -> Result<Vec<BreakerStatus>, StoreError> {
        self.read(|conn| breaker::breakers(conn, Utc::now())).await
    }

    async fn reset_breaker(
        &self,
        recipe: &str,
        key: &str,
        by: &str,
    ) -> Result<BreakerResetOutcome, StoreError> {
        let (recipe, key, by) = (recipe.to_owned(), key.to_owned(), by.to_owned());
        self.write_with(move |conn| breaker::reset_breaker(conn, &recipe, &key, &by, Utc::now()))
            .await
    }

    async fn request_approval(
        &self,
        id: IncidentId,
        plan_digest: &str,
        nonce: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (plan_digest, nonce) = (plan_digest.to_owned(), nonce.to_owned());
        self.write_with(move |conn| {
            approvals::request_approval(conn, id, &plan_digest, &nonce, expires_at, Utc::now())
        })
        .await
    }

    async fn approval(&self, id: IncidentId) -> Result<Option<ApprovalRequest>, StoreError> {
        self.read(move |conn| approvals::approval(conn, id)).await
    }

    async fn decide_approval(
        &self,
        id: IncidentId,
        decision: ApprovalDecision,
        by: &str,
        link: Option<LinkProof>,
    ) -> Result<ApprovalOutcome, StoreError> {
        let by = by.to_owned();
        self.write_with(move |conn| {
            approvals::decide_approval(conn, id, &decision, &by, link.as_ref(), Utc::now())
        })
        .await
    }

    async fn expire_approvals(&self, now: DateTime<Utc>) -> Result<Vec<IncidentId>, StoreError> {
        // Read first: the engine asks every pass, and a write would cost a commit each time.
        if !self.read(move |conn| approvals::any_due(conn, now)).await? {
            return Ok(Vec::new());
        }
        self.write_with(move |conn| approvals::expire_approvals(conn, now))
            .await
    }

    async fn incidents_to_escalate(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        let me = self.me();
        // Read first: the engine asks every pass, and a write would cost a commit each time.
        if !self
            .read(move |conn| outbox::any_to_escalate(conn, me, Utc::now()))
            .await?
        {
            return Ok(Vec::new());
        }
        self.write_with(move |conn| {
            outbox::incidents_to_escalate(conn, me, Utc::now(), sql_limit(limit))
        })
        .await
    }

    async fn enqueue_escalation(
        &self,
        id: IncidentId,
        reason: EscalationReason,
        channels: &[String],
        payload: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (channels, payload) = (channels.to_vec(), payload.clone());
        self.write_with(move |conn| {
            outbox::enqueue_escalation(conn, id, reason, &channels, &payload, Utc::now())
        })
        .await
    }

    async fn due_escalations(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let me = self.me();
        // Read first, as `incidents_to_escalate`: the outbox polls often.
        if !self
            .read(move |conn| outbox::any_due_escalation(conn, me, Utc::now()))
            .await?
        {
            return Ok(Vec::new());
        }
        self.write_with(move |conn| outbox::due_escalations(conn, me, Utc::now(), sql_limit(limit)))
            .await
    }

    async fn escalation_sent(&self, item: &OutboxItem) -> Result<(), StoreError> {
        let item = item.clone();
        self.write_with(move |conn| outbox::escalation_sent(conn, &item, Utc::now()))
            .await
    }

    async fn escalation_failed(
        &self,
        item: &OutboxItem,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (item, error) = (item.clone(), error.to_owned());
        self.write_with(move |conn| {
            outbox::escalation_failed(conn, &item, &error, next_attempt_at, Utc::now())
        })
        .await
    }

    async fn outbox_pending(&self) -> Result<i64, StoreError> {
        self.read(outbox::outbox_pending).await
    }

    async fn claim_diagnostics(
        &self,
        recipe: &str,
        target: &str,
        id: IncidentId,
        window: Option<Duration>,
    ) -> Result<DiagnosticsClaim, StoreError> {
        let (recipe, target) = (recipe.to_owned(), target.to_owned());
        self.write_with(move |conn| {
            escalation::claim_diagnostics(conn, &recipe, &target, id, window, Utc::now())
        })
        .await
    }

    async fn new_digest(
        &self,
        channel: &str,
        reason: &str,
        size: usize,
    ) -> Result<i64, StoreError> {
        let (channel, reason) = (channel.to_owned(), reason.to_owned());
        self.write_with(move |conn| {
            escalation::new_digest(conn, &channel, &reason, size, Utc::now())
        })
        .await
    }

    async fn digest_sent(&self, digest: i64, items: &[OutboxItem]) -> Result<(), StoreError> {
        let items = items.to_vec();
        self.write_with(move |conn| escalation::digest_sent(conn, digest, &items, Utc::now()))
            .await
    }

    async fn digest_failed(
        &self,
        digest: i64,
        items: &[OutboxItem],
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (items, error) = (items.to_vec(), error.to_owned());
        self.write_with(move |conn| {
            escalation::digest_failed(conn, digest, &items, &error, next_attempt_at, Utc::now())
        })
        .await
    }

    async fn gaps(&self, limit: usize) -> Result<Vec<Gap>, StoreError> {
        self.read(move |conn| reports::gaps(conn, sql_limit(limit)))
            .await
    }

    async fn remediation_totals(&self) -> Result<(i64, i64), StoreError> {
        self.read(reports::remediation_totals).await
    }

    async fn list_incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.read(move |conn| incidents_below(conn, before, limit))
            .await
    }

    async fn incidents_matching(
        &self,
        filter: &IncidentFilter,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| filter::incidents_matching(conn, &filter, sql_limit(limit)))
            .await
    }

    async fn prune_finished(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        // Read first: most passes find nothing, and a write would cost a commit (and
        // wait behind any other process holding the write lock).
        let any = self
            .read(move |conn| retention::prunable(conn, cutoff, now, 1))
            .await?;
        if any.is_empty() {
            return Ok(0);
        }
        self.write_with(move |conn| {
            retention::prune(conn, cutoff, now, sql_limit(batch)).map_err(unavailable)
        })
        .await
    }

    async fn checkpoint(&self) -> Result<(), StoreError> {
        // Not inside the writer's transaction (a checkpoint cannot run in one): on a
        // connection of its own, which writes no rows; the WAL lock keeps it safe.
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = connect(&path, Role::Maintenance)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(unavailable)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("checkpoint task failed: {e}")))?
    }

    async fn incident_details(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<IncidentDetail>, StoreError> {
        self.read(move |conn| {
            let snapshot = conn.unchecked_transaction()?;
            let incidents = incidents_below(&snapshot, before, limit)?;
            let (Some(newest), Some(oldest)) = (incidents.first(), incidents.last()) else {
                return Ok(Vec::new());
            };
            let mut events: std::collections::HashMap<i64, Vec<crate::incident::JournalEntry>> =
                std::collections::HashMap::new();
            let mut statement = snapshot.prepare_cached(
                "SELECT at, kind, detail, incident_id FROM events \
                 WHERE incident_id BETWEEN ?1 AND ?2 ORDER BY id",
            )?;
            let mut rows = statement.query(params![oldest.id.0, newest.id.0])?;
            while let Some(row) = rows.next()? {
                let incident: i64 = row.get(3)?;
                events
                    .entry(incident)
                    .or_default()
                    .push(event_from_row(row)?);
            }
            drop(rows);
            drop(statement);
            snapshot.finish()?;
            Ok(incidents
                .into_iter()
                .map(|incident| IncidentDetail {
                    events: events.remove(&incident.id.0).unwrap_or_default(),
                    incident,
                })
                .collect())
        })
        .await
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>, StoreError> {
        self.read(move |conn| {
            // One read transaction: the incident and its journal from the same snapshot.
            let snapshot = conn.unchecked_transaction()?;
            let incident = snapshot
                .prepare_cached(&format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"
                ))?
                .query_row(params![id.0], incident_from_row)
                .optional()?;
            let Some(incident) = incident else {
                return Ok(None);
            };
            let events = snapshot
                .prepare_cached(
                    "SELECT at, kind, detail FROM events WHERE incident_id = ?1 ORDER BY id",
                )?
                .query_map(params![id.0], event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            snapshot.finish()?;
            Ok(Some(IncidentDetail { incident, events }))
        })
        .await
    }

    async fn count_by_state(&self) -> Result<Vec<(State, i64)>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT state, COUNT(*) FROM incidents GROUP BY state ORDER BY state",
            )?
            .query_map([], |row| {
                let state: String = row.get(0)?;
                Ok((state_from_text(0, &state)?, row.get(1)?))
            })?
            .collect()
        })
        .await
    }

    async fn create_pause(&self, pause: NewPause) -> Result<Pause, StoreError> {
        self.write_with(move |conn| pauses::create_pause(conn, &pause, Utc::now()))
            .await
    }

    async fn resume_pauses(&self, id: Option<i64>, by: &str) -> Result<Vec<Pause>, StoreError> {
        let by = by.to_owned();
        self.write_with(move |conn| pauses::resume_pauses(conn, id, &by, Utc::now()))
            .await
    }

    async fn active_pauses(&self, now: DateTime<Utc>) -> Result<Vec<Pause>, StoreError> {
        self.read(move |conn| pauses::active_pauses(conn, now))
            .await
    }

    async fn error_budget(
        &self,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<BudgetState, StoreError> {
        self.read(move |conn| pauses::error_budget(conn, window, now))
            .await
    }

    async fn trip_error_budget(
        &self,
        trip: BudgetTrip,
        now: DateTime<Utc>,
    ) -> Result<Option<Pause>, StoreError> {
        self.write_with(move |conn| pauses::trip_error_budget(conn, &trip, now))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Both paths: a live reader says nothing about a dead writer, and intake
        // depends on the writer.
        self.write(writer::Ping).await?;
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn follow_up_candidates(
        &self,
        limit: usize,
    ) -> Result<Vec<FollowUpCandidate>, StoreError> {
        self.read(move |conn| followups::candidates(conn, sql_limit(limit)))
            .await
    }

    async fn decide_follow_ups(
        &self,
        decisions: Vec<(FollowUpCandidate, bool)>,
    ) -> Result<(), StoreError> {
        self.write_with(move |conn| followups::decide(conn, &decisions, Utc::now()))
            .await
    }

    async fn due_follow_ups(&self, limit: usize) -> Result<Vec<FollowUpItem>, StoreError> {
        let me = self.me();
        // Read first, as `incidents_to_escalate`: the outbox polls often.
        if !self
            .read(move |conn| followups::any_due(conn, me, Utc::now()))
            .await?
        {
            return Ok(Vec::new());
        }
        self.write_with(move |conn| followups::due(conn, me, Utc::now(), sql_limit(limit)))
            .await
    }

    async fn follow_up_sent(&self, item: &FollowUpItem) -> Result<(), StoreError> {
        let item = item.clone();
        self.write_with(move |conn| followups::sent(conn, &item, Utc::now()))
            .await
    }

    async fn follow_up_failed(
        &self,
        item: &FollowUpItem,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (item, error) = (item.clone(), error.to_owned());
        self.write_with(move |conn| followups::failed(conn, &item, &error, next_attempt_at))
            .await
    }

    async fn join_replicas(&self, name: &str, lease: Duration) -> Result<i64, StoreError> {
        let name = name.to_owned();
        let id = self
            .write_with(move |conn| replicas::join(conn, &name, lease, Utc::now()))
            .await?;
        self.replica.store(id, Ordering::Relaxed);
        *self.lease.lock().expect("lease lock") = lease;
        Ok(id)
    }

    async fn heartbeat(&self) -> Result<crate::store::Heartbeat, StoreError> {
        let (me, lease) = (self.me(), *self.lease.lock().expect("lease lock"));
        let (heartbeat, rejoined) = self
            .write_with(move |conn| replicas::heartbeat(conn, me, lease, Utc::now()))
            .await?;
        if let Some(id) = rejoined {
            self.replica.store(id, Ordering::Relaxed);
            tracing::error!(
                old = me,
                new = id,
                "this replica's lease had run out (a stall): it rejoined as a new replica; its runs are taken over as a dead replica's"
            );
        }
        Ok(heartbeat)
    }

    async fn leave_replicas(&self) -> Result<(), StoreError> {
        let me = self.me();
        if me == 0 {
            return Ok(());
        }
        self.write_with(move |conn| replicas::leave(conn, me, Utc::now()))
            .await
    }

    async fn claim_matched(
        &self,
        limit: usize,
        max_hosts: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let me = self.me();
        self.read(move |conn| {
            replicas::matched_for(conn, me, sql_limit(limit), max_hosts, Utc::now())
        })
        .await
    }

    async fn claim_orphans(&self) -> Result<Vec<Incident>, StoreError> {
        let me = self.me();
        self.write_with(move |conn| {
            let ids = replicas::claim_orphans(conn, me, Utc::now())?;
            claim_ids(conn, me, &ids)
        })
        .await
    }
}

/// Sets `owner = me` on `ids` and reads them back, oldest first.
fn claim_ids(conn: &Connection, me: i64, ids: &[i64]) -> Result<Vec<Incident>, StoreError> {
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        conn.prepare_cached("UPDATE incidents SET owner = ?1 WHERE id = ?2")
            .and_then(|mut statement| statement.execute(params![me, id]))
            .map_err(unavailable)?;
        let incident = conn
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"
            ))
            .and_then(|mut statement| statement.query_row(params![id], incident_from_row))
            .map_err(unavailable)?;
        claimed.push(incident);
    }
    claimed.sort_by_key(|incident| incident.id);
    Ok(claimed)
}
