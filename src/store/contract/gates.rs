//! The contract of the run gates: the breaker, host holds and the escalation outbox.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::TestStore;
use super::incidents::remediation_started;
use crate::alert::Alert;
use crate::incident::{EscalationReason, Event, IncidentId, State};
use crate::plan::{Mode, Plan, PlanOutcome};
use crate::store::{BreakerLimit, BreakerResetOutcome, HostHold, RunGate, StoreError};

contract_tests!(
    the_breaker_opens_at_max_runs_holds_across_reopen_and_resets,
    each_breaker_key_of_one_target_has_its_own_breaker,
    a_run_does_not_start_for_a_resolved_alert_or_an_incident_no_longer_matched,
    host_holds_keep_the_later_time_and_drop_when_over,
    escalations_queue_once_retry_and_are_sent,
);

fn alert(n: u32) -> Alert {
    let labels = BTreeMap::from([
        ("alertname".to_owned(), "ServiceDown".to_owned()),
        ("n".to_owned(), n.to_string()),
    ]);
    Alert {
        starts_at: Some(Utc::now()),
        ..Alert::firing_generic(labels)
    }
}

async fn matched(store: &TestStore, n: u32) -> IncidentId {
    matched_alert(store, alert(n)).await
}

/// Ingests `alert` and plans it (`matched`, recipe service-restart).
async fn matched_alert(store: &TestStore, alert: Alert) -> IncidentId {
    let id = store.ingest(vec![alert], Utc::now()).await.unwrap()[0].id;
    let plan = Plan {
        mode: Mode::Enforce,
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

const LIMIT: BreakerLimit = BreakerLimit {
    max_runs: Some(2),
    window: Duration::from_secs(600),
};

/// Asks to start incident `id`'s service-restart run on `target`, under `LIMIT`, with the
/// target as its breaker key (a recipe without `[breaker] key`).
async fn try_run(store: &TestStore, id: IncidentId, target: &str) -> Result<RunGate, StoreError> {
    try_run_keyed(store, id, target, target).await
}

/// As [`try_run`], counted under breaker `key`.
async fn try_run_keyed(
    store: &TestStore,
    id: IncidentId,
    target: &str,
    key: &str,
) -> Result<RunGate, StoreError> {
    store
        .begin_run(
            id,
            "service-restart",
            target,
            key,
            LIMIT,
            remediation_started(),
            None,
            Utc::now(),
        )
        .await
}

async fn the_breaker_opens_at_max_runs_holds_across_reopen_and_resets(store: &mut TestStore) {
    for n in 0..2 {
        let id = matched(store, n).await;
        let gate = try_run(store, id, "web1").await.unwrap();
        assert_eq!(gate, RunGate::Started);
        assert_eq!(
            store.incident(id).await.unwrap().unwrap().incident.state,
            State::Remediating
        );
    }
    // Another target has its own breaker.
    let other = matched(store, 9).await;
    assert_eq!(
        try_run(store, other, "web2").await.unwrap(),
        RunGate::Started
    );
    store.reopen().await;

    let third = matched(store, 2).await;
    match try_run(store, third, "web1").await.unwrap() {
        RunGate::BreakerOpen { runs } => assert_eq!(runs.len(), 2),
        other => panic!("breaker should be open: {other:?}"),
    }
    assert_eq!(
        store.incident(third).await.unwrap().unwrap().incident.state,
        State::Matched
    );
    let breakers = store.breakers().await.unwrap();
    let web1 = breakers.iter().find(|b| b.target == "web1").unwrap();
    assert!(web1.open && web1.runs_in_window == 2, "{web1:?}");
    assert!(!breakers.iter().find(|b| b.target == "web2").unwrap().open);

    let BreakerResetOutcome::Reset(reset) = store
        .reset_breaker("service-restart", "web1", "ops")
        .await
        .unwrap()
    else {
        panic!("web1 has runs to forget");
    };
    assert_eq!(reset.runs_forgotten, 2);
    let journal = store
        .incident(reset.incident)
        .await
        .unwrap()
        .unwrap()
        .events;
    let recorded = journal
        .iter()
        .find_map(|e| match &e.event {
            Event::BreakerReset { by, .. } => Some(by),
            _ => None,
        })
        .unwrap();
    assert_eq!(recorded, "ops");
    assert_eq!(
        store
            .reset_breaker("service-restart", "nowhere", "ops")
            .await
            .unwrap(),
        BreakerResetOutcome::UnknownKey {
            known_keys: vec!["web1".into(), "web2".into()]
        },
        "a key that never ran has nothing to reset"
    );
    assert_eq!(
        store
            .reset_breaker("no-such-recipe", "web1", "ops")
            .await
            .unwrap(),
        BreakerResetOutcome::UnknownRecipe,
        "a recipe that never ran has nothing to reset"
    );
    assert_eq!(
        try_run(store, third, "web1").await.unwrap(),
        RunGate::Started
    );
    assert_eq!(store.remediation_totals().await.unwrap(), (4, 0));
}

async fn each_breaker_key_of_one_target_has_its_own_breaker(store: &mut TestStore) {
    for n in 0..2 {
        let id = matched(store, n).await;
        let gate = try_run_keyed(store, id, "web1", "web1/flappy").await;
        assert_eq!(gate.unwrap(), RunGate::Started);
    }
    let flappy = matched(store, 2).await;
    assert!(matches!(
        try_run_keyed(store, flappy, "web1", "web1/flappy")
            .await
            .unwrap(),
        RunGate::BreakerOpen { .. }
    ));
    // The same host, another key: not blocked.
    let steady = matched(store, 3).await;
    assert_eq!(
        try_run_keyed(store, steady, "web1", "web1/steady")
            .await
            .unwrap(),
        RunGate::Started
    );
    let breakers = store.breakers().await.unwrap();
    let listed: Vec<(&str, &str, bool)> = breakers
        .iter()
        .map(|b| (b.key.as_str(), b.target.as_str(), b.open))
        .collect();
    assert_eq!(
        listed,
        [
            ("web1/flappy", "web1", true),
            ("web1/steady", "web1", false)
        ]
    );
    assert_eq!(
        store
            .runs_in_window("service-restart", "web1/flappy", LIMIT.window)
            .await
            .unwrap()
            .len(),
        2
    );
    // A reset names the key and forgets only its runs.
    let BreakerResetOutcome::Reset(reset) = store
        .reset_breaker("service-restart", "web1/flappy", "ops")
        .await
        .unwrap()
    else {
        panic!("web1/flappy has runs to forget");
    };
    assert_eq!(reset.runs_forgotten, 2);
    let journaled = store
        .incident(reset.incident)
        .await
        .unwrap()
        .unwrap()
        .events;
    assert!(journaled.iter().any(|e| matches!(
        &e.event,
        Event::BreakerReset { key: Some(key), target, .. } if key == "web1/flappy" && target == "web1"
    )));
    assert_eq!(
        store
            .runs_in_window("service-restart", "web1/steady", LIMIT.window)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        try_run_keyed(store, flappy, "web1", "web1/flappy")
            .await
            .unwrap(),
        RunGate::Started
    );
}

async fn a_run_does_not_start_for_a_resolved_alert_or_an_incident_no_longer_matched(
    store: &mut TestStore,
) {
    let firing = alert(1);
    let id = matched_alert(store, firing.clone()).await;
    let resolved = Alert {
        status: crate::alert::AlertStatus::Resolved,
        ends_at: Some(Utc::now()),
        ..firing
    };
    assert!(store.ingest(vec![resolved], Utc::now()).await.unwrap()[0].resolved_now);
    let gate = try_run(store, id, "web1").await.unwrap();
    assert_eq!(gate, RunGate::AlertResolved);
    let detail = store.incident(id).await.unwrap().unwrap();
    assert_eq!(detail.incident.state, State::Matched);
    assert_eq!(store.remediation_totals().await.unwrap(), (0, 0));

    let taken = matched(store, 2).await;
    assert_eq!(
        try_run(store, taken, "web1").await.unwrap(),
        RunGate::Started
    );
    let again = try_run(store, taken, "web1").await;
    assert!(
        matches!(
            again,
            Err(StoreError::StateConflict {
                found: State::Remediating,
                ..
            })
        ),
        "{again:?}"
    );
}

async fn host_holds_keep_the_later_time_and_drop_when_over(store: &mut TestStore) {
    let later = Utc::now() + chrono::Duration::seconds(60);
    let sooner = Utc::now() + chrono::Duration::seconds(30);
    store
        .hold_host("web1", later, "cut by a crash")
        .await
        .unwrap();
    store.hold_host("web1", sooner, "timed out").await.unwrap();
    store
        .hold_host("web2", Utc::now() - chrono::Duration::seconds(1), "over")
        .await
        .unwrap();
    store.reopen().await;
    let holds = store.host_holds().await.unwrap();
    assert_eq!(
        holds,
        [HostHold {
            host: "web1".into(),
            until: later,
            why: "cut by a crash".into()
        }]
    );
}

async fn escalations_queue_once_retry_and_are_sent(store: &mut TestStore) {
    let id = store.ingest(vec![alert(1)], Utc::now()).await.unwrap()[0].id;
    store
        .record_plan(
            id,
            State::Received,
            State::Unmatched,
            &Plan::inert(PlanOutcome::Unmatched, None, "no recipe".into(), vec![]),
        )
        .await
        .unwrap();
    assert_eq!(store.incidents_to_escalate(10).await.unwrap().len(), 1);
    let channels = vec!["mail".to_owned(), "tickets".to_owned()];
    store
        .enqueue_escalation(id, EscalationReason::Novel, &channels, &json!({ "x": 1 }))
        .await
        .unwrap();
    // Queued twice (a retry after a crash): still one row per channel.
    store
        .enqueue_escalation(id, EscalationReason::Novel, &channels, &json!({ "x": 1 }))
        .await
        .unwrap();
    assert!(store.incidents_to_escalate(10).await.unwrap().is_empty());
    assert_eq!(store.outbox_pending().await.unwrap(), 2);

    let due = store.due_escalations(10).await.unwrap();
    assert_eq!(due.len(), 2);
    let later = Utc::now() + chrono::Duration::seconds(60);
    store
        .escalation_failed(&due[0], "451 try later", later)
        .await
        .unwrap();
    store.escalation_sent(&due[1]).await.unwrap();
    assert_eq!(store.outbox_pending().await.unwrap(), 1);
    assert!(
        store.due_escalations(10).await.unwrap().is_empty(),
        "the failed one waits for its backoff"
    );

    let gaps = store.gaps(10).await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (
            gaps[0].alertname.as_str(),
            gaps[0].unmatched,
            gaps[0].escalated
        ),
        ("ServiceDown", 1, 1)
    );
    let kinds: Vec<String> = store
        .incident(id)
        .await
        .unwrap()
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.event.to_row().0)
        .collect();
    assert!(
        kinds.ends_with(&[
            "escalation_queued".into(),
            "escalation_queued".into(),
            "escalation_failed".into(),
            "escalation_sent".into()
        ]),
        "{kinds:?}"
    );
}
