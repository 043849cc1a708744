//! SQL for retention: deleting finished incidents older than the window, with their
//! journal and bookkeeping rows, in bounded batches, and giving the freed pages back.
//! It never deletes an incident in a non-final state, one with an undelivered outbox or
//! follow-up row, one whose escalation is not queued yet, or one whose run a breaker
//! window still counts (pruning it would let the breaker close early).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::rows::time_text;
use crate::incident::State;

/// States an incident never leaves on its own (nothing more happens to it but the
/// delivery of its pages).
pub(super) const FINAL_STATES: [State; 14] = [
    State::Unmatched,
    State::Refused,
    State::DryRun,
    State::ResolvedBeforeRun,
    State::Succeeded,
    State::Failed,
    State::VerifyFailed,
    State::BreakerOpen,
    State::RateLimited,
    State::Interrupted,
    State::Notified,
    State::Denied,
    State::ApprovalExpired,
    State::Paused,
];

/// Pages of the file freed per prune batch: about 4 MiB with 4 KiB pages.
const VACUUM_PAGES: i64 = 1024;

fn final_states_sql() -> String {
    let quoted: Vec<String> = FINAL_STATES
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", quoted.join(", "))
}

/// Up to `limit` ids of incidents that may be pruned: finished, silent since before
/// `cutoff`, nothing undelivered or undecided, no run a breaker window (ending at `now`)
/// still counts. Oldest first.
pub(super) fn prunable(
    conn: &Connection,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: i64,
) -> rusqlite::Result<Vec<i64>> {
    let escalating: Vec<String> = State::ALL
        .iter()
        .filter(|s| s.escalation_reason().is_some())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    conn.prepare_cached(&format!(
        "SELECT i.id FROM incidents AS i
         WHERE i.state IN {finals}
           AND i.last_seen < ?1
           AND (i.state NOT IN ({escalating}) OR i.escalated_at IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM events AS e
                           WHERE e.incident_id = i.id AND e.at >= ?1)
           AND NOT EXISTS (SELECT 1 FROM outbox AS o
                           WHERE o.incident_id = i.id AND o.status = 'pending')
           AND NOT EXISTS (SELECT 1 FROM followups AS f
                           WHERE f.incident_id = i.id AND f.status = 'pending')
           AND NOT EXISTS (SELECT 1 FROM followups AS f
                           WHERE f.by_incident = i.id AND f.incident_id <> i.id)
           AND NOT EXISTS (SELECT 1 FROM approvals AS a
                           WHERE a.incident_id = i.id AND a.decision IS NULL)
           AND NOT EXISTS (SELECT 1 FROM runs AS r
                           WHERE r.incident_id = i.id
                             AND unixepoch(r.started_at) + r.window_seconds > ?2)
         ORDER BY i.id LIMIT ?3",
        finals = final_states_sql(),
        escalating = escalating.join(", "),
    ))?
    .query_map(params![time_text(cutoff), now.timestamp(), limit], |row| {
        row.get(0)
    })?
    .collect()
}

/// Delete up to `batch` prunable incidents (see [`prunable`]) with their journal and
/// bookkeeping rows; returns how many. Runs inside the writer's transaction; frees pages
/// with `incremental_vacuum`.
pub(super) fn prune(
    conn: &Connection,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    batch: i64,
) -> rusqlite::Result<usize> {
    let ids = prunable(conn, cutoff, now, batch)?;
    for id in &ids {
        for table in ["events", "runs", "approvals", "followups", "outbox"] {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE incident_id = ?1"))?
                .execute(params![id])?;
        }
        conn.prepare_cached("DELETE FROM incidents WHERE id = ?1")?
            .execute(params![id])?;
    }
    if !ids.is_empty() {
        // A no-op unless the file is in incremental auto-vacuum mode (see `connect`).
        conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES});"))?;
    }
    Ok(ids.len())
}
