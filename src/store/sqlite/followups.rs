//! SQL for follow-ups ("resolved" after a page): which sent pages' incidents are over,
//! queueing one follow-up per (paged incident, channel), and delivery bookkeeping (due
//! rows claimed by one replica, as the outbox's). Each function runs inside the writer's
//! batch transaction or on a read connection; none decides policy (whether a route or
//! channel wants follow-ups is the engine's call).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::outbox::{CLAIM_FOR, claimable};
use super::rows::time_text;
use super::writer::{journal, unavailable};
use crate::incident::{Event, IncidentId};
use crate::store::{FollowUpCandidate, FollowUpCause, FollowUpItem, StoreError};

fn json_column(index: usize, text: &str) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Undecided sent pages (the partial index) whose incident's alert resolved, or whose
/// alert — the same fingerprint and labels — a later incident fixed. A page that went out
/// in a digest is found by its `escalation_sent` journal entry naming the digest.
pub(super) fn candidates(
    conn: &Connection,
    limit: i64,
) -> rusqlite::Result<Vec<FollowUpCandidate>> {
    conn.prepare_cached(
        "SELECT page_id, incident_id, channel, payload, resolved, fixed_by, digested FROM (
             SELECT o.id AS page_id, o.incident_id, o.channel, o.payload,
                 i.alert_status = 'resolved' AS resolved,
                 (SELECT MIN(later.id) FROM incidents AS later
                  WHERE later.fingerprint = i.fingerprint AND later.labels = i.labels
                    AND later.id > i.id AND later.state = 'succeeded') AS fixed_by,
                 EXISTS (SELECT 1 FROM events AS e
                         WHERE e.incident_id = o.incident_id AND e.kind = 'escalation_sent'
                           AND json_extract(e.detail, '$.channel') = o.channel
                           AND json_extract(e.detail, '$.digest') IS NOT NULL) AS digested
             FROM outbox AS o JOIN incidents AS i ON i.id = o.incident_id
             WHERE o.follow_up IS NULL AND o.status = 'sent')
         WHERE resolved OR fixed_by IS NOT NULL
         ORDER BY page_id LIMIT ?1",
    )?
    .query_map(params![limit], |row| {
        let payload: String = row.get(3)?;
        let resolved: bool = row.get(4)?;
        let fixed_by: Option<i64> = row.get(5)?;
        Ok(FollowUpCandidate {
            page_id: row.get(0)?,
            incident_id: IncidentId(row.get(1)?),
            channel: row.get(2)?,
            payload: json_column(3, &payload)?,
            // A resolved alert is the plainer story; a fix of a later incident otherwise.
            cause: match (resolved, fixed_by) {
                (false, Some(by)) => FollowUpCause::Succeeded(IncidentId(by)),
                _ => FollowUpCause::Resolved,
            },
            digested: row.get(6)?,
        })
    })?
    .collect()
}

fn cause_columns(cause: FollowUpCause) -> (&'static str, Option<i64>) {
    match cause {
        FollowUpCause::Resolved => ("resolved", None),
        FollowUpCause::Succeeded(by) => ("succeeded", Some(by.0)),
    }
}

pub(super) fn decide(
    conn: &Connection,
    decisions: &[(FollowUpCandidate, bool)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let at = time_text(now);
    let write = || -> rusqlite::Result<()> {
        for (candidate, wanted) in decisions {
            let decided = conn
                .prepare_cached(
                    "UPDATE outbox SET follow_up = ?2 WHERE id = ?1 AND follow_up IS NULL",
                )?
                .execute(params![
                    candidate.page_id,
                    if *wanted { "queued" } else { "none" }
                ])?;
            if decided == 0 || !wanted {
                continue;
            }
            let (cause, by) = cause_columns(candidate.cause);
            // A second page of the incident on the same channel (another reason) is
            // followed up by the first one's row: one follow-up per (incident, channel).
            let queued = conn
                .prepare_cached(
                    "INSERT INTO followups (incident_id, channel, page_id, cause, by_incident,
                         status, next_attempt_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)
                     ON CONFLICT (incident_id, channel) DO NOTHING",
                )?
                .execute(params![
                    candidate.incident_id.0,
                    candidate.channel,
                    candidate.page_id,
                    cause,
                    by,
                    at
                ])?;
            if queued == 1 {
                let event = Event::FollowUpQueued {
                    channel: candidate.channel.clone(),
                    cause: cause.to_owned(),
                    by: by.map(IncidentId),
                };
                journal(conn, candidate.incident_id, &at, &event)?;
            }
        }
        Ok(())
    };
    write().map_err(unavailable)
}

/// Whether `due` would claim anything (a read, to spare the writer).
pub(super) fn any_due(conn: &Connection, me: i64, now: DateTime<Utc>) -> rusqlite::Result<bool> {
    conn.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM followups
                        WHERE status = 'pending' AND next_attempt_at <= ?1 AND {})",
        claimable()
    ))?
    .query_row(params![time_text(now), me], |row| row.get(0))
}

/// The due follow-ups, now claimed by `me` as the outbox's rows are, oldest first.
pub(super) fn due(
    conn: &Connection,
    me: i64,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<FollowUpItem>, StoreError> {
    let read = || -> rusqlite::Result<Vec<(String, FollowUpItem)>> {
        conn.prepare_cached(&format!(
            "UPDATE followups SET claimed_by = ?2, claimed_until = ?3 WHERE id IN (
                 SELECT id FROM followups
                 WHERE status = 'pending' AND next_attempt_at <= ?1 AND {}
                 ORDER BY next_attempt_at, id LIMIT ?4)
             RETURNING id, incident_id, channel,
                 (SELECT payload FROM outbox WHERE outbox.id = followups.page_id),
                 cause, by_incident, attempts, next_attempt_at",
            claimable()
        ))?
        .query_map(
            params![time_text(now), me, time_text(now + CLAIM_FOR), limit],
            |row| {
                let payload: String = row.get(3)?;
                let cause: String = row.get(4)?;
                let by: Option<i64> = row.get(5)?;
                let item = FollowUpItem {
                    id: row.get(0)?,
                    incident_id: IncidentId(row.get(1)?),
                    channel: row.get(2)?,
                    page: json_column(3, &payload)?,
                    cause: match (cause.as_str(), by) {
                        ("succeeded", Some(by)) => FollowUpCause::Succeeded(IncidentId(by)),
                        _ => FollowUpCause::Resolved,
                    },
                    attempts: row.get(6)?,
                };
                Ok((row.get(7)?, item))
            },
        )?
        .collect()
    };
    let mut due = read().map_err(unavailable)?;
    // RETURNING has no order of its own.
    due.sort_by(|(a_next, a), (b_next, b)| (a_next, a.id).cmp(&(b_next, b.id)));
    Ok(due.into_iter().map(|(_, item)| item).collect())
}

pub(super) fn sent(
    conn: &Connection,
    item: &FollowUpItem,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let at = time_text(now);
    let write = || -> rusqlite::Result<()> {
        let updated = conn
            .prepare_cached(
                "UPDATE followups SET status = 'sent', sent_at = ?2, claimed_by = NULL,
                     claimed_until = NULL
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![item.id, at])?;
        if updated == 0 {
            return Ok(());
        }
        let event = Event::FollowUpSent {
            channel: item.channel.clone(),
            attempt: item.attempts + 1,
        };
        journal(conn, item.incident_id, &at, &event)
    };
    write().map_err(unavailable)
}

pub(super) fn failed(
    conn: &Connection,
    item: &FollowUpItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE followups SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
             claimed_by = NULL, claimed_until = NULL
         WHERE id = ?1 AND status = 'pending'",
    )
    .and_then(|mut statement| {
        statement.execute(params![item.id, error, time_text(next_attempt_at)])
    })
    .map(drop)
    .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::tests::temp_store;
    use crate::alert::{Alert, AlertStatus, Fingerprint, Source};
    use crate::incident::{EscalationReason, Event};
    use crate::store::{FollowUpCause, Store};

    fn alert(status: AlertStatus) -> Alert {
        Alert {
            source: Source::Generic,
            fingerprint: Fingerprint::parse("00000000000000aa").unwrap(),
            status,
            labels: BTreeMap::from([("alertname".to_owned(), "DiskFull".to_owned())]),
            annotations: BTreeMap::new(),
            starts_at: Some("2026-11-28T10:00:00Z".parse().unwrap()),
            ends_at: None,
            generator_url: None,
            external_url: None,
        }
    }

    #[tokio::test]
    async fn a_sent_page_is_followed_up_once_after_its_alert_resolved_never_a_digested_one() {
        let (_dir, store) = temp_store();
        let now = chrono::Utc::now();
        let id = store
            .ingest(vec![alert(AlertStatus::Firing)], now)
            .await
            .unwrap()[0]
            .id;
        let channels = ["pager".to_owned(), "mail".to_owned()];
        store
            .enqueue_escalation(id, EscalationReason::Novel, &channels, &json!({ "x": 1 }))
            .await
            .unwrap();
        let pages = store.due_escalations(10).await.unwrap();
        let (pager, mail) = (&pages[0], &pages[1]);
        assert_eq!(
            (pager.channel.as_str(), mail.channel.as_str()),
            ("pager", "mail")
        );

        // Resolved while the pages wait: nothing yet, a follow-up goes after its page.
        store
            .ingest(vec![alert(AlertStatus::Resolved)], now)
            .await
            .unwrap();
        assert!(store.follow_up_candidates(10).await.unwrap().is_empty());
        store.escalation_sent(pager).await.unwrap();
        let digest = store.new_digest("mail", "novel", 1).await.unwrap();
        store
            .digest_sent(digest, std::slice::from_ref(mail))
            .await
            .unwrap();

        let candidates = store.follow_up_candidates(10).await.unwrap();
        let found: Vec<(&str, bool, FollowUpCause)> = candidates
            .iter()
            .map(|c| (c.channel.as_str(), c.digested, c.cause))
            .collect();
        assert_eq!(
            found,
            [
                ("pager", false, FollowUpCause::Resolved),
                ("mail", true, FollowUpCause::Resolved)
            ]
        );
        let decisions: Vec<_> = candidates
            .into_iter()
            .map(|c| {
                let wanted = !c.digested;
                (c, wanted)
            })
            .collect();
        store.decide_follow_ups(decisions.clone()).await.unwrap();
        // Decided once: not a candidate again, and the same decisions again change nothing.
        assert!(store.follow_up_candidates(10).await.unwrap().is_empty());
        store.decide_follow_ups(decisions).await.unwrap();
        let due = store.due_follow_ups(10).await.unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(
            (due[0].channel.as_str(), due[0].page.clone()),
            ("pager", json!({ "x": 1 }))
        );

        store.follow_up_sent(&due[0]).await.unwrap();
        assert!(store.due_follow_ups(10).await.unwrap().is_empty());
        let journal = store.incident(id).await.unwrap().unwrap().events;
        let follow_ups: Vec<&Event> = journal
            .iter()
            .map(|entry| &entry.event)
            .filter(|e| matches!(e, Event::FollowUpQueued { .. } | Event::FollowUpSent { .. }))
            .collect();
        assert_eq!(
            follow_ups,
            [
                &Event::FollowUpQueued {
                    channel: "pager".into(),
                    cause: "resolved".into(),
                    by: None
                },
                &Event::FollowUpSent {
                    channel: "pager".into(),
                    attempt: 1
                }
            ]
        );
    }
}
