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
    BreakerLimit, BreakerReset, BreakerStatus, DiagnosticsClaim, Gap, HostHold, IncidentDetail,
    Ingested, OutboxItem, RunGate, RunRecord, Store, StoreError,
};

mod escalation;
mod guard;
mod rows;
mod schema;
mod writer;

use rows::{INCIDENT_COLUMNS, event_from_row, incident_from_row, state_from_text};
use writer::{JournalChange, PlanChange, Reply, WriteOp, unavailable};

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
            }),
            commits,
        })
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

    /// Send one operation to the writer and wait for its commit.
    async fn write<T>(&self, operation: impl FnOnce(Reply<T>) -> WriteOp) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or_else(writer_gone)?;
        // Both ends fail only when the writer thread is gone (it panicked): answer
        // Unavailable rather than hang, so intake returns 503 and the monitor retries.
        requests
            .send(operation(reply))
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
        let work: writer::Work = Box::new(move |conn| {
            work(conn).map(|value| Box::new(value) as Box<dyn std::any::Any + Send>)
        });
        let boxed = self.write(|reply| WriteOp::Custom { work, reply }).await?;
        Ok(*boxed
            .downcast::<T>()
            .expect("a custom write answers with its own type"))
    }

    /// Run a query on a read connection, off the async runtime.
    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(query))
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
    let conn = Connection::open_with_flags(path, flags).map_err(config_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(config_error)?;
    // rusqlite keeps 16 prepared statements by default; the writer cycles through more
    // than that (ingest's lookups, plans, journal, guard, outbox), and an evicted
    // statement is parsed again on its next use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(config_error)?;
    match role {
        Role::Writer => {
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
        Role::Reader => {
            // Readers never write; SQLite enforces it.
            conn.pragma_update(None, "query_only", true)
                .map_err(config_error)?;
        }
    }
    Ok(conn)
}

struct ReaderPool {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
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
        self.write(|reply| WriteOp::Ingest {
            alerts,
            received_at,
            reply,
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
        self.write(|reply| WriteOp::RecordPlan { change, reply })
            .await
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
            expect: Some(from),
            to: Some(to),
            reason,
            event,
            at: Utc::now(),
        };
        self.write(|reply| WriteOp::Journal { change, reply }).await
    }

    async fn append_event(&self, id: IncidentId, event: Event) -> Result<(), StoreError> {
        let change = JournalChange {
            id,
            expect: None,
            to: None,
            reason: None,
            event,
            at: Utc::now(),
        };
        self.write(|reply| WriteOp::Journal { change, reply }).await
    }

    async fn begin_run(
        &self,
        id: IncidentId,
        recipe: &str,
        target: &str,
        limit: BreakerLimit,
        started: Event,
        first_step: Option<Event>,
        now: DateTime<Utc>,
    ) -> Result<RunGate, StoreError> {
        let (recipe, target) = (recipe.to_owned(), target.to_owned());
        self.write_with(move |conn| {
            let events = (&started, first_step.as_ref());
            guard::begin_run(conn, id, &recipe, &target, limit, events, now)
        })
        .await
    }

    async fn runs_in_window(
        &self,
        recipe: &str,
        target: &str,
        window: Duration,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let (recipe, target) = (recipe.to_owned(), target.to_owned());
        self.read(move |conn| guard::runs_in_window(conn, &recipe, &target, window, Utc::now()))
            .await
    }

    async fn hold_host(
        &self,
        host: &str,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        let (host, why) = (host.to_owned(), why.to_owned());
        self.write_with(move |conn| guard::hold_host(conn, &host, until, &why, Utc::now()))
            .await
    }

    async fn host_holds(&self) -> Result<Vec<HostHold>, StoreError> {
        self.read(|conn| guard::host_holds(conn, Utc::now())).await
    }

    async fn breakers(&self) -> Result<Vec<BreakerStatus>, StoreError> {
        self.read(|conn| guard::breakers(conn, Utc::now())).await
    }

    async fn reset_breaker(
        &self,
        recipe: &str,
        target: &str,
        by: &str,
    ) -> Result<Option<BreakerReset>, StoreError> {
        let (recipe, target, by) = (recipe.to_owned(), target.to_owned(), by.to_owned());
        self.write_with(move |conn| guard::reset_breaker(conn, &recipe, &target, &by, Utc::now()))
            .await
    }

    async fn incidents_to_escalate(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        self.read(move |conn| guard::incidents_to_escalate(conn, sql_limit(limit)))
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
            guard::enqueue_escalation(conn, id, reason, &channels, &payload, Utc::now())
        })
        .await
    }

    async fn due_escalations(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.read(move |conn| guard::due_escalations(conn, Utc::now(), sql_limit(limit)))
            .await
    }

    async fn escalation_sent(&self, item: &OutboxItem) -> Result<(), StoreError> {
        let item = item.clone();
        self.write_with(move |conn| guard::escalation_sent(conn, &item, Utc::now()))
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
            guard::escalation_failed(conn, &item, &error, next_attempt_at, Utc::now())
        })
        .await
    }

    async fn outbox_pending(&self) -> Result<i64, StoreError> {
        self.read(guard::outbox_pending).await
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
        self.read(move |conn| guard::gaps(conn, sql_limit(limit)))
            .await
    }

    async fn remediation_totals(&self) -> Result<(i64, i64), StoreError> {
        self.read(guard::remediation_totals).await
    }

    async fn list_incidents(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let before = before.map_or(i64::MAX, |id| id.0);
        self.read(move |conn| {
            select_incidents(
                conn,
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id < ?1 \
                     ORDER BY id DESC LIMIT ?2"
                ),
                params![before, sql_limit(limit)],
            )
        })
        .await
    }

    async fn incident_details(
        &self,
        before: Option<IncidentId>,
        limit: usize,
    ) -> Result<Vec<IncidentDetail>, StoreError> {
        let before = before.map_or(i64::MAX, |id| id.0);
        self.read(move |conn| {
            let snapshot = conn.unchecked_transaction()?;
            let incidents = select_incidents(
                &snapshot,
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id < ?1 \
                     ORDER BY id DESC LIMIT ?2"
                ),
                params![before, sql_limit(limit)],
            )?;
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

    async fn ping(&self) -> Result<(), StoreError> {
        // Both paths: a live reader says nothing about a dead writer, and intake
        // depends on the writer.
        self.write(|reply| WriteOp::Ping { reply }).await?;
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use tempfile::TempDir;

    use serde_json::json;

    use super::*;
    use crate::alert::{AlertStatus, Fingerprint, Source};
    use crate::plan::{Mode, PlanOutcome};

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn alert(fingerprint: &str, status: AlertStatus, starts_at: Option<&str>) -> Alert {
        let labels: BTreeMap<String, String> =
            [("alertname", "DiskFull"), ("instance", "host1:9100")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        Alert {
            source: Source::Alertmanager,
            fingerprint: Fingerprint::parse(fingerprint).unwrap(),
            status,
            labels,
            annotations: BTreeMap::from([("summary".to_owned(), "disk / is 95% full".to_owned())]),
            starts_at: starts_at.map(time),
            ends_at: None,
            generator_url: Some("http://prometheus:9090/graph".to_owned()),
            external_url: Some("http://alertmanager-1:9093".to_owned()),
        }
    }

    fn firing(fingerprint: &str, starts_at: &str) -> Alert {
        alert(fingerprint, AlertStatus::Firing, Some(starts_at))
    }

    fn resolved(fingerprint: &str, starts_at: &str, ends_at: &str) -> Alert {
        Alert {
            ends_at: Some(time(ends_at)),
            ..alert(fingerprint, AlertStatus::Resolved, Some(starts_at))
        }
    }

    fn temp_store() -> (TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_path(&dir.path().join("salve.db")).unwrap();
        (dir, store)
    }

    async fn ingest_one(store: &SqliteStore, alert: Alert, received_at: &str) -> Ingested {
        let mut ingested = store.ingest(vec![alert], time(received_at)).await.unwrap();
        assert_eq!(ingested.len(), 1);
        ingested.remove(0)
    }

    async fn detail(store: &SqliteStore, id: IncidentId) -> IncidentDetail {
        store.incident(id).await.unwrap().expect("incident exists")
    }

    fn event_kinds(detail: &IncidentDetail) -> Vec<String> {
        detail
            .events
            .iter()
            .map(|entry| entry.event.to_row().0)
            .collect()
    }

    /// An event's stored `detail`.
    fn stored(entry: &crate::incident::JournalEntry) -> serde_json::Value {
        entry.event.to_row().1
    }

    pub(super) fn remediation_started() -> Event {
        Event::RemediationStarted {
            target: crate::plan::PlannedTarget {
                name: "web1".into(),
                address: "127.0.0.1".into(),
                port: 22,
                user: None,
            },
            steps: 1,
            sudo: false,
        }
    }

    fn failed(reason: &str) -> Event {
        Event::Failed {
            reason: reason.into(),
        }
    }

    fn dry_run_plan() -> Plan {
        Plan {
            mode: Mode::DryRun,
            ..Plan::inert(
                PlanOutcome::Refused,
                Some("disk-space".to_owned()),
                "target host9 is not in the inventory".to_owned(),
                vec!["oncall-email".to_owned()],
            )
        }
    }

    const STARTS: &str = "2026-11-28T10:00:00.123456789Z";

    #[test]
    fn store_urls_name_files_relative_or_absolute() {
        assert_eq!(
            path_from_url("sqlite://salve.db").unwrap(),
            PathBuf::from("salve.db")
        );
        assert_eq!(
            path_from_url("sqlite://./salve.db").unwrap(),
            PathBuf::from("./salve.db")
        );
        assert_eq!(
            path_from_url("sqlite:///var/lib/salve/salve.db").unwrap(),
            PathBuf::from("/var/lib/salve/salve.db")
        );
        for bad in [
            "postgres://db/salve",
            "sqlite::memory:",
            "sqlite://",
            "sqlite://salve.db?mode=rwc",
        ] {
            assert!(
                matches!(path_from_url(bad), Err(StoreError::Config(_))),
                "{bad} accepted"
            );
        }
    }

    #[tokio::test]
    async fn open_by_absolute_url_creates_a_wal_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).unwrap();
        store.ping().await.unwrap();
        store.close().unwrap();

        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn the_write_connection_fsyncs_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(&dir.path().join("salve.db"), Role::Writer).unwrap();
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "synchronous must be FULL");
        let foreign_keys: bool = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .unwrap();
        assert!(foreign_keys);
    }

    #[tokio::test]
    async fn a_resent_alert_is_one_incident_with_a_receive_count() {
        let (_dir, store) = temp_store();
        let first = ingest_one(
            &store,
            firing("10fd2ebfb5d5241b", STARTS),
            "2026-11-28T10:00:01Z",
        )
        .await;
        assert!(first.created);
        for second in 2..=5 {
            let again = ingest_one(
                &store,
                firing("10fd2ebfb5d5241b", STARTS),
                &format!("2026-11-28T10:00:0{second}Z"),
            )
            .await;
            assert_eq!(
                again,
                Ingested {
                    id: first.id,
                    created: false,
                    resolved_now: false
                }
            );
        }

        let incidents = store.list_incidents(None, 10).await.unwrap();
        assert_eq!(incidents.len(), 1);
        let incident = &incidents[0];
        assert_eq!(incident.receive_count, 5);
        assert_eq!(incident.state, State::Received);
        assert_eq!(incident.alert_status, AlertStatus::Firing);
        assert_eq!(incident.starts_at, time(STARTS));
        assert_eq!(incident.first_seen, time("2026-11-28T10:00:01Z"));
        assert_eq!(incident.last_seen, time("2026-11-28T10:00:05Z"));
        assert_eq!(incident.alertname.as_deref(), Some("DiskFull"));
        assert_eq!(
            incident.labels.get("instance").map(String::as_str),
            Some("host1:9100")
        );
        assert_eq!(incident.annotations.len(), 1);
        let detail = detail(&store, first.id).await;
        assert_eq!(event_kinds(&detail), ["received"]);
        assert_eq!(stored(&detail.events[0])["status"], "firing");
        assert_eq!(
            stored(&detail.events[0])["received_at"],
            "2026-11-28T10:00:01.000000000Z"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_copies_create_exactly_one_incident() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    ingest_one(
                        &store,
                        firing("10fd2ebfb5d5241b", STARTS),
                        "2026-11-28T10:00:01Z",
                    )
                    .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }

        assert_eq!(results.iter().filter(|r| r.created).count(), 1);
        assert!(results.iter().all(|r| r.id == results[0].id));
        let incidents = store.list_incidents(None, 10).await.unwrap();
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].receive_count, 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_from_two_ha_replicas_are_one_incident() {
        let (_dir, store) = temp_store();
        let from_replica = |replica: &str| Alert {
            external_url: Some(format!("http://{replica}:9093")),
            ..firing("10fd2ebfb5d5241b", STARTS)
        };
        // Both replicas' copies in one notification, then each replica on its own, at once.
        let both = store
            .ingest(
                vec![from_replica("am-1"), from_replica("am-2")],
                time("2026-11-28T10:00:01Z"),
            )
            .await
            .unwrap();
        assert!(both[0].created && !both[1].created);
        assert_eq!(both[0].id, both[1].id);
        let (one, two) = tokio::join!(
            store.ingest(vec![from_replica("am-1")], time("2026-11-28T10:00:02Z")),
            store.ingest(vec![from_replica("am-2")], time("2026-11-28T10:00:02Z")),
        );
        assert_eq!(one.unwrap()[0].id, both[0].id);
        assert_eq!(two.unwrap()[0].id, both[0].id);

        let incidents = store.list_incidents(None, 10).await.unwrap();
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].receive_count, 4);
    }

    #[tokio::test]
    async fn a_resolve_is_recorded_once() {
        let (_dir, store) = temp_store();
        let fired = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
        let resolve = ingest_one(
            &store,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            "2026-11-28T10:05:01Z",
        )
        .await;
        assert_eq!(
            resolve,
            Ingested {
                id: fired.id,
                created: false,
                resolved_now: true
            }
        );
        let again = ingest_one(
            &store,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            "2026-11-28T10:05:02Z",
        )
        .await;
        assert!(!again.resolved_now && !again.created);

        let detail = detail(&store, fired.id).await;
        assert_eq!(detail.incident.alert_status, AlertStatus::Resolved);
        assert_eq!(
            detail.incident.resolved_at,
            Some(time("2026-11-28T10:05:01Z"))
        );
        assert_eq!(detail.incident.ends_at, Some(time("2026-11-28T10:05:00Z")));
        assert_eq!(detail.incident.receive_count, 3);
        assert_eq!(detail.incident.last_seen, time("2026-11-28T10:05:02Z"));
        assert_eq!(event_kinds(&detail), ["received", "resolved"]);
    }

    #[tokio::test]
    async fn firing_again_after_resolve_reopens_the_same_occurrence() {
        let (_dir, store) = temp_store();
        let fired = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
        ingest_one(
            &store,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            "2026-11-28T10:05:01Z",
        )
        .await;
        let refired = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:06:00Z").await;
        assert_eq!(
            refired,
            Ingested {
                id: fired.id,
                created: false,
                resolved_now: false
            }
        );

        let detail = detail(&store, fired.id).await;
        assert_eq!(detail.incident.alert_status, AlertStatus::Firing);
        assert_eq!(detail.incident.resolved_at, None);
        assert_eq!(detail.incident.ends_at, None);
        assert_eq!(event_kinds(&detail), ["received", "resolved", "refired"]);
    }

    #[tokio::test]
    async fn an_alert_without_start_time_joins_the_open_incident() {
        let (_dir, store) = temp_store();
        let first = ingest_one(
            &store,
            alert("generic-1", AlertStatus::Firing, None),
            "2026-11-28T10:00:00Z",
        )
        .await;
        assert!(first.created);
        let joined = ingest_one(
            &store,
            alert("generic-1", AlertStatus::Firing, None),
            "2026-11-28T10:01:00Z",
        )
        .await;
        assert_eq!(joined.id, first.id);
        assert!(!joined.created);
        let resolve = ingest_one(
            &store,
            alert("generic-1", AlertStatus::Resolved, None),
            "2026-11-28T10:02:00Z",
        )
        .await;
        assert_eq!(
            resolve,
            Ingested {
                id: first.id,
                created: false,
                resolved_now: true
            }
        );

        // Handled (here: planned dry-run) before it fires again: a new occurrence.
        store
            .record_plan(first.id, State::Received, State::DryRun, &dry_run_plan())
            .await
            .unwrap();
        let next = ingest_one(
            &store,
            alert("generic-1", AlertStatus::Firing, None),
            "2026-11-28T11:00:00Z",
        )
        .await;
        assert!(next.created);
        assert_ne!(next.id, first.id);
        assert_eq!(
            detail(&store, next.id).await.incident.starts_at,
            time("2026-11-28T11:00:00Z")
        );
        assert_eq!(
            detail(&store, first.id).await.incident.starts_at,
            time("2026-11-28T10:00:00Z")
        );
    }

    #[tokio::test]
    async fn one_key_twice_in_one_notification_counts_twice() {
        let (_dir, store) = temp_store();
        let results = store
            .ingest(
                vec![
                    firing("aa", STARTS),
                    firing("bb", STARTS),
                    resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
                ],
                time("2026-11-28T10:05:01Z"),
            )
            .await
            .unwrap();
        assert!(results[0].created && results[1].created);
        assert_eq!(
            results[2],
            Ingested {
                id: results[0].id,
                created: false,
                resolved_now: true
            }
        );
        assert_eq!(
            detail(&store, results[0].id).await.incident.receive_count,
            2
        );
    }

    #[tokio::test]
    async fn record_plan_moves_the_state_and_journals_it() {
        let (_dir, store) = temp_store();
        let id = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        let plan = dry_run_plan();
        store
            .record_plan(id, State::Received, State::Refused, &plan)
            .await
            .unwrap();

        let detail = detail(&store, id).await;
        assert_eq!(detail.incident.state, State::Refused);
        assert_eq!(detail.incident.reason, plan.reason);
        assert_eq!(detail.incident.plan.as_ref(), Some(&plan));
        assert_eq!(event_kinds(&detail), ["received", "planned"]);
        assert_eq!(
            stored(&detail.events[1]),
            json!({ "outcome": "refused", "recipe": "disk-space", "mode": "dry-run", "state": "refused" })
        );
        assert!(
            store
                .incidents_in_state(State::Received, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.incidents_in_state(State::Refused, 10).await.unwrap()[0].id,
            id
        );
    }

    #[tokio::test]
    async fn transitions_are_checked_and_events_are_appended_in_order() {
        let (_dir, store) = temp_store();
        let id = ingest_one(&store, firing("ab", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        store
            .record_plan(id, State::Received, State::Matched, &dry_run_plan())
            .await
            .unwrap();
        store
            .transition(
                id,
                State::Matched,
                State::Remediating,
                None,
                remediation_started(),
            )
            .await
            .unwrap();
        store
            .append_event(
                id,
                Event::StepStarted {
                    step: 1,
                    command: "true".into(),
                    executed: "true".into(),
                },
            )
            .await
            .unwrap();
        // From the wrong state: refused, and nothing is written.
        let conflict = store
            .transition(
                id,
                State::Matched,
                State::Failed,
                Some("x".into()),
                failed("x"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                conflict,
                StoreError::StateConflict {
                    found: State::Remediating,
                    ..
                }
            ),
            "{conflict:?}"
        );
        store
            .transition(
                id,
                State::Remediating,
                State::Failed,
                Some("command 1 exited 1".into()),
                failed("command 1 exited 1"),
            )
            .await
            .unwrap();

        let detail = detail(&store, id).await;
        assert_eq!(detail.incident.state, State::Failed);
        assert_eq!(
            detail.incident.reason.as_deref(),
            Some("command 1 exited 1")
        );
        assert_eq!(
            event_kinds(&detail),
            [
                "received",
                "planned",
                "remediation_started",
                "step_started",
                "failed"
            ]
        );
        assert!(matches!(
            store.append_event(IncidentId(999), failed("x")).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn record_plan_from_the_wrong_state_changes_nothing() {
        let (_dir, store) = temp_store();
        let id = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        let before = detail(&store, id).await;

        let error = store
            .record_plan(id, State::Matched, State::DryRun, &dry_run_plan())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::StateConflict {
                    expected: State::Matched,
                    found: State::Received,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(detail(&store, id).await, before);
        let missing = store
            .record_plan(
                IncidentId(999),
                State::Received,
                State::DryRun,
                &dry_run_plan(),
            )
            .await;
        assert!(matches!(
            missing,
            Err(StoreError::NotFound(IncidentId(999)))
        ));
    }

    /// Block the writer inside a batch; returns the gate's reply and its release.
    async fn hold_writer(
        store: &SqliteStore,
    ) -> (
        oneshot::Receiver<Result<(), StoreError>>,
        oneshot::Sender<()>,
    ) {
        let (entered, writer_entered) = oneshot::channel();
        let (release, gate_release) = oneshot::channel();
        let (reply, gate_done) = oneshot::channel();
        let requests = store.requests.as_ref().unwrap();
        requests
            .send(WriteOp::Gate {
                entered,
                release: gate_release,
                reply,
            })
            .await
            .unwrap();
        writer_entered.await.unwrap();
        (gate_done, release)
    }

    async fn wait_until_queued(store: &SqliteStore, operations: usize) {
        let requests = store.requests.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while requests.max_capacity() - requests.capacity() < operations {
            assert!(Instant::now() < deadline, "operations never queued");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_operation_does_not_poison_its_batch() {
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let planned = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        let conflicting = ingest_one(&store, firing("bb", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        let (gate_done, release) = hold_writer(&store).await;
        let commits_before = store.commits();

        let ingest = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .ingest(vec![firing("cc", STARTS)], time("2026-11-28T10:00:02Z"))
                    .await
            }
        });
        let good_plan = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .record_plan(planned, State::Received, State::DryRun, &dry_run_plan())
                    .await
            }
        });
        let bad_plan = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .record_plan(conflicting, State::Matched, State::DryRun, &dry_run_plan())
                    .await
            }
        });
        wait_until_queued(&store, 3).await;
        release.send(()).unwrap();

        gate_done.await.unwrap().unwrap();
        assert!(ingest.await.unwrap().unwrap()[0].created);
        good_plan.await.unwrap().unwrap();
        assert!(matches!(
            bad_plan.await.unwrap(),
            Err(StoreError::StateConflict { .. })
        ));
        // The gate's batch, then one batch for all three.
        assert_eq!(store.commits(), commits_before + 2);
        assert_eq!(detail(&store, planned).await.incident.state, State::DryRun);
        assert_eq!(
            detail(&store, conflicting).await.incident.state,
            State::Received
        );
        assert_eq!(store.list_incidents(None, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_acknowledged_ingest_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open_path(&path).unwrap();
        let id = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        drop(store);

        let reopened = SqliteStore::open_path(&path).unwrap();
        let detail = detail(&reopened, id).await;
        assert_eq!(detail.incident.fingerprint.as_str(), "aa");
        assert_eq!(event_kinds(&detail), ["received"]);
        // The key still deduplicates after a restart.
        assert!(
            !ingest_one(&reopened, firing("aa", STARTS), "2026-11-28T10:00:02Z")
                .await
                .created
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_ingests_share_commits() {
        const CALLS: usize = 2000;
        let (_dir, store) = temp_store();
        let store = Arc::new(store);
        let start = Arc::new(tokio::sync::Barrier::new(CALLS));
        let tasks: Vec<_> = (0..CALLS)
            .map(|n| {
                let store = Arc::clone(&store);
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    start.wait().await;
                    let alert = firing(&format!("{n:016x}"), STARTS);
                    store
                        .ingest(vec![alert], time("2026-11-28T10:00:01Z"))
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap()[0].created);
        }

        assert_eq!(
            store.count_by_state().await.unwrap(),
            vec![(State::Received, CALLS as i64)]
        );
        assert!(
            store.commits() < CALLS as u64,
            "{} commits for {CALLS} calls",
            store.commits()
        );
    }

    #[tokio::test]
    async fn reopening_a_migrated_database_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open_path(&path).unwrap();
        ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
        store.close().unwrap();
        SqliteStore::open_path(&path).unwrap().close().unwrap();

        let store = SqliteStore::open_path(&path).unwrap();
        assert_eq!(store.list_incidents(None, 10).await.unwrap().len(), 1);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, schema::latest_version());
    }

    #[test]
    fn a_database_from_a_newer_salve_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        SqliteStore::open_path(&path).unwrap().close().unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", schema::latest_version() + 1)
            .unwrap();

        let Err(StoreError::Config(message)) = SqliteStore::open_path(&path) else {
            panic!("a newer schema was opened");
        };
        assert!(message.contains("newer than this salve"), "{message}");
    }

    #[test]
    fn a_missing_directory_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let result = SqliteStore::open_path(&dir.path().join("no/such/dir/salve.db"));
        assert!(matches!(result, Err(StoreError::Config(_))));
    }

    #[tokio::test]
    async fn a_dead_writer_makes_writes_unavailable_not_hang() {
        let (_dir, store) = temp_store();
        store
            .requests
            .as_ref()
            .unwrap()
            .send(WriteOp::Crash)
            .await
            .unwrap();

        let result = store
            .ingest(vec![firing("aa", STARTS)], time("2026-11-28T10:00:01Z"))
            .await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
        // Reads still answer from what was committed.
        assert!(store.list_incidents(None, 10).await.unwrap().is_empty());
        assert!(matches!(store.close(), Err(StoreError::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_locked_database_is_unavailable_and_the_store_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open_path(&path).unwrap();
        let other_process = Connection::open(&path).unwrap();
        other_process.execute_batch("BEGIN IMMEDIATE").unwrap();

        let result = store
            .ingest(vec![firing("aa", STARTS)], time("2026-11-28T10:00:01Z"))
            .await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(store.list_incidents(None, 10).await.unwrap().is_empty());

        other_process.execute_batch("ROLLBACK").unwrap();
        // The monitor's retry goes through: the writer survived the failed batch.
        assert!(
            ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:02Z")
                .await
                .created
        );
    }

    #[tokio::test]
    async fn listings_are_ordered_and_counted() {
        let (_dir, store) = temp_store();
        let mut ids = Vec::new();
        for fingerprint in ["aa", "bb", "cc"] {
            ids.push(
                ingest_one(&store, firing(fingerprint, STARTS), "2026-11-28T10:00:01Z")
                    .await
                    .id,
            );
        }
        store
            .record_plan(ids[1], State::Received, State::Unmatched, &dry_run_plan())
            .await
            .unwrap();

        let newest_first: Vec<_> = store
            .list_incidents(None, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(newest_first, [ids[2], ids[1], ids[0]]);
        assert_eq!(store.list_incidents(None, 1).await.unwrap().len(), 1);
        let below: Vec<_> = store
            .list_incidents(Some(ids[2]), 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(below, [ids[1], ids[0]], "the cursor pages");
        // Pages with journals: each incident gets exactly its own events.
        let page = store.incident_details(Some(ids[2]), 2).await.unwrap();
        assert_eq!(page.len(), 2);
        for detail in &page {
            let alone = store.incident(detail.incident.id).await.unwrap().unwrap();
            assert_eq!(detail.events, alone.events);
        }
        assert_eq!(page[0].events.len(), 2, "received and planned");
        assert!(
            store
                .incident_details(Some(ids[0]), 5)
                .await
                .unwrap()
                .is_empty()
        );
        let waiting: Vec<_> = store
            .incidents_in_state(State::Received, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(waiting, [ids[0], ids[2]]);
        assert_eq!(
            store.count_by_state().await.unwrap(),
            vec![(State::Received, 2), (State::Unmatched, 1)]
        );
        assert_eq!(store.incident(IncidentId(999)).await.unwrap(), None);
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn an_empty_notification_writes_nothing() {
        let (_dir, store) = temp_store();
        assert!(
            store
                .ingest(Vec::new(), Utc::now())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.commits(), 0);
    }
    fn from(source: Source, alert: Alert) -> Alert {
        Alert { source, ..alert }
    }

    #[tokio::test]
    async fn one_alert_through_two_routes_is_one_incident() {
        let (_dir, store) = temp_store();
        // Alertmanager first, then the generic hook without a start, then its resolve.
        let fired = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
        let copy = ingest_one(
            &store,
            from(Source::Generic, alert("aa", AlertStatus::Firing, None)),
            "2026-11-28T10:00:02Z",
        )
        .await;
        assert_eq!((copy.id, copy.created), (fired.id, false));
        let resolve = ingest_one(
            &store,
            from(
                Source::Grafana,
                resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            ),
            "2026-11-28T10:05:01Z",
        )
        .await;
        assert_eq!((resolve.id, resolve.resolved_now), (fired.id, true));
        let incident = detail(&store, fired.id).await.incident;
        assert_eq!(incident.source, Source::Alertmanager);
        assert_eq!(incident.receive_count, 3);

        // The generic hook first (no start: salve assumes one), then Alertmanager with its
        // own start: the incident takes the monitor's start, and later copies find it.
        let generic = ingest_one(
            &store,
            from(Source::Generic, alert("bb", AlertStatus::Firing, None)),
            "2026-11-28T11:00:00Z",
        )
        .await;
        let monitor = ingest_one(&store, firing("bb", STARTS), "2026-11-28T11:00:01Z").await;
        assert_eq!((monitor.id, monitor.created), (generic.id, false));
        let again = ingest_one(&store, firing("bb", STARTS), "2026-11-28T11:00:02Z").await;
        assert_eq!(again.id, generic.id);
        let detail = detail(&store, generic.id).await;
        assert_eq!(detail.incident.starts_at, time(STARTS));
        assert_eq!(detail.incident.receive_count, 3);
        assert_eq!(event_kinds(&detail), ["received", "start_known"]);
        assert_eq!(store.list_incidents(None, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn another_alerts_fingerprint_is_another_key_only_by_the_fingerprint() {
        // The store keys on the fingerprint it is given; intake computes it from the labels
        // (intake tests), so a forged one never reaches here. Different fingerprints with
        // the same start are different incidents, whatever the source.
        let (_dir, store) = temp_store();
        let a = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
        let b = ingest_one(
            &store,
            from(Source::Generic, firing("bb", STARTS)),
            "2026-11-28T10:00:01Z",
        )
        .await;
        assert!(a.created && b.created && a.id != b.id);
    }

    #[tokio::test]
    async fn an_alert_firing_again_while_its_incident_waits_is_that_incident_firing() {
        let (_dir, store) = temp_store();
        let later = "2026-11-28T10:07:00Z";
        let fired = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
        store
            .record_plan(fired.id, State::Received, State::Matched, &dry_run_plan())
            .await
            .unwrap();
        ingest_one(
            &store,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            "2026-11-28T10:05:01Z",
        )
        .await;
        // A new occurrence (Alertmanager gives it a new start) while the first still waits
        // for its host: no second incident, the waiting one fires again and takes the start.
        let refired = ingest_one(&store, firing("aa", later), "2026-11-28T10:07:01Z").await;
        assert_eq!((refired.id, refired.created), (fired.id, false));
        let again = ingest_one(&store, firing("aa", later), "2026-11-28T10:07:02Z").await;
        assert_eq!(again.id, fired.id);
        let detail = detail(&store, fired.id).await;
        assert_eq!(detail.incident.alert_status, AlertStatus::Firing);
        assert_eq!(detail.incident.state, State::Matched);
        assert_eq!(detail.incident.starts_at, time(later));
        assert_eq!(
            event_kinds(&detail),
            ["received", "planned", "resolved", "refired"]
        );
        assert_eq!(
            stored(&detail.events[3])["previous_starts_at"],
            "2026-11-28T10:00:00.123456789Z"
        );
        // A late copy of an older occurrence does not reopen or move it.
        ingest_one(
            &store,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            "2026-11-28T10:07:03Z",
        )
        .await;
        assert_eq!(
            detail_state(&store, fired.id).await,
            (State::Matched, AlertStatus::Firing)
        );

        // Once it ran (or ended), firing anew is a new occurrence, a new incident.
        store
            .transition(
                fired.id,
                State::Matched,
                State::Remediating,
                None,
                remediation_started(),
            )
            .await
            .unwrap();
        ingest_one(
            &store,
            resolved("aa", later, "2026-11-28T10:08:00Z"),
            "2026-11-28T10:08:01Z",
        )
        .await;
        let next = ingest_one(
            &store,
            firing("aa", "2026-11-28T10:09:00Z"),
            "2026-11-28T10:09:01Z",
        )
        .await;
        assert!(next.created);
    }

    async fn detail_state(store: &SqliteStore, id: IncidentId) -> (State, AlertStatus) {
        let incident = detail(store, id).await.incident;
        (incident.state, incident.alert_status)
    }

    #[tokio::test]
    async fn labels_crafted_to_collide_with_a_fingerprint_are_another_alert() {
        // FNV-1a is not collision resistant: here two label sets share fingerprint "aa"
        // (as crafted labels could) and the start. They are still two alerts.
        let (_dir, store) = temp_store();
        let victim = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
        let colliding = |status: AlertStatus| {
            let mut alert = alert("aa", status, Some(STARTS));
            alert
                .labels
                .insert("instance".into(), "attacker:9100".into());
            alert.ends_at = Some(time("2026-11-28T10:00:02Z"));
            alert
        };
        let forged = ingest_one(
            &store,
            colliding(AlertStatus::Resolved),
            "2026-11-28T10:00:02Z",
        )
        .await;
        assert!(forged.created && forged.id != victim.id);
        let again = ingest_one(
            &store,
            colliding(AlertStatus::Resolved),
            "2026-11-28T10:00:03Z",
        )
        .await;
        assert_eq!((again.id, again.created), (forged.id, false));
        // Without a start it does not join the victim's open incident either.
        let mut no_start = colliding(AlertStatus::Resolved);
        no_start.starts_at = None;
        let other = ingest_one(&store, no_start, "2026-11-28T10:00:04Z").await;
        assert_ne!(other.id, victim.id);
        let victim = detail(&store, victim.id).await;
        assert_eq!(victim.incident.alert_status, AlertStatus::Firing);
        assert_eq!(victim.incident.receive_count, 1);
        assert_eq!(event_kinds(&victim), ["received"]);
        // The victim's own copies still find it.
        let copy = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:05Z").await;
        assert_eq!(copy.id, victim.incident.id);
    }

    #[tokio::test]
    async fn resolved_before_run_is_refused_while_the_alert_fires() {
        let (_dir, store) = temp_store();
        let id = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        store
            .record_plan(id, State::Received, State::Matched, &dry_run_plan())
            .await
            .unwrap();
        let close = || {
            store.transition(
                id,
                State::Matched,
                State::ResolvedBeforeRun,
                Some("resolved".into()),
                Event::ResolvedBeforeRun {
                    reason: "resolved".into(),
                },
            )
        };
        assert!(matches!(close().await, Err(StoreError::AlertFiring(found)) if found == id));
        assert_eq!(
            detail_state(&store, id).await,
            (State::Matched, AlertStatus::Firing)
        );
        ingest_one(
            &store,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            "2026-11-28T10:05:01Z",
        )
        .await;
        close().await.unwrap();
        assert_eq!(
            detail_state(&store, id).await,
            (State::ResolvedBeforeRun, AlertStatus::Resolved)
        );
    }

    #[tokio::test]
    async fn the_receive_count_saturates_instead_of_failing_the_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open_path(&path).unwrap();
        let id = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z")
            .await
            .id;
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE incidents SET receive_count = 9223372036854775807 WHERE id = ?1",
                [id.0],
            )
            .unwrap();
        for second in 2..4 {
            let again = ingest_one(
                &store,
                firing("aa", STARTS),
                &format!("2026-11-28T10:00:0{second}Z"),
            )
            .await;
            assert_eq!(again.id, id);
        }
        assert_eq!(detail(&store, id).await.incident.receive_count, i64::MAX);
    }

    #[tokio::test]
    async fn migration_4_keeps_rows_that_shared_a_key_across_sources_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        {
            // A version-3 journal in which one alert came in on two routes (two rows).
            let conn = Connection::open(&path).unwrap();
            for step in &schema::MIGRATIONS[..3] {
                conn.execute_batch(step).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            for (source, starts_at, seen) in [
                (
                    "alertmanager",
                    "2026-11-28T10:00:00.000000000Z",
                    "2026-11-28T10:00:01.000000000Z",
                ),
                (
                    "generic",
                    "2026-11-28T10:00:00.000000000Z",
                    "2026-11-28T10:00:02.000000000Z",
                ),
                (
                    "generic",
                    "2026-11-28T11:00:00.000000000Z",
                    "2026-11-28T11:00:00.000000000Z",
                ),
            ] {
                conn.execute(
                    "INSERT INTO incidents (source, fingerprint, starts_at, alertname, alert_status,
                         labels, annotations, state, first_seen, last_seen, receive_count)
                     VALUES (?1, 'aa', ?2, 'DiskFull', 'firing', ?4, '{}', 'dry_run', ?3, ?3, 1)",
                    params![
                        source,
                        starts_at,
                        seen,
                        r#"{"alertname":"DiskFull","instance":"host1:9100"}"#
                    ],
                )
                .unwrap();
            }
        }
        {
            // Each with its journal, and the first with a run and an outbox row: the
            // rebuild must keep every reference valid.
            let conn = Connection::open(&path).unwrap();
            for id in 1..=3 {
                conn.execute(
                    "INSERT INTO events (incident_id, at, kind, detail)
                     VALUES (?1, '2026-11-28T10:00:01.000000000Z', 'received', '{}')",
                    [id],
                )
                .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO runs (incident_id, recipe, target, started_at, window_seconds)
                     VALUES (1, 'r', 'web1', '2026-11-28T10:00:02.000000000Z', 60);
                 INSERT INTO outbox (incident_id, reason, channel, payload, status,
                     next_attempt_at, created_at)
                     VALUES (1, 'failed', 'mail', '{}', 'pending',
                     '2026-11-28T10:00:03.000000000Z', '2026-11-28T10:00:03.000000000Z');",
            )
            .unwrap();
        }
        let store = SqliteStore::open_path(&path).unwrap();
        assert_eq!(store.list_incidents(None, 10).await.unwrap().len(), 3);
        for id in 1..=3 {
            assert_eq!(
                event_kinds(&detail(&store, IncidentId(id)).await),
                ["received"]
            );
        }
        let conn = Connection::open(&path).unwrap();
        let orphans: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(orphans, 0);
        let constraints: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'incidents'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(!constraints.contains("UNIQUE"), "{constraints}");
        // A copy of the shared key joins the oldest row only.
        let copy = ingest_one(
            &store,
            firing("aa", "2026-11-28T10:00:00Z"),
            "2026-11-28T12:00:00Z",
        )
        .await;
        assert_eq!((copy.id, copy.created), (IncidentId(1), false));
        // The generic row stored without a start (start = first seen) is known as assumed:
        // the monitor's start joins it.
        let monitor = ingest_one(&store, firing("aa", STARTS), "2026-11-28T12:00:01Z").await;
        assert_eq!((monitor.id, monitor.created), (IncidentId(3), false));
        let counts: Vec<i64> = store
            .list_incidents(None, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.receive_count)
            .collect();
        assert_eq!(counts.iter().sum::<i64>(), 5, "{counts:?}");
    }
}

#[cfg(test)]
mod guard_tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::plan::{Mode, PlanOutcome};

    fn alert(n: u32) -> Alert {
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "ServiceDown".to_owned()),
            ("n".to_owned(), n.to_string()),
        ]);
        Alert {
            starts_at: Some(Utc::now()),
            ..Alert::firing_generic(labels)
        }
    }

    async fn matched(store: &SqliteStore, n: u32) -> IncidentId {
        matched_alert(store, alert(n)).await
    }

    /// Ingests `alert` and plans it (`matched`, recipe service-restart).
    async fn matched_alert(store: &SqliteStore, alert: Alert) -> IncidentId {
        let id = store.ingest(vec![alert], Utc::now()).await.unwrap()[0].id;
        let plan = Plan {
            mode: Mode::Enforce,
            ..Plan::inert(
                PlanOutcome::Planned,
                Some("service-restart".into()),
                String::new(),
                vec![],
            )
        };
        store
            .record_plan(id, State::Received, State::Matched, &plan)
            .await
            .unwrap();
        id
    }

    const LIMIT: BreakerLimit = BreakerLimit {
        max_runs: Some(2),
        window: Duration::from_secs(600),
    };

    #[tokio::test]
    async fn the_breaker_opens_at_max_runs_holds_across_reopen_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open_path(&path).unwrap();
        for n in 0..2 {
            let id = matched(&store, n).await;
            let gate = store
                .begin_run(
                    id,
                    "service-restart",
                    "web1",
                    LIMIT,
                    super::tests::remediation_started(),
                    None,
                    Utc::now(),
                )
                .await
                .unwrap();
            assert_eq!(gate, RunGate::Started);
            assert_eq!(
                store.incident(id).await.unwrap().unwrap().incident.state,
                State::Remediating
            );
        }
        // Another target has its own breaker.
        let other = matched(&store, 9).await;
        assert_eq!(
            store
                .begin_run(
                    other,
                    "service-restart",
                    "web2",
                    LIMIT,
                    super::tests::remediation_started(),
                    None,
                    Utc::now(),
                )
                .await
                .unwrap(),
            RunGate::Started
        );
        drop(store);

        let store = SqliteStore::open_path(&path).unwrap();
        let third = matched(&store, 2).await;
        match store
            .begin_run(
                third,
                "service-restart",
                "web1",
                LIMIT,
                super::tests::remediation_started(),
                None,
                Utc::now(),
            )
            .await
            .unwrap()
        {
            RunGate::BreakerOpen { runs } => assert_eq!(runs.len(), 2),
            other => panic!("breaker should be open: {other:?}"),
        }
        assert_eq!(
            store.incident(third).await.unwrap().unwrap().incident.state,
            State::Matched
        );
        let breakers = store.breakers().await.unwrap();
        let web1 = breakers.iter().find(|b| b.target == "web1").unwrap();
        assert!(web1.open && web1.runs_in_window == 2, "{web1:?}");
        assert!(!breakers.iter().find(|b| b.target == "web2").unwrap().open);

        let reset = store
            .reset_breaker("service-restart", "web1", "ops")
            .await
            .unwrap()
            .expect("web1 has runs to forget");
        assert_eq!(reset.runs_forgotten, 2);
        let journal = store
            .incident(reset.incident)
            .await
            .unwrap()
            .unwrap()
            .events;
        let recorded = journal
            .iter()
            .find_map(|e| match &e.event {
                Event::BreakerReset { by, .. } => Some(by),
                _ => None,
            })
            .unwrap();
        assert_eq!(recorded, "ops");
        assert_eq!(
            store
                .reset_breaker("service-restart", "nowhere", "ops")
                .await
                .unwrap(),
            None,
            "a pair that never ran has nothing to reset"
        );
        assert_eq!(
            store
                .begin_run(
                    third,
                    "service-restart",
                    "web1",
                    LIMIT,
                    super::tests::remediation_started(),
                    None,
                    Utc::now(),
                )
                .await
                .unwrap(),
            RunGate::Started
        );
        assert_eq!(store.remediation_totals().await.unwrap(), (4, 0));
    }

    #[tokio::test]
    async fn a_run_does_not_start_for_a_resolved_alert_or_an_incident_no_longer_matched() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_path(&dir.path().join("salve.db")).unwrap();
        let firing = alert(1);
        let id = matched_alert(&store, firing.clone()).await;
        let resolved = Alert {
            status: crate::alert::AlertStatus::Resolved,
            ends_at: Some(Utc::now()),
            ..firing
        };
        assert!(store.ingest(vec![resolved], Utc::now()).await.unwrap()[0].resolved_now);
        let gate = store
            .begin_run(
                id,
                "service-restart",
                "web1",
                LIMIT,
                super::tests::remediation_started(),
                None,
                Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(gate, RunGate::AlertResolved);
        let detail = store.incident(id).await.unwrap().unwrap();
        assert_eq!(detail.incident.state, State::Matched);
        assert_eq!(store.remediation_totals().await.unwrap(), (0, 0));

        let taken = matched(&store, 2).await;
        assert_eq!(
            store
                .begin_run(
                    taken,
                    "service-restart",
                    "web1",
                    LIMIT,
                    super::tests::remediation_started(),
                    None,
                    Utc::now(),
                )
                .await
                .unwrap(),
            RunGate::Started
        );
        let again = store
            .begin_run(
                taken,
                "service-restart",
                "web1",
                LIMIT,
                super::tests::remediation_started(),
                None,
                Utc::now(),
            )
            .await;
        assert!(
            matches!(
                again,
                Err(StoreError::StateConflict {
                    found: State::Remediating,
                    ..
                })
            ),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn host_holds_keep_the_later_time_and_drop_when_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.db");
        let store = SqliteStore::open_path(&path).unwrap();
        let later = Utc::now() + chrono::Duration::seconds(60);
        let sooner = Utc::now() + chrono::Duration::seconds(30);
        store
            .hold_host("web1", later, "cut by a crash")
            .await
            .unwrap();
        store.hold_host("web1", sooner, "timed out").await.unwrap();
        store
            .hold_host("web2", Utc::now() - chrono::Duration::seconds(1), "over")
            .await
            .unwrap();
        drop(store);
        let store = SqliteStore::open_path(&path).unwrap();
        let holds = store.host_holds().await.unwrap();
        assert_eq!(
            holds,
            [HostHold {
                host: "web1".into(),
                until: later,
                why: "cut by a crash".into()
            }]
        );
    }

    #[tokio::test]
    async fn escalations_queue_once_retry_and_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_path(&dir.path().join("salve.db")).unwrap();
        let id = store.ingest(vec![alert(1)], Utc::now()).await.unwrap()[0].id;
        store
            .record_plan(
                id,
                State::Received,
                State::Unmatched,
                &Plan::inert(PlanOutcome::Unmatched, None, "no recipe".into(), vec![]),
            )
            .await
            .unwrap();
        assert_eq!(store.incidents_to_escalate(10).await.unwrap().len(), 1);
        let channels = vec!["mail".to_owned(), "tickets".to_owned()];
        store
            .enqueue_escalation(id, EscalationReason::Novel, &channels, &json!({ "x": 1 }))
            .await
            .unwrap();
        // Queued twice (a retry after a crash): still one row per channel.
        store
            .enqueue_escalation(id, EscalationReason::Novel, &channels, &json!({ "x": 1 }))
            .await
            .unwrap();
        assert!(store.incidents_to_escalate(10).await.unwrap().is_empty());
        assert_eq!(store.outbox_pending().await.unwrap(), 2);

        let due = store.due_escalations(10).await.unwrap();
        assert_eq!(due.len(), 2);
        let later = Utc::now() + chrono::Duration::seconds(60);
        store
            .escalation_failed(&due[0], "451 try later", later)
            .await
            .unwrap();
        store.escalation_sent(&due[1]).await.unwrap();
        assert_eq!(store.outbox_pending().await.unwrap(), 1);
        assert!(
            store.due_escalations(10).await.unwrap().is_empty(),
            "the failed one waits for its backoff"
        );

        let gaps = store.gaps(10).await.unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            (
                gaps[0].alertname.as_str(),
                gaps[0].unmatched,
                gaps[0].escalated
            ),
            ("ServiceDown", 1, 1)
        );
        let kinds: Vec<String> = store
            .incident(id)
            .await
            .unwrap()
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.event.to_row().0)
            .collect();
        assert!(
            kinds.ends_with(&[
                "escalation_queued".into(),
                "escalation_queued".into(),
                "escalation_failed".into(),
                "escalation_sent".into()
            ]),
            "{kinds:?}"
        );
    }
}
