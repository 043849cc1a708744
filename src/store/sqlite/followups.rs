//! SQL for follow-ups ("resolved" after a page): which sent pages' incidents are over,
//! queueing one follow-up per (paged incident, channel), and delivery bookkeeping. Each
//! function runs inside the writer's batch transaction or on a read connection; none
//! decides policy (whether a route or channel wants follow-ups is the engine's call).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::rows::time_text;
use super::writer::{journal, unavailable};
use crate::incident::{Event, IncidentId};
use crate::store::{FollowUpCandidate, FollowUpCause, FollowUpItem, StoreError};

fn json_column(index: usize, text: &str) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Undecided sent pages (the partial index) whose incident's alert resolved, or whose
/// alert — the same fingerprint and labels — a later incident fixed. A page that went out
/// in a digest is found by its `escalation_sent` journal entry naming the digest.
pub(super) fn candidates(
    conn: &Connection,
    limit: i64,
) -> rusqlite::Result<Vec<FollowUpCandidate>> {
    conn.prepare_cached(
        "SELECT page_id, incident_id, channel, payload, resolved, fixed_by, digested FROM (
             SELECT o.id AS page_id, o.incident_id, o.channel, o.payload,
                 i.alert_status = 'resolved' AS resolved,
                 (SELECT MIN(later.id) FROM incidents AS later
                  WHERE later.fingerprint = i.fingerprint AND later.labels = i.labels
                    AND later.id > i.id AND later.state = 'succeeded') AS fixed_by,
                 EXISTS (SELECT 1 FROM events AS e
                         WHERE e.incident_id = o.incident_id AND e.kind = 'escalation_sent'
                           AND json_extract(e.detail, '$.channel') = o.channel
                           AND json_extract(e.detail, '$.digest') IS NOT NULL) AS digested
             FROM outbox AS o JOIN incidents AS i ON i.id = o.incident_id
             WHERE o.follow_up IS NULL AND o.status = 'sent')
         WHERE resolved OR fixed_by IS NOT NULL
         ORDER BY page_id LIMIT ?1",
    )?
    .query_map(params![limit], |row| {
        let payload: String = row.get(3)?;
        let resolved: bool = row.get(4)?;
        let fixed_by: Option<i64> = row.get(5)?;
        Ok(FollowUpCandidate {
            page_id: row.get(0)?,
            incident_id: IncidentId(row.get(1)?),
            channel: row.get(2)?,
            payload: json_column(3, &payload)?,
            // A resolved alert is the plainer story; a fix of a later incident otherwise.
            cause: match (resolved, fixed_by) {
                (false, Some(by)) => FollowUpCause::Succeeded(IncidentId(by)),
                _ => FollowUpCause::Resolved,
            },
            digested: row.get(6)?,
        })
    })?
    .collect()
}

fn cause_columns(cause: FollowUpCause) -> (&'static str, Option<i64>) {
    match cause {
        FollowUpCause::Resolved => ("resolved", None),
        FollowUpCause::Succeeded(by) => ("succeeded", Some(by.0)),
    }
}

pub(super) fn decide(
    conn: &Connection,
    decisions: &[(FollowUpCandidate, bool)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let at = time_text(now);
    let write = || -> rusqlite::Result<()> {
        for (candidate, wanted) in decisions {
            let decided = conn
                .prepare_cached(
                    "UPDATE outbox SET follow_up = ?2 WHERE id = ?1 AND follow_up IS NULL",
                )?
                .execute(params![
                    candidate.page_id,
                    if *wanted { "queued" } else { "none" }
                ])?;
            if decided == 0 || !wanted {
                continue;
            }
            let (cause, by) = cause_columns(candidate.cause);
            // A second page of the incident on the same channel (another reason) is
            // followed up by the first one's row: one follow-up per (incident, channel).
            let queued = conn
                .prepare_cached(
                    "INSERT INTO followups (incident_id, channel, page_id, cause, by_incident,
                         status, next_attempt_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)
                     ON CONFLICT (incident_id, channel) DO NOTHING",
                )?
                .execute(params![
                    candidate.incident_id.0,
                    candidate.channel,
                    candidate.page_id,
                    cause,
                    by,
                    at
                ])?;
            if queued == 1 {
                let event = Event::FollowUpQueued {
                    channel: candidate.channel.clone(),
                    cause: cause.to_owned(),
                    by: by.map(IncidentId),
                };
                journal(conn, candidate.incident_id, &at, &event)?;
            }
        }
        Ok(())
    };
    write().map_err(unavailable)
}

pub(super) fn due(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: i64,
) -> rusqlite::Result<Vec<FollowUpItem>> {
    conn.prepare_cached(
        "SELECT f.id, f.incident_id, f.channel, o.payload, f.cause, f.by_incident, f.attempts
         FROM followups AS f JOIN outbox AS o ON o.id = f.page_id
         WHERE f.status = 'pending' AND f.next_attempt_at <= ?1
         ORDER BY f.next_attempt_at, f.id LIMIT ?2",
    )?
    .query_map(params![time_text(now), limit], |row| {
        let payload: String = row.get(3)?;
        let cause: String = row.get(4)?;
        let by: Option<i64> = row.get(5)?;
        Ok(FollowUpItem {
            id: row.get(0)?,
            incident_id: IncidentId(row.get(1)?),
            channel: row.get(2)?,
            page: json_column(3, &payload)?,
            cause: match (cause.as_str(), by) {
                ("succeeded", Some(by)) => FollowUpCause::Succeeded(IncidentId(by)),
                _ => FollowUpCause::Resolved,
            },
            attempts: row.get(6)?,
        })
    })?
    .collect()
}

pub(super) fn sent(
    conn: &Connection,
    item: &FollowUpItem,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let at = time_text(now);
    let write = || -> rusqlite::Result<()> {
        let updated = conn
            .prepare_cached(
                "UPDATE followups SET status = 'sent', sent_at = ?2
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![item.id, at])?;
        if updated == 0 {
            return Ok(());
        }
        let event = Event::FollowUpSent {
            channel: item.channel.clone(),
            attempt: item.attempts + 1,
        };
        journal(conn, item.incident_id, &at, &event)
    };
    write().map_err(unavailable)
}

pub(super) fn failed(
    conn: &Connection,
    item: &FollowUpItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE followups SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
         WHERE id = ?1 AND status = 'pending'",
    )
    .and_then(|mut statement| {
        statement.execute(params![item.id, error, time_text(next_attempt_at)])
    })
    .map(drop)
    .map_err(unavailable)
}
