//! Converting between PostgreSQL rows and the domain types: the same text formats as the
//! SQLite store (`sqlite/rows.rs`), which are the on-disk contract of both schemas.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::alert::{AlertStatus, Fingerprint, Source};
use crate::incident::{Event, Incident, IncidentId, JournalEntry, State};
use crate::store::{StoreError, parse_time_text};

pub(super) use crate::store::time_text;

/// Every incident column, in the order `incident_from_row` reads them.
pub(super) const INCIDENT_COLUMNS: &str = "id, source, fingerprint, alertname, starts_at, \
     alert_status, ends_at, resolved_at, labels, annotations, generator_url, external_url, \
     state, reason, plan, first_seen, last_seen, receive_count, escalated_at";

/// A row that does not read as the schema says: the database holds something this salve
/// did not write.
pub(super) fn bad_row(column: usize, message: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("unreadable row (column {column}): {message}"))
}

/// Column `column` as `T`, or a `StoreError` naming it.
pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: usize,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(|e| bad_row(column, e))
}

pub(super) fn time_column(row: &Row, column: usize) -> Result<DateTime<Utc>, StoreError> {
    parse_time_text(&get::<String>(row, column)?).map_err(|e| bad_row(column, e))
}

pub(super) fn optional_time_column(
    row: &Row,
    column: usize,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|text| parse_time_text(&text).map_err(|e| bad_row(column, e)))
        .transpose()
}

pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row,
    column: usize,
) -> Result<T, StoreError> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| bad_row(column, format!("bad JSON: {e}")))
}

pub(super) fn state_from_text(column: usize, text: &str) -> Result<State, StoreError> {
    State::parse(text).ok_or_else(|| bad_row(column, format!("unknown state {text:?}")))
}

/// Read a row selected with `INCIDENT_COLUMNS` (from `start`, for joins).
pub(super) fn incident_from_row(row: &Row) -> Result<Incident, StoreError> {
    let source: String = get(row, 1)?;
    let fingerprint: String = get(row, 2)?;
    let alert_status: String = get(row, 5)?;
    let state: String = get(row, 12)?;
    let plan: Option<String> = get(row, 14)?;
    Ok(Incident {
        id: IncidentId(get(row, 0)?),
        source: Source::parse(&source)
            .ok_or_else(|| bad_row(1, format!("unknown source {source:?}")))?,
        fingerprint: Fingerprint::parse(&fingerprint).map_err(|e| bad_row(2, e))?,
        alertname: get(row, 3)?,
        starts_at: time_column(row, 4)?,
        alert_status: AlertStatus::parse(&alert_status)
            .ok_or_else(|| bad_row(5, format!("unknown alert status {alert_status:?}")))?,
        ends_at: optional_time_column(row, 6)?,
        resolved_at: optional_time_column(row, 7)?,
        labels: json_column::<BTreeMap<String, String>>(row, 8)?,
        annotations: json_column::<BTreeMap<String, String>>(row, 9)?,
        generator_url: get(row, 10)?,
        external_url: get(row, 11)?,
        state: state_from_text(12, &state)?,
        reason: get(row, 13)?,
        plan: plan
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| bad_row(14, format!("bad plan JSON: {e}")))?,
        first_seen: time_column(row, 15)?,
        last_seen: time_column(row, 16)?,
        receive_count: get(row, 17)?,
        escalated_at: optional_time_column(row, 18)?,
    })
}

pub(super) fn incidents_from_rows(rows: &[Row]) -> Result<Vec<Incident>, StoreError> {
    rows.iter().map(incident_from_row).collect()
}

/// Read a row selected as `at, kind, detail`. A row this version cannot read is an
/// `Event::Unreadable`, not an error: one odd row must not hide a whole journal.
pub(super) fn event_from_row(row: &Row) -> Result<JournalEntry, StoreError> {
    let kind: String = get(row, 1)?;
    let detail: String = get(row, 2)?;
    Ok(JournalEntry {
        at: time_column(row, 0)?,
        event: Event::from_row(&kind, &detail),
    })
}

/// A `usize` limit as SQL's BIGINT.
pub(super) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
