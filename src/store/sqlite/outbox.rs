//! SQL for the escalation outbox: which incidents still need escalating, queueing their
//! rows, and delivery bookkeeping (sent, failed with its next attempt). Each function runs
//! inside the writer's batch transaction or on a read connection; none decides policy.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

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

pub(super) fn incidents_to_escalate(
    conn: &Connection,
    limit: i64,
) -> rusqlite::Result<Vec<Incident>> {
    conn.prepare_cached(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents
         WHERE escalated_at IS NULL AND state IN {}
         ORDER BY id LIMIT ?1",
        escalating_states()
    ))?
    .query_map(params![limit], incident_from_row)?
    .collect()
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

pub(super) fn due_escalations(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: i64,
) -> rusqlite::Result<Vec<OutboxItem>> {
    conn.prepare_cached(
        "SELECT id, incident_id, reason, channel, payload, attempts FROM outbox
         WHERE status = 'pending' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at, id LIMIT ?2",
    )?
    .query_map(params![time_text(now), limit], |row| {
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
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            attempts: row.get(5)?,
        })
    })?
    .collect()
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

/// Marks one outbox row sent and journals it on its incident; in a digest, the journal
/// entry names the digest.
pub(super) fn mark_sent(
    conn: &Connection,
    item: &OutboxItem,
    at: &str,
    digest: InDigest,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET status = 'sent', sent_at = ?2 WHERE id = ?1 AND status = 'pending'",
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

/// Counts a refused delivery of one outbox row and sets its next attempt (the row keeps
/// the attempt count, last error and time, next try). Only the first failure is journaled
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
                last_attempt_at = ?4
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
