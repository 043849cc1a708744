//! SQL for the breaker: the run log (a run starts only through `begin_run`, which checks
//! the breaker in the same transaction), its window and resets, and its status. A breaker
//! is one (recipe, breaker key); the key is the target's name unless the recipe sets one. Each
//! function runs inside the writer's batch transaction or on a read connection; none
//! decides policy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{state_from_text, time_column, time_text};
use super::writer::{expect_state, journal, unavailable};
use crate::incident::{Event, IncidentId, State};
use crate::store::{
    BreakerLimit, BreakerReset, BreakerResetOutcome, BreakerStatus, RunGate, RunRecord, StoreError,
};

fn window_start(
    conn: &Connection,
    recipe: &str,
    key: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> rusqlite::Result<String> {
    let since =
        time_text(now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX));
    let reset: Option<String> = conn
        .prepare_cached(
            "SELECT reset_at FROM breaker_resets WHERE recipe = ?1 AND breaker_key = ?2",
        )?
        .query_row(params![recipe, key], |row| row.get(0))
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
    key: &str,
    since: &str,
) -> rusqlite::Result<Vec<RunRecord>> {
    conn.prepare_cached(
        "SELECT runs.incident_id, runs.started_at, incidents.state
         FROM runs JOIN incidents ON incidents.id = runs.incident_id
         WHERE runs.recipe = ?1 AND runs.breaker_key = ?2 AND runs.started_at > ?3
         ORDER BY runs.started_at, runs.id",
    )?
    .query_map(params![recipe, key, since], |row| {
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
    key: &str,
    window: Duration,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<RunRecord>> {
    let since = window_start(conn, recipe, key, now, window)?;
    runs_since(conn, recipe, key, &since)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn begin_run(
    conn: &Connection,
    me: i64,
    id: IncidentId,
    (recipe, target, key): (&str, &str, &str),
    limit: BreakerLimit,
    (started, first_step): (&Event, Option<&Event>),
    now: DateTime<Utc>,
) -> Result<RunGate, StoreError> {
    expect_state(conn, id, State::Matched)?;
    super::replicas::check_claim(conn, me, id, now)?;
    if alert_resolved(conn, id).map_err(unavailable)? {
        return Ok(RunGate::AlertResolved);
    }
    if let Some(busy) = host_busy(conn, id, target, now).map_err(unavailable)? {
        return Ok(busy);
    }
    let runs = runs_in_window(conn, recipe, key, limit.window, now).map_err(unavailable)?;
    if let Some(max_runs) = limit.max_runs
        && runs.len() >= max_runs as usize
    {
        return Ok(RunGate::BreakerOpen { runs });
    }
    let at = time_text(now);
    let write = || -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO runs (incident_id, recipe, target, breaker_key, started_at, max_runs,
                               window_seconds)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            id.0,
            recipe,
            target,
            key,
            at,
            limit.max_runs,
            limit.window.as_secs() as i64
        ])?;
        conn.prepare_cached("UPDATE incidents SET state = ?2, owner = ?3 WHERE id = ?1")?
            .execute(params![id.0, State::Remediating.as_str(), me])?;
        journal(conn, id, &at, started)?;
        match first_step {
            Some(event) => journal(conn, id, &at, event),
            None => Ok(()),
        }
    };
    write().map_err(unavailable)?;
    Ok(RunGate::Started)
}

/// Why nothing may start on `target` now, if so: another incident runs there (one run per
/// host, whichever replica runs it), or a hold says a command may still run there.
fn host_busy(
    conn: &Connection,
    id: IncidentId,
    target: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<RunGate>> {
    let running: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM incidents
             WHERE target = ?1 AND id <> ?2 AND state IN ('remediating', 'verifying') LIMIT 1",
        )?
        .query_row(params![target, id.0], |row| row.get(0))
        .optional()?;
    if let Some(other) = running {
        return Ok(Some(RunGate::HostBusy {
            why: format!("incident {other} is running on {target}"),
            retry_after: Duration::from_secs(1),
        }));
    }
    let held: Option<(String, String)> = conn
        .prepare_cached("SELECT until, why FROM host_holds WHERE host = ?1 AND until > ?2")?
        .query_row(params![target, time_text(now)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok(held.map(|(until, why)| {
        let until = crate::store::parse_time_text(&until).unwrap_or(now);
        RunGate::HostBusy {
            why,
            retry_after: (until - now).to_std().unwrap_or_default(),
        }
    }))
}

fn alert_resolved(conn: &Connection, id: IncidentId) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT alert_status = 'resolved' FROM incidents WHERE id = ?1")?
        .query_row(params![id.0], |row| row.get(0))
}

/// At most this many of a recipe's keys are named when a reset names an unknown one.
const KNOWN_KEYS_SHOWN: i64 = 20;

pub(super) fn reset_breaker(
    conn: &Connection,
    recipe: &str,
    key: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<BreakerResetOutcome, StoreError> {
    let write = || -> rusqlite::Result<BreakerResetOutcome> {
        // The incident the reset is recorded on: the key's newest run or breaker_open.
        let newest: Option<(i64, Option<String>)> = conn
            .prepare_cached(
                "SELECT id, target FROM (
                   SELECT incident_id AS id, target FROM runs
                     WHERE recipe = ?1 AND breaker_key = ?2
                   UNION ALL
                   SELECT id, json_extract(plan, '$.target.name') FROM incidents
                     WHERE state = 'breaker_open'
                     AND json_extract(plan, '$.recipe') = ?1
                     AND COALESCE(NULLIF(json_extract(plan, '$.breaker.key'), ''),
                                  json_extract(plan, '$.target.name')) = ?2)
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![recipe, key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((newest, target)) = newest else {
            let known_keys = conn
                .prepare_cached(
                    "SELECT DISTINCT breaker_key FROM runs WHERE recipe = ?1
                     ORDER BY breaker_key LIMIT ?2",
                )?
                .query_map(params![recipe, KNOWN_KEYS_SHOWN], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            return Ok(if known_keys.is_empty() {
                BreakerResetOutcome::UnknownRecipe
            } else {
                BreakerResetOutcome::UnknownKey { known_keys }
            });
        };
        let last_reset: String = conn
            .prepare_cached(
                "SELECT COALESCE(MAX(reset_at), '') FROM breaker_resets
                 WHERE recipe = ?1 AND breaker_key = ?2",
            )?
            .query_row(params![recipe, key], |row| row.get(0))?;
        let runs_forgotten = runs_since(conn, recipe, key, &last_reset)?.len();
        let at = time_text(now);
        conn.prepare_cached(
            "INSERT INTO breaker_resets (recipe, breaker_key, reset_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (recipe, breaker_key) DO UPDATE SET reset_at = excluded.reset_at",
        )?
        .execute(params![recipe, key, at])?;
        let incident = IncidentId(newest);
        let event = Event::BreakerReset {
            recipe: recipe.to_owned(),
            target: target.unwrap_or_default(),
            key: Some(key.to_owned()),
            by: by.to_owned(),
            runs_forgotten,
        };
        journal(conn, incident, &at, &event)?;
        Ok(BreakerResetOutcome::Reset(BreakerReset {
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
    // The newest run of each breaker carries the recipe's current max_runs and window.
    #[allow(clippy::type_complexity)]
    let latest: Vec<(String, String, String, Option<u32>, i64, String)> = conn
        .prepare_cached(
            "SELECT recipe, breaker_key, target, max_runs, window_seconds, started_at FROM runs
             WHERE id IN (SELECT MAX(id) FROM runs GROUP BY recipe, breaker_key)
             ORDER BY recipe, breaker_key",
        )?
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut statuses = Vec::new();
    for (recipe, key, target, max_runs, window_seconds, last_run) in latest {
        let window = Duration::from_secs(window_seconds.max(0) as u64);
        let runs = runs_in_window(conn, &recipe, &key, window, now)?;
        if runs.is_empty() {
            continue;
        }
        let reset_at: Option<String> = conn
            .prepare_cached(
                "SELECT reset_at FROM breaker_resets WHERE recipe = ?1 AND breaker_key = ?2",
            )?
            .query_row(params![recipe, key], |row| row.get(0))
            .optional()?;
        statuses.push(BreakerStatus {
            open: max_runs.is_some_and(|max| runs.len() >= max as usize),
            runs_in_window: runs.len() as i64,
            max_runs,
            window_seconds,
            last_run: last_run.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    5,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            reset_at: reset_at.and_then(|text| text.parse().ok()),
            recipe,
            key,
            target,
        });
    }
    Ok(statuses)
}
