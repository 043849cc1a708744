//! SQL for escalation bookkeeping beyond the outbox rows themselves: when diagnostics last
//! ran per (recipe, target), and digests (many outbox rows sent as one message). Each
//! function runs inside the writer's batch transaction; none decides policy.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::{mark_failed, mark_sent};
use super::rows::{time_column, time_text};
use super::writer::unavailable;
use crate::incident::IncidentId;
use crate::store::{DiagnosticsClaim, OutboxItem, StoreError};

pub(super) fn claim_diagnostics(
    conn: &Connection,
    recipe: &str,
    target: &str,
    id: IncidentId,
    window: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<DiagnosticsClaim, StoreError> {
    let work = || -> rusqlite::Result<DiagnosticsClaim> {
        if let Some(window) = window {
            let last = conn
                .prepare_cached(
                    "SELECT at, incident_id FROM diagnostics_runs WHERE recipe = ?1 AND target = ?2",
                )?
                .query_row(params![recipe, target], |row| {
                    Ok((time_column(row, 0)?, IncidentId(row.get(1)?)))
                })
                .optional()?;
            let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
            if let Some((at, incident)) = last
                && at > since
            {
                return Ok(DiagnosticsClaim::Recent { at, incident });
            }
        }
        conn.prepare_cached(
            "INSERT INTO diagnostics_runs (recipe, target, incident_id, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (recipe, target) DO UPDATE SET incident_id = ?3, at = ?4",
        )?
        .execute(params![recipe, target, id.0, time_text(now)])?;
        Ok(DiagnosticsClaim::Granted)
    };
    work().map_err(unavailable)
}

pub(super) fn new_digest(
    conn: &Connection,
    channel: &str,
    reason: &str,
    size: usize,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let work = || -> rusqlite::Result<i64> {
        conn.prepare_cached(
            "INSERT INTO digests (channel, reason, size, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![channel, reason, size as i64, time_text(now)])?;
        Ok(conn.last_insert_rowid())
    };
    work().map_err(unavailable)
}

pub(super) fn digest_sent(
    conn: &Connection,
    digest: i64,
    items: &[OutboxItem],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let at = time_text(now);
    let work = || -> rusqlite::Result<()> {
        conn.prepare_cached("UPDATE digests SET sent_at = ?2 WHERE id = ?1")?
            .execute(params![digest, at])?;
        for item in items {
            mark_sent(conn, item, &at, Some((digest, items.len())))?;
        }
        Ok(())
    };
    work().map_err(unavailable)
}

pub(super) fn digest_failed(
    conn: &Connection,
    digest: i64,
    items: &[OutboxItem],
    error: &str,
    next_attempt_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (at, next) = (time_text(now), time_text(next_attempt_at));
    let work = || -> rusqlite::Result<()> {
        for item in items {
            mark_failed(conn, item, error, &next, &at, Some((digest, items.len())))?;
        }
        Ok(())
    };
    work().map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn diagnostics_are_claimed_once_per_window_per_recipe_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_path(&dir.path().join("salve.db")).unwrap();
        let window = Some(Duration::from_secs(600));
        let claim = |id: i64, recipe: &'static str, target: &'static str, window| {
            let store = &store;
            async move {
                store
                    .claim_diagnostics(recipe, target, IncidentId(id), window)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            claim(1, "restart", "web1", window).await,
            DiagnosticsClaim::Granted
        );
        match claim(2, "restart", "web1", window).await {
            DiagnosticsClaim::Recent { incident, .. } => assert_eq!(incident, IncidentId(1)),
            other => panic!("{other:?}"),
        }
        // Another target or recipe is another key.
        assert_eq!(
            claim(3, "restart", "web2", window).await,
            DiagnosticsClaim::Granted
        );
        assert_eq!(
            claim(4, "disk", "web1", window).await,
            DiagnosticsClaim::Granted
        );
        // Without a window (an incident that ran) it always runs, and is recorded.
        assert_eq!(
            claim(5, "restart", "web1", None).await,
            DiagnosticsClaim::Granted
        );
        match claim(6, "restart", "web1", window).await {
            DiagnosticsClaim::Recent { incident, .. } => assert_eq!(incident, IncidentId(5)),
            other => panic!("{other:?}"),
        }
        // Once the window has passed, the next one collects again.
        assert_eq!(
            claim(7, "restart", "web1", Some(Duration::ZERO)).await,
            DiagnosticsClaim::Granted
        );
    }
}
