//! The contract of replicas on one store: claims of whole host queues, one run per host,
//! the fence on running incidents, a lapsed lease, leaving, and the takeover of orphans.
//! SQLite serves one replica at a time, so these run one replica (one store handle); the
//! races of several replicas at once are PostgreSQL's own tests (`postgres/*_tests.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;

use super::TestStore;
use crate::alert::Alert;
use crate::incident::{Event, IncidentId, State};
use crate::plan::{Mode, Plan, PlanOutcome, PlannedTarget};
use crate::store::{BreakerLimit, RunGate, StoreError};

contract_tests!(
    a_claim_takes_whole_host_queues_oldest_first_within_its_hosts,
    a_second_run_on_a_host_waits_while_the_first_runs,
    a_lapsed_lease_rejoins_under_a_new_number_and_its_runs_become_orphans,
    leaving_releases_the_queue_and_leaves_running_work_to_the_others,
);

const LEASE: Duration = Duration::from_secs(15);
const LIMIT: BreakerLimit = BreakerLimit {
    max_runs: None,
    window: Duration::from_secs(600),
};

fn target(host: &str) -> PlannedTarget {
    PlannedTarget {
        name: host.into(),
        address: "127.0.0.1".into(),
        port: 22,
        user: None,
    }
}

/// Ingests alert `n` and plans it on `host` (`matched`).
async fn matched_on(store: &TestStore, n: u32, host: &str) -> IncidentId {
    let labels = BTreeMap::from([
        ("alertname".to_owned(), "ServiceDown".to_owned()),
        ("n".to_owned(), n.to_string()),
    ]);
    let alert = Alert {
        starts_at: Some(Utc::now()),
        ..Alert::firing_generic(labels)
    };
    let id = store.ingest(vec![alert], Utc::now()).await.unwrap()[0].id;
    let plan = Plan {
        mode: Mode::Enforce,
        target: Some(target(host)),
        ..Plan::inert(
            PlanOutcome::Planned,
            Some("service-restart".into()),
            String::new(),
            vec![],
        )
    };
    store
        .record_plan(id, State::Received, State::Matched, &plan)
        .await
        .unwrap();
    id
}

async fn start(store: &TestStore, id: IncidentId, host: &str) -> Result<RunGate, StoreError> {
    store
        .begin_run(
            id,
            "service-restart",
            host,
            host,
            LIMIT,
            Event::RemediationStarted {
                target: target(host),
                steps: 1,
                sudo: false,
                ssh_user: None,
            },
            None,
            Utc::now(),
        )
        .await
}

fn ids(incidents: &[crate::incident::Incident]) -> Vec<IncidentId> {
    incidents.iter().map(|incident| incident.id).collect()
}

async fn a_claim_takes_whole_host_queues_oldest_first_within_its_hosts(store: &mut TestStore) {
    store.join_replicas("test", LEASE).await.unwrap();
    let a1 = matched_on(store, 1, "a").await;
    let b1 = matched_on(store, 2, "b").await;
    let a2 = matched_on(store, 3, "a").await;
    let c1 = matched_on(store, 4, "c").await;
    // Two hosts at most: a's and b's queues, whole; c waits for a later claim.
    let claimed = store.claim_matched(100, 2).await.unwrap();
    assert_eq!(ids(&claimed), [a1, b1, a2]);
    // Claimed ones come back (they are still this replica's), c still not.
    let again = store.claim_matched(100, 2).await.unwrap();
    assert_eq!(ids(&again), [a1, b1, a2]);
    // With room for a third host, c joins.
    let more = store.claim_matched(100, 3).await.unwrap();
    assert_eq!(ids(&more), [a1, b1, a2, c1]);
}

async fn a_second_run_on_a_host_waits_while_the_first_runs(store: &mut TestStore) {
    store.join_replicas("test", LEASE).await.unwrap();
    let first = matched_on(store, 1, "a").await;
    let second = matched_on(store, 2, "a").await;
    let other = matched_on(store, 3, "b").await;
    store.claim_matched(100, 10).await.unwrap();
    assert_eq!(start(store, first, "a").await.unwrap(), RunGate::Started);
    match start(store, second, "a").await.unwrap() {
        RunGate::HostBusy { why, retry_after } => {
            assert!(why.contains(&first.to_string()), "{why}");
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(2));
        }
        other => panic!("a second run on a busy host: {other:?}"),
    }
    // Nothing was written for the refused one; another host is not held up.
    let detail = store.incident(second).await.unwrap().unwrap();
    assert_eq!(detail.incident.state, State::Matched);
    assert_eq!(start(store, other, "b").await.unwrap(), RunGate::Started);
    store
        .transition(
            first,
            State::Remediating,
            State::Failed,
            None,
            Event::Failed {
                reason: "test".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(start(store, second, "a").await.unwrap(), RunGate::Started);
}

async fn a_lapsed_lease_rejoins_under_a_new_number_and_its_runs_become_orphans(
    store: &mut TestStore,
) {
    let old = store
        .join_replicas("test", Duration::from_millis(300))
        .await
        .unwrap();
    let running = matched_on(store, 1, "a").await;
    store.claim_matched(100, 10).await.unwrap();
    assert_eq!(start(store, running, "a").await.unwrap(), RunGate::Started);
    // Not an orphan while the lease runs.
    assert!(store.claim_orphans().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let heartbeat = store.heartbeat().await.unwrap();
    assert!(heartbeat.lapsed, "{heartbeat:?}");
    // The old identity may no longer write its run…
    let refused = store
        .append_event(
            running,
            Event::Failed {
                reason: "late".into(),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotOwner { owner: Some(owner), .. }) if owner == old),
        "{refused:?}"
    );
    // …which is now an orphan, taken over (here by the same process, as a new replica).
    let orphans = store.claim_orphans().await.unwrap();
    assert_eq!(ids(&orphans), [running]);
    store
        .transition(
            running,
            State::Remediating,
            State::Interrupted,
            None,
            Event::Interrupted {
                was: State::Remediating,
            },
        )
        .await
        .unwrap();
    let events: Vec<String> = store
        .incident(running)
        .await
        .unwrap()
        .unwrap()
        .events
        .iter()
        .map(|entry| entry.event.to_row().0)
        .collect();
    assert!(!events.iter().any(|kind| kind == "failed"), "{events:?}");
}

async fn leaving_releases_the_queue_and_leaves_running_work_to_the_others(store: &mut TestStore) {
    store.join_replicas("test", LEASE).await.unwrap();
    let running = matched_on(store, 1, "a").await;
    let queued = matched_on(store, 2, "a").await;
    store.claim_matched(100, 10).await.unwrap();
    assert_eq!(start(store, running, "a").await.unwrap(), RunGate::Started);
    store.leave_replicas().await.unwrap();
    // A new process on the store: the queue is free at once, the cut run is an orphan.
    store.reopen().await;
    store.join_replicas("next", LEASE).await.unwrap();
    assert_eq!(ids(&store.claim_orphans().await.unwrap()), [running]);
    assert_eq!(ids(&store.claim_matched(100, 10).await.unwrap()), [queued]);
}
