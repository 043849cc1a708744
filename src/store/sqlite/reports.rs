//! SQL for the reports read from the journal: the gaps report and remediation totals.
//! Read connections only; never writes.

use rusqlite::{Connection, params};

use super::rows::time_column;
use crate::store::Gap;

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
