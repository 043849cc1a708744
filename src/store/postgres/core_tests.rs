//! PostgreSQL-only tests of intake and the journal: what several replicas sharing one
//! database do at the same time (HA copies, racing transitions, the owner fence), group
//! commit, and the reads. The store's behaviour on both stores is the contract suite's.
//! Each test gets a fresh database on the bed's server (`TESTBED_POSTGRES_URL`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{PgConnect, PgStore};
use crate::alert::{Alert, AlertStatus, Fingerprint, Source};
use crate::incident::{Event, Incident, IncidentId, State};
use crate::plan::{Mode, Plan, PlanOutcome, PlannedTarget};
use crate::store::{IncidentDetail, IncidentFilter, Ingested, Store, StoreError};

/// The bed's admin URL (trust auth); the tests make their own databases through it.
use crate::store::contract::{TestDatabase, admin_url, with_database as url_of_database};

/// A new, empty database on the bed's server; its URL.
async fn fresh_database() -> String {
    TestDatabase::create(None).await.url()
}

/// One replica's store on the database at `url`.
async fn replica(url: &str) -> PgStore {
    try_replica(url).await.unwrap()
}

/// Connecting one replica to the database at `url` (it migrates).
async fn try_replica(url: &str) -> Result<PgStore, StoreError> {
    PgStore::connect(&PgConnect {
        url: url.to_owned(),
        password: None,
        ca_file: None,
        pool_size: 8,
    })
    .await
}

/// A store on a fresh database, and the database's URL (for more replicas).
async fn fresh_store() -> (PgStore, String) {
    let url = fresh_database().await;
    (replica(&url).await, url)
}

/// A plain connection to the database at `url`, to look at rows directly.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

const STARTS: &str = "2026-11-28T10:00:00.123456789Z";

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

async fn ingest_one(store: &PgStore, alert: Alert, received_at: &str) -> Ingested {
    let mut ingested = store.ingest(vec![alert], time(received_at)).await.unwrap();
    assert_eq!(ingested.len(), 1);
    ingested.remove(0)
}

async fn ingest_new(store: &PgStore, alert: Alert, received_at: &str) -> IncidentId {
    let new = ingest_one(store, alert, received_at).await;
    assert!(new.created, "{new:?}");
    new.id
}

async fn ingest_copy(store: &PgStore, alert: Alert, received_at: &str, joins: IncidentId) {
    let copy = ingest_one(store, alert, received_at).await;
    assert_eq!((copy.id, copy.created), (joins, false), "{copy:?}");
}

async fn detail(store: &PgStore, id: IncidentId) -> IncidentDetail {
    store.incident(id).await.unwrap().expect("incident exists")
}

fn event_kinds(detail: &IncidentDetail) -> Vec<String> {
    detail
        .events
        .iter()
        .map(|entry| entry.event.to_row().0)
        .collect()
}

fn ids(incidents: &[Incident]) -> Vec<IncidentId> {
    incidents.iter().map(|incident| incident.id).collect()
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

/// A plan for `recipe` on inventory host `host`.
fn plan_on(recipe: &str, host: &str) -> Plan {
    Plan {
        target: Some(PlannedTarget {
            name: host.to_owned(),
            address: "127.0.0.1".to_owned(),
            port: 22,
            user: None,
        }),
        ..Plan::inert(
            PlanOutcome::Planned,
            Some(recipe.to_owned()),
            "matched".to_owned(),
            Vec::new(),
        )
    }
}

fn failed(reason: &str) -> Event {
    Event::Failed {
        reason: reason.into(),
    }
}

async fn fail(store: &PgStore, id: IncidentId, from: State) -> Result<(), StoreError> {
    store
        .transition(id, from, State::Failed, Some("x".into()), failed("x"))
        .await
}

fn remediation_started() -> Event {
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

/// A received incident of `fingerprint` planned in dry-run: `matched`.
async fn matched(store: &PgStore, fingerprint: &str) -> IncidentId {
    let id = ingest_new(store, firing(fingerprint, STARTS), "2026-11-28T10:00:01Z").await;
    store
        .record_plan(id, State::Received, State::Matched, &dry_run_plan())
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_resent_alert_is_one_incident_with_a_receive_count() {
    let (store, _url) = fresh_store().await;
    let first = ingest_new(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
    ingest_copy(&store, firing("aa", STARTS), "2026-11-28T10:00:02Z", first).await;
    // A copy received earlier but committed later does not move last_seen back.
    ingest_copy(&store, firing("aa", STARTS), "2026-11-28T10:00:00Z", first).await;

    let incidents = store.list_incidents(None, 10).await.unwrap();
    assert_eq!(ids(&incidents), [first]);
    let incident = &incidents[0];
    assert_eq!(incident.receive_count, 3);
    assert_eq!(incident.state, State::Received);
    assert_eq!(incident.starts_at, time(STARTS));
    assert_eq!(incident.first_seen, time("2026-11-28T10:00:01Z"));
    assert_eq!(incident.last_seen, time("2026-11-28T10:00:02Z"));
    assert_eq!(incident.alertname.as_deref(), Some("DiskFull"));
    assert_eq!(incident.annotations.len(), 1);
    assert_eq!(event_kinds(&detail(&store, first).await), ["received"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ha_copies_through_two_replicas_at_once_are_one_incident_each() {
    let (one, url) = fresh_store().await;
    let two = replica(&url).await;
    let (one, two) = (Arc::new(one), Arc::new(two));
    // Every alert reaches both replicas at the same moment, as from two Alertmanagers.
    let fingerprints: Vec<String> = (0..40).map(|n| format!("{:016x}", 0xa0 + n)).collect();
    let mut tasks = Vec::new();
    for fingerprint in &fingerprints {
        for store in [&one, &two] {
            let (store, fingerprint) = (Arc::clone(store), fingerprint.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .ingest(vec![firing(&fingerprint, STARTS)], Utc::now())
                    .await
            }));
        }
    }
    let mut created = 0;
    for task in tasks {
        let ingested = task.await.unwrap().expect("every copy is acknowledged");
        created += ingested.iter().filter(|i| i.created).count();
    }

    assert_eq!(created, fingerprints.len(), "one creation per alert");
    let incidents = one.list_incidents(None, 1000).await.unwrap();
    assert_eq!(incidents.len(), fingerprints.len());
    assert!(
        incidents.iter().all(|incident| incident.receive_count == 2),
        "{:?}",
        incidents
            .iter()
            .map(|i| (i.fingerprint.as_str().to_owned(), i.receive_count))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ingests_share_commits() {
    let (store, _url) = fresh_store().await;
    let store = Arc::new(store);
    let before = store.commits();
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .ingest(
                        vec![firing(&format!("{:016x}", 0xb00 + n), STARTS)],
                        Utc::now(),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap()[0].created);
    }

    let commits = store.commits() - before;
    assert!(
        (1..100).contains(&commits),
        "100 ingests took {commits} commits"
    );
    assert_eq!(store.list_incidents(None, 1000).await.unwrap().len(), 100);
    // An empty notification costs no transaction.
    assert!(
        store
            .ingest(Vec::new(), Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.commits() - before, commits);
}

/// Makes the writer wait inside its next batch: the returned connection holds the
/// advisory lock of fingerprint `ff…`, and an ingest of that alert is under way. Requests
/// queued meanwhile form the batch after it, once the connection commits.
async fn hold_writer(
    store: &Arc<PgStore>,
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<Vec<Ingested>, StoreError>>,
) {
    let holder = raw(url).await;
    holder
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('fingerprint:' || 'ffffffffffffffff', 0))",
        )
        .await
        .unwrap();
    let held = spawn_ingest(store, firing("ffffffffffffffff", STARTS));
    // The writer waits for the lock (only this database's sessions count).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = holder
            .query_one(
                "SELECT count(*) FROM pg_locks JOIN pg_database ON pg_database.oid = database
                 WHERE datname = current_database() AND locktype = 'advisory' AND NOT granted",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never waited"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (holder, held)
}

fn spawn_ingest(
    store: &Arc<PgStore>,
    alert: Alert,
) -> tokio::task::JoinHandle<Result<Vec<Ingested>, StoreError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move {
        store
            .ingest(vec![alert], time("2026-11-28T10:00:01Z"))
            .await
    })
}

/// Waits until `waiting` ingests sit in the writer's queue.
async fn wait_until_queued(store: &PgStore, waiting: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.ingests.max_capacity() - store.ingests.capacity() != waiting {
        assert!(std::time::Instant::now() < deadline, "ingests never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_fails_alone_and_its_batch_commits() {
    let (store, url) = fresh_store().await;
    // A trigger makes one alert's insert fail, as a bad row would.
    raw(&url)
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.fingerprint = '00000000000000bd' THEN RAISE EXCEPTION 'bad row'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_bad BEFORE INSERT ON incidents
             FOR EACH ROW EXECUTE FUNCTION refuse_bad();",
        )
        .await
        .unwrap();
    let store = Arc::new(store);
    let before = store.commits();
    let (holder, held) = hold_writer(&store, &url).await;
    let fingerprints = [
        "00000000000000aa",
        "00000000000000bd",
        "00000000000000cc",
        "00000000000000dd",
    ];
    let mut tasks = Vec::new();
    for (n, fingerprint) in fingerprints.into_iter().enumerate() {
        tasks.push(spawn_ingest(&store, firing(fingerprint, STARTS)));
        wait_until_queued(&store, n + 1).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();
    held.await.unwrap().unwrap();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    assert_eq!(
        store.commits() - before,
        2,
        "the four requests share one batch"
    );
    assert!(
        results[0].is_ok() && results[2].is_ok() && results[3].is_ok(),
        "{results:?}"
    );
    assert!(
        matches!(&results[1], Err(StoreError::Unavailable(why)) if why.contains("bad row")),
        "{results:?}"
    );
    let stored: Vec<String> = store
        .list_incidents(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|incident| incident.fingerprint.as_str().to_owned())
        .collect();
    assert_eq!(
        stored,
        [
            "00000000000000dd",
            "00000000000000cc",
            "00000000000000aa",
            "ffffffffffffffff"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_alert_in_one_batch_are_one_incident() {
    let (store, url) = fresh_store().await;
    let store = Arc::new(store);
    let (holder, held) = hold_writer(&store, &url).await;
    let alerts = [
        firing("00000000000000aa", STARTS),
        firing("00000000000000bb", STARTS),
        firing("00000000000000aa", STARTS),
        resolved("00000000000000aa", STARTS, "2026-11-28T10:05:00Z"),
    ];
    let mut tasks = Vec::new();
    for (n, alert) in alerts.into_iter().enumerate() {
        tasks.push(spawn_ingest(&store, alert));
        wait_until_queued(&store, n + 1).await;
    }
    holder.batch_execute("COMMIT").await.unwrap();
    held.await.unwrap().unwrap();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap().remove(0));
    }

    assert!(results[0].created && results[1].created, "{results:?}");
    assert_eq!((results[2].id, results[2].created), (results[0].id, false));
    assert_eq!(
        results[3],
        Ingested {
            id: results[0].id,
            created: false,
            resolved_now: true
        }
    );
    assert_eq!(store.list_incidents(None, 10).await.unwrap().len(), 3);
    let aa = detail(&store, results[0].id).await;
    assert_eq!(aa.incident.receive_count, 3);
    assert_eq!(event_kinds(&aa), ["received", "resolved"]);
}

#[tokio::test]
async fn a_lost_database_answers_unavailable_and_the_store_recovers() {
    let (store, url) = fresh_store().await;
    ingest_new(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
    let path = url.split('?').next().unwrap();
    let database = path.rsplit('/').next().unwrap().to_owned();
    let admin = raw(&admin_url()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{database}' AND pid <> pg_backend_pid();"
        ))
        .await
        .unwrap();

    let lost = store
        .ingest(vec![firing("bb", STARTS)], time("2026-11-28T10:00:02Z"))
        .await;
    assert!(matches!(lost, Err(StoreError::Unavailable(_))), "{lost:?}");

    admin
        .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    ingest_new(&store, firing("bb", STARTS), "2026-11-28T10:00:03Z").await;
    assert_eq!(store.list_incidents(None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_alert_without_start_time_joins_the_open_incident_until_a_start_is_known() {
    let (store, _url) = fresh_store().await;
    let generic = |status| Alert {
        source: Source::Generic,
        ..alert("aa", status, None)
    };
    let first = ingest_new(&store, generic(AlertStatus::Firing), "2026-11-28T10:00:00Z").await;
    ingest_copy(
        &store,
        generic(AlertStatus::Firing),
        "2026-11-28T10:01:00Z",
        first,
    )
    .await;
    // Alertmanager's copy with the real start: the incident takes it.
    ingest_copy(&store, firing("aa", STARTS), "2026-11-28T10:01:30Z", first).await;
    let resolve = ingest_one(
        &store,
        generic(AlertStatus::Resolved),
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
    let detail_first = detail(&store, first).await;
    assert_eq!(detail_first.incident.starts_at, time(STARTS));
    assert_eq!(detail_first.incident.receive_count, 4);
    assert_eq!(
        event_kinds(&detail_first),
        ["received", "start_known", "resolved"]
    );

    // Handled before it fires again: a new occurrence, its start assumed.
    store
        .record_plan(first, State::Received, State::DryRun, &dry_run_plan())
        .await
        .unwrap();
    let next = ingest_new(&store, generic(AlertStatus::Firing), "2026-11-28T11:00:00Z").await;
    assert_ne!(next, first);
    assert_eq!(
        detail(&store, next).await.incident.starts_at,
        time("2026-11-28T11:00:00Z")
    );
}

#[tokio::test]
async fn a_resolved_alert_firing_again_reopens_its_waiting_incident() {
    let (store, _url) = fresh_store().await;
    let resolve = || resolved("aa", STARTS, "2026-11-28T10:05:00Z");
    // Same start: the same occurrence fires again.
    let fired = matched(&store, "aa").await;
    assert!(
        ingest_one(&store, resolve(), "2026-11-28T10:05:01Z")
            .await
            .resolved_now
    );
    let again = ingest_one(&store, resolve(), "2026-11-28T10:05:02Z").await;
    assert!(!again.resolved_now && !again.created);
    ingest_copy(&store, firing("aa", STARTS), "2026-11-28T10:06:00Z", fired).await;
    let reopened = detail(&store, fired).await;
    assert_eq!(reopened.incident.alert_status, AlertStatus::Firing);
    assert_eq!(reopened.incident.resolved_at, None);
    assert_eq!(reopened.incident.ends_at, None);

    // Resolved again, then a new occurrence (a later start) while it still waits for its
    // host: no second incident, the waiting one fires again and takes the start.
    ingest_one(&store, resolve(), "2026-11-28T10:06:30Z").await;
    let later = "2026-11-28T10:07:00Z";
    ingest_copy(&store, firing("aa", later), "2026-11-28T10:07:01Z", fired).await;
    ingest_copy(&store, firing("aa", later), "2026-11-28T10:07:02Z", fired).await;
    let detail = detail(&store, fired).await;
    assert_eq!(detail.incident.alert_status, AlertStatus::Firing);
    assert_eq!(detail.incident.state, State::Matched);
    assert_eq!(detail.incident.starts_at, time(later));
    assert_eq!(
        event_kinds(&detail),
        [
            "received", "planned", "resolved", "refired", "resolved", "refired"
        ]
    );

    // Once handled, a late copy of an older occurrence opens nothing old again.
    fail(&store, fired, State::Matched).await.unwrap();
    ingest_one(
        &store,
        resolved("aa", later, "2026-11-28T10:08:00Z"),
        "2026-11-28T10:08:01Z",
    )
    .await;
    let newer = ingest_new(
        &store,
        firing("aa", "2026-11-28T10:09:00Z"),
        "2026-11-28T10:09:01Z",
    )
    .await;
    assert_ne!(newer, fired);
}

#[tokio::test]
async fn transitions_are_checked_and_journaled_in_order() {
    let (store, _url) = fresh_store().await;
    let id = matched(&store, "aa").await;
    // Running incidents are written by their owner only: this replica claims it first.
    store
        .join_replicas("one", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ids(&store.claim_matched(10, 10).await.unwrap()), [id]);
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
    let conflict = fail(&store, id, State::Matched).await.unwrap_err();
    assert!(
        matches!(
            conflict,
            StoreError::StateConflict {
                expected: State::Matched,
                found: State::Remediating,
                ..
            }
        ),
        "{conflict:?}"
    );
    fail(&store, id, State::Remediating).await.unwrap();

    let detail = detail(&store, id).await;
    assert_eq!(detail.incident.state, State::Failed);
    assert_eq!(detail.incident.reason.as_deref(), Some("x"));
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
        Err(StoreError::NotFound(IncidentId(999)))
    ));
    assert!(matches!(
        fail(&store, IncidentId(999), State::Matched).await,
        Err(StoreError::NotFound(IncidentId(999)))
    ));
    // A plan from the wrong state changes nothing.
    let received = ingest_new(&store, firing("bb", STARTS), "2026-11-28T10:00:01Z").await;
    let before = self::detail(&store, received).await;
    let error = store
        .record_plan(received, State::Matched, State::DryRun, &dry_run_plan())
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
    assert_eq!(self::detail(&store, received).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_one_transition_one_wins() {
    let (one, url) = fresh_store().await;
    let two = replica(&url).await;
    let mut incidents = Vec::new();
    for n in 0..20 {
        incidents.push(matched(&one, &format!("{:016x}", 0xc0 + n)).await);
    }
    for id in incidents {
        let (a, b) = tokio::join!(
            fail(&one, id, State::Matched),
            fail(&two, id, State::Matched)
        );
        assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} / {b:?}");
        let loser = a.err().or(b.err()).unwrap();
        assert!(
            matches!(
                loser,
                StoreError::StateConflict {
                    found: State::Failed,
                    ..
                }
            ),
            "{loser:?}"
        );
        let kinds = event_kinds(&detail(&one, id).await);
        assert_eq!(kinds.iter().filter(|kind| *kind == "failed").count(), 1);
    }
}

#[tokio::test]
async fn resolved_before_run_is_refused_while_the_alert_fires() {
    let (store, _url) = fresh_store().await;
    let id = matched(&store, "aa").await;
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
    assert_eq!(detail(&store, id).await.incident.state, State::Matched);
    ingest_one(
        &store,
        resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
        "2026-11-28T10:05:01Z",
    )
    .await;
    close().await.unwrap();
    assert_eq!(
        detail(&store, id).await.incident.state,
        State::ResolvedBeforeRun
    );
}

#[tokio::test]
async fn only_the_live_owner_writes_a_running_incident() {
    let (owner, url) = fresh_store().await;
    let other = replica(&url).await;
    let cli = replica(&url).await; // never joins: replica 0
    let id = matched(&owner, "aa").await;
    let me = owner
        .join_replicas("owner", Duration::from_secs(60))
        .await
        .unwrap();
    other
        .join_replicas("other", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(ids(&owner.claim_matched(10, 10).await.unwrap()), [id]);
    owner
        .transition(
            id,
            State::Matched,
            State::Remediating,
            None,
            remediation_started(),
        )
        .await
        .unwrap();

    for store in [&other, &cli] {
        let refused = fail(store, id, State::Remediating).await;
        assert!(
            matches!(refused, Err(StoreError::NotOwner { owner: Some(found), .. }) if found == me),
            "{refused:?}"
        );
        let refused = store.append_event(id, failed("not mine")).await;
        assert!(
            matches!(refused, Err(StoreError::NotOwner { .. })),
            "{refused:?}"
        );
    }
    let journal = detail(&owner, id).await;
    assert_eq!(journal.incident.state, State::Remediating);
    assert_eq!(
        event_kinds(&journal),
        ["received", "planned", "remediation_started"]
    );
    owner
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
    owner
        .transition(
            id,
            State::Remediating,
            State::Verifying,
            None,
            failed("checking"),
        )
        .await
        .unwrap();
    assert!(matches!(
        fail(&other, id, State::Verifying).await,
        Err(StoreError::NotOwner { .. })
    ));
    fail(&owner, id, State::Verifying).await.unwrap();
    // Over: anyone may journal a finished incident (escalation, follow-ups).
    other.append_event(id, failed("note")).await.unwrap();
}

#[tokio::test]
async fn an_owner_whose_lease_ran_out_writes_nothing() {
    let (owner, _url) = fresh_store().await;
    let id = matched(&owner, "aa").await;
    owner
        .join_replicas("short", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(ids(&owner.claim_matched(10, 10).await.unwrap()), [id]);
    owner
        .transition(
            id,
            State::Matched,
            State::Remediating,
            None,
            remediation_started(),
        )
        .await
        .unwrap();
    // The lease is on the server's clock; wait it out (no heartbeat renews it).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refused = fail(&owner, id, State::Remediating).await;
    assert!(
        matches!(refused, Err(StoreError::NotOwner { .. })),
        "{refused:?}"
    );
    assert_eq!(detail(&owner, id).await.incident.state, State::Remediating);
}

#[tokio::test]
async fn listings_filters_and_reports() {
    let (store, url) = fresh_store().await;
    let mut incidents = Vec::new();
    for (n, fingerprint) in ["aa", "bb", "cc", "dd"].into_iter().enumerate() {
        let received = format!("2026-11-28T10:0{n}:00Z");
        incidents.push(ingest_new(&store, firing(fingerprint, STARTS), &received).await);
    }
    let [a, b, c, d] = incidents[..] else {
        unreachable!()
    };
    store
        .record_plan(
            a,
            State::Received,
            State::Matched,
            &plan_on("disk-space", "web1"),
        )
        .await
        .unwrap();
    store
        .record_plan(
            b,
            State::Received,
            State::Matched,
            &plan_on("restart", "web2"),
        )
        .await
        .unwrap();
    store
        .record_plan(c, State::Received, State::Unmatched, &dry_run_plan())
        .await
        .unwrap();

    // The plan's target is a column, for claims and the host filter.
    let targets: Vec<Option<String>> = raw(&url)
        .await
        .query("SELECT target FROM incidents ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        targets,
        [Some("web1".into()), Some("web2".into()), None, None]
    );

    assert_eq!(
        ids(&store.list_incidents(None, 10).await.unwrap()),
        [d, c, b, a]
    );
    assert_eq!(ids(&store.list_incidents(Some(c), 1).await.unwrap()), [b]);
    assert_eq!(
        ids(&store.incidents_in_state(State::Matched, 10).await.unwrap()),
        [a, b]
    );
    let matching = |filter: IncidentFilter| {
        let store = &store;
        async move { ids(&store.incidents_matching(&filter, 10).await.unwrap()) }
    };
    assert_eq!(
        matching(IncidentFilter {
            host: Some("web1".into()),
            ..Default::default()
        })
        .await,
        [a]
    );
    assert_eq!(
        matching(IncidentFilter {
            recipe: Some("restart".into()),
            ..Default::default()
        })
        .await,
        [b]
    );
    assert_eq!(
        matching(IncidentFilter {
            state: Some(State::Matched),
            alertname: Some("DiskFull".into()),
            before: Some(b),
            ..Default::default()
        })
        .await,
        [a]
    );
    assert_eq!(
        matching(IncidentFilter {
            since: Some(time("2026-11-28T10:02:00Z")),
            ..Default::default()
        })
        .await,
        [d, c]
    );
    assert!(
        matching(IncidentFilter {
            alertname: Some("Other".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![
            (State::Matched, 2),
            (State::Received, 1),
            (State::Unmatched, 1)
        ]
    );

    let gaps = store.gaps(10).await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (
            gaps[0].alertname.as_str(),
            gaps[0].incidents,
            gaps[0].unmatched,
            gaps[0].escalated
        ),
        ("DiskFull", 1, 1, 0)
    );
    assert_eq!(gaps[0].last_seen, time("2026-11-28T10:02:00Z"));
    assert_eq!(gaps[0].last_reason, dry_run_plan().reason);

    assert_eq!(store.remediation_totals().await.unwrap(), (0, 0));
    raw(&url)
        .await
        .execute(
            "INSERT INTO runs (incident_id, recipe, target, started_at, window_seconds)
             VALUES ($1, 'disk-space', 'web1', '2026-11-28T10:00:00.000000000Z', 60)",
            &[&a.0],
        )
        .await
        .unwrap();
    assert_eq!(store.remediation_totals().await.unwrap(), (1, 0));
}

#[tokio::test]
async fn details_are_each_incidents_own_journal() {
    let (store, _url) = fresh_store().await;
    let a = matched(&store, "aa").await;
    let b = ingest_new(&store, firing("bb", STARTS), "2026-11-28T10:00:02Z").await;
    let c = matched(&store, "cc").await;

    let page = store.incident_details(None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|d| d.incident.id).collect::<Vec<_>>(),
        [c, b]
    );
    assert_eq!(event_kinds(&page[0]), ["received", "planned"]);
    assert_eq!(event_kinds(&page[1]), ["received"]);
    for one in &page {
        assert_eq!(&detail(&store, one.incident.id).await, one);
    }
    let rest = store.incident_details(Some(b), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].incident.id, a);
    assert!(
        store
            .incident_details(Some(a), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.incident(IncidentId(999)).await.unwrap(), None);
}

#[test]
fn test_urls_name_the_fresh_database() {
    assert_eq!(
        url_of_database("postgres://postgres@127.0.0.1:5432/postgres", "salve_t_1"),
        "postgres://postgres@127.0.0.1:5432/salve_t_1"
    );
    assert_eq!(
        url_of_database("postgres://u@h:1/db?sslmode=require", "x"),
        "postgres://u@h:1/x?sslmode=require"
    );
    assert_eq!(
        url_of_database("postgres://u@h:1", "x"),
        "postgres://u@h:1/x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifications_sharing_alerts_in_opposite_orders_never_deadlock() {
    let (one, url) = fresh_store().await;
    let two = replica(&url).await;
    for round in 0..30 {
        let a = firing(&format!("{:016x}", 0xd00 + 2 * round), STARTS);
        let b = firing(&format!("{:016x}", 0xd01 + 2 * round), STARTS);
        let (first, second) = tokio::join!(
            one.ingest(vec![a.clone(), b.clone()], Utc::now()),
            two.ingest(vec![b, a], Utc::now()),
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(
            (first[0].id, first[1].id),
            (second[1].id, second[0].id),
            "round {round}"
        );
    }
    let incidents = one.list_incidents(None, 100).await.unwrap();
    assert_eq!(incidents.len(), 60);
    assert!(incidents.iter().all(|incident| incident.receive_count == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_on_an_empty_database_migrate_it_once() {
    let url = fresh_database().await;
    // Six replicas connect at the same moment; each runs the migration under the lock. A
    // second run of a step would fail on "relation already exists", so every connect
    // succeeding means each step ran once.
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { replica(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap());
    }
    let versions: Vec<i64> = raw(&url)
        .await
        .query("SELECT version FROM salve_schema", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [super::schema::latest_version()]);
    // Each replica works on the one schema.
    let id = ingest_new(&stores[0], firing("ab", STARTS), "2026-11-28T10:00:01Z").await;
    ingest_copy(&stores[5], firing("ab", STARTS), "2026-11-28T10:00:02Z", id).await;
}

/// The database's own backstop under the writer's locks: one keyed row per (fingerprint,
/// startsAt), any number of unkeyed ones beside it.
#[tokio::test]
async fn the_database_refuses_a_second_keyed_row_for_one_alert_start() {
    let (_store, url) = fresh_store().await;
    let sql = raw(&url).await;
    let insert = |keyed: i64| {
        let sql = &sql;
        async move {
            sql.execute(
                "INSERT INTO incidents (source, fingerprint, starts_at, alert_status, labels,
                     annotations, state, first_seen, last_seen, receive_count, keyed)
                 VALUES ('generic', 'ab', $1, 'firing', '{}', '{}', 'received', $1, $1, 1, $2)",
                &[&STARTS, &keyed],
            )
            .await
        }
    };
    insert(1).await.expect("the first keyed row");
    insert(0).await.expect("an unkeyed row beside it");
    insert(0).await.expect("and another");
    let error = insert(1).await.expect_err("a second keyed row");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
        "{error}"
    );
    // The lookups by fingerprint can still go through it (as the writer plans them:
    // never a sequential scan; on three rows the planner would pick one otherwise).
    sql.batch_execute("SET enable_seqscan = off").await.unwrap();
    let plan: Vec<String> = sql
        .query(
            "EXPLAIN SELECT id FROM incidents WHERE fingerprint = 'ab' ORDER BY starts_at DESC, keyed DESC, id DESC LIMIT 64",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        plan.iter().any(|line| line.contains("incidents_key")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_salve_is_refused() {
    let (_store, url) = fresh_store().await;
    raw(&url)
        .await
        .execute("UPDATE salve_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let error = try_replica(&url)
        .await
        .map(|_| ())
        .expect_err("a newer schema is not opened");
    let message = error.to_string();
    assert!(
        message.contains("is newer than this salve understands"),
        "{message}"
    );
}
