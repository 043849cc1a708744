//! What decides whether a run may start, and the operator's controls: the breaker and
//! `begin_run` (one run per host, under advisory locks), host holds, diagnostics claims,
//! pauses and the error budget, approvals, retention. The SQL of `sqlite/breaker.rs`,
//! `holds.rs`, `pauses.rs`, `approvals.rs` and `retention.rs`, made safe for several
//! replicas writing at once: every check-then-write holds a lock (an advisory lock or the
//! row's) until its transaction commits. Never decides policy (limits, windows, who may
//! approve): the callers do.
//!
//! Lock order, in every function that takes more than one: the host's advisory lock, then
//! incident rows (by id), then approval rows, then the breaker's or the error budget's
//! advisory lock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::incident::{EscalationReason, Event, IncidentId, State};
use crate::plan::Plan;
use crate::store::{
    ApprovalDecision, ApprovalOutcome, ApprovalRefusal, ApprovalRequest, BreakerLimit,
    BreakerReset, BreakerResetOutcome, BreakerStatus, BudgetFailure, BudgetState, BudgetTrip,
    DiagnosticsClaim, ERROR_BUDGET_BY, HostHold, LinkProof, NewPause, Pause, RunGate, RunRecord,
    StoreError,
};

use super::core::{expect_state, journal};
use super::replicas::LIVE_REPLICAS;
use super::rows::{
    bad_row, get, optional_time_column, sql_limit, state_from_text, time_column, time_text,
};
use super::{PgStore, pg_error};

/// Hold the transaction-level advisory lock named `name` until the transaction ends.
async fn advisory_lock(client: &impl GenericClient, name: &str) -> Result<(), StoreError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&name],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// The advisory lock name of one host (a run starting there).
fn host_lock(target: &str) -> String {
    format!("host:{target}")
}

/// The advisory lock name of one breaker. PostgreSQL text cannot hold NUL, so the recipe's
/// length, not a separator, keeps ("a", "bc") and ("ab", "c") apart.
fn breaker_lock(recipe: &str, key: &str) -> String {
    format!("breaker:{}:{recipe}{key}", recipe.len())
}

const ERROR_BUDGET_LOCK: &str = "error-budget";

/// `now - window`, or the earliest time when that is out of range (it counts everything).
fn window_start_time(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|window| now.checked_sub_signed(window))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The start of (recipe, key)'s breaker window at `now`: `window` ago, or its last reset
/// when later.
async fn window_start(
    client: &impl GenericClient,
    recipe: &str,
    key: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<String, StoreError> {
    let since = time_text(window_start_time(now, window));
    let reset: Option<String> = client
        .query_opt(
            "SELECT reset_at FROM breaker_resets WHERE recipe = $1 AND breaker_key = $2",
            &[&recipe, &key],
        )
        .await
        .map_err(pg_error)?
        .map(|row| get(&row, 0))
        .transpose()?;
    // Fixed-width UTC text: the later of the two is the larger string.
    Ok(match reset {
        Some(reset) if reset > since => reset,
        _ => since,
    })
}

async fn runs_since(
    client: &impl GenericClient,
    recipe: &str,
    key: &str,
    since: &str,
) -> Result<Vec<RunRecord>, StoreError> {
    client
        .query(
            "SELECT runs.incident_id, runs.started_at, incidents.state
             FROM runs JOIN incidents ON incidents.id = runs.incident_id
             WHERE runs.recipe = $1 AND runs.breaker_key = $2 AND runs.started_at > $3
             ORDER BY runs.started_at, runs.id",
            &[&recipe, &key, &since],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| {
            Ok(RunRecord {
                incident_id: IncidentId(get(row, 0)?),
                started_at: time_column(row, 1)?,
                state: state_from_text(2, &get::<String>(row, 2)?)?,
            })
        })
        .collect()
}

async fn runs_in_window_at(
    client: &impl GenericClient,
    recipe: &str,
    key: &str,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<RunRecord>, StoreError> {
    let since = window_start(client, recipe, key, now, window).await?;
    runs_since(client, recipe, key, &since).await
}

/// Why `target` cannot take a run now, if it cannot: another incident runs there (on any
/// replica), or a hold lasts past `now`. The caller holds the host's advisory lock, so
/// no run can start there between this check and its own.
async fn host_busy(
    client: &impl GenericClient,
    id: IncidentId,
    target: &str,
    now: DateTime<Utc>,
) -> Result<Option<RunGate>, StoreError> {
    let running = client
        .query_opt(
            "SELECT id, state FROM incidents
             WHERE target = $1 AND id <> $2 AND state IN ('remediating', 'verifying')
             ORDER BY id LIMIT 1",
            &[&target, &id.0],
        )
        .await
        .map_err(pg_error)?;
    if let Some(row) = running {
        let other: i64 = get(&row, 0)?;
        let state: String = get(&row, 1)?;
        return Ok(Some(RunGate::HostBusy {
            why: format!("incident {other} is {state} on {target}"),
            retry_after: Duration::from_secs(1),
        }));
    }
    let hold = client
        .query_opt(
            "SELECT until, why FROM host_holds WHERE host = $1 AND until > $2",
            &[&target, &time_text(now)],
        )
        .await
        .map_err(pg_error)?;
    if let Some(row) = hold {
        let until = time_column(&row, 0)?;
        return Ok(Some(RunGate::HostBusy {
            why: get(&row, 1)?,
            retry_after: (until - now).to_std().unwrap_or(Duration::ZERO),
        }));
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn begin_run(
    store: &PgStore,
    id: IncidentId,
    recipe: &str,
    target: &str,
    key: &str,
    limit: BreakerLimit,
    started: Event,
    first_step: Option<Event>,
    now: DateTime<Utc>,
) -> Result<RunGate, StoreError> {
    let me = store.me();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // Runs on one host start one at a time, whichever replica asks.
    advisory_lock(&tx, &host_lock(target)).await?;
    expect_state(&tx, id, State::Matched).await?;
    let row = tx
        .query_one(
            &format!(
                "SELECT owner, owner IN ({LIVE_REPLICAS}), $2 IN ({LIVE_REPLICAS}),
                        alert_status = 'resolved'
                 FROM incidents WHERE id = $1"
            ),
            &[&id.0, &me],
        )
        .await
        .map_err(pg_error)?;
    let owner: Option<i64> = get(&row, 0)?;
    let owner_live = get::<Option<bool>>(&row, 1)?.unwrap_or(false);
    let me_live: bool = get(&row, 2)?;
    // As in SQLite: another live replica's claim is its own to start. And a replica whose
    // lease ran out starts nothing: another may be taking its work over.
    let claimed_by_other = owner.is_some_and(|owner| owner != me) && owner_live;
    if claimed_by_other || (me != 0 && !me_live) {
        return Err(StoreError::NotOwner { id, owner });
    }
    if get::<bool>(&row, 3)? {
        return Ok(RunGate::AlertResolved);
    }
    if let Some(busy) = host_busy(&tx, id, target, now).await? {
        return Ok(busy);
    }
    // Runs of one breaker on other hosts are counted one transaction at a time.
    advisory_lock(&tx, &breaker_lock(recipe, key)).await?;
    let runs = runs_in_window_at(&tx, recipe, key, limit.window, now).await?;
    if let Some(max_runs) = limit.max_runs
        && runs.len() >= max_runs as usize
    {
        return Ok(RunGate::BreakerOpen { runs });
    }
    let at = time_text(now);
    tx.execute(
        "INSERT INTO runs (incident_id, recipe, target, breaker_key, started_at, max_runs,
                           window_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &id.0,
            &recipe,
            &target,
            &key,
            &at,
            &limit.max_runs.map(i64::from),
            &(limit.window.as_secs() as i64),
        ],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "UPDATE incidents SET state = $2, owner = $3 WHERE id = $1",
        &[&id.0, &State::Remediating.as_str(), &me],
    )
    .await
    .map_err(pg_error)?;
    journal(&tx, id, &at, &started).await?;
    if let Some(event) = &first_step {
        journal(&tx, id, &at, event).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(RunGate::Started)
}

pub(super) async fn hold_host(
    store: &PgStore,
    host: &str,
    until: DateTime<Utc>,
    why: &str,
) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "DELETE FROM host_holds WHERE until <= $1",
        &[&time_text(Utc::now())],
    )
    .await
    .map_err(pg_error)?;
    // The conflict arm locks the row: of two holds racing, the later `until` stays.
    tx.execute(
        "INSERT INTO host_holds (host, until, why) VALUES ($1, $2, $3)
         ON CONFLICT (host) DO UPDATE SET until = excluded.until, why = excluded.why
         WHERE excluded.until > host_holds.until",
        &[&host, &time_text(until), &why],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(())
}

pub(super) async fn host_holds(store: &PgStore) -> Result<Vec<HostHold>, StoreError> {
    let client = store.client().await?;
    client
        .query(
            "SELECT host, until, why FROM host_holds WHERE until > $1 ORDER BY host",
            &[&time_text(Utc::now())],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| {
            Ok(HostHold {
                host: get(row, 0)?,
                until: time_column(row, 1)?,
                why: get(row, 2)?,
            })
        })
        .collect()
}

pub(super) async fn runs_in_window(
    store: &PgStore,
    recipe: &str,
    key: &str,
    window: Duration,
) -> Result<Vec<RunRecord>, StoreError> {
    let client = store.client().await?;
    runs_in_window_at(&client, recipe, key, window, Utc::now()).await
}

pub(super) async fn breakers(store: &PgStore) -> Result<Vec<BreakerStatus>, StoreError> {
    let now = Utc::now();
    let client = store.client().await?;
    // The newest run of each breaker carries the recipe's current max_runs and window.
    let latest = client
        .query(
            "SELECT recipe, breaker_key, target, max_runs, window_seconds, started_at FROM runs
             WHERE id IN (SELECT MAX(id) FROM runs GROUP BY recipe, breaker_key)
             ORDER BY recipe, breaker_key",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let mut statuses = Vec::new();
    for row in &latest {
        let recipe: String = get(row, 0)?;
        let key: String = get(row, 1)?;
        let max_runs = get::<Option<i64>>(row, 3)?
            .map(|max| u32::try_from(max).map_err(|e| bad_row(3, e)))
            .transpose()?;
        let window_seconds: i64 = get(row, 4)?;
        let window = Duration::from_secs(window_seconds.max(0) as u64);
        let runs = runs_in_window_at(&client, &recipe, &key, window, now).await?;
        if runs.is_empty() {
            continue;
        }
        let reset_at: Option<String> = client
            .query_opt(
                "SELECT reset_at FROM breaker_resets WHERE recipe = $1 AND breaker_key = $2",
                &[&recipe, &key],
            )
            .await
            .map_err(pg_error)?
            .map(|row| get(&row, 0))
            .transpose()?;
        statuses.push(BreakerStatus {
            open: max_runs.is_some_and(|max| runs.len() >= max as usize),
            runs_in_window: runs.len() as i64,
            max_runs,
            window_seconds,
            last_run: time_column(row, 5)?,
            reset_at: reset_at.and_then(|text| text.parse().ok()),
            target: get(row, 2)?,
            recipe,
            key,
        });
    }
    Ok(statuses)
}

/// At most this many of a recipe's keys are named when a reset names an unknown one.
const KNOWN_KEYS_SHOWN: i64 = 20;

/// The incident a reset of (recipe, key) is journaled on: the key's newest run or
/// `breaker_open`, with its target.
async fn newest_of_breaker(
    client: &impl GenericClient,
    recipe: &str,
    key: &str,
) -> Result<Option<(i64, Option<String>)>, StoreError> {
    client
        .query_opt(
            "SELECT id, target FROM (
               SELECT incident_id AS id, target FROM runs
                 WHERE recipe = $1 AND breaker_key = $2
               UNION ALL
               SELECT id, plan::jsonb->'target'->>'name' FROM incidents
                 WHERE state = 'breaker_open'
                 AND plan::jsonb->>'recipe' = $1
                 AND COALESCE(NULLIF(plan::jsonb->'breaker'->>'key', ''),
                              plan::jsonb->'target'->>'name') = $2) AS newest
             ORDER BY id DESC LIMIT 1",
            &[&recipe, &key],
        )
        .await
        .map_err(pg_error)?
        .map(|row| Ok((get(&row, 0)?, get(&row, 1)?)))
        .transpose()
}

pub(super) async fn reset_breaker(
    store: &PgStore,
    recipe: &str,
    key: &str,
    by: &str,
) -> Result<BreakerResetOutcome, StoreError> {
    let mut client = store.client().await?;
    // The incident row is locked before the breaker (the lock order `begin_run` keeps), so
    // the incident is found first and found again under the lock; a run that started
    // in between makes another newest incident: look again.
    loop {
        let tx = client.transaction().await.map_err(pg_error)?;
        let Some((newest, _)) = newest_of_breaker(&tx, recipe, key).await? else {
            let known_keys = tx
                .query(
                    "SELECT DISTINCT breaker_key FROM runs WHERE recipe = $1
                     ORDER BY breaker_key LIMIT $2",
                    &[&recipe, &KNOWN_KEYS_SHOWN],
                )
                .await
                .map_err(pg_error)?
                .iter()
                .map(|row| get(row, 0))
                .collect::<Result<Vec<String>, _>>()?;
            return Ok(if known_keys.is_empty() {
                BreakerResetOutcome::UnknownRecipe
            } else {
                BreakerResetOutcome::UnknownKey { known_keys }
            });
        };
        tx.execute(
            "SELECT 1 FROM incidents WHERE id = $1 FOR KEY SHARE",
            &[&newest],
        )
        .await
        .map_err(pg_error)?;
        advisory_lock(&tx, &breaker_lock(recipe, key)).await?;
        let Some((again, target)) = newest_of_breaker(&tx, recipe, key).await? else {
            continue;
        };
        if again != newest {
            continue;
        }
        let last_reset: String = get(
            &tx.query_one(
                "SELECT COALESCE(MAX(reset_at), '') FROM breaker_resets
                 WHERE recipe = $1 AND breaker_key = $2",
                &[&recipe, &key],
            )
            .await
            .map_err(pg_error)?,
            0,
        )?;
        let runs_forgotten = runs_since(&tx, recipe, key, &last_reset).await?.len();
        let at = time_text(Utc::now());
        tx.execute(
            "INSERT INTO breaker_resets (recipe, breaker_key, reset_at) VALUES ($1, $2, $3)
             ON CONFLICT (recipe, breaker_key) DO UPDATE SET reset_at = excluded.reset_at",
            &[&recipe, &key, &at],
        )
        .await
        .map_err(pg_error)?;
        let incident = IncidentId(newest);
        let event = Event::BreakerReset {
            recipe: recipe.to_owned(),
            target: target.unwrap_or_default(),
            key: Some(key.to_owned()),
            by: by.to_owned(),
            runs_forgotten,
        };
        journal(&tx, incident, &at, &event).await?;
        tx.commit().await.map_err(pg_error)?;
        return Ok(BreakerResetOutcome::Reset(BreakerReset {
            incident,
            runs_forgotten,
        }));
    }
}

pub(super) async fn claim_diagnostics(
    store: &PgStore,
    recipe: &str,
    target: &str,
    id: IncidentId,
    window: Option<Duration>,
) -> Result<DiagnosticsClaim, StoreError> {
    let now = Utc::now();
    let at = time_text(now);
    // Without a window every claim is granted.
    let since = window.map(|window| time_text(window_start_time(now, window)));
    let client = store.client().await?;
    // One statement: the conflict arm locks the (recipe, target) row and compares with
    // its newest version, so of two replicas racing one is granted.
    let granted = client
        .query_opt(
            "INSERT INTO diagnostics_runs (recipe, target, incident_id, at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (recipe, target) DO UPDATE
               SET incident_id = excluded.incident_id, at = excluded.at
               WHERE $5::TEXT IS NULL OR diagnostics_runs.at <= $5
             RETURNING 1",
            &[&recipe, &target, &id.0, &at, &since],
        )
        .await
        .map_err(pg_error)?;
    if granted.is_some() {
        return Ok(DiagnosticsClaim::Granted);
    }
    let row = client
        .query_one(
            "SELECT at, incident_id FROM diagnostics_runs WHERE recipe = $1 AND target = $2",
            &[&recipe, &target],
        )
        .await
        .map_err(pg_error)?;
    Ok(DiagnosticsClaim::Recent {
        at: time_column(&row, 0)?,
        incident: IncidentId(get(&row, 1)?),
    })
}

/// A new state and reason; `escalated_at` cleared, so the next escalating state (the
/// approval page, a denial, a failure after approval) is paged on its own.
async fn set_state(
    client: &impl GenericClient,
    id: IncidentId,
    to: State,
    reason: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE incidents SET state = $2, reason = $3, escalated_at = NULL WHERE id = $1",
            &[&id.0, &to.as_str(), &reason],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

pub(super) async fn request_approval(
    store: &PgStore,
    id: IncidentId,
    plan_digest: &str,
    nonce: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    expect_state(&tx, id, State::Matched).await?;
    let at = time_text(Utc::now());
    let until = time_text(expires_at);
    let reason = format!(
        "the recipe runs only after a human approves this plan; waiting until {until} \
         (approve or deny by the page's links, `salve approve {id}` / `salve deny {id}`, or the API)"
    );
    tx.execute(
        "INSERT INTO approvals (incident_id, plan_digest, nonce, requested_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (incident_id) DO UPDATE SET plan_digest = $2, nonce = $3,
            requested_at = $4, expires_at = $5, decision = NULL, decided_by = NULL,
            decided_at = NULL",
        &[&id.0, &plan_digest, &nonce, &at, &until],
    )
    .await
    .map_err(pg_error)?;
    set_state(&tx, id, State::AwaitingApproval, &reason).await?;
    journal(
        &tx,
        id,
        &at,
        &Event::ApprovalRequested {
            plan_digest: plan_digest.to_owned(),
            expires_at,
        },
    )
    .await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(())
}

fn approval_from_row(id: IncidentId, row: &Row) -> Result<ApprovalRequest, StoreError> {
    Ok(ApprovalRequest {
        incident: id,
        plan_digest: get(row, 0)?,
        nonce: get(row, 1)?,
        requested_at: time_column(row, 2)?,
        expires_at: time_column(row, 3)?,
        decision: get(row, 4)?,
        decided_by: get(row, 5)?,
    })
}

const APPROVAL_COLUMNS: &str = "plan_digest, nonce, requested_at, expires_at, decision, decided_by";

pub(super) async fn approval(
    store: &PgStore,
    id: IncidentId,
) -> Result<Option<ApprovalRequest>, StoreError> {
    let client = store.client().await?;
    client
        .query_opt(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE incident_id = $1"),
            &[&id.0],
        )
        .await
        .map_err(pg_error)?
        .map(|row| approval_from_row(id, &row))
        .transpose()
}

pub(super) async fn decide_approval(
    store: &PgStore,
    id: IncidentId,
    decision: ApprovalDecision,
    by: &str,
    link: Option<LinkProof>,
) -> Result<ApprovalOutcome, StoreError> {
    let now = Utc::now();
    let refuse = |why| Ok(ApprovalOutcome::Refused(why));
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // The incident's row, then its request's, locked: of two humans deciding at once (on
    // two replicas), the second waits and finds the request decided.
    let Some(row) = tx
        .query_opt(
            "SELECT state, alert_status = 'resolved', plan FROM incidents WHERE id = $1
             FOR UPDATE",
            &[&id.0],
        )
        .await
        .map_err(pg_error)?
    else {
        return refuse(ApprovalRefusal::NotFound(id));
    };
    let state = State::parse(&get::<String>(&row, 0)?).unwrap_or(State::Received);
    let resolved: bool = get(&row, 1)?;
    let plan: Option<String> = get(&row, 2)?;
    let plan = plan.and_then(|text| serde_json::from_str::<Plan>(&text).ok());
    let digest = plan.as_ref().map(Plan::digest);
    let request = tx
        .query_opt(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE incident_id = $1 FOR UPDATE"),
            &[&id.0],
        )
        .await
        .map_err(pg_error)?
        .map(|row| approval_from_row(id, &row))
        .transpose()?;
    if let Some(ApprovalRequest {
        decision: Some(decided),
        decided_by,
        expires_at,
        ..
    }) = &request
    {
        return refuse(match decided.as_str() {
            "resolved" => ApprovalRefusal::AlertResolved,
            "expired" => ApprovalRefusal::Expired(*expires_at),
            _ => ApprovalRefusal::AlreadyDecided {
                decision: decided.clone(),
                by: decided_by.clone().unwrap_or_default(),
            },
        });
    }
    let Some(request) = request.filter(|_| state == State::AwaitingApproval) else {
        return refuse(ApprovalRefusal::NotAwaiting { id, state });
    };
    let link_is_stale = link
        .is_some_and(|link| link.nonce != request.nonce || link.plan_digest != request.plan_digest);
    if link_is_stale || digest.as_deref() != Some(request.plan_digest.as_str()) {
        return refuse(ApprovalRefusal::PlanChanged);
    }
    if resolved {
        return refuse(ApprovalRefusal::AlertResolved);
    }
    if request.expires_at <= now {
        return refuse(ApprovalRefusal::Expired(request.expires_at));
    }
    let at = time_text(now);
    let plan_digest = request.plan_digest;
    let (word, to, reason, event) = match decision {
        ApprovalDecision::Approve => (
            "approved",
            State::Matched,
            format!("approved by {by}; runs through the usual gates"),
            Event::Approved {
                by: by.to_owned(),
                plan_digest: plan_digest.clone(),
                commands: plan.map(|plan| plan.commands).unwrap_or_default(),
            },
        ),
        ApprovalDecision::Deny { reason } => (
            "denied",
            State::Denied,
            format!("denied by {by}: {reason}; nothing was run"),
            Event::Denied {
                by: by.to_owned(),
                reason,
                plan_digest: plan_digest.clone(),
            },
        ),
    };
    decide(&tx, id, word, by, &at).await?;
    set_state(&tx, id, to, &reason).await?;
    journal(&tx, id, &at, &event).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(ApprovalOutcome::Decided { plan_digest })
}

async fn decide(
    client: &impl GenericClient,
    id: IncidentId,
    decision: &str,
    by: &str,
    at: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE approvals SET decision = $2, decided_by = $3, decided_at = $4
             WHERE incident_id = $1 AND decision IS NULL",
            &[&id.0, &decision, &by, &at],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

const DUE: &str = "FROM approvals JOIN incidents ON incidents.id = approvals.incident_id
     WHERE approvals.decision IS NULL AND incidents.state = 'awaiting_approval'
       AND (approvals.expires_at <= $1 OR incidents.alert_status = 'resolved')";

pub(super) async fn expire_approvals(
    store: &PgStore,
    now: DateTime<Utc>,
) -> Result<Vec<IncidentId>, StoreError> {
    let at = time_text(now);
    let mut client = store.client().await?;
    let candidates: Vec<i64> = client
        .query(
            &format!("SELECT approvals.incident_id {DUE} ORDER BY approvals.incident_id"),
            &[&at],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| get(row, 0))
        .collect::<Result<_, _>>()?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await.map_err(pg_error)?;
    // Incident rows first, in id order (as `decide_approval` locks them), then the due
    // test again: a human may have decided one meanwhile.
    tx.execute(
        "SELECT 1 FROM incidents WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&candidates],
    )
    .await
    .map_err(pg_error)?;
    let due = tx
        .query(
            &format!(
                "SELECT approvals.incident_id, approvals.expires_at,
                        incidents.alert_status = 'resolved'
                 {DUE} AND approvals.incident_id = ANY($2)
                 ORDER BY approvals.incident_id"
            ),
            &[&at, &candidates],
        )
        .await
        .map_err(pg_error)?;
    let mut ended = Vec::with_capacity(due.len());
    for row in &due {
        let id = IncidentId(get(row, 0)?);
        if get::<bool>(row, 2)? {
            let reason = "the alert resolved while its plan awaited approval; nothing was run";
            decide(&tx, id, "resolved", "salve", &at).await?;
            // `escalated_at` stays: the approval page was sent, and nothing more is.
            tx.execute(
                "UPDATE incidents SET state = $2, reason = $3 WHERE id = $1",
                &[&id.0, &State::ResolvedBeforeRun.as_str(), &reason],
            )
            .await
            .map_err(pg_error)?;
            let event = Event::ResolvedBeforeRun {
                reason: reason.to_owned(),
            };
            journal(&tx, id, &at, &event).await?;
        } else {
            let expires_at = time_column(row, 1)?;
            let reason = format!(
                "no one approved the plan before {}; nothing was run",
                time_text(expires_at)
            );
            decide(&tx, id, "expired", "salve", &at).await?;
            set_state(&tx, id, State::ApprovalExpired, &reason).await?;
            journal(&tx, id, &at, &Event::ApprovalExpired { expires_at }).await?;
        }
        ended.push(id);
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(ended)
}

const PAUSE_COLUMNS: &str =
    "id, recipe, host, reason, silent, created_by, created_at, until, resumed_at, resumed_by";

/// `WHERE` text for the pauses active at `$1`.
const ACTIVE: &str = "resumed_at IS NULL AND (until IS NULL OR until > $1)";

fn pause_from_row(row: &Row) -> Result<Pause, StoreError> {
    Ok(Pause {
        id: get(row, 0)?,
        recipe: get(row, 1)?,
        host: get(row, 2)?,
        reason: get(row, 3)?,
        silent: get::<i64>(row, 4)? != 0,
        created_by: get(row, 5)?,
        created_at: time_column(row, 6)?,
        until: optional_time_column(row, 7)?,
        resumed_at: optional_time_column(row, 8)?,
        resumed_by: get(row, 9)?,
    })
}

async fn insert_pause(
    client: &impl GenericClient,
    pause: &NewPause,
    now: DateTime<Utc>,
) -> Result<Pause, StoreError> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO pauses (recipe, host, reason, silent, created_by, created_at, until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {PAUSE_COLUMNS}"
            ),
            &[
                &pause.recipe,
                &pause.host,
                &pause.reason,
                &i64::from(pause.silent),
                &pause.created_by,
                &time_text(now),
                &pause.until.map(time_text),
            ],
        )
        .await
        .map_err(pg_error)?;
    pause_from_row(&row)
}

pub(super) async fn create_pause(store: &PgStore, pause: NewPause) -> Result<Pause, StoreError> {
    let client = store.client().await?;
    insert_pause(&client, &pause, Utc::now()).await
}

pub(super) async fn resume_pauses(
    store: &PgStore,
    id: Option<i64>,
    by: &str,
) -> Result<Vec<Pause>, StoreError> {
    let client = store.client().await?;
    // One statement: a pause two humans resume at once is resumed (and returned) once.
    let rows = client
        .query(
            &format!(
                "UPDATE pauses SET resumed_at = $1, resumed_by = $2
                 WHERE {ACTIVE} AND ($3::BIGINT IS NULL OR id = $3)
                 RETURNING {PAUSE_COLUMNS}"
            ),
            &[&time_text(Utc::now()), &by, &id],
        )
        .await
        .map_err(pg_error)?;
    let mut resumed = rows
        .iter()
        .map(pause_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    resumed.sort_by_key(|pause| pause.id);
    Ok(resumed)
}

pub(super) async fn active_pauses(
    store: &PgStore,
    now: DateTime<Utc>,
) -> Result<Vec<Pause>, StoreError> {
    let client = store.client().await?;
    client
        .query(
            &format!("SELECT {PAUSE_COLUMNS} FROM pauses WHERE {ACTIVE} ORDER BY id"),
            &[&time_text(now)],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(pause_from_row)
        .collect()
}

/// The error budget's own pause, if active.
async fn budget_pause(
    client: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<Option<Pause>, StoreError> {
    client
        .query_opt(
            &format!(
                "SELECT {PAUSE_COLUMNS} FROM pauses WHERE {ACTIVE} AND created_by = $2
                 ORDER BY id LIMIT 1"
            ),
            &[&time_text(now), &ERROR_BUDGET_BY],
        )
        .await
        .map_err(pg_error)?
        .map(|row| pause_from_row(&row))
        .transpose()
}

pub(super) async fn error_budget(
    store: &PgStore,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<BudgetState, StoreError> {
    let client = store.client().await?;
    if let Some(pause) = budget_pause(&client, now).await? {
        return Ok(BudgetState::Tripped(pause));
    }
    let window_start = time_text(window_start_time(now, window));
    // Failures before a human resumed the budget's last pause were paid for already.
    let last_resume: Option<String> = get(
        &client
            .query_one(
                "SELECT MAX(resumed_at) FROM pauses WHERE created_by = $1",
                &[&ERROR_BUDGET_BY],
            )
            .await
            .map_err(pg_error)?,
        0,
    )?;
    let since = match last_resume {
        Some(resumed) if resumed > window_start => resumed,
        _ => window_start,
    };
    let failures = client
        .query(
            "SELECT e.incident_id, e.kind, e.at, i.alertname, i.plan::jsonb->'target'->>'name'
             FROM events e JOIN incidents i ON i.id = e.incident_id
             WHERE e.kind IN ('failed', 'verify_failed') AND e.at > $1
             ORDER BY e.id",
            &[&since],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| {
            Ok(BudgetFailure {
                incident_id: IncidentId(get(row, 0)?),
                state: state_from_text(1, &get::<String>(row, 1)?)?,
                at: time_column(row, 2)?,
                alertname: get(row, 3)?,
                target: get(row, 4)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(BudgetState::Counting(failures))
}

pub(super) async fn trip_error_budget(
    store: &PgStore,
    trip: BudgetTrip,
    now: DateTime<Utc>,
) -> Result<Option<Pause>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // The incident's row before the budget's lock (the lock order); then checked under
    // that lock: however many replicas trip it at once, it trips once.
    tx.execute(
        "SELECT 1 FROM incidents WHERE id = $1 FOR KEY SHARE",
        &[&trip.incident.0],
    )
    .await
    .map_err(pg_error)?;
    advisory_lock(&tx, ERROR_BUDGET_LOCK).await?;
    if budget_pause(&tx, now).await?.is_some() {
        return Ok(None);
    }
    let pause = insert_pause(
        &tx,
        &NewPause {
            recipe: None,
            host: None,
            reason: trip.reason.clone(),
            silent: false,
            created_by: ERROR_BUDGET_BY.to_owned(),
            until: None,
        },
        now,
    )
    .await?;
    let at = time_text(now);
    let payload = trip.payload.to_string();
    for channel in &trip.channels {
        tx.execute(
            "INSERT INTO outbox (incident_id, reason, channel, payload, status, next_attempt_at,
                                 created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5)
             ON CONFLICT (incident_id, reason, channel) DO NOTHING",
            &[
                &trip.incident.0,
                &EscalationReason::ErrorBudget.as_str(),
                channel,
                &payload,
                &at,
            ],
        )
        .await
        .map_err(pg_error)?;
    }
    journal(
        &tx,
        trip.incident,
        &at,
        &Event::ErrorBudgetTripped {
            pause: pause.id,
            failures: trip.failures,
            max_failures: trip.max_failures,
            window: trip.window,
            channels: trip.channels,
        },
    )
    .await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(Some(pause))
}

/// States an incident never leaves on its own: the list of `sqlite/retention.rs`, which
/// its module keeps private.
const FINAL_STATES: [State; 14] = [
    State::Unmatched,
    State::Refused,
    State::DryRun,
    State::ResolvedBeforeRun,
    State::Succeeded,
    State::Failed,
    State::VerifyFailed,
    State::BreakerOpen,
    State::RateLimited,
    State::Interrupted,
    State::Notified,
    State::Denied,
    State::ApprovalExpired,
    State::Paused,
];

fn quoted_states(states: impl Iterator<Item = State>) -> String {
    let quoted: Vec<String> = states.map(|s| format!("'{}'", s.as_str())).collect();
    format!("({})", quoted.join(", "))
}

pub(super) async fn prune_finished(
    store: &PgStore,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    batch: usize,
) -> Result<usize, StoreError> {
    let finals = quoted_states(FINAL_STATES.into_iter());
    let escalating = quoted_states(
        State::ALL
            .into_iter()
            .filter(|s| s.escalation_reason().is_some()),
    );
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // The same rules as SQLite's retention. The rows picked stay locked until the commit
    // (a replica pruning at the same time skips them; a write to one waits, then finds
    // it gone).
    let ids: Vec<i64> = tx
        .query(
            &format!(
                "SELECT i.id FROM incidents AS i
                 WHERE i.state IN {finals}
                   AND i.last_seen < $1
                   AND (i.state NOT IN {escalating} OR i.escalated_at IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM events AS e
                                   WHERE e.incident_id = i.id AND e.at >= $1)
                   AND NOT EXISTS (SELECT 1 FROM outbox AS o
                                   WHERE o.incident_id = i.id AND o.status = 'pending')
                   AND NOT EXISTS (SELECT 1 FROM followups AS f
                                   WHERE f.incident_id = i.id AND f.status = 'pending')
                   AND NOT EXISTS (SELECT 1 FROM followups AS f
                                   WHERE f.by_incident = i.id AND f.incident_id <> i.id)
                   AND NOT EXISTS (SELECT 1 FROM approvals AS a
                                   WHERE a.incident_id = i.id AND a.decision IS NULL)
                   AND NOT EXISTS (SELECT 1 FROM runs AS r
                                   WHERE r.incident_id = i.id
                                     AND EXTRACT(EPOCH FROM r.started_at::timestamptz)
                                         + r.window_seconds > $2::BIGINT)
                 ORDER BY i.id LIMIT $3
                 FOR UPDATE OF i SKIP LOCKED"
            ),
            &[&time_text(cutoff), &now.timestamp(), &sql_limit(batch)],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| get(row, 0))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    for table in ["events", "runs", "approvals", "followups", "outbox"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE incident_id = ANY($1)"),
            &[&ids],
        )
        .await
        .map_err(pg_error)?;
    }
    let deleted = tx
        .execute("DELETE FROM incidents WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(deleted as usize)
}
