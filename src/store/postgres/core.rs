//! Incidents and their journal: state changes, reads, listings, reports. The shared
//! helpers every other file uses to write the journal live here.

use std::collections::HashMap;

use chrono::Utc;
use deadpool_postgres::GenericClient;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use crate::incident::{Event, Incident, IncidentId, JournalEntry, State};
use crate::plan::Plan;
use crate::store::{Gap, IncidentDetail, IncidentFilter, StoreError};

use super::replicas::check_owner;
use super::rows::{
    INCIDENT_COLUMNS, event_from_row, get, incidents_from_rows, sql_limit, state_from_text,
    time_column, time_text,
};
use super::{PgStore, pg_error};

/// Sent first in the intake writer's and the planning pass's transactions: every lookup
/// there finds a few rows by fingerprint or id, so none may be planned as a sequential
/// scan. The planner chose one whenever its statistics were missing or old (a fresh
/// database in a storm, before autovacuum analyzed the table: 1 in 10 intake batches
/// scanned the whole table, 16 ms at 22,000 incidents), and a cached plan made while the
/// table was small stayed one as it grew. With this their statements can be cached.
pub(super) const NO_SEQ_SCANS: &str = "SET LOCAL enable_seqscan = off";

/// Append `event` to `id`'s journal at `at` (the caller's transaction).
pub(super) async fn journal(
    client: &impl GenericClient,
    id: IncidentId,
    at: &str,
    event: &Event,
) -> Result<(), StoreError> {
    let (kind, detail) = event.to_row();
    execute(
        client,
        "INSERT INTO events (incident_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        &[&id.0, &at, &kind, &detail.to_string()],
    )
    .await?;
    Ok(())
}

/// The incident's state, locking its row until the transaction ends.
pub(super) async fn current_state_for_update(
    client: &impl GenericClient,
    id: IncidentId,
) -> Result<State, StoreError> {
    let statement = client
        .prepare_cached("SELECT state FROM incidents WHERE id = $1 FOR UPDATE")
        .await
        .map_err(pg_error)?;
    let row = client
        .query_opt(&statement, &[&id.0])
        .await
        .map_err(pg_error)?
        .ok_or(StoreError::NotFound(id))?;
    state_from_text(0, &row.get::<_, String>(0))
}

/// `StateConflict` unless `id` is in `expected` (its row locked until the transaction ends).
pub(super) async fn expect_state(
    client: &impl GenericClient,
    id: IncidentId,
    expected: State,
) -> Result<(), StoreError> {
    let found = current_state_for_update(client, id).await?;
    if found == expected {
        Ok(())
    } else {
        Err(StoreError::StateConflict {
            id,
            expected,
            found,
        })
    }
}

pub(super) fn now_text() -> String {
    time_text(Utc::now())
}

pub(super) async fn incidents_in_state(
    store: &PgStore,
    state: State,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let client = store.client().await?;
    select_incidents(
        &client,
        &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state = $1 ORDER BY id LIMIT $2"),
        &[&state.as_str(), &sql_limit(limit)],
    )
    .await
}

pub(super) async fn record_plan(
    store: &PgStore,
    id: IncidentId,
    from: State,
    to: State,
    plan: &Plan,
) -> Result<(), StoreError> {
    let plan_json = serde_json::to_string(plan)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the plan: {e}")))?;
    let event = Event::Planned {
        outcome: plan.outcome,
        recipe: plan.recipe.clone(),
        mode: plan.mode,
        state: to,
    };
    let target = plan.target.as_ref().map(|target| target.name.as_str());
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    expect_state(&tx, id, from).await?;
    check_owner(&tx, store, id, from).await?;
    execute(
        &tx,
        "UPDATE incidents SET state = $2, reason = $3, plan = $4, target = $5 WHERE id = $1",
        &[&id.0, &to.as_str(), &plan.reason, &plan_json, &target],
    )
    .await?;
    journal(&tx, id, &at, &event).await?;
    tx.commit().await.map_err(pg_error)
}

/// A planning pass's plans in one transaction and two set-based statements: each plan is
/// written (with its `planned` entry) only if its incident is still in its `from` state,
/// else answered `StateConflict` (or `NotFound`). Plans leave `received`, which no fence
/// covers. An error of the transaction fails them all.
pub(super) async fn record_plans(
    store: &PgStore,
    plans: &[(IncidentId, State, State, &Plan)],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut columns = PlanColumns::default();
    for (id, from, to, plan) in plans {
        let (kind, detail) = Event::Planned {
            outcome: plan.outcome,
            recipe: plan.recipe.clone(),
            mode: plan.mode,
            state: *to,
        }
        .to_row();
        columns.id.push(id.0);
        columns.from.push(from.as_str().to_owned());
        columns.to.push(to.as_str().to_owned());
        columns.reason.push(plan.reason.clone());
        columns.plan.push(
            serde_json::to_string(plan)
                .map_err(|e| StoreError::Unavailable(format!("cannot encode the plan: {e}")))?,
        );
        columns
            .target
            .push(plan.target.as_ref().map(|target| target.name.clone()));
        columns.kind.push(kind);
        columns.detail.push(detail.to_string());
    }
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // Each row found by its id; pipelined with the prepare.
    let (no_scans, statement) = tokio::join!(
        tx.batch_execute(NO_SEQ_SCANS),
        tx.prepare_cached(
            "WITH input AS (
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                     $5::text[], $6::text[], $7::text[], $8::text[])
                     AS i(id, from_state, to_state, reason, plan, target, kind, detail)),
             updated AS (
                 UPDATE incidents SET state = input.to_state, reason = input.reason,
                     plan = input.plan, target = input.target
                 FROM input
                 WHERE incidents.id = input.id AND incidents.state = input.from_state
                 RETURNING incidents.id),
             journaled AS (
                 INSERT INTO events (incident_id, at, kind, detail)
                 SELECT updated.id, $9, input.kind, input.detail
                 FROM updated JOIN input USING (id)
                 ORDER BY updated.id)
             SELECT id FROM updated",
        )
    );
    no_scans.map_err(pg_error)?;
    let statement = statement.map_err(pg_error)?;
    let updated: std::collections::HashSet<i64> = tx
        .query(
            &statement,
            &[
                &columns.id,
                &columns.from,
                &columns.to,
                &columns.reason,
                &columns.plan,
                &columns.target,
                &columns.kind,
                &columns.detail,
                &at,
            ],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| get::<i64>(row, 0))
        .collect::<Result<_, _>>()?;
    let missed: Vec<i64> = columns
        .id
        .iter()
        .copied()
        .filter(|id| !updated.contains(id))
        .collect();
    let mut found = std::collections::HashMap::new();
    if !missed.is_empty() {
        for row in tx
            .query(
                "SELECT id, state FROM incidents WHERE id = ANY($1)",
                &[&missed],
            )
            .await
            .map_err(pg_error)?
        {
            found.insert(
                get::<i64>(&row, 0)?,
                state_from_text(1, &get::<String>(&row, 1)?)?,
            );
        }
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(plans
        .iter()
        .map(|(id, from, _, _)| {
            if updated.contains(&id.0) {
                Ok(())
            } else {
                match found.get(&id.0) {
                    None => Err(StoreError::NotFound(*id)),
                    Some(state) => Err(StoreError::StateConflict {
                        id: *id,
                        expected: *from,
                        found: *state,
                    }),
                }
            }
        })
        .collect())
}

/// `record_plans`' parameters: one array per column.
#[derive(Default)]
struct PlanColumns {
    id: Vec<i64>,
    from: Vec<String>,
    to: Vec<String>,
    reason: Vec<Option<String>>,
    plan: Vec<String>,
    target: Vec<Option<String>>,
    kind: Vec<String>,
    detail: Vec<String>,
}

pub(super) async fn transition(
    store: &PgStore,
    id: IncidentId,
    from: State,
    to: State,
    reason: Option<String>,
    event: Event,
) -> Result<(), StoreError> {
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    expect_state(&tx, id, from).await?;
    // The fence: a running incident changes only by its live owner's hand.
    check_owner(&tx, store, id, from).await?;
    // Checked in the same transaction as the write (the row is locked, and intake's
    // updates of it wait): an alert that fired again after the remediator read it
    // resolved is run, never closed as resolved.
    if to == State::ResolvedBeforeRun {
        let statement = tx
            .prepare_cached("SELECT alert_status = 'firing' FROM incidents WHERE id = $1")
            .await
            .map_err(pg_error)?;
        let row = tx.query_one(&statement, &[&id.0]).await.map_err(pg_error)?;
        if get::<bool>(&row, 0)? {
            return Err(StoreError::AlertFiring(id));
        }
    }
    match &reason {
        Some(reason) => {
            execute(
                &tx,
                "UPDATE incidents SET state = $2, reason = $3 WHERE id = $1",
                &[&id.0, &to.as_str(), reason],
            )
            .await?
        }
        None => {
            execute(
                &tx,
                "UPDATE incidents SET state = $2 WHERE id = $1",
                &[&id.0, &to.as_str()],
            )
            .await?
        }
    };
    journal(&tx, id, &at, &event).await?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn append_event(
    store: &PgStore,
    id: IncidentId,
    event: Event,
) -> Result<(), StoreError> {
    let at = now_text();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let state = current_state_for_update(&tx, id).await?;
    check_owner(&tx, store, id, state).await?;
    journal(&tx, id, &at, &event).await?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn gaps(store: &PgStore, limit: usize) -> Result<Vec<Gap>, StoreError> {
    let client = store.client().await?;
    // Names sort bytewise (COLLATE "C") as in SQLite, whatever the database's locale.
    let statement = client
        .prepare_cached(
            "SELECT gap.name, gap.incidents, gap.unmatched, gap.escalated, gap.last_seen,
                    (SELECT reason FROM incidents AS newest
                     WHERE COALESCE(newest.alertname, '<no alertname>') = gap.name
                       AND (newest.state = 'unmatched' OR newest.escalated_at IS NOT NULL)
                     ORDER BY newest.id DESC LIMIT 1)
             FROM (SELECT COALESCE(alertname, '<no alertname>') AS name,
                          COUNT(*) AS incidents,
                          COUNT(*) FILTER (WHERE state = 'unmatched') AS unmatched,
                          COUNT(escalated_at) AS escalated,
                          MAX(last_seen) AS last_seen
                   FROM incidents
                   WHERE state = 'unmatched' OR escalated_at IS NOT NULL
                   GROUP BY 1) AS gap
             ORDER BY gap.incidents DESC, gap.name COLLATE \"C\"
             LIMIT $1",
        )
        .await
        .map_err(pg_error)?;
    client
        .query(&statement, &[&sql_limit(limit)])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| {
            Ok(Gap {
                alertname: get(row, 0)?,
                incidents: get(row, 1)?,
                unmatched: get(row, 2)?,
                escalated: get(row, 3)?,
                last_seen: time_column(row, 4)?,
                last_reason: get(row, 5)?,
            })
        })
        .collect()
}

pub(super) async fn remediation_totals(store: &PgStore) -> Result<(i64, i64), StoreError> {
    let client = store.client().await?;
    let statement = client
        .prepare_cached(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE incidents.state = 'succeeded')
             FROM runs JOIN incidents ON incidents.id = runs.incident_id",
        )
        .await
        .map_err(pg_error)?;
    let row = client.query_one(&statement, &[]).await.map_err(pg_error)?;
    Ok((get(&row, 0)?, get(&row, 1)?))
}

pub(super) async fn list_incidents(
    store: &PgStore,
    before: Option<IncidentId>,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let client = store.client().await?;
    incidents_below(&client, before, limit).await
}

/// Up to `limit` incidents with an id below `before` (all when `None`), newest first: one
/// page of a listing.
async fn incidents_below(
    client: &impl GenericClient,
    before: Option<IncidentId>,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    select_incidents(
        client,
        &format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ),
        &[&before.map_or(i64::MAX, |id| id.0), &sql_limit(limit)],
    )
    .await
}

/// Up to `limit` incidents matching every condition of `filter`, newest first. `host` is
/// the plan's target name (the `target` column, set with the plan) and `recipe` the
/// plan's recipe; `since` compares with when the incident was first seen. Values are
/// always bound, never spliced into the SQL text.
pub(super) async fn incidents_matching(
    store: &PgStore,
    filter: &IncidentFilter,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let mut conditions = vec!["id < $1".to_owned()];
    let mut bind: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(filter.before.map_or(i64::MAX, |id| id.0))];
    let mut condition = |sql: &str, value: Box<dyn ToSql + Sync + Send>| {
        bind.push(value);
        conditions.push(sql.replace('?', &format!("${}", bind.len())));
    };
    if let Some(state) = filter.state {
        condition("state = ?", Box::new(state.as_str()));
    }
    if let Some(alertname) = &filter.alertname {
        condition("alertname = ?", Box::new(alertname.clone()));
    }
    if let Some(host) = &filter.host {
        condition("target = ?", Box::new(host.clone()));
    }
    if let Some(recipe) = &filter.recipe {
        condition("(plan::jsonb ->> 'recipe') = ?", Box::new(recipe.clone()));
    }
    if let Some(since) = filter.since {
        // Fixed-width RFC 3339 text: text order is time order.
        condition("first_seen >= ?", Box::new(time_text(since)));
    }
    bind.push(Box::new(sql_limit(limit)));
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {} ORDER BY id DESC LIMIT ${}",
        conditions.join(" AND "),
        bind.len()
    );
    let params: Vec<&(dyn ToSql + Sync)> = bind
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let client = store.client().await?;
    select_incidents(&client, &sql, &params).await
}

pub(super) async fn incident_details(
    store: &PgStore,
    before: Option<IncidentId>,
    limit: usize,
) -> Result<Vec<IncidentDetail>, StoreError> {
    let mut client = store.client().await?;
    // One snapshot: the incidents and their journals as of one moment.
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    let incidents = incidents_below(&snapshot, before, limit).await?;
    let (Some(newest), Some(oldest)) = (incidents.first(), incidents.last()) else {
        return Ok(Vec::new());
    };
    let statement = snapshot
        .prepare_cached(
            "SELECT at, kind, detail, incident_id FROM events
             WHERE incident_id BETWEEN $1 AND $2 ORDER BY id",
        )
        .await
        .map_err(pg_error)?;
    let rows = snapshot
        .query(&statement, &[&oldest.id.0, &newest.id.0])
        .await
        .map_err(pg_error)?;
    snapshot.commit().await.map_err(pg_error)?;
    let mut events: HashMap<i64, Vec<JournalEntry>> = HashMap::new();
    for row in &rows {
        let incident: i64 = get(row, 3)?;
        events
            .entry(incident)
            .or_default()
            .push(event_from_row(row)?);
    }
    Ok(incidents
        .into_iter()
        .map(|incident| IncidentDetail {
            events: events.remove(&incident.id.0).unwrap_or_default(),
            incident,
        })
        .collect())
}

pub(super) async fn incident(
    store: &PgStore,
    id: IncidentId,
) -> Result<Option<IncidentDetail>, StoreError> {
    let mut client = store.client().await?;
    // One snapshot: the incident and its journal as of one moment.
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_error)?;
    let found = select_incidents(
        &snapshot,
        &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"),
        &[&id.0],
    )
    .await?;
    let Some(incident) = found.into_iter().next() else {
        return Ok(None);
    };
    let statement = snapshot
        .prepare_cached("SELECT at, kind, detail FROM events WHERE incident_id = $1 ORDER BY id")
        .await
        .map_err(pg_error)?;
    let rows = snapshot
        .query(&statement, &[&id.0])
        .await
        .map_err(pg_error)?;
    snapshot.commit().await.map_err(pg_error)?;
    let events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(IncidentDetail { incident, events }))
}

pub(super) async fn count_by_state(store: &PgStore) -> Result<Vec<(State, i64)>, StoreError> {
    let client = store.client().await?;
    let statement = client
        .prepare_cached(
            "SELECT state, COUNT(*) FROM incidents GROUP BY state ORDER BY state COLLATE \"C\"",
        )
        .await
        .map_err(pg_error)?;
    client
        .query(&statement, &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| Ok((state_from_text(0, &get::<String>(row, 0)?)?, get(row, 1)?)))
        .collect()
}

/// Run `sql` as a cached prepared statement (one round trip once prepared).
pub(super) async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
    client.execute(&statement, params).await.map_err(pg_error)
}

async fn select_incidents(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Incident>, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
    let rows = client.query(&statement, params).await.map_err(pg_error)?;
    incidents_from_rows(&rows)
}
