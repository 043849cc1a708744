//! SQL for pauses and the fleet error budget: recording, resuming and listing pauses,
//! counting the failures the budget spends, and tripping it (its pause, its one page).
//! Runs inside the writer's batch transaction or on a read connection; never decides
//! whether an incident is paused or how large the budget is.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{optional_time_column, state_from_text, time_column, time_text};
use super::writer::{journal, unavailable};
use crate::incident::{EscalationReason, Event, IncidentId};
use crate::store::{
    BudgetFailure, BudgetState, BudgetTrip, ERROR_BUDGET_BY, NewPause, Pause, StoreError,
};

const PAUSE_COLUMNS: &str =
    "id, recipe, host, reason, silent, created_by, created_at, until, resumed_at, resumed_by";

/// `WHERE` text for the pauses active at `?1`.
const ACTIVE: &str = "resumed_at IS NULL AND (until IS NULL OR until > ?1)";

fn pause_from_row(row: &Row<'_>) -> rusqlite::Result<Pause> {
    Ok(Pause {
        id: row.get(0)?,
        recipe: row.get(1)?,
        host: row.get(2)?,
        reason: row.get(3)?,
        silent: row.get::<_, i64>(4)? != 0,
        created_by: row.get(5)?,
        created_at: time_column(row, 6)?,
        until: optional_time_column(row, 7)?,
        resumed_at: optional_time_column(row, 8)?,
        resumed_by: row.get(9)?,
    })
}

fn insert_pause(
    conn: &Connection,
    pause: &NewPause,
    now: DateTime<Utc>,
) -> rusqlite::Result<Pause> {
    conn.prepare_cached(
        "INSERT INTO pauses (recipe, host, reason, silent, created_by, created_at, until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        pause.recipe,
        pause.host,
        pause.reason,
        i64::from(pause.silent),
        pause.created_by,
        time_text(now),
        pause.until.map(time_text),
    ])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(&format!("SELECT {PAUSE_COLUMNS} FROM pauses WHERE id = ?1"))?
        .query_row(params![id], pause_from_row)
}

pub(super) fn create_pause(
    conn: &Connection,
    pause: &NewPause,
    now: DateTime<Utc>,
) -> Result<Pause, StoreError> {
    insert_pause(conn, pause, now).map_err(unavailable)
}

pub(super) fn resume_pauses(
    conn: &Connection,
    id: Option<i64>,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Pause>, StoreError> {
    let write = || -> rusqlite::Result<Vec<Pause>> {
        let at = time_text(now);
        let chosen: Vec<Pause> = active_pauses(conn, now)?
            .into_iter()
            .filter(|pause| id.is_none_or(|id| pause.id == id))
            .collect();
        let mut resumed = Vec::with_capacity(chosen.len());
        for mut pause in chosen {
            conn.prepare_cached(
                "UPDATE pauses SET resumed_at = ?2, resumed_by = ?3 WHERE id = ?1",
            )?
            .execute(params![pause.id, at, by])?;
            pause.resumed_at = Some(now);
            pause.resumed_by = Some(by.to_owned());
            resumed.push(pause);
        }
        Ok(resumed)
    };
    write().map_err(unavailable)
}

pub(super) fn active_pauses(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Vec<Pause>> {
    conn.prepare_cached(&format!(
        "SELECT {PAUSE_COLUMNS} FROM pauses WHERE {ACTIVE} ORDER BY id"
    ))?
    .query_map(params![time_text(now)], pause_from_row)?
    .collect()
}

/// The error budget's own pause, if active.
fn budget_pause(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Option<Pause>> {
    conn.prepare_cached(&format!(
        "SELECT {PAUSE_COLUMNS} FROM pauses WHERE {ACTIVE} AND created_by = ?2 ORDER BY id LIMIT 1"
    ))?
    .query_row(params![time_text(now), ERROR_BUDGET_BY], pause_from_row)
    .optional()
}

pub(super) fn error_budget(
    conn: &Connection,
    window: std::time::Duration,
    now: DateTime<Utc>,
) -> rusqlite::Result<BudgetState> {
    if let Some(pause) = budget_pause(conn, now)? {
        return Ok(BudgetState::Tripped(pause));
    }
    // Saturating: a window past chrono's range counts every failure, it does not panic.
    let window_start = chrono::Duration::from_std(window)
        .ok()
        .and_then(|window| now.checked_sub_signed(window))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    // Failures before a human resumed the budget's last pause were paid for already.
    let last_resume: Option<String> = conn
        .prepare_cached("SELECT MAX(resumed_at) FROM pauses WHERE created_by = ?1")?
        .query_row(params![ERROR_BUDGET_BY], |row| row.get(0))?;
    let since = match last_resume {
        Some(resumed) if resumed > time_text(window_start) => resumed,
        _ => time_text(window_start),
    };
    let failures = conn
        .prepare_cached(
            "SELECT e.incident_id, e.kind, e.at, i.alertname, json_extract(i.plan, '$.target.name')
             FROM events e JOIN incidents i ON i.id = e.incident_id
             WHERE e.kind IN ('failed', 'verify_failed') AND e.at > ?1
             ORDER BY e.id",
        )?
        .query_map(params![since], |row| {
            let kind: String = row.get(1)?;
            Ok(BudgetFailure {
                incident_id: IncidentId(row.get(0)?),
                state: state_from_text(1, &kind)?,
                at: time_column(row, 2)?,
                alertname: row.get(3)?,
                target: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(BudgetState::Counting(failures))
}

pub(super) fn trip_error_budget(
    conn: &Connection,
    trip: &BudgetTrip,
    now: DateTime<Utc>,
) -> Result<Option<Pause>, StoreError> {
    let write = || -> rusqlite::Result<Option<Pause>> {
        // Checked in the write transaction: two processes on one store trip it once.
        if budget_pause(conn, now)?.is_some() {
            return Ok(None);
        }
        let pause = insert_pause(
            conn,
            &NewPause {
                recipe: None,
                host: None,
                reason: trip.reason.clone(),
                silent: false,
                created_by: ERROR_BUDGET_BY.to_owned(),
                until: None,
            },
            now,
        )?;
        let at = time_text(now);
        let payload = trip.payload.to_string();
        for channel in &trip.channels {
            conn.prepare_cached(
                "INSERT INTO outbox (incident_id, reason, channel, payload, status, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)
                 ON CONFLICT (incident_id, reason, channel) DO NOTHING",
            )?
            .execute(params![
                trip.incident.0,
                EscalationReason::ErrorBudget.as_str(),
                channel,
                payload,
                at
            ])?;
        }
        journal(
            conn,
            trip.incident,
            &at,
            &Event::ErrorBudgetTripped {
                pause: pause.id,
                failures: trip.failures.clone(),
                max_failures: trip.max_failures,
                window: trip.window.clone(),
                channels: trip.channels.clone(),
            },
        )?;
        Ok(Some(pause))
    };
    write().map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Duration, Utc};

    use super::super::tests::temp_store;
    use crate::alert::{Alert, AlertStatus, Fingerprint, Source};
    use crate::store::{BudgetState, BudgetTrip, NewPause, Store};

    fn pause(host: Option<&str>, by: &str, until: Option<DateTime<Utc>>) -> NewPause {
        NewPause {
            recipe: None,
            host: host.map(str::to_owned),
            reason: "disk swap".into(),
            silent: false,
            created_by: by.into(),
            until,
        }
    }

    async fn active_ids(store: &dyn Store, at: DateTime<Utc>) -> Vec<i64> {
        let active = store.active_pauses(at).await.unwrap();
        active.into_iter().map(|pause| pause.id).collect()
    }

    #[tokio::test]
    async fn a_pause_is_active_until_its_end_or_until_resumed_and_keeps_who() {
        let (_dir, store) = temp_store();
        let now = Utc::now();
        let timed = store
            .create_pause(pause(
                Some("web1"),
                "cli:root",
                Some(now + Duration::hours(1)),
            ))
            .await
            .unwrap();
        let open = store.create_pause(pause(None, "ops", None)).await.unwrap();
        assert_eq!(active_ids(&store, now).await, [timed.id, open.id]);
        assert_eq!(
            active_ids(&store, now + Duration::hours(2)).await,
            [open.id]
        );

        let resumed = store.resume_pauses(Some(open.id), "lead").await.unwrap();
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].resumed_by.as_deref(), Some("lead"));
        assert_eq!(resumed[0].created_by, "ops");
        assert!(
            store
                .resume_pauses(Some(open.id), "lead")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(active_ids(&store, Utc::now()).await, [timed.id]);
        assert_eq!(store.resume_pauses(None, "lead").await.unwrap().len(), 1);
        assert!(active_ids(&store, Utc::now()).await.is_empty());
    }

    #[tokio::test]
    async fn the_error_budget_trips_once_even_when_two_writers_race_and_a_resume_rearms_it() {
        let (_dir, store) = temp_store();
        let alert = Alert {
            source: Source::Generic,
            fingerprint: Fingerprint::parse("0123456789abcdef").unwrap(),
            status: AlertStatus::Firing,
            labels: BTreeMap::from([("alertname".to_owned(), "DiskFull".to_owned())]),
            annotations: BTreeMap::new(),
            starts_at: Some(Utc::now()),
            ends_at: None,
            generator_url: None,
            external_url: None,
        };
        let id = store.ingest(vec![alert], Utc::now()).await.unwrap()[0].id;
        let trip = BudgetTrip {
            incident: id,
            reason: "error budget spent".into(),
            failures: vec![id],
            max_failures: 1,
            window: "15m".into(),
            channels: vec!["pager".into()],
            payload: serde_json::json!({}),
        };
        let now = Utc::now();
        let (first, second) = tokio::join!(
            store.trip_error_budget(trip.clone(), now),
            store.trip_error_budget(trip.clone(), now)
        );
        let tripped: Vec<_> = [first.unwrap(), second.unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(tripped.len(), 1, "{tripped:?}");
        assert_eq!(tripped[0].created_by, "error-budget");
        assert_eq!(tripped[0].until, None);
        assert_eq!(store.outbox_pending().await.unwrap(), 1, "one page");
        let window = std::time::Duration::from_secs(900);
        assert!(matches!(
            store.error_budget(window, Utc::now()).await.unwrap(),
            BudgetState::Tripped(_)
        ));

        store.resume_pauses(None, "lead").await.unwrap();
        assert_eq!(
            store.error_budget(window, Utc::now()).await.unwrap(),
            BudgetState::Counting(Vec::new())
        );
        assert!(
            store
                .trip_error_budget(trip, Utc::now())
                .await
                .unwrap()
                .is_some()
        );
    }
}
