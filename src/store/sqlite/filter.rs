//! SQL for the filtered incidents listing (the web UI's and the API's filters): state,
//! alertname, host (the plan's target), recipe (the plan's recipe), first seen since, and
//! the id cursor. Reads only; never decides what a filter means beyond matching it.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::rows::{INCIDENT_COLUMNS, incident_from_row, time_text};
use super::sql_limit;
use crate::incident::Incident;
use crate::store::IncidentFilter;

/// Up to `limit` incidents matching every set field of `filter`, newest first. One query;
/// the values are bound parameters, never spliced into the SQL text.
pub(super) fn incidents_matching(
    conn: &Connection,
    filter: &IncidentFilter,
    limit: usize,
) -> rusqlite::Result<Vec<Incident>> {
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(state) = filter.state {
        conditions.push("state = ?");
        values.push(Value::Text(state.as_str().to_owned()));
    }
    if let Some(alertname) = &filter.alertname {
        conditions.push("alertname = ?");
        values.push(Value::Text(alertname.clone()));
    }
    if let Some(host) = &filter.host {
        conditions.push("json_extract(plan, '$.target.name') = ?");
        values.push(Value::Text(host.clone()));
    }
    if let Some(recipe) = &filter.recipe {
        conditions.push("json_extract(plan, '$.recipe') = ?");
        values.push(Value::Text(recipe.clone()));
    }
    if let Some(since) = filter.since {
        // Fixed-width RFC 3339 text: text order is time order.
        conditions.push("first_seen >= ?");
        values.push(Value::Text(time_text(since)));
    }
    if let Some(before) = filter.before {
        conditions.push("id < ?");
        values.push(Value::Integer(before.0));
    }
    let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    values.push(Value::Integer(sql_limit(limit)));
    conn.prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(values), incident_from_row)?
        .collect()
}
