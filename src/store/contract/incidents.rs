//! The contract of intake, transitions and reads: one incident per alert key whatever
//! the source or the replica, the journal in order, listings and counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::TestStore;
use crate::alert::{Alert, AlertStatus, Fingerprint, Source};
use crate::incident::{Event, Incident, IncidentId, State};
use crate::plan::{Mode, Plan, PlanOutcome};
use crate::store::{IncidentDetail, Ingested, StoreError};

contract_tests!(
    a_resent_alert_is_one_incident_with_a_receive_count,
    concurrent_copies_create_exactly_one_incident,
    copies_from_two_ha_replicas_are_one_incident,
    a_resolve_is_recorded_once,
    firing_again_after_resolve_reopens_the_same_occurrence,
    an_alert_without_start_time_joins_the_open_incident,
    one_key_twice_in_one_notification_counts_twice,
    record_plan_moves_the_state_and_journals_it,
    transitions_are_checked_and_events_are_appended_in_order,
    record_plan_from_the_wrong_state_changes_nothing,
    an_acknowledged_ingest_survives_reopening,
    concurrent_ingests_share_commits,
    listings_are_ordered_and_counted,
    an_empty_notification_writes_nothing,
    one_alert_through_two_routes_is_one_incident,
    another_alerts_fingerprint_is_another_key_only_by_the_fingerprint,
    an_alert_firing_again_while_its_incident_waits_is_that_incident_firing,
    labels_crafted_to_collide_with_a_fingerprint_are_another_alert,
    resolved_before_run_is_refused_while_the_alert_fires,
    the_receive_count_saturates_instead_of_failing_the_ingest,
);

const STARTS: &str = "2026-11-28T10:00:00.123456789Z";

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn alert(fingerprint: &str, status: AlertStatus, starts_at: Option<&str>) -> Alert {
    let labels: BTreeMap<String, String> = [("alertname", "DiskFull"), ("instance", "host1:9100")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Alert {
        source: Source::Alertmanager,
        fingerprint: Fingerprint::parse(fingerprint).unwrap(),
        status,
        labels,
        annotations: BTreeMap::from([("summary".to_owned(), "disk / is 95% full".to_owned())]),
        starts_at: starts_at.map(time),
        ends_at: None,
        generator_url: Some("http://prometheus:9090/graph".to_owned()),
        external_url: Some("http://alertmanager-1:9093".to_owned()),
    }
}

fn firing(fingerprint: &str, starts_at: &str) -> Alert {
    alert(fingerprint, AlertStatus::Firing, Some(starts_at))
}

fn resolved(fingerprint: &str, starts_at: &str, ends_at: &str) -> Alert {
    Alert {
        ends_at: Some(time(ends_at)),
        ..alert(fingerprint, AlertStatus::Resolved, Some(starts_at))
    }
}

async fn ingest_one(store: &TestStore, alert: Alert, received_at: &str) -> Ingested {
    let mut ingested = store.ingest(vec![alert], time(received_at)).await.unwrap();
    assert_eq!(ingested.len(), 1);
    ingested.remove(0)
}

/// Ingests a firing alert with `fingerprint` (received at 10:00:01) and returns its incident.
async fn received(store: &TestStore, fingerprint: &str) -> IncidentId {
    ingest_one(store, firing(fingerprint, STARTS), "2026-11-28T10:00:01Z")
        .await
        .id
}

/// A received incident planned in dry-run: `matched`, ready for a transition.
async fn matched(store: &TestStore, fingerprint: &str) -> IncidentId {
    let id = received(store, fingerprint).await;
    store
        .record_plan(id, State::Received, State::Matched, &dry_run_plan())
        .await
        .unwrap();
    id
}

/// Ingests the resolve of alert "aa" (started at `STARTS`, ended at 10:05:00).
async fn resolve_aa(store: &TestStore, received_at: &str) -> Ingested {
    ingest_one(
        store,
        resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
        received_at,
    )
    .await
}

/// Ingests `alert` at `received_at` and checks that it opened a new incident.
async fn ingest_new(store: &TestStore, alert: Alert, received_at: &str) -> IncidentId {
    let new = ingest_one(store, alert, received_at).await;
    assert!(new.created, "{new:?}");
    new.id
}

/// Ingests `alert` at `received_at` and checks that it joined incident `joins`.
async fn ingest_copy(store: &TestStore, alert: Alert, received_at: &str, joins: IncidentId) {
    let copy = ingest_one(store, alert, received_at).await;
    assert_eq!((copy.id, copy.created), (joins, false), "{copy:?}");
}

/// Up to 10 incidents below `below`, newest first.
async fn listed(store: &TestStore, below: Option<IncidentId>) -> Vec<Incident> {
    store.list_incidents(below, 10).await.unwrap()
}

async fn detail(store: &TestStore, id: IncidentId) -> IncidentDetail {
    store.incident(id).await.unwrap().expect("incident exists")
}

fn event_kinds(detail: &IncidentDetail) -> Vec<String> {
    detail
        .events
        .iter()
        .map(|entry| entry.event.to_row().0)
        .collect()
}

/// An event's stored `detail`.
fn stored(entry: &crate::incident::JournalEntry) -> serde_json::Value {
    entry.event.to_row().1
}

pub(super) fn remediation_started() -> Event {
    Event::RemediationStarted {
        target: crate::plan::PlannedTarget {
            name: "web1".into(),
            address: "127.0.0.1".into(),
            port: 22,
            user: None,
        },
        steps: 1,
        sudo: false,
        ssh_user: None,
    }
}

fn failed(reason: &str) -> Event {
    Event::Failed {
        reason: reason.into(),
    }
}

/// Moves `id` from `from` to `failed` for `reason`, journaling why.
async fn fail(
    store: &TestStore,
    id: IncidentId,
    from: State,
    reason: &str,
) -> Result<(), StoreError> {
    store
        .transition(id, from, State::Failed, Some(reason.into()), failed(reason))
        .await
}

/// Moves a matched `id` to `remediating`.
async fn start_remediation(store: &TestStore, id: IncidentId) {
    store
        .transition(
            id,
            State::Matched,
            State::Remediating,
            None,
            remediation_started(),
        )
        .await
        .unwrap();
}

fn dry_run_plan() -> Plan {
    Plan {
        mode: Mode::DryRun,
        ..Plan::inert(
            PlanOutcome::Refused,
            Some("disk-space".to_owned()),
            "target host9 is not in the inventory".to_owned(),
            vec!["oncall-email".to_owned()],
        )
    }
}

fn from(source: Source, alert: Alert) -> Alert {
    Alert { source, ..alert }
}

async fn detail_state(store: &TestStore, id: IncidentId) -> (State, AlertStatus) {
    let incident = detail(store, id).await.incident;
    (incident.state, incident.alert_status)
}

async fn a_resent_alert_is_one_incident_with_a_receive_count(store: &mut TestStore) {
    let first = ingest_new(
        store,
        firing("10fd2ebfb5d5241b", STARTS),
        "2026-11-28T10:00:01Z",
    )
    .await;
    for second in 2..=5 {
        let again = ingest_one(
            store,
            firing("10fd2ebfb5d5241b", STARTS),
            &format!("2026-11-28T10:00:0{second}Z"),
        )
        .await;
        assert_eq!(
            again,
            Ingested {
                id: first,
                created: false,
                resolved_now: false
            }
        );
    }

    let incidents = listed(store, None).await;
    assert_eq!(incidents.len(), 1);
    let incident = &incidents[0];
    assert_eq!(incident.receive_count, 5);
    assert_eq!(incident.state, State::Received);
    assert_eq!(incident.alert_status, AlertStatus::Firing);
    assert_eq!(incident.starts_at, time(STARTS));
    assert_eq!(incident.first_seen, time("2026-11-28T10:00:01Z"));
    assert_eq!(incident.last_seen, time("2026-11-28T10:00:05Z"));
    assert_eq!(incident.alertname.as_deref(), Some("DiskFull"));
    assert_eq!(
        incident.labels.get("instance").map(String::as_str),
        Some("host1:9100")
    );
    assert_eq!(incident.annotations.len(), 1);
    let detail = detail(store, first).await;
    assert_eq!(event_kinds(&detail), ["received"]);
    assert_eq!(stored(&detail.events[0])["status"], "firing");
    assert_eq!(
        stored(&detail.events[0])["received_at"],
        "2026-11-28T10:00:01.000000000Z"
    );
}

async fn concurrent_copies_create_exactly_one_incident(store: &mut TestStore) {
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.shared();
            tokio::spawn(async move {
                let alert = firing("10fd2ebfb5d5241b", STARTS);
                let mut ingested = store
                    .ingest(vec![alert], time("2026-11-28T10:00:01Z"))
                    .await
                    .unwrap();
                assert_eq!(ingested.len(), 1);
                ingested.remove(0)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    assert!(results.iter().all(|r| r.id == results[0].id));
    let incidents = listed(store, None).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].receive_count, 50);
}

async fn copies_from_two_ha_replicas_are_one_incident(store: &mut TestStore) {
    let from_replica = |replica: &str| Alert {
        external_url: Some(format!("http://{replica}:9093")),
        ..firing("10fd2ebfb5d5241b", STARTS)
    };
    // Both replicas' copies in one notification, then each replica on its own, at once.
    let both = store
        .ingest(
            vec![from_replica("am-1"), from_replica("am-2")],
            time("2026-11-28T10:00:01Z"),
        )
        .await
        .unwrap();
    assert!(both[0].created && !both[1].created);
    assert_eq!(both[0].id, both[1].id);
    let (one, two) = tokio::join!(
        store.ingest(vec![from_replica("am-1")], time("2026-11-28T10:00:02Z")),
        store.ingest(vec![from_replica("am-2")], time("2026-11-28T10:00:02Z")),
    );
    assert_eq!(one.unwrap()[0].id, both[0].id);
    assert_eq!(two.unwrap()[0].id, both[0].id);

    let incidents = listed(store, None).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].receive_count, 4);
}

async fn a_resolve_is_recorded_once(store: &mut TestStore) {
    let fired = received(store, "aa").await;
    let resolve = resolve_aa(store, "2026-11-28T10:05:01Z").await;
    assert_eq!(
        resolve,
        Ingested {
            id: fired,
            created: false,
            resolved_now: true
        }
    );
    let again = resolve_aa(store, "2026-11-28T10:05:02Z").await;
    assert!(!again.resolved_now && !again.created);

    let detail = detail(store, fired).await;
    assert_eq!(detail.incident.alert_status, AlertStatus::Resolved);
    assert_eq!(
        detail.incident.resolved_at,
        Some(time("2026-11-28T10:05:01Z"))
    );
    assert_eq!(detail.incident.ends_at, Some(time("2026-11-28T10:05:00Z")));
    assert_eq!(detail.incident.receive_count, 3);
    assert_eq!(detail.incident.last_seen, time("2026-11-28T10:05:02Z"));
    assert_eq!(event_kinds(&detail), ["received", "resolved"]);
}

async fn firing_again_after_resolve_reopens_the_same_occurrence(store: &mut TestStore) {
    let fired = received(store, "aa").await;
    resolve_aa(store, "2026-11-28T10:05:01Z").await;
    let refired = ingest_one(store, firing("aa", STARTS), "2026-11-28T10:06:00Z").await;
    assert_eq!(
        refired,
        Ingested {
            id: fired,
            created: false,
            resolved_now: false
        }
    );

    let detail = detail(store, fired).await;
    assert_eq!(detail.incident.alert_status, AlertStatus::Firing);
    assert_eq!(detail.incident.resolved_at, None);
    assert_eq!(detail.incident.ends_at, None);
    assert_eq!(event_kinds(&detail), ["received", "resolved", "refired"]);
}

async fn an_alert_without_start_time_joins_the_open_incident(store: &mut TestStore) {
    let first = ingest_new(
        store,
        alert("generic-1", AlertStatus::Firing, None),
        "2026-11-28T10:00:00Z",
    )
    .await;
    ingest_copy(
        store,
        alert("generic-1", AlertStatus::Firing, None),
        "2026-11-28T10:01:00Z",
        first,
    )
    .await;
    let resolve = ingest_one(
        store,
        alert("generic-1", AlertStatus::Resolved, None),
        "2026-11-28T10:02:00Z",
    )
    .await;
    assert_eq!(
        resolve,
        Ingested {
            id: first,
            created: false,
            resolved_now: true
        }
    );

    // Handled (here: planned dry-run) before it fires again: a new occurrence.
    store
        .record_plan(first, State::Received, State::DryRun, &dry_run_plan())
        .await
        .unwrap();
    let next = ingest_new(
        store,
        alert("generic-1", AlertStatus::Firing, None),
        "2026-11-28T11:00:00Z",
    )
    .await;
    assert_ne!(next, first);
    assert_eq!(
        detail(store, next).await.incident.starts_at,
        time("2026-11-28T11:00:00Z")
    );
    assert_eq!(
        detail(store, first).await.incident.starts_at,
        time("2026-11-28T10:00:00Z")
    );
}

async fn one_key_twice_in_one_notification_counts_twice(store: &mut TestStore) {
    let results = store
        .ingest(
            vec![
                firing("aa", STARTS),
                firing("bb", STARTS),
                resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
            ],
            time("2026-11-28T10:05:01Z"),
        )
        .await
        .unwrap();
    assert!(results[0].created && results[1].created);
    assert_eq!(
        results[2],
        Ingested {
            id: results[0].id,
            created: false,
            resolved_now: true
        }
    );
    assert_eq!(detail(store, results[0].id).await.incident.receive_count, 2);
}

async fn record_plan_moves_the_state_and_journals_it(store: &mut TestStore) {
    let id = received(store, "aa").await;
    let plan = dry_run_plan();
    store
        .record_plan(id, State::Received, State::Refused, &plan)
        .await
        .unwrap();

    let detail = detail(store, id).await;
    assert_eq!(detail.incident.state, State::Refused);
    assert_eq!(detail.incident.reason, plan.reason);
    assert_eq!(detail.incident.plan.as_ref(), Some(&plan));
    assert_eq!(event_kinds(&detail), ["received", "planned"]);
    assert_eq!(
        stored(&detail.events[1]),
        json!({ "outcome": "refused", "recipe": "disk-space", "mode": "dry-run", "state": "refused" })
    );
    assert!(
        store
            .incidents_in_state(State::Received, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.incidents_in_state(State::Refused, 10).await.unwrap()[0].id,
        id
    );
}

async fn transitions_are_checked_and_events_are_appended_in_order(store: &mut TestStore) {
    let id = matched(store, "ab").await;
    start_remediation(store, id).await;
    store
        .append_event(
            id,
            Event::StepStarted {
                step: 1,
                command: "true".into(),
                executed: "true".into(),
            },
        )
        .await
        .unwrap();
    // From the wrong state: refused, and nothing is written.
    let conflict = fail(store, id, State::Matched, "x").await.unwrap_err();
    assert!(
        matches!(
            conflict,
            StoreError::StateConflict {
                found: State::Remediating,
                ..
            }
        ),
        "{conflict:?}"
    );
    fail(store, id, State::Remediating, "command 1 exited 1")
        .await
        .unwrap();

    let detail = detail(store, id).await;
    assert_eq!(detail.incident.state, State::Failed);
    assert_eq!(
        detail.incident.reason.as_deref(),
        Some("command 1 exited 1")
    );
    assert_eq!(
        event_kinds(&detail),
        [
            "received",
            "planned",
            "remediation_started",
            "step_started",
            "failed"
        ]
    );
    assert!(matches!(
        store.append_event(IncidentId(999), failed("x")).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn record_plan_from_the_wrong_state_changes_nothing(store: &mut TestStore) {
    let id = received(store, "aa").await;
    let before = detail(store, id).await;

    let error = store
        .record_plan(id, State::Matched, State::DryRun, &dry_run_plan())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::StateConflict {
                expected: State::Matched,
                found: State::Received,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(detail(store, id).await, before);
    let missing = store
        .record_plan(
            IncidentId(999),
            State::Received,
            State::DryRun,
            &dry_run_plan(),
        )
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::NotFound(IncidentId(999)))
    ));
}

async fn an_acknowledged_ingest_survives_reopening(store: &mut TestStore) {
    let id = received(store, "aa").await;
    store.reopen().await;

    let detail = detail(store, id).await;
    assert_eq!(detail.incident.fingerprint.as_str(), "aa");
    assert_eq!(event_kinds(&detail), ["received"]);
    // The key still deduplicates after a restart.
    assert!(
        !ingest_one(store, firing("aa", STARTS), "2026-11-28T10:00:02Z")
            .await
            .created
    );
}

async fn concurrent_ingests_share_commits(store: &mut TestStore) {
    const CALLS: usize = 2000;
    let start = Arc::new(tokio::sync::Barrier::new(CALLS));
    let tasks: Vec<_> = (0..CALLS)
        .map(|n| {
            let store = store.shared();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let alert = firing(&format!("{n:016x}"), STARTS);
                store
                    .ingest(vec![alert], time("2026-11-28T10:00:01Z"))
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap()[0].created);
    }

    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![(State::Received, CALLS as i64)]
    );
    assert!(
        store.commits() < CALLS as u64,
        "{} commits for {CALLS} calls",
        store.commits()
    );
}

async fn listings_are_ordered_and_counted(store: &mut TestStore) {
    let mut ids = Vec::new();
    for fingerprint in ["aa", "bb", "cc"] {
        ids.push(
            ingest_one(store, firing(fingerprint, STARTS), "2026-11-28T10:00:01Z")
                .await
                .id,
        );
    }
    store
        .record_plan(ids[1], State::Received, State::Unmatched, &dry_run_plan())
        .await
        .unwrap();

    let newest_first: Vec<_> = listed(store, None).await.iter().map(|i| i.id).collect();
    assert_eq!(newest_first, [ids[2], ids[1], ids[0]]);
    assert_eq!(store.list_incidents(None, 1).await.unwrap().len(), 1);
    let below: Vec<_> = listed(store, Some(ids[2]))
        .await
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(below, [ids[1], ids[0]], "the cursor pages");
    // Pages with journals: each incident gets exactly its own events.
    let page = store.incident_details(Some(ids[2]), 2).await.unwrap();
    assert_eq!(page.len(), 2);
    for detail in &page {
        let alone = store.incident(detail.incident.id).await.unwrap().unwrap();
        assert_eq!(detail.events, alone.events);
    }
    assert_eq!(page[0].events.len(), 2, "received and planned");
    assert!(
        store
            .incident_details(Some(ids[0]), 5)
            .await
            .unwrap()
            .is_empty()
    );
    let waiting: Vec<_> = store
        .incidents_in_state(State::Received, 10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(waiting, [ids[0], ids[2]]);
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![(State::Received, 2), (State::Unmatched, 1)]
    );
    assert_eq!(store.incident(IncidentId(999)).await.unwrap(), None);
    store.ping().await.unwrap();
}

async fn an_empty_notification_writes_nothing(store: &mut TestStore) {
    assert!(
        store
            .ingest(Vec::new(), Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.commits(), 0);
}
async fn one_alert_through_two_routes_is_one_incident(store: &mut TestStore) {
    // Alertmanager first, then the generic hook without a start, then its resolve.
    let fired = received(store, "aa").await;
    ingest_copy(
        store,
        from(Source::Generic, alert("aa", AlertStatus::Firing, None)),
        "2026-11-28T10:00:02Z",
        fired,
    )
    .await;
    let resolve = ingest_one(
        store,
        from(
            Source::Grafana,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
        ),
        "2026-11-28T10:05:01Z",
    )
    .await;
    assert_eq!((resolve.id, resolve.resolved_now), (fired, true));
    let incident = detail(store, fired).await.incident;
    assert_eq!(incident.source, Source::Alertmanager);
    assert_eq!(incident.receive_count, 3);

    // The generic hook first (no start: salve assumes one), then Alertmanager with its
    // own start: the incident takes the monitor's start, and later copies find it.
    let generic = ingest_one(
        store,
        from(Source::Generic, alert("bb", AlertStatus::Firing, None)),
        "2026-11-28T11:00:00Z",
    )
    .await;
    ingest_copy(
        store,
        firing("bb", STARTS),
        "2026-11-28T11:00:01Z",
        generic.id,
    )
    .await;
    ingest_copy(
        store,
        firing("bb", STARTS),
        "2026-11-28T11:00:02Z",
        generic.id,
    )
    .await;
    let detail = detail(store, generic.id).await;
    assert_eq!(detail.incident.starts_at, time(STARTS));
    assert_eq!(detail.incident.receive_count, 3);
    assert_eq!(event_kinds(&detail), ["received", "start_known"]);
    assert_eq!(listed(store, None).await.len(), 2);
}

async fn another_alerts_fingerprint_is_another_key_only_by_the_fingerprint(store: &mut TestStore) {
    // The store keys on the fingerprint it is given; intake computes it from the labels
    // (intake tests), so a forged one never reaches here. Different fingerprints with
    // the same start are different incidents, whatever the source.
    let a = ingest_new(store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
    let b = ingest_new(
        store,
        from(Source::Generic, firing("bb", STARTS)),
        "2026-11-28T10:00:01Z",
    )
    .await;
    assert_ne!(a, b);
}

async fn an_alert_firing_again_while_its_incident_waits_is_that_incident_firing(
    store: &mut TestStore,
) {
    let later = "2026-11-28T10:07:00Z";
    let fired = matched(store, "aa").await;
    resolve_aa(store, "2026-11-28T10:05:01Z").await;
    // A new occurrence (Alertmanager gives it a new start) while the first still waits
    // for its host: no second incident, the waiting one fires again and takes the start.
    ingest_copy(store, firing("aa", later), "2026-11-28T10:07:01Z", fired).await;
    ingest_copy(store, firing("aa", later), "2026-11-28T10:07:02Z", fired).await;
    let detail = detail(store, fired).await;
    assert_eq!(detail.incident.alert_status, AlertStatus::Firing);
    assert_eq!(detail.incident.state, State::Matched);
    assert_eq!(detail.incident.starts_at, time(later));
    assert_eq!(
        event_kinds(&detail),
        ["received", "planned", "resolved", "refired"]
    );
    assert_eq!(
        stored(&detail.events[3])["previous_starts_at"],
        "2026-11-28T10:00:00.123456789Z"
    );
    // A late copy of an older occurrence does not reopen or move it.
    resolve_aa(store, "2026-11-28T10:07:03Z").await;
    assert_eq!(
        detail_state(store, fired).await,
        (State::Matched, AlertStatus::Firing)
    );

    // Once it ran (or ended), firing anew is a new occurrence, a new incident.
    start_remediation(store, fired).await;
    ingest_one(
        store,
        resolved("aa", later, "2026-11-28T10:08:00Z"),
        "2026-11-28T10:08:01Z",
    )
    .await;
    ingest_new(
        store,
        firing("aa", "2026-11-28T10:09:00Z"),
        "2026-11-28T10:09:01Z",
    )
    .await;
}

async fn labels_crafted_to_collide_with_a_fingerprint_are_another_alert(store: &mut TestStore) {
    // FNV-1a is not collision resistant: here two label sets share fingerprint "aa"
    // (as crafted labels could) and the start. They are still two alerts.
    let victim = received(store, "aa").await;
    let colliding = |status: AlertStatus| {
        let mut alert = alert("aa", status, Some(STARTS));
        alert
            .labels
            .insert("instance".into(), "attacker:9100".into());
        alert.ends_at = Some(time("2026-11-28T10:00:02Z"));
        alert
    };
    let forged = ingest_one(
        store,
        colliding(AlertStatus::Resolved),
        "2026-11-28T10:00:02Z",
    )
    .await;
    assert!(forged.created && forged.id != victim);
    ingest_copy(
        store,
        colliding(AlertStatus::Resolved),
        "2026-11-28T10:00:03Z",
        forged.id,
    )
    .await;
    // Without a start it does not join the victim's open incident either.
    let mut no_start = colliding(AlertStatus::Resolved);
    no_start.starts_at = None;
    let other = ingest_one(store, no_start, "2026-11-28T10:00:04Z").await;
    assert_ne!(other.id, victim);
    let victim = detail(store, victim).await;
    assert_eq!(victim.incident.alert_status, AlertStatus::Firing);
    assert_eq!(victim.incident.receive_count, 1);
    assert_eq!(event_kinds(&victim), ["received"]);
    // The victim's own copies still find it.
    ingest_copy(
        store,
        firing("aa", STARTS),
        "2026-11-28T10:00:05Z",
        victim.incident.id,
    )
    .await;
}

async fn resolved_before_run_is_refused_while_the_alert_fires(store: &mut TestStore) {
    let id = matched(store, "aa").await;
    let close = || {
        store.transition(
            id,
            State::Matched,
            State::ResolvedBeforeRun,
            Some("resolved".into()),
            Event::ResolvedBeforeRun {
                reason: "resolved".into(),
            },
        )
    };
    assert!(matches!(close().await, Err(StoreError::AlertFiring(found)) if found == id));
    assert_eq!(
        detail_state(store, id).await,
        (State::Matched, AlertStatus::Firing)
    );
    resolve_aa(store, "2026-11-28T10:05:01Z").await;
    close().await.unwrap();
    assert_eq!(
        detail_state(store, id).await,
        (State::ResolvedBeforeRun, AlertStatus::Resolved)
    );
}

async fn the_receive_count_saturates_instead_of_failing_the_ingest(store: &mut TestStore) {
    let id = received(store, "aa").await;
    let changed = store
        .execute_sql(&format!(
            "UPDATE incidents SET receive_count = 9223372036854775807 WHERE id = {}",
            id.0
        ))
        .await;
    assert_eq!(changed, 1);
    for second in 2..4 {
        ingest_copy(
            store,
            firing("aa", STARTS),
            &format!("2026-11-28T10:00:0{second}Z"),
            id,
        )
        .await;
    }
    assert_eq!(detail(store, id).await.incident.receive_count, i64::MAX);
}
