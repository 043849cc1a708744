//! Intake's group commit on PostgreSQL: one task takes every ingest queued while the last
//! transaction committed and journals them all in one transaction (a savepoint per
//! request, so one bad request fails alone), then answers each caller after the commit.
//! It never answers success before the commit holding the request's writes returned.
//!
//! Other replicas ingest the same alerts at the same time (Alertmanager HA sends each copy
//! to every replica). Before touching a fingerprint a batch takes a transaction-level
//! advisory lock on it, for all its fingerprints at once in key order (no deadlock
//! between batches), so the lookups below see every committed occurrence of the alert and
//! nobody else writes one until this batch commits. The unique index `incidents_key` is
//! the backstop: a second keyed row for one (fingerprint, startsAt) fails, never commits.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};

use super::core::{NO_SEQ_SCANS, execute, journal};
use super::rows::{get, time_text};
use super::{get as pooled, pg_error};
use crate::alert::{Alert, AlertStatus};
use crate::incident::event::NewStart;
use crate::incident::{Event, IncidentId, State};
use crate::store::{Ingested, StoreError, parse_time_text};

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

/// Start the writer task; it ends when every sender is dropped (the store with it) and
/// the queue is drained, so ingests already accepted still commit.
pub(super) fn start(pool: Pool, commits: Arc<AtomicU64>) -> mpsc::Sender<IngestRequest> {
    let (requests, mut queue) = mpsc::channel::<IngestRequest>(4 * MAX_BATCH);
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            // Wait for one request, then take whatever queued meanwhile: under load the
            // queue fills while the previous commit waits for the server's fsync, and
            // they all share the next one.
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            commit_batch(&pool, batch, &commits).await;
        }
        tracing::debug!("store writer stopped (PostgreSQL)");
    });
    requests
}

/// Journal `batch` in one transaction and answer each request: its own result after the
/// commit, or `Unavailable` for all when the transaction did not commit.
async fn commit_batch(pool: &Pool, batch: Vec<IngestRequest>, commits: &AtomicU64) {
    let requests = batch.len();
    match journal_batch(pool, &batch).await {
        Ok(results) => {
            commits.fetch_add(1, Ordering::Relaxed);
            for (request, result) in batch.into_iter().zip(results) {
                // A send fails only when the caller stopped waiting; the write stands,
                // and a retry is deduplicated.
                let _ = request.reply.send(result);
            }
        }
        Err(error) => {
            let message = match error {
                StoreError::Unavailable(message) => message,
                other => other.to_string(),
            };
            tracing::error!(error = %message, requests, "store batch not committed (PostgreSQL)");
            for request in batch {
                let _ = request
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

/// The batch's transaction: each request's result, valid only once this returns `Ok`
/// (the commit returned).
async fn journal_batch(
    pool: &Pool,
    batch: &[IngestRequest],
) -> Result<Vec<Result<Vec<Ingested>, StoreError>>, StoreError> {
    let mut client = pooled(pool).await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let mut seen = lock_fingerprints(&tx, batch).await?;
    let mut results = Vec::with_capacity(batch.len());
    // Requests before this index go one by one: a set insert of theirs failed.
    let mut one_by_one_until = 0;
    while results.len() < batch.len() {
        let rest = &batch[results.len()..];
        let new = all_new(rest, &seen);
        if new > 1 && results.len() >= one_by_one_until {
            if journal_new(&tx, &rest[..new], &mut results).await? {
                // From now on these fingerprints are seen.
                seen.extend(
                    rest[..new]
                        .iter()
                        .flat_map(|request| &request.alerts)
                        .map(|alert| alert.fingerprint.as_str().to_owned()),
                );
            } else {
                one_by_one_until = results.len() + new;
            }
            continue;
        }
        let request = &rest[0];
        // A savepoint per request: one that fails (a bad row, a constraint) is rolled
        // back alone and the rest of the batch still commits. Savepoints are not
        // released (that would cost a round trip each): the next one of the same name
        // stacks on it, and a rollback goes back to the newest. The savepoint goes out
        // pipelined with the request's first statement, which the server runs after it.
        let (savepoint, result) = tokio::join!(
            tx.batch_execute("SAVEPOINT ingest"),
            ingest(&tx, &mut seen, &request.alerts, request.received_at)
        );
        // A failing savepoint command means the connection or the transaction is gone:
        // the batch fails.
        savepoint.map_err(pg_error)?;
        if result.is_err() {
            tx.batch_execute("ROLLBACK TO SAVEPOINT ingest")
                .await
                .map_err(pg_error)?;
        }
        results.push(result);
    }
    tx.commit().await.map_err(|e| match pg_error(e) {
        StoreError::Unavailable(why) => StoreError::Unavailable(format!("commit failed: {why}")),
        other => other,
    })?;
    Ok(results)
}

/// How many of `requests`, from the first, hold only alerts of fingerprints no incident
/// has, each fingerprint once: every alert of theirs is a new incident.
fn all_new(requests: &[IngestRequest], seen: &HashSet<String>) -> usize {
    let mut taken = HashSet::new();
    requests
        .iter()
        .take_while(|request| {
            !request.alerts.is_empty()
                && request.alerts.iter().all(|alert| {
                    let fingerprint = alert.fingerprint.as_str();
                    !seen.contains(fingerprint) && taken.insert(fingerprint)
                })
        })
        .count()
}

/// Journal requests whose alerts are all new (`all_new`) with one statement: every
/// incident and its `received` entry, set-based (a few round trips for the whole run of
/// requests instead of two per alert). `false` when it failed: rolled back to its
/// savepoint, nothing answered; the caller then takes these requests one by one, so the
/// bad one answers its own error and the others still commit.
async fn journal_new(
    tx: &deadpool_postgres::Transaction<'_>,
    requests: &[IngestRequest],
    results: &mut Vec<Result<Vec<Ingested>, StoreError>>,
) -> Result<bool, StoreError> {
    let create = tx.prepare_cached(CREATE_MANY).await.map_err(pg_error)?;
    let mut columns = NewColumns::default();
    let mut sizes = Vec::with_capacity(requests.len());
    for request in requests {
        let received = time_text(request.received_at);
        for alert in &request.alerts {
            let (starts_at, assumed) = match alert.starts_at {
                Some(starts_at) => (time_text(starts_at), false),
                None => (received.clone(), true),
            };
            let new = NewIncident::new(
                alert,
                json_text(&alert.labels),
                starts_at,
                assumed,
                &received,
            )?;
            columns.push(&new);
        }
        sizes.push(request.alerts.len());
    }
    let (savepoint, rows) = tokio::join!(
        tx.batch_execute("SAVEPOINT ingest"),
        columns.insert(tx, &create)
    );
    savepoint.map_err(pg_error)?;
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => {
            tracing::debug!(error = %pg_error(error), "set insert failed; one request at a time");
            tx.batch_execute("ROLLBACK TO SAVEPOINT ingest")
                .await
                .map_err(pg_error)?;
            return Ok(false);
        }
    };
    // The rows come back with their position in the input.
    let mut ids = vec![0i64; columns.len()];
    for row in &rows {
        let position: i64 = get(row, 1)?;
        let slot = usize::try_from(position)
            .ok()
            .and_then(|position| ids.get_mut(position))
            .ok_or_else(|| StoreError::Unavailable(format!("set insert: position {position}")))?;
        *slot = get(row, 0)?;
    }
    let mut next = ids.into_iter();
    for size in sizes {
        results.push(Ok(next
            .by_ref()
            .take(size)
            .map(|id| Ingested {
                id: IncidentId(id),
                created: true,
                resolved_now: false,
            })
            .collect()));
    }
    Ok(true)
}

/// `CREATE` for many alerts at once, from arrays (one element per alert, by position).
/// Every row is keyed: no incident has these fingerprints (read under their locks), and
/// each is once in the input. No lookup of `incidents` here: a cached plan made when the
/// table was small would scan it whole for each row as it grows.
const CREATE_MANY: &str = "WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
             $12::text[], $13::bigint[], $14::text[], $15::text[])
             WITH ORDINALITY AS i(source, fingerprint, starts_at, alertname, alert_status,
                 ends_at, resolved_at, labels, annotations, generator_url, external_url,
                 received, start_assumed, kind, detail, position)),
     new AS (
         INSERT INTO incidents (source, fingerprint, starts_at, alertname, alert_status,
             ends_at, resolved_at, labels, annotations, generator_url, external_url,
             state, reason, plan, first_seen, last_seen, receive_count, start_assumed,
             keyed)
         SELECT source, fingerprint, starts_at, alertname, alert_status, ends_at,
             resolved_at, labels, annotations, generator_url, external_url, 'received',
             NULL, NULL, received, received, 1, start_assumed, 1
         FROM input ORDER BY position
         RETURNING id, fingerprint),
     journaled AS (
         INSERT INTO events (incident_id, at, kind, detail)
         SELECT new.id, input.received, input.kind, input.detail
         FROM new JOIN input USING (fingerprint)
         ORDER BY new.id)
     SELECT new.id, input.position - 1 FROM new JOIN input USING (fingerprint)";

/// `CREATE_MANY`'s parameters: one array per column.
#[derive(Default)]
struct NewColumns {
    source: Vec<String>,
    fingerprint: Vec<String>,
    starts_at: Vec<String>,
    alertname: Vec<Option<String>>,
    alert_status: Vec<String>,
    ends_at: Vec<Option<String>>,
    resolved_at: Vec<Option<String>>,
    labels: Vec<String>,
    annotations: Vec<String>,
    generator_url: Vec<Option<String>>,
    external_url: Vec<Option<String>>,
    received: Vec<String>,
    start_assumed: Vec<i64>,
    kind: Vec<String>,
    detail: Vec<String>,
}

impl NewColumns {
    fn len(&self) -> usize {
        self.fingerprint.len()
    }

    fn push(&mut self, new: &NewIncident<'_>) {
        let alert = new.alert;
        self.source.push(alert.source.as_str().to_owned());
        self.fingerprint.push(alert.fingerprint.as_str().to_owned());
        self.starts_at.push(new.starts_at.clone());
        self.alertname.push(alert.alertname().map(str::to_owned));
        self.alert_status.push(alert.status.as_str().to_owned());
        self.ends_at.push(new.ends_at.clone());
        self.resolved_at.push(new.resolved_at.clone());
        self.labels.push(new.labels.clone());
        self.annotations.push(new.annotations.clone());
        self.generator_url.push(alert.generator_url.clone());
        self.external_url.push(alert.external_url.clone());
        self.received.push(new.received.clone());
        self.start_assumed.push(new.start_assumed);
        self.kind.push(new.kind.clone());
        self.detail.push(new.detail.clone());
    }

    async fn insert(
        &self,
        client: &impl GenericClient,
        statement: &tokio_postgres::Statement,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        client
            .query(
                statement,
                &[
                    &self.source,
                    &self.fingerprint,
                    &self.starts_at,
                    &self.alertname,
                    &self.alert_status,
                    &self.ends_at,
                    &self.resolved_at,
                    &self.labels,
                    &self.annotations,
                    &self.generator_url,
                    &self.external_url,
                    &self.received,
                    &self.start_assumed,
                    &self.kind,
                    &self.detail,
                ],
            )
            .await
    }
}

/// Lock every fingerprint of the batch until the commit, in the order of the lock keys
/// (two batches sharing fingerprints then never wait for each other in a cycle; keys that
/// collide are one lock, taken once in that order). Returns the fingerprints some incident
/// has, read after the locks are held: the alerts of the others are new, and need none of
/// the lookups (the common case at intake).
async fn lock_fingerprints(
    client: &impl GenericClient,
    batch: &[IngestRequest],
) -> Result<HashSet<String>, StoreError> {
    let fingerprints: Vec<String> = batch
        .iter()
        .flat_map(|request| &request.alerts)
        .map(|alert| alert.fingerprint.as_str().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // `NO_SEQ_SCANS` goes out first, pipelined with the rest: one round trip for all three.
    // The keys sorted in a subquery, locked in that order by the outer scan.
    let (no_scans, lock, seen) = tokio::join!(
        client.batch_execute(NO_SEQ_SCANS),
        client.prepare_cached(
            "SELECT count(pg_advisory_xact_lock(key)) FROM (
                 SELECT DISTINCT hashtextextended('fingerprint:' || fingerprint, 0) AS key
                 FROM unnest($1::text[]) AS fingerprint
                 ORDER BY key) AS keys",
        ),
        client.prepare_cached(
            "SELECT DISTINCT fingerprint FROM incidents WHERE fingerprint = ANY($1)"
        ),
    );
    no_scans.map_err(pg_error)?;
    let (lock, seen) = (lock.map_err(pg_error)?, seen.map_err(pg_error)?);
    // Pipelined: the server runs the second query after the first, so its snapshot
    // comes after every lock is held.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&fingerprints];
    let (locked, seen) = tokio::join!(
        client.query_one(&lock, &params),
        client.query(&seen, &params),
    );
    locked.map_err(pg_error)?;
    seen.map_err(pg_error)?
        .iter()
        .map(|row| get::<String>(row, 0))
        .collect()
}

/// Journal one notification's alerts, in order, so two copies of one key in the same
/// call behave like two calls.
/// `seen` holds the fingerprints some incident has (or may have: one created by a request
/// rolled back later stays in it, which costs only the lookups).
async fn ingest(
    client: &impl GenericClient,
    seen: &mut HashSet<String>,
    alerts: &[Alert],
    received_at: DateTime<Utc>,
) -> Result<Vec<Ingested>, StoreError> {
    let received = time_text(received_at);
    let mut ingested = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let fingerprint = alert.fingerprint.as_str();
        let one = if seen.contains(fingerprint) {
            ingest_one(client, alert, &received).await?
        } else {
            seen.insert(fingerprint.to_owned());
            // No incident has this fingerprint: a new one, with the start as
            // `ingest_one` would take it.
            let (starts_at, assumed) = match alert.starts_at {
                Some(starts_at) => (time_text(starts_at), false),
                None => (received.clone(), true),
            };
            let labels = json_text(&alert.labels);
            create(client, alert, &labels, &starts_at, assumed, &received).await?
        };
        ingested.push(one);
    }
    Ok(ingested)
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

fn known(row: &tokio_postgres::Row) -> Result<Known, StoreError> {
    Ok(Known {
        id: IncidentId(get(row, 0)?),
        status: get(row, 1)?,
        state: get(row, 2)?,
        starts_at: get(row, 3)?,
    })
}

/// What identifies an alert: its fingerprint, and (against collisions) its labels as stored.
struct AlertKey<'a> {
    fingerprint: &'a str,
    labels: String,
}

impl AlertKey<'_> {
    /// Whether the row's `labels` column (at `index`) is this alert's.
    fn same_labels(&self, row: &tokio_postgres::Row, index: usize) -> Result<bool, StoreError> {
        Ok(get::<&str>(row, index)? == self.labels)
    }
}

/// The incident key is (fingerprint, startsAt) whatever the source: the fingerprint is
/// computed from the labels, so the same alert through Alertmanager and the generic hook
/// is one incident, and no sender can name another alert's. Every lookup also compares
/// the labels themselves: FNV-1a is no cryptographic hash, and labels crafted to collide
/// with another alert's fingerprint must not join its incident. (The SQLite store's
/// `writer.rs` has the same rules, step for step.)
async fn ingest_one(
    client: &impl GenericClient,
    alert: &Alert,
    received: &str,
) -> Result<Ingested, StoreError> {
    let alert_key = AlertKey {
        fingerprint: alert.fingerprint.as_str(),
        labels: json_text(&alert.labels),
    };
    let key = &alert_key;
    let firing = alert.status == AlertStatus::Firing;
    let destination = match alert.starts_at.map(time_text) {
        Some(starts_at) => match find_by_key(client, key, &starts_at).await? {
            Some(found) => Destination::Existing(found, None),
            // The same alert sent earlier without a start (generic), or firing again while
            // its incident waits: the incident takes the monitor's start.
            None => {
                let recent = recent_occurrences(client, key).await?;
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
            let recent = recent_occurrences(client, key).await?;
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
            create(client, alert, &key.labels, &starts_at, assumed, received).await
        }
        Destination::Existing(found, new_start) => {
            update(client, &found, new_start.as_deref(), alert, received).await
        }
    }
}

/// How many of an alert's newest occurrences the open/waiting lookups look at (and at most
/// four times as many rows of its fingerprint are read for them): one bounded index read,
/// however many occurrences a sender piled up under one fingerprint.
const RECENT_OCCURRENCES: i64 = 16;

/// The incident of this alert with this start: the keyed row, else the newest.
async fn find_by_key(
    client: &impl GenericClient,
    key: &AlertKey<'_>,
    starts_at: &str,
) -> Result<Option<Known>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {KNOWN_COLUMNS}, labels, keyed FROM incidents
             WHERE fingerprint = $1 AND starts_at = $2 LIMIT {RECENT_OCCURRENCES}"
        ))
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&statement, &[&key.fingerprint, &starts_at])
        .await
        .map_err(pg_error)?;
    let mut best: Option<(bool, Known)> = None;
    for row in &rows {
        if !key.same_labels(row, 4)? {
            continue;
        }
        let keyed = get::<i64>(row, 5)? != 0;
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

/// One of an alert's recent occurrences.
struct Recent {
    known: Known,
    start_assumed: bool,
}

/// The alert's newest occurrences (newest start first; at a tie the keyed row, then the
/// newest). Rows of colliding alerts (same fingerprint, other labels) are skipped, within
/// a bounded walk.
async fn recent_occurrences(
    client: &impl GenericClient,
    key: &AlertKey<'_>,
) -> Result<Vec<Recent>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {KNOWN_COLUMNS}, start_assumed, labels FROM incidents WHERE fingerprint = $1
             ORDER BY starts_at DESC, keyed DESC, id DESC LIMIT {}",
            4 * RECENT_OCCURRENCES
        ))
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&statement, &[&key.fingerprint])
        .await
        .map_err(pg_error)?;
    let mut recent = Vec::new();
    for row in &rows {
        if recent.len() >= RECENT_OCCURRENCES as usize {
            break;
        }
        if key.same_labels(row, 5)? {
            recent.push(Recent {
                known: known(row)?,
                start_assumed: get::<i64>(row, 4)? != 0,
            });
        }
    }
    Ok(recent)
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
/// `matched`) and, when the new alert has a start, that start is later (an older
/// occurrence's late copy must not reopen it). Firing again, the alert takes this
/// incident's place in the queue instead of queueing a second one behind it.
fn waiting_resolved(recent: &[Recent], starting_after: Option<&str>) -> Option<Known> {
    recent.first().map(|row| &row.known).and_then(|found| {
        (found.status == AlertStatus::Resolved.as_str()
            && (found.state == State::Received.as_str() || found.state == State::Matched.as_str())
            && starting_after.is_none_or(|start| found.starts_at.as_str() < start))
        .then(|| found.clone())
    })
}

/// The row of a new incident and its first journal entry, in one statement.
const CREATE: &str = "WITH new AS (
         INSERT INTO incidents (source, fingerprint, starts_at, alertname, alert_status,
             ends_at, resolved_at, labels, annotations, generator_url, external_url,
             state, reason, plan, first_seen, last_seen, receive_count, start_assumed,
             keyed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL,
             $13, $13, 1, $14,
             CASE WHEN EXISTS (SELECT 1 FROM incidents
                               WHERE fingerprint = $2 AND starts_at = $3 AND keyed = 1)
                  THEN 0 ELSE 1 END)
         RETURNING id)
     INSERT INTO events (incident_id, at, kind, detail)
     SELECT id, $13, $15, $16 FROM new
     RETURNING incident_id";

/// `CREATE`'s parameters for one alert, owned.
struct NewIncident<'a> {
    alert: &'a Alert,
    labels: String,
    annotations: String,
    starts_at: String,
    start_assumed: i64,
    received: String,
    resolved_at: Option<String>,
    ends_at: Option<String>,
    kind: String,
    detail: String,
}

impl<'a> NewIncident<'a> {
    fn new(
        alert: &'a Alert,
        labels: String,
        starts_at: String,
        start_assumed: bool,
        received: &str,
    ) -> Result<NewIncident<'a>, StoreError> {
        let resolved = alert.status == AlertStatus::Resolved;
        let event = Event::Received {
            status: alert.status,
            received_at: parse_time(received)?,
        };
        let (kind, detail) = event.to_row();
        Ok(NewIncident {
            alert,
            labels,
            annotations: json_text(&alert.annotations),
            starts_at,
            start_assumed: i64::from(start_assumed),
            received: received.to_owned(),
            // An alert first seen already resolved (salve was down while it fired) is
            // still journaled: it happened. It resolved, as far as salve knows, when it
            // arrived.
            resolved_at: resolved.then(|| received.to_owned()),
            ends_at: alert.ends_at.map(time_text),
            kind,
            detail: detail.to_string(),
        })
    }

    /// Run `CREATE` (prepared as `statement`) for this alert.
    async fn insert(
        &self,
        client: &impl GenericClient,
        statement: &tokio_postgres::Statement,
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        let alert = self.alert;
        client
            .query_one(
                statement,
                &[
                    &alert.source.as_str(),
                    &alert.fingerprint.as_str(),
                    &self.starts_at,
                    &alert.alertname(),
                    &alert.status.as_str(),
                    &self.ends_at,
                    &self.resolved_at,
                    &self.labels,
                    &self.annotations,
                    &alert.generator_url,
                    &alert.external_url,
                    &State::Received.as_str(),
                    &self.received,
                    &self.start_assumed,
                    &self.kind,
                    &self.detail,
                ],
            )
            .await
    }
}

fn created(row: &tokio_postgres::Row) -> Result<Ingested, StoreError> {
    Ok(Ingested {
        id: IncidentId(get(row, 0)?),
        created: true,
        resolved_now: false,
    })
}

async fn create(
    client: &impl GenericClient,
    alert: &Alert,
    labels: &str,
    starts_at: &str,
    start_assumed: bool,
    received: &str,
) -> Result<Ingested, StoreError> {
    let new = NewIncident::new(
        alert,
        labels.to_owned(),
        starts_at.to_owned(),
        start_assumed,
        received,
    )?;
    let statement = client.prepare_cached(CREATE).await.map_err(pg_error)?;
    let row = new.insert(client, &statement).await.map_err(pg_error)?;
    created(&row)
}

async fn update(
    client: &impl GenericClient,
    found: &Known,
    new_start: Option<&str>,
    alert: &Alert,
    received: &str,
) -> Result<Ingested, StoreError> {
    let id = found.id;
    // GREATEST: concurrent notifications may commit out of receive order; last_seen must
    // not move backwards (fixed-width times: the text order is the time order). The
    // count stops at i64::MAX rather than fail every later copy of the alert.
    execute(
        client,
        "UPDATE incidents SET last_seen = GREATEST(last_seen, $2),
             receive_count = receive_count
                 + CASE WHEN receive_count < 9223372036854775807 THEN 1 ELSE 0 END
         WHERE id = $1",
        &[&id.0, &received],
    )
    .await?;
    if let Some(starts_at) = new_start {
        // find_by_key found no row of this alert with this start; a colliding alert's
        // keyed row may exist, and then this one steps out of the unique key.
        execute(
            client,
            "UPDATE incidents SET starts_at = $2, start_assumed = 0,
                 keyed = CASE WHEN EXISTS (SELECT 1 FROM incidents AS other
                                           WHERE other.fingerprint = incidents.fingerprint
                                             AND other.starts_at = $2 AND other.keyed = 1
                                             AND other.id <> incidents.id)
                              THEN 0 ELSE 1 END
             WHERE id = $1",
            &[&id.0, &starts_at],
        )
        .await?;
    }
    let new_start_event = match new_start {
        Some(starts_at) => Some(NewStart {
            starts_at: parse_time(starts_at)?,
            previous_starts_at: parse_time(&found.starts_at)?,
        }),
        None => None,
    };
    let mut resolved_now = false;
    match (AlertStatus::parse(&found.status), alert.status) {
        (Some(AlertStatus::Firing), AlertStatus::Resolved) => {
            let ends_at = alert.ends_at.map(time_text);
            execute(
                client,
                "UPDATE incidents SET alert_status = 'resolved', resolved_at = $2, ends_at = $3
                 WHERE id = $1",
                &[&id.0, &received, &ends_at],
            )
            .await?;
            let event = Event::Resolved {
                ends_at: alert.ends_at,
                received_at: parse_time(received)?,
            };
            journal(client, id, received, &event).await?;
            resolved_now = true;
        }
        (Some(AlertStatus::Resolved), AlertStatus::Firing) => {
            // Same alert firing again before anything ran for it: the row shows the
            // current truth, the journal keeps the history.
            execute(
                client,
                "UPDATE incidents SET alert_status = 'firing', resolved_at = NULL, ends_at = NULL
                 WHERE id = $1",
                &[&id.0],
            )
            .await?;
            let event = Event::Refired {
                received_at: parse_time(received)?,
                new_start: new_start_event,
            };
            journal(client, id, received, &event).await?;
        }
        // A re-send with an unchanged status only counts; a start learnt is journaled.
        _ => {
            if let Some(start) = new_start_event {
                let source = alert.source;
                journal(client, id, received, &Event::StartKnown { start, source }).await?;
            }
        }
    }
    Ok(Ingested {
        id,
        created: false,
        resolved_now,
    })
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_time_text(text).map_err(StoreError::Unavailable)
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps of strings always serialise to JSON")
}
