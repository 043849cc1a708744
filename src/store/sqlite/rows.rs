//! Converting between SQLite rows and the domain types. The text formats here are the
//! on-disk contract of the schema; they must never change without a migration.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;

use crate::alert::{AlertStatus, Fingerprint, Source};
use crate::incident::{Event, Incident, IncidentId, JournalEntry, State};

/// Every incident column, in the order `incident_from_row` reads them.
pub(super) const INCIDENT_COLUMNS: &str = "id, source, fingerprint, alertname, starts_at, \
     alert_status, ends_at, resolved_at, labels, annotations, generator_url, external_url, \
     state, reason, plan, first_seen, last_seen, receive_count, escalated_at";

pub(super) use crate::store::time_text;

fn conversion_error(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, message.into())
}

pub(super) fn parse_time(column: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    crate::store::parse_time_text(text).map_err(|e| conversion_error(column, e))
}

pub(super) fn time_column(row: &Row<'_>, column: usize) -> rusqlite::Result<DateTime<Utc>> {
    parse_time(column, &row.get::<_, String>(column)?)
}

pub(super) fn optional_time_column(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<String>>(column)?
        .map(|text| parse_time(column, &text))
        .transpose()
}

fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| conversion_error(column, format!("bad JSON: {e}")))
}

pub(super) fn state_from_text(column: usize, text: &str) -> rusqlite::Result<State> {
    State::parse(text).ok_or_else(|| conversion_error(column, format!("unknown state {text:?}")))
}

/// Read a row selected with `INCIDENT_COLUMNS`.
pub(super) fn incident_from_row(row: &Row<'_>) -> rusqlite::Result<Incident> {
    let source: String = row.get(1)?;
    let fingerprint: String = row.get(2)?;
    let alert_status: String = row.get(5)?;
    let state: String = row.get(12)?;
    let plan: Option<String> = row.get(14)?;
    Ok(Incident {
        id: IncidentId(row.get(0)?),
        source: Source::parse(&source)
            .ok_or_else(|| conversion_error(1, format!("unknown source {source:?}")))?,
        fingerprint: Fingerprint::parse(&fingerprint).map_err(|e| conversion_error(2, e))?,
        alertname: row.get(3)?,
        starts_at: time_column(row, 4)?,
        alert_status: AlertStatus::parse(&alert_status)
            .ok_or_else(|| conversion_error(5, format!("unknown alert status {alert_status:?}")))?,
        ends_at: optional_time_column(row, 6)?,
        resolved_at: optional_time_column(row, 7)?,
        labels: json_column::<BTreeMap<String, String>>(row, 8)?,
        annotations: json_column::<BTreeMap<String, String>>(row, 9)?,
        generator_url: row.get(10)?,
        external_url: row.get(11)?,
        state: state_from_text(12, &state)?,
        reason: row.get(13)?,
        plan: plan
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| conversion_error(14, format!("bad plan JSON: {e}")))?,
        first_seen: time_column(row, 15)?,
        last_seen: time_column(row, 16)?,
        receive_count: row.get(17)?,
        escalated_at: optional_time_column(row, 18)?,
    })
}

/// Read a row selected as `at, kind, detail`. A row this version cannot read is an
/// `Event::Unreadable`, not an error: one odd row must not hide a whole journal.
pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<JournalEntry> {
    let kind: String = row.get(1)?;
    let detail: String = row.get(2)?;
    Ok(JournalEntry {
        at: time_column(row, 0)?,
        event: Event::from_row(&kind, &detail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_text_is_fixed_width_so_text_order_is_time_order() {
        let first = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .to_utc();
        let second = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
            .unwrap()
            .to_utc();
        let third = DateTime::parse_from_rfc3339("2026-01-02T05:04:06+02:00")
            .unwrap()
            .to_utc();
        assert_eq!(time_text(second), "2026-01-02T03:04:05.500000000Z");
        assert_eq!(time_text(third), "2026-01-02T03:04:06.000000000Z");
        assert!(time_text(first) < time_text(second));
        assert!(time_text(second) < time_text(third));
        assert_eq!(parse_time(0, &time_text(first)).unwrap(), first);
    }
}
