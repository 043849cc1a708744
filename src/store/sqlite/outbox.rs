//! SQL for the escalation outbox: which incidents still need escalating, queueing their
//! rows, and delivery bookkeeping (sent, failed with its next attempt). Incidents to
//! escalate are owned (`owner`) and due rows claimed (`claimed_by`, `claimed_until`) by one
//! replica, as on PostgreSQL. Each function runs inside the writer's batch transaction or
//! on a read connection; none decides policy.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::replicas::LIVE_REPLICAS;
use super::rows::{INCIDENT_COLUMNS, incident_from_row, time_text};
use super::writer::{journal, unavailable};
use crate::incident::event::InDigest as DigestOf;
use crate::incident::{EscalationReason, Event, Incident, IncidentId, State};
use crate::store::{OutboxItem, StoreError};

/// `('failed', 'verify_failed', ...)`: every state that pages a human, derived from
/// [`State::escalation_reason`] so a new escalating state cannot be forgotten here.
fn escalating_states() -> String {
    let quoted: Vec<String> = State::ALL
        .iter()
        .filter(|s| s.escalation_reason().is_some())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", quoted.join(", "))
}

/// How long a claim on an outbox or follow-up row lasts (as on PostgreSQL): longer than
/// any delivery (each is bounded), short enough that a stalled claim is soon taken over.
pub(super) const CLAIM_FOR: chrono::Duration = chrono::Duration::minutes(2);

/// SQL condition on a row with `claimed_by`/`claimed_until`, with `?1` the now text and
/// `?2` this replica: it may take the row — nobody claimed it, this replica did, the
/// claim ran out, or its replica is not live.
pub(super) fn claimable() -> String {
    format!(
        "(claimed_by IS NULL OR claimed_by = ?2 OR claimed_until IS NULL
          OR claimed_until <= ?1 OR claimed_by NOT IN ({LIVE_REPLICAS}))"
    )
}

/// SQL condition, `?1` and `?2` as in [`claimable`]: an incident that waits to be
/// escalated and that this replica may own (nobody, itself, or a replica not live does).
fn to_escalate() -> String {
    format!(
        "escalated_at IS NULL AND state IN {}
         AND (owner IS NULL OR owner = ?2 OR owner NOT IN ({LIVE_REPLICAS}))",
        escalating_states()
    )
}

/// Whether `incidents_to_escalate` would claim anything (a read, to spare the writer).
pub(super) fn any_to_escalate(
    conn: &Connection,
    me: i64,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM incidents WHERE {})",
        to_escalate()
    ))?
    .query_row(params![time_text(now), me], |row| row.get(0))
}

/// The incidents to escalate, now owned by `me`, oldest first.
pub(super) fn incidents_to_escalate(
    conn: &Connection,
    me: i64,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Incident>, StoreError> {
    let mut claimed = conn
        .prepare_cached(&format!(
            "UPDATE incidents SET owner = ?2 WHERE id IN (
                 SELECT id FROM incidents WHERE {} ORDER BY id LIMIT ?3)
             RETURNING {INCIDENT_COLUMNS}",
            to_escalate()
        ))
        .and_then(|mut statement| {
            statement
                .query_map(params![time_text(now), me, limit], incident_from_row)?
                .collect::<rusqlite::Result<Vec<Incident>>>()
        })
        .map_err(unavailable)?;
    claimed.sort_by_key(|incident| incident.id);
    Ok(claimed)
}

pub(super) fn enqueue_escalation(
    conn: &Connection,
    id: IncidentId,
    reason: EscalationReason,
    channels: &[String],
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let at = time_text(now);
    let payload_text = payload.to_string();
    let write = || -> rusqlite::Result<()> {
        for channel in channels {
            conn.prepare_cached(
                "INSERT INTO outbox (incident_id, reason, channel, payload, status, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)
                 ON CONFLICT (incident_id, reason, channel) DO NOTHING",
            )?
            .execute(params![id.0, reason.as_str(), channel, payload_text, at])?;
        }
        let updated = conn
            .prepare_cached("UPDATE incidents SET escalated_at = ?2 WHERE id = ?1")?
            .execute(params![id.0, at])?;
        if updated == 0 {
            return Err(rusqlite::Error::QueryReturnedNoRows);
        }
        let channels = channels.to_vec();
        journal(conn, id, &at, &Event::EscalationQueued { reason, channels })
    };
    write().map_err(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound(id),
        other => unavailable(other),
    })
}

/// Whether `due_escalations` would claim anything (a read, to spare the writer).
pub(super) fn any_due_escalation(
    conn: &Connection,
    me: i64,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM outbox
                        WHERE status = 'pending' AND next_attempt_at <= ?1 AND {})",
        claimable()
    ))?
    .query_row(params![time_text(now), me], |row| row.get(0))
}

/// The due rows, now claimed by `me` for [`CLAIM_FOR`], oldest first.
pub(super) fn due_escalations(
    conn: &Connection,
    me: i64,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OutboxItem>, StoreError> {
    let read = || -> rusqlite::Result<Vec<(String, OutboxItem)>> {
        conn.prepare_cached(&format!(
            "UPDATE outbox SET claimed_by = ?2, claimed_until = ?3 WHERE id IN (
                 SELECT id FROM outbox
                 WHERE status = 'pending' AND next_attempt_at <= ?1 AND {}
                 ORDER BY next_attempt_at, id LIMIT ?4)
             RETURNING id, incident_id, reason, channel, payload, attempts, next_attempt_at",
            claimable()
        ))?
        .query_map(
            params![time_text(now), me, time_text(now + CLAIM_FOR), limit],
            |row| Ok((row.get(6)?, outbox_item_from_row(row)?)),
        )?
        .collect()
    };
    let mut due = read().map_err(unavailable)?;
    // RETURNING has no order of its own.
    due.sort_by(|(a_next, a), (b_next, b)| (a_next, a.id).cmp(&(b_next, b.id)));
    Ok(due.into_iter().map(|(_, item)| item).collect())
}

fn outbox_item_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    let payload: String = row.get(4)?;
    let reason: String = row.get(2)?;
    Ok(OutboxItem {
        id: row.get(0)?,
        incident_id: IncidentId(row.get(1)?),
        reason: EscalationReason::parse(&reason).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown escalation reason {reason:?}").into(),
            )
        })?,
        channel: row.get(3)?,
        payload: serde_json::from_str(&payload).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        attempts: row.get(5)?,
    })
}

pub(super) fn escalation_sent(
    conn: &Connection,
    item: &OutboxItem,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    mark_sent(conn, item, &time_text(now), None).map_err(unavailable)
}

pub(super) fn escalation_failed(
    conn: &Connection,
    item: &OutboxItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (at, next) = (time_text(now), time_text(next_attempt_at));
    mark_failed(conn, item, error, &next, &at, None).map_err(unavailable)
}

/// The digest an outbox row went out in: its id and how many rows it carried.
pub(super) type InDigest = Option<(i64, usize)>;

/// Marks one outbox row sent (its claim ended) and journals it on its incident; in a
/// digest, the journal entry names the digest.
pub(super) fn mark_sent(
    conn: &Connection,
    item: &OutboxItem,
    at: &str,
    digest: InDigest,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET status = 'sent', sent_at = ?2, claimed_by = NULL, claimed_until = NULL
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![item.id, at])?;
    let event = Event::EscalationSent {
        channel: item.channel.clone(),
        reason: item.reason,
        attempt: item.attempts + 1,
        digest: digest_of(digest),
    };
    journal(conn, item.incident_id, at, &event)
}

/// Counts a refused delivery of one outbox row, sets its next attempt and ends its claim
/// (the row keeps the attempt count, last error and time, next try). Only the first failure is journaled
/// (`escalation_failed`, naming the digest if any): a channel failing for hours must not
/// grow the journal by one event per retry; `escalation_sent` says on which attempt it
/// finally went.
pub(super) fn mark_failed(
    conn: &Connection,
    item: &OutboxItem,
    error: &str,
    next_attempt_at: &str,
    at: &str,
    digest: InDigest,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                last_attempt_at = ?4, claimed_by = NULL, claimed_until = NULL
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![item.id, error, next_attempt_at, at])?;
    if item.attempts > 0 {
        return Ok(());
    }
    let event = Event::EscalationFailed {
        channel: item.channel.clone(),
        reason: item.reason,
        attempt: item.attempts + 1,
        error: error.to_owned(),
        next_attempt_at: super::rows::parse_time(0, next_attempt_at)?,
        digest: digest_of(digest),
    };
    journal(conn, item.incident_id, at, &event)
}

fn digest_of(digest: InDigest) -> Option<DigestOf> {
    digest.map(|(digest, digest_size)| DigestOf {
        digest,
        digest_size,
    })
}

pub(super) fn outbox_pending(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")?
        .query_row([], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use super::super::SqliteStore;
    use super::super::tests::store_in_temp_dir;
    use crate::alert::Alert;
    use crate::incident::{EscalationReason, State};
    use crate::plan::{Plan, PlanOutcome};
    use crate::store::Store;

    #[tokio::test]
    async fn a_live_replicas_claims_hold_against_another_process_until_it_leaves() {
        let (_dir, path, replica) = store_in_temp_dir();
        replica
            .join_replicas("a", Duration::from_secs(60))
            .await
            .unwrap();
        // Another process on the same file (a CLI command, or a salve that did not join).
        let other = SqliteStore::open_path(&path).unwrap();
        let labels = BTreeMap::from([("alertname".to_owned(), "ServiceDown".to_owned())]);
        let id = replica
            .ingest(vec![Alert::firing_generic(labels)], chrono::Utc::now())
            .await
            .unwrap()[0]
            .id;
        let plan = Plan::inert(PlanOutcome::Unmatched, None, "no recipe".into(), vec![]);
        replica
            .record_plan(id, State::Received, State::Unmatched, &plan)
            .await
            .unwrap();

        assert_eq!(replica.incidents_to_escalate(10).await.unwrap().len(), 1);
        assert!(other.incidents_to_escalate(10).await.unwrap().is_empty());
        assert_eq!(replica.incidents_to_escalate(10).await.unwrap().len(), 1);
        replica
            .enqueue_escalation(id, EscalationReason::Novel, &["mail".into()], &json!({}))
            .await
            .unwrap();

        let item = replica.due_escalations(10).await.unwrap().remove(0);
        assert!(other.due_escalations(10).await.unwrap().is_empty());
        assert_eq!(
            replica.due_escalations(10).await.unwrap(),
            std::slice::from_ref(&item)
        );
        // A refusal ends the claim.
        replica
            .escalation_failed(&item, "refused", chrono::Utc::now())
            .await
            .unwrap();
        let retried = other.due_escalations(10).await.unwrap();
        assert_eq!(retried.len(), 1);
        // The other's claim (no replica: never live) does not hold; a replica that left
        // holds nothing either.
        let item = replica.due_escalations(10).await.unwrap().remove(0);
        assert!(other.due_escalations(10).await.unwrap().is_empty());
        replica.leave_replicas().await.unwrap();
        assert_eq!(other.due_escalations(10).await.unwrap()[0].id, item.id);
    }
}
