//! SQL for filtered incident listings (the API's `state`, `alertname`, `host`, `recipe`,
//! `since`, `before`). Values are always bound, never spliced into the SQL text.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::rows::{INCIDENT_COLUMNS, incident_from_row, time_text};
use crate::incident::Incident;
use crate::store::IncidentFilter;

/// Up to `limit` incidents matching every condition of `filter`, newest first.
/// `host` is the plan's target name and `recipe` the plan's recipe (both from the plan's
/// JSON); `since` compares with when the incident was first seen.
pub(super) fn incidents_matching(
    conn: &Connection,
    filter: &IncidentFilter,
    limit: i64,
) -> rusqlite::Result<Vec<Incident>> {
    let mut conditions = vec!["id < ?1".to_owned()];
    let mut bind: Vec<Value> = vec![Value::Integer(filter.before.map_or(i64::MAX, |id| id.0))];
    let mut condition = |sql: &str, value: Value| {
        bind.push(value);
        conditions.push(sql.replace('?', &format!("?{}", bind.len())));
    };
    if let Some(state) = filter.state {
        condition("state = ?", Value::Text(state.as_str().to_owned()));
    }
    if let Some(alertname) = &filter.alertname {
        condition("alertname = ?", Value::Text(alertname.clone()));
    }
    if let Some(host) = &filter.host {
        condition(
            "json_extract(plan, '$.target.name') = ?",
            Value::Text(host.clone()),
        );
    }
    if let Some(recipe) = &filter.recipe {
        condition(
            "json_extract(plan, '$.recipe') = ?",
            Value::Text(recipe.clone()),
        );
    }
    if let Some(since) = filter.since {
        // Fixed-width RFC 3339 text: text order is time order.
        condition("first_seen >= ?", Value::Text(time_text(since)));
    }
    bind.push(Value::Integer(limit));
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {} ORDER BY id DESC LIMIT ?{}",
        conditions.join(" AND "),
        bind.len()
    );
    conn.prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(bind), incident_from_row)?
        .collect()
}
