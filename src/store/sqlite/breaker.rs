//! SQL for the breaker: the run log (a run starts only through `begin_run`, which checks
//! the breaker in the same transaction), its window and resets, and its status. Each
//! function runs inside the writer's batch transaction or on a read connection; none
//! decides policy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{state_from_text, time_column, time_text};
use super::writer::{expect_state, journal, unavailable};
use crate::incident::{Event, IncidentId, State};
use crate::store::{BreakerLimit, BreakerReset, BreakerStatus, RunGate, RunRecord, StoreError};

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
