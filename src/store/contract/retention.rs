//! The contract of retention (`prune_finished`) and filtered listings
//! (`incidents_matching`), with rows backdated behind the store's back.

use std::collections::BTreeMap;

use chrono::{Duration as Days, Utc};
use serde_json::json;

use super::TestStore;
use super::incidents::remediation_started;
use crate::alert::{Alert, AlertStatus, Fingerprint, Source};
use crate::incident::{EscalationReason, Event, IncidentId, State};
use crate::plan::{Mode, Plan, PlanOutcome, PlannedTarget};
use crate::store::{BreakerLimit, IncidentFilter, RunGate, time_text};

contract_tests!(
    a_week_of_finished_incidents_is_pruned_to_the_window,
    pruning_goes_in_batches,
    an_undelivered_page_keeps_its_incident_until_it_is_sent,
    a_run_its_breaker_window_still_counts_is_kept,
    listings_filter_by_state_alertname_host_recipe_since_and_cursor,
);

fn alert(fingerprint: &str, alertname: &str) -> Alert {
    Alert {
        source: Source::Alertmanager,
        fingerprint: Fingerprint::parse(fingerprint).unwrap(),
        status: AlertStatus::Firing,
        labels: BTreeMap::from([("alertname".to_owned(), alertname.to_owned())]),
        annotations: BTreeMap::new(),
        starts_at: Some(Utc::now()),
        ends_at: None,
        generator_url: None,
        external_url: None,
    }
}

fn plan(recipe: &str, host: &str) -> Plan {
    Plan {
        mode: Mode::DryRun,
        target: Some(PlannedTarget {
            name: host.to_owned(),
            address: "127.0.0.1".to_owned(),
            port: 22,
            user: None,
        }),
        ..Plan::inert(
            PlanOutcome::Planned,
            Some(recipe.to_owned()),
            "test".to_owned(),
            vec!["oncall".to_owned()],
        )
    }
}

/// A new incident of `alertname`, planned in `state` with `recipe` on `host`.
async fn incident_in(
    store: &TestStore,
    fingerprint: &str,
    alertname: &str,
    state: State,
    recipe: &str,
    host: &str,
) -> IncidentId {
    let id = store
        .ingest(vec![alert(fingerprint, alertname)], Utc::now())
        .await
        .unwrap()[0]
        .id;
    store
        .record_plan(id, State::Received, state, &plan(recipe, host))
        .await
        .unwrap();
    id
}

/// Moves every trace of incident `id` (times seen, journal, runs) `age` into the past.
async fn backdate(store: &TestStore, id: IncidentId, age: Days) {
    let at = time_text(Utc::now() - age);
    let id = id.0;
    store
        .execute_sql(&format!(
            "UPDATE incidents SET first_seen = '{at}', last_seen = '{at}' WHERE id = {id}"
        ))
        .await;
    store
        .execute_sql(&format!(
            "UPDATE events SET at = '{at}' WHERE incident_id = {id}"
        ))
        .await;
    store
        .execute_sql(&format!(
            "UPDATE runs SET started_at = '{at}' WHERE incident_id = {id}"
        ))
        .await;
}

async fn ids(store: &TestStore) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .list_incidents(None, 1000)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id.0)
        .collect();
    ids.sort_unstable();
    ids
}

async fn events_of(store: &TestStore, id: IncidentId) -> i64 {
    store
        .query_i64(&format!(
            "SELECT COUNT(*) FROM events WHERE incident_id = {}",
            id.0
        ))
        .await
}

async fn a_week_of_finished_incidents_is_pruned_to_the_window(store: &mut TestStore) {
    // One finished incident per day, 1 to 7 days old.
    let mut week = Vec::new();
    for day in 1..=7 {
        let id = incident_in(
            store,
            &format!("a{day}"),
            "Daily",
            State::DryRun,
            "r",
            "web1",
        )
        .await;
        backdate(store, id, Days::days(day) - Days::minutes(1)).await;
        week.push(id);
    }
    // Old, but not finished: kept whatever its age.
    let open = store
        .ingest(vec![alert("bb", "StillOpen")], Utc::now())
        .await
        .unwrap()[0]
        .id;
    backdate(store, open, Days::days(30)).await;

    let now = Utc::now();
    let pruned = store
        .prune_finished(now - Days::days(3), now, 100)
        .await
        .unwrap();
    assert_eq!(pruned, 4, "days 4 to 7 are outside a 3-day window");
    let mut kept: Vec<i64> = week[..3].iter().map(|id| id.0).collect();
    kept.push(open.0);
    assert_eq!(ids(store).await, kept);
    for gone in &week[3..] {
        assert_eq!(
            events_of(store, *gone).await,
            0,
            "journal of {gone} left behind"
        );
        assert!(store.incident(*gone).await.unwrap().is_none());
    }
    assert!(events_of(store, week[0]).await > 0);
    store.checkpoint().await.unwrap();
}

async fn pruning_goes_in_batches(store: &mut TestStore) {
    for n in 0..5 {
        let id = incident_in(store, &format!("c{n}"), "Old", State::DryRun, "r", "web1").await;
        backdate(store, id, Days::days(10)).await;
    }
    let now = Utc::now();
    let cutoff = now - Days::days(1);
    assert_eq!(store.prune_finished(cutoff, now, 2).await.unwrap(), 2);
    assert_eq!(store.prune_finished(cutoff, now, 2).await.unwrap(), 2);
    assert_eq!(store.prune_finished(cutoff, now, 2).await.unwrap(), 1);
    assert_eq!(store.prune_finished(cutoff, now, 2).await.unwrap(), 0);
}

async fn an_undelivered_page_keeps_its_incident_until_it_is_sent(store: &mut TestStore) {
    let id = incident_in(store, "dd", "Paged", State::Refused, "r", "web1").await;
    store
        .enqueue_escalation(id, EscalationReason::Refused, &["mail".into()], &json!({}))
        .await
        .unwrap();
    let item = store.due_escalations(10).await.unwrap().remove(0);
    store
        .escalation_failed(&item, "refused", Utc::now())
        .await
        .unwrap();
    backdate(store, id, Days::days(100)).await;
    let now = Utc::now();
    let cutoff = now - Days::days(90);
    assert_eq!(store.prune_finished(cutoff, now, 10).await.unwrap(), 0);

    let item = store.due_escalations(10).await.unwrap().remove(0);
    store.escalation_sent(&item).await.unwrap();
    backdate(store, id, Days::days(100)).await;
    assert_eq!(store.prune_finished(cutoff, now, 10).await.unwrap(), 1);
    assert_eq!(store.outbox_pending().await.unwrap(), 0);
}

async fn a_run_its_breaker_window_still_counts_is_kept(store: &mut TestStore) {
    let id = store
        .ingest(vec![alert("ee", "Ran")], Utc::now())
        .await
        .unwrap()[0]
        .id;
    store
        .record_plan(id, State::Received, State::Matched, &plan("r", "web1"))
        .await
        .unwrap();
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let limit = BreakerLimit {
        max_runs: Some(3),
        window: week,
    };
    let gate = store
        .begin_run(
            id,
            "r",
            "web1",
            "web1",
            limit,
            remediation_started(),
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(gate, RunGate::Started);
    store
        .transition(
            id,
            State::Remediating,
            State::Succeeded,
            None,
            Event::Planned {
                outcome: PlanOutcome::Planned,
                recipe: None,
                mode: Mode::Enforce,
                state: State::Succeeded,
            },
        )
        .await
        .unwrap();
    // Two days old with a one-day retention, but its week-long breaker window counts it.
    backdate(store, id, Days::days(2)).await;
    let now = Utc::now();
    assert_eq!(
        store
            .prune_finished(now - Days::days(1), now, 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.runs_in_window("r", "web1", week).await.unwrap().len(),
        1
    );
    // Past its window it goes.
    backdate(store, id, Days::days(8)).await;
    assert_eq!(
        store
            .prune_finished(now - Days::days(1), now, 10)
            .await
            .unwrap(),
        1
    );
}

async fn listings_filter_by_state_alertname_host_recipe_since_and_cursor(store: &mut TestStore) {
    let a = incident_in(store, "f1", "DiskFull", State::DryRun, "disk", "web1").await;
    let b = incident_in(store, "f2", "DiskFull", State::Refused, "disk", "web2").await;
    let c = incident_in(store, "f3", "ServiceDown", State::DryRun, "restart", "web1").await;
    backdate(store, a, Days::days(2)).await;
    let store: &TestStore = store;
    let matching = |filter: IncidentFilter| async move {
        store
            .incidents_matching(&filter, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(matching(IncidentFilter::default()).await, [c, b, a]);
    let by_state = IncidentFilter {
        state: Some(State::DryRun),
        ..IncidentFilter::default()
    };
    assert_eq!(matching(by_state).await, [c, a]);
    let by_name = IncidentFilter {
        alertname: Some("DiskFull".into()),
        ..IncidentFilter::default()
    };
    assert_eq!(matching(by_name).await, [b, a]);
    let by_host = IncidentFilter {
        host: Some("web1".into()),
        ..IncidentFilter::default()
    };
    assert_eq!(matching(by_host).await, [c, a]);
    let by_recipe = IncidentFilter {
        recipe: Some("disk".into()),
        host: Some("web2".into()),
        ..IncidentFilter::default()
    };
    assert_eq!(matching(by_recipe).await, [b]);
    let since = IncidentFilter {
        since: Some(Utc::now() - Days::days(1)),
        ..IncidentFilter::default()
    };
    assert_eq!(matching(since).await, [c, b]);
    let before = IncidentFilter {
        before: Some(c),
        alertname: Some("DiskFull".into()),
        ..IncidentFilter::default()
    };
    assert_eq!(matching(before).await, [b, a]);
    let none = IncidentFilter {
        alertname: Some("' OR 1=1 --".into()),
        ..IncidentFilter::default()
    };
    assert!(matching(none).await.is_empty());
}
