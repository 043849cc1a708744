//! The single writer: one OS thread owns the only write connection and commits queued
//! operations in groups, one transaction (one fsync) per group. It never answers an
//! operation with success before the commit holding its writes has returned.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::rows::{parse_time, state_from_text, time_text};
use crate::alert::{Alert, AlertStatus};
use crate::incident::event::NewStart;
use crate::incident::{Event, IncidentId, State};
use crate::store::{Ingested, StoreError};

/// At most this many operations share one transaction, so one commit's latency and
/// memory stay bounded however deep the queue gets.
pub(super) const MAX_BATCH: usize = 1024;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write the writer thread runs inside a batch transaction (its own savepoint), answered
/// with `Output` through a typed oneshot once the batch has committed.
pub(super) trait Write: Send + 'static {
    type Output: Send + 'static;

    fn run(self, conn: &Connection) -> Result<Self::Output, StoreError>;
}

/// What the writer's queue carries: one write with the channel its answer goes back on,
/// its type erased behind [`Queued`] (one allocation per write).
pub(super) type WriteOp = Box<dyn Queued>;

/// Queue `write`, to be answered on `reply`.
pub(super) fn request<W: Write>(write: W, reply: Reply<W::Output>) -> WriteOp {
    Box::new(Request {
        write: Some(write),
        result: None,
        reply,
    })
}

/// A queued write, seen by the writer thread whatever its output type.
pub(super) trait Queued: Send {
    /// Run the write; its result waits for the batch's commit. Returns whether it failed.
    fn execute(&mut self, conn: &Connection) -> bool;

    /// Answer the caller. `failure` (the batch's transaction is lost, or the write was
    /// never run) overrules the result: nothing of the batch is durable, so nothing may
    /// be acknowledged.
    fn answer(self: Box<Self>, failure: Option<&str>);
}

struct Request<W: Write> {
    write: Option<W>,
    result: Option<Result<W::Output, StoreError>>,
    reply: Reply<W::Output>,
}

impl<W: Write> Queued for Request<W> {
    fn execute(&mut self, conn: &Connection) -> bool {
        let result = match self.write.take() {
            Some(write) => write.run(conn),
            None => Err(StoreError::Unavailable("a write ran twice".to_owned())),
        };
        let failed = result.is_err();
        self.result = Some(result);
        failed
    }

    fn answer(self: Box<Self>, failure: Option<&str>) {
        let result = match (failure, self.result) {
            (None, Some(result)) => result,
            (Some(message), _) => Err(StoreError::Unavailable(message.to_owned())),
            (None, None) => Err(StoreError::Unavailable("the write never ran".to_owned())),
        };
        // A send fails only when the caller stopped waiting (request cancelled); the
        // write stands either way, and a retry is deduplicated.
        let _ = self.reply.send(result);
    }
}

/// Any other write: a closure run inside the batch transaction, answered with its `T`.
pub(super) struct WithConnection<F, T> {
    work: F,
    output: PhantomData<fn() -> T>,
}

impl<F, T> WithConnection<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    pub(super) fn new(work: F) -> Self {
        WithConnection {
            work,
            output: PhantomData,
        }
    }
}

impl<F, T> Write for WithConnection<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    type Output = T;

    fn run(self, conn: &Connection) -> Result<T, StoreError> {
        (self.work)(conn)
    }
}

/// The alerts of one notification, to journal.
pub(super) struct Ingest {
    pub alerts: Vec<Alert>,
    pub received_at: DateTime<Utc>,
}

impl Write for Ingest {
    type Output = Vec<Ingested>;

    fn run(self, conn: &Connection) -> Result<Vec<Ingested>, StoreError> {
        ingest(conn, &self.alerts, self.received_at).map_err(unavailable)
    }
}

/// Proves the writer thread is alive and its connection answers.
pub(super) struct Ping;

impl Write for Ping {
    type Output = ();

    fn run(self, conn: &Connection) -> Result<(), StoreError> {
        conn.query_row("SELECT 1", [], |_| Ok(()))
            .map_err(unavailable)
    }
}

/// Holds the writer inside its current batch (after signalling `entered`) until
/// `release` fires, so tests can queue operations and know they share the next batch.
#[cfg(test)]
pub(super) struct Gate {
    pub entered: oneshot::Sender<()>,
    pub release: oneshot::Receiver<()>,
}

#[cfg(test)]
impl Write for Gate {
    type Output = ();

    fn run(self, _conn: &Connection) -> Result<(), StoreError> {
        let _ = self.entered.send(());
        let _ = self.release.blocking_recv();
        Ok(())
    }
}

/// Kills the writer thread, to test that callers then get `Unavailable`.
#[cfg(test)]
pub(super) struct Crash;

#[cfg(test)]
impl Write for Crash {
    type Output = ();

    fn run(self, _conn: &Connection) -> Result<(), StoreError> {
        panic!("writer crash requested by a test")
    }
}

/// A state transition with the plan that justifies it, prepared by the caller so the
/// writer thread only runs SQL.
pub(super) struct PlanChange {
    pub id: IncidentId,
    /// The plan's target (inventory name), kept in its own column.
    pub target: Option<String>,
    pub from: State,
    pub to: State,
    pub plan_json: String,
    pub reason: Option<String>,
    pub event: Event,
    pub at: DateTime<Utc>,
}

impl Write for PlanChange {
    type Output = ();

    fn run(self, conn: &Connection) -> Result<(), StoreError> {
        record_plan(conn, &self)
    }
}

/// One journal event for an incident; when `to` is set, also a state change that only
/// happens if the incident is in `expect` (checked in the same transaction).
pub(super) struct JournalChange {
    pub id: IncidentId,
    /// The writing replica (0: not a replica), for the fence on running incidents.
    pub me: i64,
    pub expect: Option<State>,
    pub to: Option<State>,
    /// Replaces the incident's reason when set.
    pub reason: Option<String>,
    pub event: Event,
    pub at: DateTime<Utc>,
}

impl Write for JournalChange {
    type Output = ();

    fn run(self, conn: &Connection) -> Result<(), StoreError> {
        journal_change(conn, &self)
    }
}

pub(super) fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// The writer thread's body. Returns when every `Sender` is gone and the queue is
/// drained, so dropping the store finishes the work already accepted.
pub(super) fn run(
    mut conn: Connection,
    mut requests: mpsc::Receiver<WriteOp>,
    commits: Arc<AtomicU64>,
) {
    while let Some(first) = requests.blocking_recv() {
        // Block for one operation, then take whatever queued up meanwhile: under load
        // the queue fills while the previous commit's fsync runs, and they all share
        // the next one.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch, &commits);
    }
    tracing::debug!("store writer stopped");
}

fn commit_batch(conn: &mut Connection, batch: Vec<WriteOp>, commits: &AtomicU64) {
    let operations = batch.len();
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let message = format!("cannot begin transaction: {e}");
            tracing::error!(error = %message, operations, "store batch not committed");
            for op in batch {
                op.answer(Some(&message));
            }
            return;
        }
    };
    let mut pending = Vec::with_capacity(operations);
    let mut lost: Option<String> = None;
    for mut op in batch {
        if lost.is_some() {
            // Not run: answered with the batch's failure below.
            pending.push(op);
            continue;
        }
        // A savepoint per operation: one that fails (a lost state race, a bad row)
        // is rolled back alone and the rest of the batch still commits.
        let savepoint = match tx.savepoint() {
            Ok(savepoint) => savepoint,
            Err(e) => {
                lost = Some(format!("cannot open savepoint: {e}"));
                pending.push(op);
                continue;
            }
        };
        if op.execute(&savepoint) {
            drop(savepoint); // rolls back to the savepoint
            // Some errors (I/O, disk full) make SQLite roll back the whole
            // transaction; later statements would then run in autocommit mode and
            // become durable behind our back. Stop the batch instead.
            if tx.is_autocommit() {
                lost = Some("SQLite rolled back the transaction after an error".to_owned());
            }
        } else if let Err(e) = savepoint.commit() {
            lost = Some(format!("cannot release savepoint: {e}"));
        }
        pending.push(op);
    }
    let failure = match lost {
        // Dropping the transaction rolls it back.
        Some(message) => Some(message),
        None => match tx.commit() {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => Some(format!("commit failed: {e}")),
        },
    };
    if let Some(message) = &failure {
        tracing::error!(error = %message, operations, "store batch not committed");
    }
    for op in pending {
        op.answer(failure.as_deref());
    }
}

/// Journal one notification's alerts. Runs inside the batch transaction; alerts are
/// applied in order, so two copies of one key in the same call behave like two calls.
fn ingest(
    conn: &Connection,
    alerts: &[Alert],
    received_at: DateTime<Utc>,
) -> rusqlite::Result<Vec<Ingested>> {
    let received = time_text(received_at);
    alerts
        .iter()
        .map(|alert| ingest_one(conn, alert, &received))
        .collect()
}

/// An incident an alert belongs to, as the lookup found it.
#[derive(Clone)]
struct Known {
    id: IncidentId,
    status: String,
    state: String,
    starts_at: String,
}

/// Where one alert goes: an existing incident (taking the alert's `startsAt` when the
/// incident's start was assumed or it is firing again), or a new incident.
enum Destination {
    Existing(Known, Option<String>),
    New { starts_at: String, assumed: bool },
}

const KNOWN_COLUMNS: &str = "id, alert_status, state, starts_at";

fn known(row: &rusqlite::Row<'_>) -> rusqlite::Result<Known> {
    Ok(Known {
        id: IncidentId(row.get(0)?),
        status: row.get(1)?,
        state: row.get(2)?,
        starts_at: row.get(3)?,
    })
}

/// The incident key is (fingerprint, startsAt) whatever the source (migration 0005):
/// the fingerprint is computed from the labels, so the same alert through Alertmanager
/// and the generic hook is one incident, and no sender can name another alert's. Every
/// lookup also compares the labels themselves: FNV-1a is no cryptographic hash, and labels
/// crafted to collide with another alert's fingerprint must not join its incident.
fn ingest_one(conn: &Connection, alert: &Alert, received: &str) -> rusqlite::Result<Ingested> {
    let alert_key = AlertKey {
        fingerprint: alert.fingerprint.as_str(),
        labels: json_text(&alert.labels),
    };
    let key = &alert_key;
    let firing = alert.status == AlertStatus::Firing;
    let destination = match alert.starts_at.map(time_text) {
        Some(starts_at) => match find_by_key(conn, key, &starts_at)? {
            Some(found) => Destination::Existing(found, None),
            // The same alert sent earlier without a start (generic), or firing again while
            // its incident waits: the incident takes the monitor's start.
            None => {
                let recent = recent_occurrences(conn, key)?;
                match newest_assumed_open(&recent).or(if firing {
                    waiting_resolved(&recent, Some(&starts_at))
                } else {
                    None
                }) {
                    Some(found) => Destination::Existing(found, Some(starts_at)),
                    None => Destination::New {
                        starts_at,
                        assumed: false,
                    },
                }
            }
        },
        // Without a start the alert belongs to the open occurrence of its fingerprint.
        None => {
            let recent = recent_occurrences(conn, key)?;
            match newest_open(&recent).or(if firing {
                waiting_resolved(&recent, None)
            } else {
                None
            }) {
                Some(found) => Destination::Existing(found, None),
                None => Destination::New {
                    starts_at: received.to_owned(),
                    assumed: true,
                },
            }
        }
    };
    match destination {
        Destination::New { starts_at, assumed } => {
            create(conn, alert, &key.labels, &starts_at, assumed, received)
        }
        Destination::Existing(found, new_start) => {
            update(conn, &found, new_start.as_deref(), alert, received)
        }
    }
}

/// What identifies an alert: its fingerprint, and (against collisions) its labels as stored.
struct AlertKey<'a> {
    fingerprint: &'a str,
    labels: String,
}

impl AlertKey<'_> {
    /// Whether the row's `labels` column (at `index`) is this alert's. Compared here rather
    /// than in the WHERE clause: the lookups then bind only the fingerprint and start, and
    /// SQLite keeps their prepared plans (with the labels in the WHERE, every execution
    /// re-prepared the statement: `sqlite3Reprepare` in a profile of the writer).
    fn same_labels(&self, row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<bool> {
        Ok(row
            .get_ref(index)?
            .as_str()
            .map_err(rusqlite::Error::from)?
            == self.labels)
    }
}

fn find_by_key(
    conn: &Connection,
    key: &AlertKey<'_>,
    starts_at: &str,
) -> rusqlite::Result<Option<Known>> {
    // No ORDER BY on the hot path: SQLite marks such a plan as depending on the bound
    // values, and rusqlite's statement cache then re-prepares it on every use (measured: a
    // quarter of the writer's time). Rows of one key are few; the keyed row, then the
    // newest, is picked here, from a bounded number of rows.
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {KNOWN_COLUMNS}, labels, keyed FROM incidents
         WHERE fingerprint = ?1 AND starts_at = ?2 LIMIT {RECENT_OCCURRENCES}"
    ))?;
    let mut rows = statement.query(params![key.fingerprint, starts_at])?;
    let mut best: Option<(bool, Known)> = None;
    while let Some(row) = rows.next()? {
        if !key.same_labels(row, 4)? {
            continue;
        }
        let keyed: bool = row.get(5)?;
        let found = known(row)?;
        let better = match &best {
            None => true,
            Some((best_keyed, best_found)) => (keyed, found.id.0) > (*best_keyed, best_found.id.0),
        };
        if better {
            best = Some((keyed, found));
        }
    }
    Ok(best.map(|(_, found)| found))
}

/// Whether any incident has this fingerprint: a new alert (the common case at intake)
/// needs none of the occurrence lookups below, which sort.
fn fingerprint_seen(conn: &Connection, key: &AlertKey<'_>) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM incidents WHERE fingerprint = ?1 LIMIT 1")?
        .exists(params![key.fingerprint])
}

/// How many of an alert's newest occurrences the open/waiting lookups look at (and at most
/// four times as many rows of its fingerprint are read for them). One index
/// range read, however many occurrences a sender piled up under one fingerprint (a
/// hostile sender repeating one alert with ten thousand starts must not make every later
/// intake of it walk ten thousand rows); an open occurrence older than that many newer
/// ones of the same alert is not joined, and the alert opens a new incident instead.
const RECENT_OCCURRENCES: i64 = 16;

/// The alert's newest occurrences (newest start first; at a tie the keyed row, then the
/// newest), with the two flags the lookups need.
fn recent_occurrences(conn: &Connection, key: &AlertKey<'_>) -> rusqlite::Result<Vec<Recent>> {
    if !fingerprint_seen(conn, key)? {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {KNOWN_COLUMNS}, start_assumed, labels FROM incidents WHERE fingerprint = ?1
         ORDER BY starts_at DESC, keyed DESC, id DESC"
    ))?;
    let mut rows = statement.query(params![key.fingerprint])?;
    let mut recent = Vec::new();
    // Rows of colliding alerts (same fingerprint, other labels) are skipped, and the walk
    // is bounded too: crafted collisions cannot make it long either.
    let mut examined = 0;
    while recent.len() < RECENT_OCCURRENCES as usize
        && examined < 4 * RECENT_OCCURRENCES
        && let Some(row) = rows.next()?
    {
        examined += 1;
        if key.same_labels(row, 5)? {
            recent.push(Recent {
                known: known(row)?,
                start_assumed: row.get(4)?,
            });
        }
    }
    Ok(recent)
}

/// One of an alert's recent occurrences.
struct Recent {
    known: Known,
    start_assumed: bool,
}

/// The newest firing occurrence.
fn newest_open(recent: &[Recent]) -> Option<Known> {
    recent
        .iter()
        .find(|row| row.known.status == AlertStatus::Firing.as_str())
        .map(|row| row.known.clone())
}

/// The newest firing occurrence whose start salve assumed (the sender gave none).
fn newest_assumed_open(recent: &[Recent]) -> Option<Known> {
    recent
        .iter()
        .find(|row| row.start_assumed && row.known.status == AlertStatus::Firing.as_str())
        .map(|row| row.known.clone())
}

/// The newest occurrence, if its alert resolved before anything ran (`received` or
/// `matched`: still waiting to be planned or for its host) and, when the new alert has a
/// start, that start is later (an older occurrence's late copy must not reopen it).
/// Firing again, the alert takes this incident's place in the queue instead of ending it
/// `resolved_before_run` and queueing a second one behind it.
fn waiting_resolved(recent: &[Recent], starting_after: Option<&str>) -> Option<Known> {
    recent.first().map(|row| &row.known).and_then(|found| {
        (found.status == AlertStatus::Resolved.as_str()
            && (found.state == State::Received.as_str() || found.state == State::Matched.as_str())
            && starting_after.is_none_or(|start| found.starts_at.as_str() < start))
        .then(|| found.clone())
    })
}

fn create(
    conn: &Connection,
    alert: &Alert,
    labels: &str,
    starts_at: &str,
    start_assumed: bool,
    received: &str,
) -> rusqlite::Result<Ingested> {
    let resolved = alert.status == AlertStatus::Resolved;
    // An alert first seen already resolved (salve was down while it fired) is still
    // journaled: it happened. It resolved, as far as salve knows, when it arrived.
    let resolved_at = resolved.then_some(received);
    let ends_at = alert.ends_at.map(time_text);
    conn.prepare_cached(
        "INSERT INTO incidents (source, fingerprint, starts_at, alertname, alert_status,
             ends_at, resolved_at, labels, annotations, generator_url, external_url,
             state, reason, plan, first_seen, last_seen, receive_count, start_assumed, keyed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL, NULL, ?13, ?13, 1, ?14,
             NOT EXISTS (SELECT 1 FROM incidents
                         WHERE fingerprint = ?2 AND starts_at = ?3 AND keyed = 1))",
    )?
    .execute(params![
        alert.source.as_str(),
        alert.fingerprint.as_str(),
        starts_at,
        alert.alertname(),
        alert.status.as_str(),
        ends_at,
        resolved_at,
        labels,
        json_text(&alert.annotations),
        alert.generator_url,
        alert.external_url,
        State::Received.as_str(),
        received,
        start_assumed,
    ])?;
    let id = IncidentId(conn.last_insert_rowid());
    let event = Event::Received {
        status: alert.status,
        received_at: parse_time(0, received)?,
    };
    journal(conn, id, received, &event)?;
    Ok(Ingested {
        id,
        created: true,
        resolved_now: false,
    })
}

fn update(
    conn: &Connection,
    found: &Known,
    new_start: Option<&str>,
    alert: &Alert,
    received: &str,
) -> rusqlite::Result<Ingested> {
    let id = found.id;
    // MAX: concurrent notifications may commit out of receive order; last_seen must
    // not move backwards. Fixed-width times make the text MAX the time MAX. The count
    // stops at i64::MAX: past it SQLite would make it a REAL the STRICT column refuses,
    // and every later copy of the alert would fail to store.
    conn.prepare_cached(
        "UPDATE incidents SET last_seen = MAX(last_seen, ?2),
             receive_count = receive_count + (receive_count < 9223372036854775807)
         WHERE id = ?1",
    )?
    .execute(params![id.0, received])?;
    if let Some(starts_at) = new_start {
        // find_by_key found no row of this alert with this start; a colliding alert's
        // keyed row may exist, and then this one steps out of the unique key.
        conn.prepare_cached(
            "UPDATE incidents SET starts_at = ?2, start_assumed = 0,
                 keyed = NOT EXISTS (SELECT 1 FROM incidents AS other
                                     WHERE other.fingerprint = incidents.fingerprint
                                       AND other.starts_at = ?2 AND other.keyed = 1
                                       AND other.id != incidents.id)
             WHERE id = ?1",
        )?
        .execute(params![id.0, starts_at])?;
    }
    let new_start_event = match new_start {
        Some(starts_at) => Some(NewStart {
            starts_at: parse_time(0, starts_at)?,
            previous_starts_at: parse_time(0, &found.starts_at)?,
        }),
        None => None,
    };
    let mut resolved_now = false;
    match (AlertStatus::parse(&found.status), alert.status) {
        (Some(AlertStatus::Firing), AlertStatus::Resolved) => {
            let ends_at = alert.ends_at.map(time_text);
            conn.prepare_cached(
                "UPDATE incidents SET alert_status = 'resolved', resolved_at = ?2, ends_at = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id.0, received, ends_at])?;
            let event = Event::Resolved {
                ends_at: alert.ends_at,
                received_at: parse_time(0, received)?,
            };
            journal(conn, id, received, &event)?;
            resolved_now = true;
        }
        (Some(AlertStatus::Resolved), AlertStatus::Firing) => {
            // Same alert firing again before anything ran for it (a resolve raced a
            // re-send, the monitor re-fired within its resolve timeout, or it fired anew
            // while the incident waited for its host): the row shows the current truth,
            // the journal keeps the history.
            conn.prepare_cached(
                "UPDATE incidents SET alert_status = 'firing', resolved_at = NULL, ends_at = NULL
                 WHERE id = ?1",
            )?
            .execute(params![id.0])?;
            let event = Event::Refired {
                received_at: parse_time(0, received)?,
                new_start: new_start_event,
            };
            journal(conn, id, received, &event)?;
        }
        // A re-send with an unchanged status only counts; a start learnt is journaled.
        _ => {
            if let Some(start) = new_start_event {
                let source = alert.source;
                journal(conn, id, received, &Event::StartKnown { start, source })?;
            }
        }
    }
    Ok(Ingested {
        id,
        created: false,
        resolved_now,
    })
}

/// The incident's current state, `NotFound` when there is no such incident.
fn current_state(conn: &Connection, id: IncidentId) -> Result<State, StoreError> {
    let found: Option<String> = conn
        .prepare_cached("SELECT state FROM incidents WHERE id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row(params![id.0], |row| row.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    match found {
        None => Err(StoreError::NotFound(id)),
        Some(text) => state_from_text(0, &text).map_err(unavailable),
    }
}

pub(super) fn expect_state(
    conn: &Connection,
    id: IncidentId,
    expected: State,
) -> Result<(), StoreError> {
    let found = current_state(conn, id)?;
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

fn journal_change(conn: &Connection, change: &JournalChange) -> Result<(), StoreError> {
    let state = match change.expect {
        Some(expected) => {
            expect_state(conn, change.id, expected)?;
            expected
        }
        None => current_state(conn, change.id)?,
    };
    super::replicas::check_owner(conn, change.me, change.id, state, change.at)?;
    // Checked in the same transaction as the write: an alert that fired again after the
    // remediator read it resolved is run, never closed as resolved.
    if change.to == Some(State::ResolvedBeforeRun) && alert_firing(conn, change.id)? {
        return Err(StoreError::AlertFiring(change.id));
    }
    let at = time_text(change.at);
    let write = || -> rusqlite::Result<()> {
        if let Some(to) = change.to {
            conn.prepare_cached("UPDATE incidents SET state = ?2 WHERE id = ?1")?
                .execute(params![change.id.0, to.as_str()])?;
        }
        if let Some(reason) = &change.reason {
            conn.prepare_cached("UPDATE incidents SET reason = ?2 WHERE id = ?1")?
                .execute(params![change.id.0, reason])?;
        }
        journal(conn, change.id, &at, &change.event)
    };
    write().map_err(unavailable)
}

fn alert_firing(conn: &Connection, id: IncidentId) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT alert_status = 'firing' FROM incidents WHERE id = ?1")
        .and_then(|mut statement| statement.query_row(params![id.0], |row| row.get(0)))
        .map_err(unavailable)
}

fn record_plan(conn: &Connection, change: &PlanChange) -> Result<(), StoreError> {
    expect_state(conn, change.id, change.from)?;
    let at = time_text(change.at);
    let write = || -> rusqlite::Result<()> {
        conn.prepare_cached(
            "UPDATE incidents SET state = ?2, reason = ?3, plan = ?4, target = ?5 WHERE id = ?1",
        )?
        .execute(params![
            change.id.0,
            change.to.as_str(),
            change.reason,
            change.plan_json,
            change.target
        ])?;
        journal(conn, change.id, &at, &change.event)
    };
    write().map_err(unavailable)
}

pub(super) fn journal(
    conn: &Connection,
    id: IncidentId,
    at: &str,
    event: &Event,
) -> rusqlite::Result<()> {
    let (kind, detail) = event.to_row();
    conn.prepare_cached(
        "INSERT INTO events (incident_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id.0, at, kind, detail.to_string()])?;
    Ok(())
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps of strings always serialise to JSON")
}
