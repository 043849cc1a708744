//! SQL for approval requests: asking (an approve-mode incident waits in
//! `awaiting_approval`), the one decision per request (approve, deny, expire, or its alert
//! resolved), and reading a request. Each function runs inside the writer's batch
//! transaction or on a read connection; none decides policy beyond "a request is decided
//! once, for the plan it was made for".

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{parse_time, time_text};
use super::writer::{expect_state, journal, unavailable};
use crate::incident::{Event, IncidentId, State};
use crate::plan::Plan;
use crate::store::{
    ApprovalDecision, ApprovalOutcome, ApprovalRefusal, ApprovalRequest, LinkProof, StoreError,
};

pub(super) fn request_approval(
    conn: &Connection,
    id: IncidentId,
    plan_digest: &str,
    nonce: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    expect_state(conn, id, State::Matched)?;
    let at = time_text(now);
    let until = time_text(expires_at);
    let reason = format!(
        "the recipe runs only after a human approves this plan; waiting until {until} \
         (approve or deny by the page's links, `salve approve {id}` / `salve deny {id}`, or the API)"
    );
    let write = || -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO approvals (incident_id, plan_digest, nonce, requested_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (incident_id) DO UPDATE SET plan_digest = ?2, nonce = ?3,
                requested_at = ?4, expires_at = ?5, decision = NULL, decided_by = NULL,
                decided_at = NULL",
        )?
        .execute(params![id.0, plan_digest, nonce, at, until])?;
        set_state(conn, id, State::AwaitingApproval, &reason)?;
        journal(
            conn,
            id,
            &at,
            &Event::ApprovalRequested {
                plan_digest: plan_digest.to_owned(),
                expires_at,
            },
        )
    };
    write().map_err(unavailable)
}

/// A new state and reason; `escalated_at` cleared, so the next escalating state (the
/// approval page, a denial, a failure after approval) is paged on its own.
fn set_state(conn: &Connection, id: IncidentId, to: State, reason: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE incidents SET state = ?2, reason = ?3, escalated_at = NULL WHERE id = ?1",
    )?
    .execute(params![id.0, to.as_str(), reason])?;
    Ok(())
}

pub(super) fn approval(
    conn: &Connection,
    id: IncidentId,
) -> rusqlite::Result<Option<ApprovalRequest>> {
    conn.prepare_cached(
        "SELECT plan_digest, nonce, requested_at, expires_at, decision, decided_by
         FROM approvals WHERE incident_id = ?1",
    )?
    .query_row(params![id.0], |row| {
        Ok(ApprovalRequest {
            incident: id,
            plan_digest: row.get(0)?,
            nonce: row.get(1)?,
            requested_at: parse_time(2, &row.get::<_, String>(2)?)?,
            expires_at: parse_time(3, &row.get::<_, String>(3)?)?,
            decision: row.get(4)?,
            decided_by: row.get(5)?,
        })
    })
    .optional()
}

/// The incident's state, whether its alert resolved, and its plan's digest.
fn incident_now(
    conn: &Connection,
    id: IncidentId,
) -> rusqlite::Result<Option<(String, bool, Option<String>)>> {
    conn.prepare_cached(
        "SELECT state, alert_status = 'resolved', plan FROM incidents WHERE id = ?1",
    )?
    .query_row(params![id.0], |row| {
        let plan: Option<String> = row.get(2)?;
        let digest = plan
            .and_then(|text| serde_json::from_str::<Plan>(&text).ok())
            .map(|plan| plan.digest());
        Ok((row.get(0)?, row.get(1)?, digest))
    })
    .optional()
}

pub(super) fn decide_approval(
    conn: &Connection,
    id: IncidentId,
    decision: &ApprovalDecision,
    by: &str,
    link: Option<&LinkProof>,
    now: DateTime<Utc>,
) -> Result<ApprovalOutcome, StoreError> {
    let refuse = |why| Ok(ApprovalOutcome::Refused(why));
    let Some((state, resolved, digest)) = incident_now(conn, id).map_err(unavailable)? else {
        return refuse(ApprovalRefusal::NotFound(id));
    };
    let request = approval(conn, id).map_err(unavailable)?;
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
    let state = State::parse(&state).unwrap_or(State::Received);
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
    let plan_digest = request.plan_digest.clone();
    let (word, to, reason, event) = match decision {
        ApprovalDecision::Approve => {
            let commands = commands_of(conn, id).map_err(unavailable)?;
            (
                "approved",
                State::Matched,
                format!("approved by {by}; runs through the usual gates"),
                Event::Approved {
                    by: by.to_owned(),
                    plan_digest: plan_digest.clone(),
                    commands,
                },
            )
        }
        ApprovalDecision::Deny { reason } => (
            "denied",
            State::Denied,
            format!("denied by {by}: {reason}; nothing was run"),
            Event::Denied {
                by: by.to_owned(),
                reason: reason.clone(),
                plan_digest: plan_digest.clone(),
            },
        ),
    };
    let write = || -> rusqlite::Result<()> {
        decide(conn, id, word, by, &at)?;
        set_state(conn, id, to, &reason)?;
        journal(conn, id, &at, &event)
    };
    write().map_err(unavailable)?;
    Ok(ApprovalOutcome::Decided { plan_digest })
}

fn decide(
    conn: &Connection,
    id: IncidentId,
    decision: &str,
    by: &str,
    at: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE approvals SET decision = ?2, decided_by = ?3, decided_at = ?4
         WHERE incident_id = ?1 AND decision IS NULL",
    )?
    .execute(params![id.0, decision, by, at])?;
    Ok(())
}

fn commands_of(conn: &Connection, id: IncidentId) -> rusqlite::Result<Vec<String>> {
    let plan: Option<String> = conn
        .prepare_cached("SELECT plan FROM incidents WHERE id = ?1")?
        .query_row(params![id.0], |row| row.get(0))?;
    Ok(plan
        .and_then(|text| serde_json::from_str::<Plan>(&text).ok())
        .map(|plan| plan.commands)
        .unwrap_or_default())
}

const DUE: &str = "FROM approvals JOIN incidents ON incidents.id = approvals.incident_id
     WHERE approvals.decision IS NULL AND incidents.state = 'awaiting_approval'
       AND (approvals.expires_at <= ?1 OR incidents.alert_status = 'resolved')";

/// Whether `expire_approvals` would end anything at `now`.
pub(super) fn any_due(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<bool> {
    conn.prepare_cached(&format!("SELECT EXISTS (SELECT 1 {DUE})"))?
        .query_row(params![time_text(now)], |row| row.get(0))
}

pub(super) fn expire_approvals(
    conn: &Connection,
    now: DateTime<Utc>,
) -> Result<Vec<IncidentId>, StoreError> {
    let at = time_text(now);
    let work = || -> rusqlite::Result<Vec<IncidentId>> {
        let due: Vec<(IncidentId, String, bool)> = conn
            .prepare_cached(&format!(
                "SELECT approvals.incident_id, approvals.expires_at,
                        incidents.alert_status = 'resolved' {DUE}"
            ))?
            .query_map(params![at], |row| {
                Ok((IncidentId(row.get(0)?), row.get(1)?, row.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (id, expires_at, resolved) in &due {
            if *resolved {
                let reason = "the alert resolved while its plan awaited approval; nothing was run";
                decide(conn, *id, "resolved", "salve", &at)?;
                // `escalated_at` stays: the approval page was sent, and nothing more is.
                conn.prepare_cached("UPDATE incidents SET state = ?2, reason = ?3 WHERE id = ?1")?
                    .execute(params![id.0, State::ResolvedBeforeRun.as_str(), reason])?;
                let event = Event::ResolvedBeforeRun {
                    reason: reason.to_owned(),
                };
                journal(conn, *id, &at, &event)?;
            } else {
                let expires_at = parse_time(1, expires_at)?;
                let reason = format!(
                    "no one approved the plan before {}; nothing was run",
                    time_text(expires_at)
                );
                decide(conn, *id, "expired", "salve", &at)?;
                set_state(conn, *id, State::ApprovalExpired, &reason)?;
                journal(conn, *id, &at, &Event::ApprovalExpired { expires_at })?;
            }
        }
        Ok(due.into_iter().map(|(id, _, _)| id).collect())
    };
    work().map_err(unavailable)
}
