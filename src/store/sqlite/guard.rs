//! SQL for the guards and the outbox: the breaker's run log and resets, escalation
//! queueing and delivery bookkeeping, and the gaps report. Each function runs inside
//! the writer's batch transaction or on a read connection; none decides policy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{INCIDENT_COLUMNS, incident_from_row, state_from_text, time_column, time_text};
use super::writer::{expect_state, journal, unavailable};
use crate::incident::event::InDigest as DigestOf;
use crate::incident::{EscalationReason, Event, Incident, IncidentId, State};
use crate::store::{
    BreakerLimit, BreakerReset, BreakerStatus, Gap, HostHold, OutboxItem, RunGate, RunRecord,
    StoreError,
};

fn window_start(
    conn: &Connection,
    recipe: &str,
    target: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> rusqlite::Result<String> {
    let since =
        time_text(now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX));
    let reset: Option<String> = conn
        .prepare_cached("SELECT reset_at FROM breaker_resets WHERE recipe = ?1 AND target = ?2")?
        .query_row(params![recipe, target], |row| row.get(0))
        .optional()?;
    // Fixed-width UTC text: the later of the two is the larger string.
    Ok(match reset {
        Some(reset) if reset > since => reset,
        _ => since,
    })
}

pub(super) fn runs_since(
    conn: &Connection,
    recipe: &str,
    target: &str,
    since: &str,
) -> rusqlite::Result<Vec<RunRecord>> {
    conn.prepare_cached(
        "SELECT runs.incident_id, runs.started_at, incidents.state
         FROM runs JOIN incidents ON incidents.id = runs.incident_id
         WHERE runs.recipe = ?1 AND runs.target = ?2 AND runs.started_at > ?3
         ORDER BY runs.started_at, runs.id",
    )?
    .query_map(params![recipe, target, since], |row| {
        let state: String = row.get(2)?;
        Ok(RunRecord {
            incident_id: IncidentId(row.get(0)?),
            started_at: time_column(row, 1)?,
            state: state_from_text(2, &state)?,
        })
    })?
    .collect()
}

pub(super) fn runs_in_window(
    conn: &Connection,
    recipe: &str,
    target: &str,
    window: Duration,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<RunRecord>> {
    let since = window_start(conn, recipe, target, now, window)?;
    runs_since(conn, recipe, target, &since)
}

pub(super) fn begin_run(
    conn: &Connection,
    id: IncidentId,
    recipe: &str,
    target: &str,
    limit: BreakerLimit,
    (started, first_step): (&Event, Option<&Event>),
    now: DateTime<Utc>,
) -> Result<RunGate, StoreError> {
    expect_state(conn, id, State::Matched)?;
    if alert_resolved(conn, id).map_err(unavailable)? {
        return Ok(RunGate::AlertResolved);
    }
    let runs = runs_in_window(conn, recipe, target, limit.window, now).map_err(unavailable)?;
    if let Some(max_runs) = limit.max_runs
        && runs.len() >= max_runs as usize
    {
        return Ok(RunGate::BreakerOpen { runs });
    }
    let at = time_text(now);
    let write = || -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO runs (incident_id, recipe, target, started_at, max_runs, window_seconds)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            id.0,
            recipe,
            target,
            at,
            limit.max_runs,
            limit.window.as_secs() as i64
        ])?;
        conn.prepare_cached("UPDATE incidents SET state = ?2 WHERE id = ?1")?
            .execute(params![id.0, State::Remediating.as_str()])?;
        journal(conn, id, &at, started)?;
        match first_step {
            Some(event) => journal(conn, id, &at, event),
            None => Ok(()),
        }
    };
    write().map_err(unavailable)?;
    Ok(RunGate::Started)
}

fn alert_resolved(conn: &Connection, id: IncidentId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT alert_status = 'resolved' FROM incidents WHERE id = ?1")?
        .query_row(params![id.0], |row| row.get(0))
}

pub(super) fn hold_host(
    conn: &Connection,
    host: &str,
    until: DateTime<Utc>,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let write = || -> rusqlite::Result<()> {
        conn.prepare_cached("DELETE FROM host_holds WHERE until <= ?1")?
            .execute(params![time_text(now)])?;
        conn.prepare_cached(
            "INSERT INTO host_holds (host, until, why) VALUES (?1, ?2, ?3)
             ON CONFLICT (host) DO UPDATE SET until = excluded.until, why = excluded.why
             WHERE excluded.until > host_holds.until",
        )?
        .execute(params![host, time_text(until), why])?;
        Ok(())
    };
    write().map_err(unavailable)
}

pub(super) fn host_holds(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Vec<HostHold>> {
    conn.prepare_cached("SELECT host, until, why FROM host_holds WHERE until > ?1 ORDER BY host")?
        .query_map(params![time_text(now)], |row| {
            Ok(HostHold {
                host: row.get(0)?,
                until: time_column(row, 1)?,
                why: row.get(2)?,
            })
        })?
        .collect()
}

pub(super) fn reset_breaker(
    conn: &Connection,
    recipe: &str,
    target: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<BreakerReset>, StoreError> {
    let write = || -> rusqlite::Result<Option<BreakerReset>> {
        // The incident the reset is recorded on: the pair's newest run or breaker_open.
        let newest: Option<i64> = conn
            .prepare_cached(
                "SELECT MAX(id) FROM (
                   SELECT incident_id AS id FROM runs WHERE recipe = ?1 AND target = ?2
                   UNION ALL
                   SELECT id FROM incidents WHERE state = 'breaker_open'
                     AND json_extract(plan, '$.recipe') = ?1
                     AND json_extract(plan, '$.target.name') = ?2)",
            )?
            .query_row(params![recipe, target], |row| row.get(0))?;
        let Some(newest) = newest else {
            return Ok(None);
        };
        let last_reset: String = conn
            .prepare_cached(
                "SELECT COALESCE(MAX(reset_at), '') FROM breaker_resets
                 WHERE recipe = ?1 AND target = ?2",
            )?
            .query_row(params![recipe, target], |row| row.get(0))?;
        let runs_forgotten = runs_since(conn, recipe, target, &last_reset)?.len();
        let at = time_text(now);
        conn.prepare_cached(
            "INSERT INTO breaker_resets (recipe, target, reset_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (recipe, target) DO UPDATE SET reset_at = excluded.reset_at",
        )?
        .execute(params![recipe, target, at])?;
        let incident = IncidentId(newest);
        let event = Event::BreakerReset {
            recipe: recipe.to_owned(),
            target: target.to_owned(),
            by: by.to_owned(),
            runs_forgotten,
        };
        journal(conn, incident, &at, &event)?;
        Ok(Some(BreakerReset {
            incident,
            runs_forgotten,
        }))
    };
    write().map_err(unavailable)
}

pub(super) fn breakers(
    conn: &Connection,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<BreakerStatus>> {
    // The newest run of each pair carries the recipe's current max_runs and window.
    let latest: Vec<(String, String, Option<u32>, i64, String)> = conn
        .prepare_cached(
            "SELECT recipe, target, max_runs, window_seconds, started_at FROM runs
             WHERE id IN (SELECT MAX(id) FROM runs GROUP BY recipe, target)
             ORDER BY recipe, target",
        )?
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut statuses = Vec::new();
    for (recipe, target, max_runs, window_seconds, last_run) in latest {
        let window = Duration::from_secs(window_seconds.max(0) as u64);
        let runs = runs_in_window(conn, &recipe, &target, window, now)?;
        if runs.is_empty() {
            continue;
        }
        let reset_at: Option<String> = conn
            .prepare_cached(
                "SELECT reset_at FROM breaker_resets WHERE recipe = ?1 AND target = ?2",
            )?
            .query_row(params![recipe, target], |row| row.get(0))
            .optional()?;
        statuses.push(BreakerStatus {
            open: max_runs.is_some_and(|max| runs.len() >= max as usize),
            runs_in_window: runs.len() as i64,
            max_runs,
            window_seconds,
            last_run: last_run.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            reset_at: reset_at.and_then(|text| text.parse().ok()),
            recipe,
            target,
        });
    }
    Ok(statuses)
}

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

/// Counts a refused delivery of one outbox row, sets its next attempt and journals it; in
/// a digest, the journal entry names the digest.
pub(super) fn mark_failed(
    conn: &Connection,
    item: &OutboxItem,
    error: &str,
    next_attempt_at: &str,
    at: &str,
    digest: InDigest,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
         WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![item.id, error, next_attempt_at])?;
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

pub(super) fn gaps(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<Gap>> {
    conn.prepare_cached(
        "SELECT COALESCE(alertname, '<no alertname>') AS name,
                COUNT(*) AS incidents,
                SUM(state = 'unmatched'),
                SUM(escalated_at IS NOT NULL),
                MAX(last_seen),
                (SELECT reason FROM incidents AS newest
                 WHERE COALESCE(newest.alertname, '<no alertname>') = COALESCE(incidents.alertname, '<no alertname>')
                   AND (newest.state = 'unmatched' OR newest.escalated_at IS NOT NULL)
                 ORDER BY newest.id DESC LIMIT 1)
         FROM incidents
         WHERE state = 'unmatched' OR escalated_at IS NOT NULL
         GROUP BY name
         ORDER BY incidents DESC, name
         LIMIT ?1",
    )?
    .query_map(params![limit], |row| {
        Ok(Gap {
            alertname: row.get(0)?,
            incidents: row.get(1)?,
            unmatched: row.get(2)?,
            escalated: row.get(3)?,
            last_seen: time_column(row, 4)?,
            last_reason: row.get(5)?,
        })
    })?
    .collect()
}

pub(super) fn remediation_totals(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.prepare_cached(
        "SELECT COUNT(*), COALESCE(SUM(incidents.state = 'succeeded'), 0)
         FROM runs JOIN incidents ON incidents.id = runs.incident_id",
    )?
    .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
}
