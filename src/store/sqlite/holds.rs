//! SQL for host holds: a host nothing may run on until a time. Runs inside the writer's
//! batch transaction or on a read connection; never decides how long a hold lasts.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::rows::{time_column, time_text};
use super::writer::unavailable;
use crate::store::{HostHold, StoreError};

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
