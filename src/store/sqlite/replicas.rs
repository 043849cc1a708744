//! Replicas on SQLite: the same rows and rules as on PostgreSQL (`postgres/replicas.rs`),
//! for one replica at a time: joining ends every earlier replica, so a restart recovers
//! what the last process left at once. Leases are on this process's clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::incident::{IncidentId, State};
use crate::store::{Heartbeat, StoreError};

use super::rows::{INCIDENT_COLUMNS, incident_from_row, time_text};
use super::writer::unavailable;

/// SQL: the replicas whose lease runs at `?1` (a time text).
pub(super) const LIVE_REPLICAS: &str =
    "SELECT id FROM replicas WHERE lease_until > ?1 AND stopped_at IS NULL";

fn until(now: DateTime<Utc>, lease: Duration) -> String {
    time_text(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX))
}

pub(super) fn join(
    conn: &Connection,
    name: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let at = time_text(now);
    conn.execute(
        "UPDATE replicas SET stopped_at = ?1, lease_until = ?1 WHERE stopped_at IS NULL",
        params![at],
    )
    .map_err(unavailable)?;
    conn.execute(
        "INSERT INTO replicas (name, started_at, heartbeat_at, lease_until) VALUES (?1, ?2, ?2, ?3)",
        params![name, at, until(now, lease)],
    )
    .map_err(unavailable)?;
    Ok(conn.last_insert_rowid())
}

/// Renews `me`'s lease while it runs. One that ran out is a dead identity: it is stopped,
/// and the process comes back as a new replica (the second value), whose claims start
/// afresh; the old one's runs are then taken over like a dead replica's.
pub(super) fn heartbeat(
    conn: &Connection,
    me: i64,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<(Heartbeat, Option<i64>), StoreError> {
    let at = time_text(now);
    let renewed = conn
        .execute(
            "UPDATE replicas SET heartbeat_at = ?2, lease_until = ?3
             WHERE id = ?1 AND lease_until > ?2 AND stopped_at IS NULL",
            params![me, at, until(now, lease)],
        )
        .map_err(unavailable)?;
    let rejoined = if renewed == 0 {
        let name: Option<String> = conn
            .query_row(
                "SELECT name FROM replicas WHERE id = ?1",
                params![me],
                |row| row.get(0),
            )
            .optional()
            .map_err(unavailable)?;
        let name = name.unwrap_or_else(|| format!("replica {me}, rejoined"));
        Some(join(conn, &name, lease, now)?)
    } else {
        None
    };
    let live: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM ({LIVE_REPLICAS})"),
            params![at],
            |row| row.get(0),
        )
        .map_err(unavailable)?;
    Ok((
        Heartbeat {
            live_replicas: usize::try_from(live).unwrap_or(1).max(1),
            lapsed: rejoined.is_some(),
        },
        rejoined,
    ))
}

pub(super) fn leave(conn: &Connection, me: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
    let at = time_text(now);
    conn.execute(
        "UPDATE replicas SET stopped_at = ?2, lease_until = ?2 WHERE id = ?1",
        params![me, at],
    )
    .map_err(unavailable)?;
    conn.execute(
        "UPDATE incidents SET owner = NULL WHERE owner = ?1 AND state = 'matched'",
        params![me],
    )
    .map_err(unavailable)?;
    Ok(())
}

/// `claim_matched` without a write: one replica per file means claims never conflict, so
/// SQLite only reads (no commit, no fsync on the way from alert to command); `begin_run`
/// records the owner. The same incidents come back as PostgreSQL claims: this replica's,
/// unowned and dead owners' `matched` ones, whole host queues within `max_hosts`.
pub(super) fn matched_for(
    conn: &Connection,
    me: i64,
    limit: i64,
    max_hosts: usize,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<crate::incident::Incident>> {
    let at = time_text(now);
    let mine: std::collections::BTreeSet<String> = conn
        .prepare_cached(
            "SELECT DISTINCT target FROM incidents
             WHERE owner = ?1 AND target IS NOT NULL
               AND state IN ('remediating', 'verifying')",
        )?
        .query_map(params![me], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let incidents: Vec<crate::incident::Incident> = conn
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents
             WHERE state = 'matched'
               AND (owner IS NULL OR owner = ?2 OR owner NOT IN ({LIVE_REPLICAS}))
             ORDER BY id LIMIT ?3"
        ))?
        .query_map(params![at, me, limit], incident_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let picked: std::collections::HashSet<i64> = crate::store::pick_within_hosts(
        incidents
            .iter()
            .map(|incident| {
                (
                    incident.id.0,
                    incident
                        .plan
                        .as_ref()
                        .and_then(|plan| plan.target.as_ref())
                        .map(|target| target.name.clone()),
                )
            })
            .collect(),
        mine,
        max_hosts,
    )
    .into_iter()
    .collect();
    Ok(incidents
        .into_iter()
        .filter(|incident| picked.contains(&incident.id.0))
        .collect())
}

/// Running incidents whose owner is not live, now owned by `me`.
pub(super) fn claim_orphans(
    conn: &Connection,
    me: i64,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let at = time_text(now);
    conn.prepare_cached(&format!(
        "UPDATE incidents SET owner = ?2
         WHERE state IN ('remediating', 'verifying')
           AND (owner IS NULL OR owner NOT IN ({LIVE_REPLICAS}))
         RETURNING id"
    ))
    .and_then(|mut statement| {
        statement
            .query_map(params![at, me], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()
    })
    .map_err(unavailable)
}

/// The fence (see `postgres/replicas.rs::check_owner`): only the live owner writes a
/// running incident.
pub(super) fn check_owner(
    conn: &Connection,
    me: i64,
    id: IncidentId,
    state: State,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if !matches!(state, State::Remediating | State::Verifying) {
        return Ok(());
    }
    let (owner, live): (Option<i64>, bool) = conn
        .query_row(
            &format!("SELECT owner, ?3 IN ({LIVE_REPLICAS}) FROM incidents WHERE id = ?2"),
            params![time_text(now), id.0, me],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(unavailable)?;
    // A process that is no replica (a test, a tool) writes only what no replica owns.
    let allowed = if me == 0 {
        owner.is_none_or(|owner| owner == 0)
    } else {
        owner == Some(me) && live
    };
    if allowed {
        Ok(())
    } else {
        Err(StoreError::NotOwner { id, owner })
    }
}

/// `begin_run`'s fence: refused when another live replica claimed the incident.
pub(super) fn check_claim(
    conn: &Connection,
    me: i64,
    id: IncidentId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (owner, owner_live): (Option<i64>, bool) = conn
        .query_row(
            &format!("SELECT owner, owner IN ({LIVE_REPLICAS}) FROM incidents WHERE id = ?2"),
            params![time_text(now), id.0],
            |row| Ok((row.get(0)?, row.get::<_, Option<bool>>(1)?.unwrap_or(false))),
        )
        .map_err(unavailable)?;
    match owner {
        Some(owner) if owner != me && owner_live => Err(StoreError::NotOwner {
            id,
            owner: Some(owner),
        }),
        _ => Ok(()),
    }
}
