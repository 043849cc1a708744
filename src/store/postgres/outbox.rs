//! Escalations: claiming incidents to escalate, the outbox and its digests, follow-ups.
//! A row being delivered is claimed by one replica at a time (`claimed_by`,
//! `claimed_until` on the server's clock); an incident being escalated is owned by one
//! replica (`incidents.owner`). Never decides policy: which channels, when to digest and
//! whether a page gets a follow-up are the engine's calls.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::incident::event::InDigest;
use crate::incident::{EscalationReason, Event, Incident, IncidentId, State};
use crate::store::{FollowUpCandidate, FollowUpCause, FollowUpItem, OutboxItem, StoreError};

use super::core::{journal, now_text};
use super::replicas::LIVE_REPLICAS;
use super::rows::{
    INCIDENT_COLUMNS, bad_row, get, incidents_from_rows, json_column, sql_limit, time_text,
};
use super::{PgStore, pg_error};

/// How long a claim on an outbox or follow-up row lasts: longer than any delivery (each
/// is bounded), short enough that a row whose replica stalled is soon delivered by another.
const CLAIM_FOR: &str = "interval '2 minutes'";

/// SQL condition on a row with `claimed_by`/`claimed_until`: this replica (`$1`) may take
/// it — nobody claimed it, this replica did, the claim ran out, or its replica is not live.
fn claimable() -> String {
    format!(
        "(claimed_by IS NULL OR claimed_by = $1 OR claimed_until IS NULL
          OR claimed_until <= now() OR claimed_by NOT IN ({LIVE_REPLICAS}))"
    )
}

/// Every state that pages a human, as in `sqlite/outbox.rs`.
fn escalating_states() -> Vec<&'static str> {
    State::ALL
        .iter()
        .filter(|state| state.escalation_reason().is_some())
        .map(|state| state.as_str())
        .collect()
}

pub(super) async fn incidents_to_escalate(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let client = store.client().await?;
    // Owned by this replica until escalated: another live replica skips them (and those
    // it is claiming right now, SKIP LOCKED); a dead owner's are taken over.
    let rows = client
        .query(
            &format!(
                "UPDATE incidents SET owner = $1 WHERE id IN (
                     SELECT id FROM incidents
                     WHERE escalated_at IS NULL AND state = ANY($2)
                       AND (owner IS NULL OR owner = $1 OR owner NOT IN ({LIVE_REPLICAS}))
                     ORDER BY id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {INCIDENT_COLUMNS}"
            ),
            &[&store.me(), &escalating_states(), &sql_limit(limit)],
        )
        .await
        .map_err(pg_error)?;
    let mut claimed = incidents_from_rows(&rows)?;
    claimed.sort_by_key(|incident| incident.id);
    Ok(claimed)
}

pub(super) async fn enqueue_escalation(
    store: &PgStore,
    id: IncidentId,
    reason: EscalationReason,
    channels: &[String],
    payload: &serde_json::Value,
) -> Result<(), StoreError> {
    let at = now_text();
    let payload_text = payload.to_string();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // The incident first: a missing one is `NotFound` (not a foreign key error), and its
    // row stays locked, so two enqueues of one incident take turns.
    let updated = tx
        .execute(
            "UPDATE incidents SET escalated_at = $2 WHERE id = $1",
            &[&id.0, &at],
        )
        .await
        .map_err(pg_error)?;
    if updated == 0 {
        return Err(StoreError::NotFound(id));
    }
    for channel in channels {
        tx.execute(
            "INSERT INTO outbox (incident_id, reason, channel, payload, status, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5)
             ON CONFLICT (incident_id, reason, channel) DO NOTHING",
            &[&id.0, &reason.as_str(), channel, &payload_text, &at],
        )
        .await
        .map_err(pg_error)?;
    }
    let event = Event::EscalationQueued {
        reason,
        channels: channels.to_vec(),
    };
    journal(&tx, id, &at, &event).await?;
    tx.commit().await.map_err(pg_error)
}

fn outbox_item_from_row(row: &Row) -> Result<OutboxItem, StoreError> {
    let reason: String = get(row, 2)?;
    Ok(OutboxItem {
        id: get(row, 0)?,
        incident_id: IncidentId(get(row, 1)?),
        reason: EscalationReason::parse(&reason)
            .ok_or_else(|| bad_row(2, format!("unknown escalation reason {reason:?}")))?,
        channel: get(row, 3)?,
        payload: json_column(row, 4)?,
        attempts: get(row, 5)?,
    })
}

/// Claimed rows read by `read`, in the order the SQLite store answers: next attempt
/// (the text in column `next_attempt`), then id (column 0).
fn in_due_order<T>(
    rows: &[Row],
    next_attempt: usize,
    read: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut due = rows
        .iter()
        .map(|row| {
            Ok((
                (get::<String>(row, next_attempt)?, get::<i64>(row, 0)?),
                read(row)?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    due.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(due.into_iter().map(|(_, item)| item).collect())
}

pub(super) async fn due_escalations(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            &format!(
                "UPDATE outbox SET claimed_by = $1, claimed_until = now() + {CLAIM_FOR}
                 WHERE id IN (
                     SELECT id FROM outbox
                     WHERE status = 'pending' AND next_attempt_at <= $2 AND {}
                     ORDER BY next_attempt_at, id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, incident_id, reason, channel, payload, attempts, next_attempt_at",
                claimable()
            ),
            &[&store.me(), &now_text(), &sql_limit(limit)],
        )
        .await
        .map_err(pg_error)?;
    in_due_order(&rows, 6, outbox_item_from_row)
}

pub(super) async fn escalation_sent(store: &PgStore, item: &OutboxItem) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    mark_sent(&tx, item, &now_text(), None).await?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn escalation_failed(
    store: &PgStore,
    item: &OutboxItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    mark_failed(
        &tx,
        store.me(),
        item,
        error,
        next_attempt_at,
        &now_text(),
        None,
    )
    .await?;
    tx.commit().await.map_err(pg_error)
}

/// The digest an outbox row went out in: its id and how many rows it carried.
type Digest = Option<(i64, usize)>;

fn in_digest(digest: Digest) -> Option<InDigest> {
    digest.map(|(digest, digest_size)| InDigest {
        digest,
        digest_size,
    })
}

/// Marks one outbox row sent (its claim ended) and journals it on its incident; in a
/// digest, the journal entry names the digest.
async fn mark_sent(
    client: &impl GenericClient,
    item: &OutboxItem,
    at: &str,
    digest: Digest,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE outbox SET status = 'sent', sent_at = $2, claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND status = 'pending'",
            &[&item.id, &at],
        )
        .await
        .map_err(pg_error)?;
    let event = Event::EscalationSent {
        channel: item.channel.clone(),
        reason: item.reason,
        attempt: item.attempts + 1,
        digest: in_digest(digest),
    };
    journal(client, item.incident_id, at, &event).await
}

/// Counts a refused delivery of one outbox row, sets its next attempt and ends its claim,
/// if replica `me` still holds the claim: when it ran out and another replica took the row,
/// that replica's attempt decides (this failure must not end its claim, which would let a
/// third one deliver beside it). Only the first failure is journaled, as in
/// `sqlite/outbox.rs::mark_failed`. (A delivery that went out is recorded whoever holds
/// the claim: the page was sent.)
async fn mark_failed(
    client: &impl GenericClient,
    me: i64,
    item: &OutboxItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
    at: &str,
    digest: Digest,
) -> Result<(), StoreError> {
    let counted = client
        .execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
                    last_attempt_at = $4, claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND status = 'pending' AND claimed_by = $5",
            &[&item.id, &error, &time_text(next_attempt_at), &at, &me],
        )
        .await
        .map_err(pg_error)?;
    if counted == 0 || item.attempts > 0 {
        return Ok(());
    }
    let event = Event::EscalationFailed {
        channel: item.channel.clone(),
        reason: item.reason,
        attempt: item.attempts + 1,
        error: error.to_owned(),
        next_attempt_at,
        digest: in_digest(digest),
    };
    journal(client, item.incident_id, at, &event).await
}

pub(super) async fn outbox_pending(store: &PgStore) -> Result<i64, StoreError> {
    let client = store.client().await?;
    let row = client
        .query_one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'", &[])
        .await
        .map_err(pg_error)?;
    get(&row, 0)
}

pub(super) async fn new_digest(
    store: &PgStore,
    channel: &str,
    reason: &str,
    size: usize,
) -> Result<i64, StoreError> {
    let client = store.client().await?;
    let row = client
        .query_one(
            "INSERT INTO digests (channel, reason, size, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
            &[&channel, &reason, &sql_limit(size), &now_text()],
        )
        .await
        .map_err(pg_error)?;
    get(&row, 0)
}

/// A digest's rows by id: two transactions writing overlapping rows (a claim that ran out
/// and was taken over) lock them in the same order, so neither deadlocks the other.
fn in_lock_order(items: &[OutboxItem]) -> Vec<&OutboxItem> {
    let mut ordered: Vec<&OutboxItem> = items.iter().collect();
    ordered.sort_by_key(|item| item.id);
    ordered
}

pub(super) async fn digest_sent(
    store: &PgStore,
    digest: i64,
    items: &[OutboxItem],
) -> Result<(), StoreError> {
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "UPDATE digests SET sent_at = $2 WHERE id = $1",
        &[&digest, &at],
    )
    .await
    .map_err(pg_error)?;
    for item in in_lock_order(items) {
        mark_sent(&tx, item, &at, Some((digest, items.len()))).await?;
    }
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn digest_failed(
    store: &PgStore,
    digest: i64,
    items: &[OutboxItem],
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    for item in in_lock_order(items) {
        let digest = Some((digest, items.len()));
        mark_failed(&tx, store.me(), item, error, next_attempt_at, &at, digest).await?;
    }
    tx.commit().await.map_err(pg_error)
}

/// Undecided sent pages whose incident's alert resolved, or whose alert — the same
/// fingerprint and labels — a later incident fixed (as `sqlite/followups.rs::candidates`).
pub(super) async fn follow_up_candidates(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<FollowUpCandidate>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT page_id, incident_id, channel, payload, resolved, fixed_by, digested FROM (
                 SELECT o.id AS page_id, o.incident_id, o.channel, o.payload,
                     i.alert_status = 'resolved' AS resolved,
                     (SELECT MIN(later.id) FROM incidents AS later
                      WHERE later.fingerprint = i.fingerprint AND later.labels = i.labels
                        AND later.id > i.id AND later.state = 'succeeded') AS fixed_by,
                     EXISTS (SELECT 1 FROM events AS e
                             WHERE e.incident_id = o.incident_id AND e.kind = 'escalation_sent'
                               AND (e.detail::jsonb ->> 'channel') = o.channel
                               AND (e.detail::jsonb ->> 'digest') IS NOT NULL) AS digested
                 FROM outbox AS o JOIN incidents AS i ON i.id = o.incident_id
                 WHERE o.follow_up IS NULL AND o.status = 'sent') AS pages
             WHERE resolved OR fixed_by IS NOT NULL
             ORDER BY page_id LIMIT $1",
            &[&sql_limit(limit)],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|row| {
            let resolved: bool = get(row, 4)?;
            let fixed_by: Option<i64> = get(row, 5)?;
            Ok(FollowUpCandidate {
                page_id: get(row, 0)?,
                incident_id: IncidentId(get(row, 1)?),
                channel: get(row, 2)?,
                payload: json_column(row, 3)?,
                // A resolved alert is the plainer story; a fix of a later incident otherwise.
                cause: match (resolved, fixed_by) {
                    (false, Some(by)) => FollowUpCause::Succeeded(IncidentId(by)),
                    _ => FollowUpCause::Resolved,
                },
                digested: get(row, 6)?,
            })
        })
        .collect()
}

fn cause_columns(cause: FollowUpCause) -> (&'static str, Option<i64>) {
    match cause {
        FollowUpCause::Resolved => ("resolved", None),
        FollowUpCause::Succeeded(by) => ("succeeded", Some(by.0)),
    }
}

pub(super) async fn decide_follow_ups(
    store: &PgStore,
    mut decisions: Vec<(FollowUpCandidate, bool)>,
) -> Result<(), StoreError> {
    // Pages in id order, as candidates come: replicas deciding the same pages at once lock
    // them in the same order (no deadlock); the second finds them decided.
    decisions.sort_by_key(|(candidate, _)| candidate.page_id);
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    for (candidate, wanted) in &decisions {
        let decided = tx
            .execute(
                "UPDATE outbox SET follow_up = $2 WHERE id = $1 AND follow_up IS NULL",
                &[&candidate.page_id, &if *wanted { "queued" } else { "none" }],
            )
            .await
            .map_err(pg_error)?;
        if decided == 0 || !wanted {
            continue;
        }
        let (cause, by) = cause_columns(candidate.cause);
        // A second page of the incident on the same channel (another reason) is followed
        // up by the first one's row: one follow-up per (incident, channel).
        let queued = tx
            .execute(
                "INSERT INTO followups (incident_id, channel, page_id, cause, by_incident,
                     status, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)
                 ON CONFLICT (incident_id, channel) DO NOTHING",
                &[
                    &candidate.incident_id.0,
                    &candidate.channel,
                    &candidate.page_id,
                    &cause,
                    &by,
                    &at,
                ],
            )
            .await
            .map_err(pg_error)?;
        if queued == 1 {
            let event = Event::FollowUpQueued {
                channel: candidate.channel.clone(),
                cause: cause.to_owned(),
                by: by.map(IncidentId),
            };
            journal(&tx, candidate.incident_id, &at, &event).await?;
        }
    }
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn due_follow_ups(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<FollowUpItem>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            &format!(
                "UPDATE followups AS f SET claimed_by = $1, claimed_until = now() + {CLAIM_FOR}
                 FROM outbox AS o
                 WHERE o.id = f.page_id AND f.id IN (
                     SELECT id FROM followups
                     WHERE status = 'pending' AND next_attempt_at <= $2 AND {}
                     ORDER BY next_attempt_at, id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 RETURNING f.id, f.incident_id, f.channel, o.payload, f.cause, f.by_incident,
                     f.attempts, f.next_attempt_at",
                claimable()
            ),
            &[&store.me(), &now_text(), &sql_limit(limit)],
        )
        .await
        .map_err(pg_error)?;
    in_due_order(&rows, 7, |row| {
        let cause: String = get(row, 4)?;
        let by: Option<i64> = get(row, 5)?;
        Ok(FollowUpItem {
            id: get(row, 0)?,
            incident_id: IncidentId(get(row, 1)?),
            channel: get(row, 2)?,
            page: json_column(row, 3)?,
            cause: match (cause.as_str(), by) {
                ("succeeded", Some(by)) => FollowUpCause::Succeeded(IncidentId(by)),
                _ => FollowUpCause::Resolved,
            },
            attempts: get(row, 6)?,
        })
    })
}

pub(super) async fn follow_up_sent(store: &PgStore, item: &FollowUpItem) -> Result<(), StoreError> {
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let updated = tx
        .execute(
            "UPDATE followups SET status = 'sent', sent_at = $2, claimed_by = NULL,
                 claimed_until = NULL
             WHERE id = $1 AND status = 'pending'",
            &[&item.id, &at],
        )
        .await
        .map_err(pg_error)?;
    if updated == 1 {
        let event = Event::FollowUpSent {
            channel: item.channel.clone(),
            attempt: item.attempts + 1,
        };
        journal(&tx, item.incident_id, &at, &event).await?;
    }
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn follow_up_failed(
    store: &PgStore,
    item: &FollowUpItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "UPDATE followups SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
                 claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND status = 'pending' AND claimed_by = $4",
            &[&item.id, &error, &time_text(next_attempt_at), &store.me()],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}
