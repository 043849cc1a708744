//! Tests of the PostgreSQL gates against a real server: `TESTBED_POSTGRES_URL` (a
//! throwaway cluster, `scripts/testbed/postgres.sh`), each test on a database of its own.
//! Incidents are inserted with plain SQL in the state a test needs. The races run on two
//! replicas (two `PgStore`s, each joined) and many tasks at once, as several salves do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{PgConnect, PgStore};
use crate::incident::{Event, IncidentId, State};
use crate::plan::{Mode, Plan, PlanOutcome, PlannedTarget};
use crate::store::{
    ApprovalDecision, ApprovalOutcome, ApprovalRefusal, BreakerLimit, BreakerResetOutcome,
    BudgetState, BudgetTrip, DiagnosticsClaim, HostHold, NewPause, RunGate, Store, StoreError,
    time_text,
};

const LIMIT: BreakerLimit = BreakerLimit {
    max_runs: Some(2),
    window: Duration::from_secs(600),
};

/// A database of one test's own on the test bed's server, and a plain client to it.
struct Bed {
    url: String,
    name: String,
    admin: tokio_postgres::Client,
    sql: tokio_postgres::Client,
}

async fn plain_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl Bed {
    async fn new() -> Bed {
        let database = crate::store::contract::TestDatabase::create(None).await;
        let (url, name) = (database.url(), database.name);
        let admin = plain_client(&crate::store::contract::admin_url()).await;
        // The schema comes from the store's own migration.
        drop(Bed::store_at(&url).await);
        let sql = plain_client(&url).await;
        Bed {
            url,
            name,
            admin,
            sql,
        }
    }

    async fn store_at(url: &str) -> PgStore {
        PgStore::connect(&PgConnect {
            url: url.to_owned(),
            password: None,
            ca_file: None,
            pool_size: 12,
        })
        .await
        .unwrap()
    }

    /// A store joined as a replica (its number is the owner of what it claims).
    async fn replica(&self, name: &str) -> Arc<PgStore> {
        let store = Bed::store_at(&self.url).await;
        store
            .join_replicas(name, Duration::from_secs(120))
            .await
            .unwrap();
        Arc::new(store)
    }

    async fn finish(self) {
        drop(self.sql);
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }

    /// An incident in `state` on `target`, owned by `owner`, with `plan` when given.
    async fn incident(
        &self,
        state: State,
        target: &str,
        owner: Option<i64>,
        plan: Option<&Plan>,
    ) -> IncidentId {
        static FINGERPRINT: AtomicU64 = AtomicU64::new(1);
        let fingerprint = format!("{:016x}", FINGERPRINT.fetch_add(1, Ordering::Relaxed));
        let now = time_text(Utc::now());
        let plan = plan.map(|plan| serde_json::to_string(plan).unwrap());
        let row = self
            .sql
            .query_one(
                "INSERT INTO incidents (source, fingerprint, starts_at, alertname, alert_status,
                     labels, annotations, state, plan, first_seen, last_seen, receive_count,
                     target, owner)
                 VALUES ('generic', $1, $2, 'ServiceDown', 'firing', '{}', '{}', $3, $4, $2, $2,
                     1, $5, $6)
                 RETURNING id",
                &[&fingerprint, &now, &state.as_str(), &plan, &target, &owner],
            )
            .await
            .unwrap();
        IncidentId(row.get(0))
    }

    async fn state_of(&self, id: IncidentId) -> State {
        let row = self
            .sql
            .query_one("SELECT state FROM incidents WHERE id = $1", &[&id.0])
            .await
            .unwrap();
        State::parse(row.get(0)).unwrap()
    }

    async fn set_state(&self, id: IncidentId, state: State) {
        self.sql
            .execute(
                "UPDATE incidents SET state = $2 WHERE id = $1",
                &[&id.0, &state.as_str()],
            )
            .await
            .unwrap();
    }

    async fn count(&self, query: &str) -> i64 {
        self.sql.query_one(query, &[]).await.unwrap().get(0)
    }

    async fn event_kinds(&self, id: IncidentId) -> Vec<String> {
        self.sql
            .query(
                "SELECT kind FROM events WHERE incident_id = $1 ORDER BY id",
                &[&id.0],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

fn started() -> Event {
    Event::RemediationStarted {
        target: PlannedTarget {
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

/// Asks `store` to start `id`'s service-restart run on `target` under breaker `key`.
async fn try_run_at(
    store: &PgStore,
    id: IncidentId,
    target: &str,
    key: &str,
    limit: BreakerLimit,
    now: DateTime<Utc>,
) -> Result<RunGate, StoreError> {
    store
        .begin_run(
            id,
            "service-restart",
            target,
            key,
            limit,
            started(),
            None,
            now,
        )
        .await
}

async fn try_run(store: &PgStore, id: IncidentId, target: &str) -> Result<RunGate, StoreError> {
    try_run_at(store, id, target, target, LIMIT, Utc::now()).await
}

#[tokio::test]
async fn the_breaker_counts_runs_in_its_window_since_the_last_reset() {
    let bed = Bed::new().await;
    let store = bed.replica("r1").await;
    let me = Some(store.me());
    // A run before the window does not count.
    let old = bed.incident(State::Matched, "web1", me, None).await;
    let long_ago = Utc::now() - chrono::Duration::minutes(20);
    let gate = try_run_at(&store, old, "web1", "web1", LIMIT, long_ago).await;
    assert_eq!(gate.unwrap(), RunGate::Started);
    bed.set_state(old, State::Succeeded).await;
    for _ in 0..2 {
        let id = bed.incident(State::Matched, "web1", me, None).await;
        assert_eq!(try_run(&store, id, "web1").await.unwrap(), RunGate::Started);
        assert_eq!(bed.state_of(id).await, State::Remediating);
        assert_eq!(bed.event_kinds(id).await, ["remediation_started"]);
        bed.set_state(id, State::Succeeded).await;
    }
    let third = bed.incident(State::Matched, "web1", me, None).await;
    match try_run(&store, third, "web1").await.unwrap() {
        RunGate::BreakerOpen { runs } => assert_eq!(runs.len(), 2, "{runs:?}"),
        other => panic!("the breaker should be open: {other:?}"),
    }
    assert_eq!(bed.state_of(third).await, State::Matched, "nothing written");
    assert_eq!(bed.count("SELECT count(*) FROM runs").await, 3);
    let breakers = store.breakers().await.unwrap();
    assert_eq!(breakers.len(), 1);
    assert!(breakers[0].open && breakers[0].runs_in_window == 2);
    assert_eq!(
        store
            .runs_in_window("service-restart", "web1", LIMIT.window)
            .await
            .unwrap()
            .len(),
        2
    );

    let BreakerResetOutcome::Reset(reset) = store
        .reset_breaker("service-restart", "web1", "ops")
        .await
        .unwrap()
    else {
        panic!("web1 has runs to forget");
    };
    assert_eq!(reset.runs_forgotten, 3, "every run since the last reset");
    assert!(
        bed.event_kinds(reset.incident)
            .await
            .contains(&"breaker_reset".to_owned())
    );
    assert_eq!(
        store
            .reset_breaker("service-restart", "nowhere", "ops")
            .await
            .unwrap(),
        BreakerResetOutcome::UnknownKey {
            known_keys: vec!["web1".into()]
        }
    );
    assert_eq!(
        store.reset_breaker("no-such", "web1", "ops").await.unwrap(),
        BreakerResetOutcome::UnknownRecipe
    );
    assert_eq!(
        try_run(&store, third, "web1").await.unwrap(),
        RunGate::Started
    );
    assert_eq!(
        store
            .runs_in_window("service-restart", "web1", LIMIT.window)
            .await
            .unwrap()
            .len(),
        1,
        "only the run since the reset"
    );
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_for_one_host_start_one_run_there() {
    let bed = Bed::new().await;
    let (one, two) = (bed.replica("r1").await, bed.replica("r2").await);
    let mut races = Vec::new();
    for host in 0..10 {
        let target = format!("host{host}");
        let a = bed
            .incident(State::Matched, &target, Some(one.me()), None)
            .await;
        let b = bed
            .incident(State::Matched, &target, Some(two.me()), None)
            .await;
        for (store, id) in [(Arc::clone(&one), a), (Arc::clone(&two), b)] {
            let target = target.clone();
            races.push(tokio::spawn(async move {
                (target.clone(), try_run(&store, id, &target).await.unwrap())
            }));
        }
    }
    let mut outcomes = std::collections::BTreeMap::<String, Vec<RunGate>>::new();
    for race in races {
        let (target, gate) = race.await.unwrap();
        outcomes.entry(target).or_default().push(gate);
    }
    for (target, gates) in outcomes {
        let started = gates.iter().filter(|g| **g == RunGate::Started).count();
        let busy = gates
            .iter()
            .filter(|g| matches!(g, RunGate::HostBusy { retry_after, .. } if *retry_after == Duration::from_secs(1)))
            .count();
        assert_eq!((started, busy), (1, 1), "{target}: {gates:?}");
    }
    assert_eq!(bed.count("SELECT count(*) FROM runs").await, 10);
    assert_eq!(
        bed.count(
            "SELECT count(*) FROM (SELECT target FROM incidents WHERE state = 'remediating'
             GROUP BY target HAVING count(*) > 1) AS twice"
        )
        .await,
        0
    );
    bed.finish().await;
}

#[tokio::test]
async fn a_held_host_is_busy_for_the_rest_of_its_hold_and_holds_keep_the_later_time() {
    let bed = Bed::new().await;
    let store = bed.replica("r1").await;
    let now = Utc::now();
    let later = now + chrono::Duration::seconds(60);
    store
        .hold_host("web1", later, "cut by a crash")
        .await
        .unwrap();
    store
        .hold_host("web1", now + chrono::Duration::seconds(30), "timed out")
        .await
        .unwrap();
    store
        .hold_host("web2", now - chrono::Duration::seconds(1), "over")
        .await
        .unwrap();
    assert_eq!(
        store.host_holds().await.unwrap(),
        [HostHold {
            host: "web1".into(),
            until: later,
            why: "cut by a crash".into()
        }]
    );

    let id = bed
        .incident(State::Matched, "web1", Some(store.me()), None)
        .await;
    let asked = now + chrono::Duration::seconds(20);
    let gate = try_run_at(&store, id, "web1", "web1", LIMIT, asked).await;
    assert_eq!(
        gate.unwrap(),
        RunGate::HostBusy {
            why: "cut by a crash".into(),
            retry_after: Duration::from_secs(40)
        }
    );
    assert_eq!(bed.state_of(id).await, State::Matched);
    assert_eq!(bed.count("SELECT count(*) FROM runs").await, 0);
    let after = later + chrono::Duration::seconds(1);
    let gate = try_run_at(&store, id, "web1", "web1", LIMIT, after).await;
    assert_eq!(gate.unwrap(), RunGate::Started);
    bed.finish().await;
}

#[tokio::test]
async fn a_run_is_not_started_for_another_replica_a_resolved_alert_or_a_moved_incident() {
    let bed = Bed::new().await;
    let (one, two) = (bed.replica("r1").await, bed.replica("r2").await);
    let theirs = bed
        .incident(State::Matched, "web1", Some(two.me()), None)
        .await;
    match try_run(&one, theirs, "web1").await {
        Err(StoreError::NotOwner { owner, .. }) => assert_eq!(owner, Some(two.me())),
        other => panic!("another live replica's incident: {other:?}"),
    }
    assert_eq!(bed.state_of(theirs).await, State::Matched);
    assert!(bed.event_kinds(theirs).await.is_empty());

    // An incident of a replica that left (or none) is taken over by the one starting it.
    two.leave_replicas().await.unwrap();
    assert_eq!(
        try_run(&one, theirs, "web1").await.unwrap(),
        RunGate::Started
    );
    let owner: Option<i64> = bed
        .sql
        .query_one("SELECT owner FROM incidents WHERE id = $1", &[&theirs.0])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, Some(one.me()));
    let again = try_run(&one, theirs, "web1").await;
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

    let resolved = bed
        .incident(State::Matched, "web2", Some(one.me()), None)
        .await;
    bed.sql
        .execute(
            "UPDATE incidents SET alert_status = 'resolved' WHERE id = $1",
            &[&resolved.0],
        )
        .await
        .unwrap();
    assert_eq!(
        try_run(&one, resolved, "web2").await.unwrap(),
        RunGate::AlertResolved
    );
    assert_eq!(bed.state_of(resolved).await, State::Matched);
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_holds_under_concurrent_runs_of_one_key_on_many_hosts() {
    let bed = Bed::new().await;
    let (one, two) = (bed.replica("r1").await, bed.replica("r2").await);
    let limit = BreakerLimit {
        max_runs: Some(3),
        window: Duration::from_secs(600),
    };
    let mut races = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { &one } else { &two };
        let target = format!("host{n}");
        let id = bed
            .incident(State::Matched, &target, Some(store.me()), None)
            .await;
        let store = Arc::clone(store);
        races.push(tokio::spawn(async move {
            try_run_at(&store, id, &target, "fleet", limit, Utc::now())
                .await
                .unwrap()
        }));
    }
    let mut started = 0;
    for race in races {
        match race.await.unwrap() {
            RunGate::Started => started += 1,
            RunGate::BreakerOpen { runs } => assert_eq!(runs.len(), 3),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started, 3);
    assert_eq!(bed.count("SELECT count(*) FROM runs").await, 3);
    bed.finish().await;
}

fn trip(incident: IncidentId) -> BudgetTrip {
    BudgetTrip {
        incident,
        reason: "error budget spent".into(),
        failures: vec![incident],
        max_failures: 1,
        window: "15m".into(),
        channels: vec!["pager".into(), "mail".into()],
        payload: serde_json::json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_error_budget_trips_once_however_many_replicas_race_and_a_resume_rearms_it() {
    let bed = Bed::new().await;
    let (one, two) = (bed.replica("r1").await, bed.replica("r2").await);
    let id = bed.incident(State::Failed, "web1", None, None).await;
    let now = Utc::now();
    let mut races = Vec::new();
    for n in 0..8 {
        let store = Arc::clone(if n % 2 == 0 { &one } else { &two });
        races.push(tokio::spawn(async move {
            store.trip_error_budget(trip(id), now).await.unwrap()
        }));
    }
    let mut tripped = Vec::new();
    for race in races {
        tripped.extend(race.await.unwrap());
    }
    assert_eq!(tripped.len(), 1, "{tripped:?}");
    assert_eq!(tripped[0].created_by, "error-budget");
    assert_eq!(bed.count("SELECT count(*) FROM pauses").await, 1);
    assert_eq!(
        bed.count("SELECT count(*) FROM outbox WHERE reason = 'error_budget'")
            .await,
        2,
        "one page per channel"
    );
    assert_eq!(bed.event_kinds(id).await, ["error_budget_tripped"]);
    let window = Duration::from_secs(900);
    assert!(matches!(
        two.error_budget(window, Utc::now()).await.unwrap(),
        BudgetState::Tripped(_)
    ));

    let (a, b) = tokio::join!(
        one.resume_pauses(None, "lead"),
        two.resume_pauses(None, "ops")
    );
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1, "resumed once");
    assert_eq!(
        one.error_budget(window, Utc::now()).await.unwrap(),
        BudgetState::Counting(Vec::new())
    );
    assert!(
        one.trip_error_budget(trip(id), Utc::now())
            .await
            .unwrap()
            .is_some()
    );
    bed.finish().await;
}

#[tokio::test]
async fn pauses_are_active_until_their_end_or_a_resume() {
    let bed = Bed::new().await;
    let store = bed.replica("r1").await;
    let now = Utc::now();
    let pause = |host: Option<&str>, until| NewPause {
        recipe: None,
        host: host.map(str::to_owned),
        reason: "disk swap".into(),
        silent: true,
        created_by: "cli:root".into(),
        until,
    };
    let timed = store
        .create_pause(pause(Some("web1"), Some(now + chrono::Duration::hours(1))))
        .await
        .unwrap();
    let open = store.create_pause(pause(None, None)).await.unwrap();
    assert!(timed.silent && timed.host.as_deref() == Some("web1"));
    let ids =
        |pauses: Vec<crate::store::Pause>| pauses.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.active_pauses(now).await.unwrap()),
        [timed.id, open.id]
    );
    let in_two_hours = now + chrono::Duration::hours(2);
    assert_eq!(
        ids(store.active_pauses(in_two_hours).await.unwrap()),
        [open.id]
    );
    let resumed = store.resume_pauses(Some(open.id), "lead").await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].resumed_by.as_deref(), Some("lead"));
    assert!(
        store
            .resume_pauses(Some(open.id), "lead")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(store.active_pauses(Utc::now()).await.unwrap()),
        [timed.id]
    );
    bed.finish().await;
}

fn approve_plan() -> Plan {
    Plan {
        mode: Mode::Enforce,
        approval: true,
        commands: vec!["systemctl restart 'nginx'".into()],
        ..Plan::inert(
            PlanOutcome::Planned,
            Some("service-restart".into()),
            String::new(),
            vec![],
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_humans_deciding_at_once_on_two_replicas_make_one_decision() {
    let bed = Bed::new().await;
    let (one, two) = (bed.replica("r1").await, bed.replica("r2").await);
    let plan = approve_plan();
    let expires = Utc::now() + chrono::Duration::minutes(15);
    let mut races = Vec::new();
    for _ in 0..6 {
        let id = bed
            .incident(State::Matched, "web1", None, Some(&plan))
            .await;
        one.request_approval(id, &plan.digest(), "n1", expires)
            .await
            .unwrap();
        assert_eq!(bed.state_of(id).await, State::AwaitingApproval);
        let (one, two) = (Arc::clone(&one), Arc::clone(&two));
        races.push(tokio::spawn(async move {
            let deny = ApprovalDecision::deny(Some("not now"), "");
            let (a, b) = tokio::join!(
                one.decide_approval(id, ApprovalDecision::Approve, "alice", None),
                two.decide_approval(id, deny, "bob", None)
            );
            (id, [a.unwrap(), b.unwrap()])
        }));
    }
    for race in races {
        let (id, outcomes) = race.await.unwrap();
        let decided = outcomes
            .iter()
            .filter(|o| matches!(o, ApprovalOutcome::Decided { .. }))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    ApprovalOutcome::Refused(ApprovalRefusal::AlreadyDecided { .. })
                )
            })
            .count();
        assert_eq!((decided, refused), (1, 1), "{outcomes:?}");
        let state = bed.state_of(id).await;
        assert!(matches!(state, State::Matched | State::Denied), "{state}");
        let kinds = bed.event_kinds(id).await;
        let decisions = kinds
            .iter()
            .filter(|k| *k == "approved" || *k == "denied")
            .count();
        assert_eq!(decisions, 1, "{kinds:?}");
        let request = one.approval(id).await.unwrap().unwrap();
        assert!(request.decided_by.is_some());
    }
    bed.finish().await;
}

#[tokio::test]
async fn an_approval_request_expires_or_ends_with_its_alert() {
    let bed = Bed::new().await;
    let store = bed.replica("r1").await;
    let plan = approve_plan();
    let soon = Utc::now() + chrono::Duration::minutes(1);
    let (late, resolved, waiting) = (
        bed.incident(State::Matched, "web1", None, Some(&plan))
            .await,
        bed.incident(State::Matched, "web2", None, Some(&plan))
            .await,
        bed.incident(State::Matched, "web3", None, Some(&plan))
            .await,
    );
    for id in [late, resolved] {
        store
            .request_approval(id, &plan.digest(), "n", soon)
            .await
            .unwrap();
    }
    let later = Utc::now() + chrono::Duration::hours(1);
    store
        .request_approval(waiting, &plan.digest(), "n", later)
        .await
        .unwrap();
    bed.sql
        .execute(
            "UPDATE incidents SET alert_status = 'resolved' WHERE id = $1",
            &[&resolved.0],
        )
        .await
        .unwrap();
    let ended = store
        .expire_approvals(soon + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(ended, [late, resolved]);
    assert_eq!(bed.state_of(late).await, State::ApprovalExpired);
    assert_eq!(bed.state_of(resolved).await, State::ResolvedBeforeRun);
    assert_eq!(bed.state_of(waiting).await, State::AwaitingApproval);
    let outcome = store
        .decide_approval(late, ApprovalDecision::Approve, "alice", None)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ApprovalOutcome::Refused(ApprovalRefusal::Expired(soon))
    );
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diagnostics_claims_racing_on_two_replicas_grant_one() {
    let bed = Bed::new().await;
    let (one, two) = (bed.replica("r1").await, bed.replica("r2").await);
    let window = Some(Duration::from_secs(600));
    let mut races = Vec::new();
    for n in 0..8 {
        let store = Arc::clone(if n % 2 == 0 { &one } else { &two });
        let id = bed.incident(State::BreakerOpen, "web1", None, None).await;
        races.push(tokio::spawn(async move {
            let claim = store.claim_diagnostics("service-restart", "web1", id, window);
            (id, claim.await.unwrap())
        }));
    }
    let mut granted = Vec::new();
    let mut recent = Vec::new();
    for race in races {
        match race.await.unwrap() {
            (id, DiagnosticsClaim::Granted) => granted.push(id),
            (_, DiagnosticsClaim::Recent { incident, .. }) => recent.push(incident),
        }
    }
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert!(recent.iter().all(|id| *id == granted[0]), "{recent:?}");
    // Without a window every claim is granted; another target has its own.
    let id = bed.incident(State::BreakerOpen, "web1", None, None).await;
    let claim = one.claim_diagnostics("service-restart", "web1", id, None);
    assert_eq!(claim.await.unwrap(), DiagnosticsClaim::Granted);
    let claim = one.claim_diagnostics("service-restart", "web2", id, window);
    assert_eq!(claim.await.unwrap(), DiagnosticsClaim::Granted);
    bed.finish().await;
}

#[tokio::test]
async fn retention_prunes_old_finished_incidents_and_keeps_what_is_still_needed() {
    let bed = Bed::new().await;
    let store = bed.replica("r1").await;
    let long_ago = time_text(Utc::now() - chrono::Duration::days(30));
    let old = |state| bed.incident(state, "web1", None, None);
    let (done, paging, counted, running) = (
        old(State::Succeeded).await,
        old(State::Succeeded).await,
        old(State::Succeeded).await,
        old(State::Remediating).await,
    );
    bed.sql
        .execute(
            "UPDATE incidents SET last_seen = $1, first_seen = $1",
            &[&long_ago],
        )
        .await
        .unwrap();
    for id in [done, paging, counted] {
        bed.sql
            .execute(
                "INSERT INTO events (incident_id, at, kind, detail) VALUES ($1, $2, 'x', '{}')",
                &[&id.0, &long_ago],
            )
            .await
            .unwrap();
    }
    bed.sql
        .execute(
            "INSERT INTO outbox (incident_id, reason, channel, payload, status, next_attempt_at,
                                 created_at)
             VALUES ($1, 'novel', 'mail', '{}', 'pending', $2, $2)",
            &[&paging.0, &long_ago],
        )
        .await
        .unwrap();
    // A run whose breaker window (a year) still counts it.
    bed.sql
        .execute(
            "INSERT INTO runs (incident_id, recipe, target, started_at, window_seconds)
             VALUES ($1, 'service-restart', 'web1', $2, 31536000)",
            &[&counted.0, &long_ago],
        )
        .await
        .unwrap();
    let cutoff = Utc::now() - chrono::Duration::days(7);
    assert_eq!(
        store.prune_finished(cutoff, Utc::now(), 100).await.unwrap(),
        1
    );
    let left: Vec<i64> = bed
        .sql
        .query("SELECT id FROM incidents ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, [paging.0, counted.0, running.0]);
    assert_eq!(
        bed.count("SELECT count(*) FROM events").await,
        2,
        "the pruned incident's journal went with it"
    );
    assert_eq!(
        store.prune_finished(cutoff, Utc::now(), 100).await.unwrap(),
        0
    );
    bed.finish().await;
}
