//! Tests of the SQLite store: intake, transitions, group commit, reads.

use std::collections::BTreeMap;
use std::time::Instant;

use tempfile::TempDir;

use serde_json::json;

use super::*;
use crate::alert::{AlertStatus, Fingerprint, Source};
use crate::plan::{Mode, PlanOutcome};

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

pub(super) fn temp_store() -> (TempDir, SqliteStore) {
    let (dir, _path, store) = store_in_temp_dir();
    (dir, store)
}

/// A store in a fresh temporary directory, with the database's path for reopening it.
pub(super) fn store_in_temp_dir() -> (TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("salve.db");
    let store = SqliteStore::open_path(&path).unwrap();
    (dir, path, store)
}

async fn ingest_one(store: &SqliteStore, alert: Alert, received_at: &str) -> Ingested {
    let mut ingested = store.ingest(vec![alert], time(received_at)).await.unwrap();
    assert_eq!(ingested.len(), 1);
    ingested.remove(0)
}

/// Ingests a firing alert with `fingerprint` (received at 10:00:01) and returns its incident.
async fn received(store: &SqliteStore, fingerprint: &str) -> IncidentId {
    ingest_one(store, firing(fingerprint, STARTS), "2026-11-28T10:00:01Z")
        .await
        .id
}

/// A received incident planned in dry-run: `matched`, ready for a transition.
async fn matched(store: &SqliteStore, fingerprint: &str) -> IncidentId {
    let id = received(store, fingerprint).await;
    store
        .record_plan(id, State::Received, State::Matched, &dry_run_plan())
        .await
        .unwrap();
    id
}

/// Ingests the resolve of alert "aa" (started at `STARTS`, ended at 10:05:00).
async fn resolve_aa(store: &SqliteStore, received_at: &str) -> Ingested {
    ingest_one(
        store,
        resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
        received_at,
    )
    .await
}

/// Ingests `alert` at `received_at` and checks that it opened a new incident.
async fn ingest_new(store: &SqliteStore, alert: Alert, received_at: &str) -> IncidentId {
    let new = ingest_one(store, alert, received_at).await;
    assert!(new.created, "{new:?}");
    new.id
}

/// Ingests `alert` at `received_at` and checks that it joined incident `joins`.
async fn ingest_copy(store: &SqliteStore, alert: Alert, received_at: &str, joins: IncidentId) {
    let copy = ingest_one(store, alert, received_at).await;
    assert_eq!((copy.id, copy.created), (joins, false), "{copy:?}");
}

/// Up to 10 incidents below `below`, newest first.
async fn listed(store: &SqliteStore, below: Option<IncidentId>) -> Vec<Incident> {
    store.list_incidents(below, 10).await.unwrap()
}

#[track_caller]
fn assert_unavailable<T: std::fmt::Debug>(result: &Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

async fn detail(store: &SqliteStore, id: IncidentId) -> IncidentDetail {
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
    store: &SqliteStore,
    id: IncidentId,
    from: State,
    reason: &str,
) -> Result<(), StoreError> {
    store
        .transition(id, from, State::Failed, Some(reason.into()), failed(reason))
        .await
}

/// Moves a matched `id` to `remediating`.
async fn start_remediation(store: &SqliteStore, id: IncidentId) {
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

const STARTS: &str = "2026-11-28T10:00:00.123456789Z";

#[test]
fn store_urls_name_files_relative_or_absolute() {
    assert_eq!(
        path_from_url("sqlite://salve.db").unwrap(),
        PathBuf::from("salve.db")
    );
    assert_eq!(
        path_from_url("sqlite://./salve.db").unwrap(),
        PathBuf::from("./salve.db")
    );
    assert_eq!(
        path_from_url("sqlite:///var/lib/salve/salve.db").unwrap(),
        PathBuf::from("/var/lib/salve/salve.db")
    );
    for bad in [
        "postgres://db/salve",
        "sqlite::memory:",
        "sqlite://",
        "sqlite://salve.db?mode=rwc",
    ] {
        assert!(
            matches!(path_from_url(bad), Err(StoreError::Config(_))),
            "{bad} accepted"
        );
    }
}

#[tokio::test]
async fn open_by_absolute_url_creates_a_wal_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("salve.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display())).unwrap();
    store.ping().await.unwrap();
    store.close().unwrap();

    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn the_write_connection_fsyncs_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let conn = connect(&dir.path().join("salve.db"), Role::Writer).unwrap();
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous must be FULL");
    let foreign_keys: bool = conn
        .pragma_query_value(None, "foreign_keys", |row| row.get(0))
        .unwrap();
    assert!(foreign_keys);
}

#[tokio::test]
async fn a_resent_alert_is_one_incident_with_a_receive_count() {
    let (_dir, store) = temp_store();
    let first = ingest_new(
        &store,
        firing("10fd2ebfb5d5241b", STARTS),
        "2026-11-28T10:00:01Z",
    )
    .await;
    for second in 2..=5 {
        let again = ingest_one(
            &store,
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

    let incidents = listed(&store, None).await;
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
    let detail = detail(&store, first).await;
    assert_eq!(event_kinds(&detail), ["received"]);
    assert_eq!(stored(&detail.events[0])["status"], "firing");
    assert_eq!(
        stored(&detail.events[0])["received_at"],
        "2026-11-28T10:00:01.000000000Z"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_create_exactly_one_incident() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                ingest_one(
                    &store,
                    firing("10fd2ebfb5d5241b", STARTS),
                    "2026-11-28T10:00:01Z",
                )
                .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    assert!(results.iter().all(|r| r.id == results[0].id));
    let incidents = listed(&store, None).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].receive_count, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_from_two_ha_replicas_are_one_incident() {
    let (_dir, store) = temp_store();
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

    let incidents = listed(&store, None).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].receive_count, 4);
}

#[tokio::test]
async fn a_resolve_is_recorded_once() {
    let (_dir, store) = temp_store();
    let fired = received(&store, "aa").await;
    let resolve = resolve_aa(&store, "2026-11-28T10:05:01Z").await;
    assert_eq!(
        resolve,
        Ingested {
            id: fired,
            created: false,
            resolved_now: true
        }
    );
    let again = resolve_aa(&store, "2026-11-28T10:05:02Z").await;
    assert!(!again.resolved_now && !again.created);

    let detail = detail(&store, fired).await;
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

#[tokio::test]
async fn firing_again_after_resolve_reopens_the_same_occurrence() {
    let (_dir, store) = temp_store();
    let fired = received(&store, "aa").await;
    resolve_aa(&store, "2026-11-28T10:05:01Z").await;
    let refired = ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:06:00Z").await;
    assert_eq!(
        refired,
        Ingested {
            id: fired,
            created: false,
            resolved_now: false
        }
    );

    let detail = detail(&store, fired).await;
    assert_eq!(detail.incident.alert_status, AlertStatus::Firing);
    assert_eq!(detail.incident.resolved_at, None);
    assert_eq!(detail.incident.ends_at, None);
    assert_eq!(event_kinds(&detail), ["received", "resolved", "refired"]);
}

#[tokio::test]
async fn an_alert_without_start_time_joins_the_open_incident() {
    let (_dir, store) = temp_store();
    let first = ingest_new(
        &store,
        alert("generic-1", AlertStatus::Firing, None),
        "2026-11-28T10:00:00Z",
    )
    .await;
    ingest_copy(
        &store,
        alert("generic-1", AlertStatus::Firing, None),
        "2026-11-28T10:01:00Z",
        first,
    )
    .await;
    let resolve = ingest_one(
        &store,
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
        &store,
        alert("generic-1", AlertStatus::Firing, None),
        "2026-11-28T11:00:00Z",
    )
    .await;
    assert_ne!(next, first);
    assert_eq!(
        detail(&store, next).await.incident.starts_at,
        time("2026-11-28T11:00:00Z")
    );
    assert_eq!(
        detail(&store, first).await.incident.starts_at,
        time("2026-11-28T10:00:00Z")
    );
}

#[tokio::test]
async fn one_key_twice_in_one_notification_counts_twice() {
    let (_dir, store) = temp_store();
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
    assert_eq!(
        detail(&store, results[0].id).await.incident.receive_count,
        2
    );
}

#[tokio::test]
async fn record_plan_moves_the_state_and_journals_it() {
    let (_dir, store) = temp_store();
    let id = received(&store, "aa").await;
    let plan = dry_run_plan();
    store
        .record_plan(id, State::Received, State::Refused, &plan)
        .await
        .unwrap();

    let detail = detail(&store, id).await;
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

#[tokio::test]
async fn transitions_are_checked_and_events_are_appended_in_order() {
    let (_dir, store) = temp_store();
    let id = matched(&store, "ab").await;
    start_remediation(&store, id).await;
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
    let conflict = fail(&store, id, State::Matched, "x").await.unwrap_err();
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
    fail(&store, id, State::Remediating, "command 1 exited 1")
        .await
        .unwrap();

    let detail = detail(&store, id).await;
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

#[tokio::test]
async fn record_plan_from_the_wrong_state_changes_nothing() {
    let (_dir, store) = temp_store();
    let id = received(&store, "aa").await;
    let before = detail(&store, id).await;

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
    assert_eq!(detail(&store, id).await, before);
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

/// Block the writer inside a batch; returns the gate's reply and its release.
async fn hold_writer(
    store: &SqliteStore,
) -> (
    oneshot::Receiver<Result<(), StoreError>>,
    oneshot::Sender<()>,
) {
    let (entered, writer_entered) = oneshot::channel();
    let (release, gate_release) = oneshot::channel();
    let (reply, gate_done) = oneshot::channel();
    let requests = store.requests.as_ref().unwrap();
    requests
        .send(writer::request(
            writer::Gate {
                entered,
                release: gate_release,
            },
            reply,
        ))
        .await
        .unwrap();
    writer_entered.await.unwrap();
    (gate_done, release)
}

/// Sends an ingest of a firing alert `fingerprint` (received at 10:00:02) from its own task.
fn spawn_ingest(
    store: &Arc<SqliteStore>,
    fingerprint: &'static str,
) -> tokio::task::JoinHandle<Result<Vec<Ingested>, StoreError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move {
        store
            .ingest(
                vec![firing(fingerprint, STARTS)],
                time("2026-11-28T10:00:02Z"),
            )
            .await
    })
}

/// Sends a dry-run plan of `id`, expected in state `from`, from its own task.
fn spawn_dry_run_plan(
    store: &Arc<SqliteStore>,
    id: IncidentId,
    from: State,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move {
        store
            .record_plan(id, from, State::DryRun, &dry_run_plan())
            .await
    })
}

async fn wait_until_queued(store: &SqliteStore, operations: usize) {
    let requests = store.requests.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests.max_capacity() - requests.capacity() < operations {
        assert!(Instant::now() < deadline, "operations never queued");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_operation_does_not_poison_its_batch() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let planned = received(&store, "aa").await;
    let conflicting = received(&store, "bb").await;
    let (gate_done, release) = hold_writer(&store).await;
    let commits_before = store.commits();

    let ingest = spawn_ingest(&store, "cc");
    let good_plan = spawn_dry_run_plan(&store, planned, State::Received);
    let bad_plan = spawn_dry_run_plan(&store, conflicting, State::Matched);
    wait_until_queued(&store, 3).await;
    release.send(()).unwrap();

    gate_done.await.unwrap().unwrap();
    assert!(ingest.await.unwrap().unwrap()[0].created);
    good_plan.await.unwrap().unwrap();
    assert!(matches!(
        bad_plan.await.unwrap(),
        Err(StoreError::StateConflict { .. })
    ));
    // The gate's batch, then one batch for all three.
    assert_eq!(store.commits(), commits_before + 2);
    assert_eq!(detail(&store, planned).await.incident.state, State::DryRun);
    assert_eq!(
        detail(&store, conflicting).await.incident.state,
        State::Received
    );
    assert_eq!(listed(&store, None).await.len(), 3);
}

#[tokio::test]
async fn an_acknowledged_ingest_survives_reopening() {
    let (_dir, path, store) = store_in_temp_dir();
    let id = received(&store, "aa").await;
    drop(store);

    let reopened = SqliteStore::open_path(&path).unwrap();
    let detail = detail(&reopened, id).await;
    assert_eq!(detail.incident.fingerprint.as_str(), "aa");
    assert_eq!(event_kinds(&detail), ["received"]);
    // The key still deduplicates after a restart.
    assert!(
        !ingest_one(&reopened, firing("aa", STARTS), "2026-11-28T10:00:02Z")
            .await
            .created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_share_commits() {
    const CALLS: usize = 2000;
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let start = Arc::new(tokio::sync::Barrier::new(CALLS));
    let tasks: Vec<_> = (0..CALLS)
        .map(|n| {
            let store = Arc::clone(&store);
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

#[tokio::test]
async fn reopening_a_migrated_database_is_idempotent() {
    let (_dir, path, store) = store_in_temp_dir();
    received(&store, "aa").await;
    store.close().unwrap();
    SqliteStore::open_path(&path).unwrap().close().unwrap();

    let store = SqliteStore::open_path(&path).unwrap();
    assert_eq!(listed(&store, None).await.len(), 1);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, schema::latest_version());
}

#[test]
fn a_database_from_a_newer_salve_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("salve.db");
    SqliteStore::open_path(&path).unwrap().close().unwrap();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", schema::latest_version() + 1)
        .unwrap();

    let Err(StoreError::Config(message)) = SqliteStore::open_path(&path) else {
        panic!("a newer schema was opened");
    };
    assert!(message.contains("newer than this salve"), "{message}");
}

#[test]
fn a_missing_directory_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = SqliteStore::open_path(&dir.path().join("no/such/dir/salve.db"));
    assert!(matches!(result, Err(StoreError::Config(_))));
}

#[tokio::test]
async fn a_dead_writer_makes_writes_unavailable_not_hang() {
    let (_dir, store) = temp_store();
    store
        .requests
        .as_ref()
        .unwrap()
        .send(writer::request(writer::Crash, oneshot::channel().0))
        .await
        .unwrap();

    assert_unavailable(
        &store
            .ingest(vec![firing("aa", STARTS)], time("2026-11-28T10:00:01Z"))
            .await,
    );
    assert_unavailable(&store.ping().await);
    // Reads still answer from what was committed.
    assert!(listed(&store, None).await.is_empty());
    assert_unavailable(&store.close());
}

#[tokio::test]
async fn a_locked_database_is_unavailable_and_the_store_recovers() {
    let (_dir, path, store) = store_in_temp_dir();
    let other_process = Connection::open(&path).unwrap();
    other_process.execute_batch("BEGIN IMMEDIATE").unwrap();

    assert_unavailable(
        &store
            .ingest(vec![firing("aa", STARTS)], time("2026-11-28T10:00:01Z"))
            .await,
    );
    assert!(listed(&store, None).await.is_empty());

    other_process.execute_batch("ROLLBACK").unwrap();
    // The monitor's retry goes through: the writer survived the failed batch.
    assert!(
        ingest_one(&store, firing("aa", STARTS), "2026-11-28T10:00:02Z")
            .await
            .created
    );
}

#[tokio::test]
async fn listings_are_ordered_and_counted() {
    let (_dir, store) = temp_store();
    let mut ids = Vec::new();
    for fingerprint in ["aa", "bb", "cc"] {
        ids.push(
            ingest_one(&store, firing(fingerprint, STARTS), "2026-11-28T10:00:01Z")
                .await
                .id,
        );
    }
    store
        .record_plan(ids[1], State::Received, State::Unmatched, &dry_run_plan())
        .await
        .unwrap();

    let newest_first: Vec<_> = listed(&store, None).await.iter().map(|i| i.id).collect();
    assert_eq!(newest_first, [ids[2], ids[1], ids[0]]);
    assert_eq!(store.list_incidents(None, 1).await.unwrap().len(), 1);
    let below: Vec<_> = listed(&store, Some(ids[2]))
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

#[tokio::test]
async fn an_empty_notification_writes_nothing() {
    let (_dir, store) = temp_store();
    assert!(
        store
            .ingest(Vec::new(), Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.commits(), 0);
}
fn from(source: Source, alert: Alert) -> Alert {
    Alert { source, ..alert }
}

#[tokio::test]
async fn one_alert_through_two_routes_is_one_incident() {
    let (_dir, store) = temp_store();
    // Alertmanager first, then the generic hook without a start, then its resolve.
    let fired = received(&store, "aa").await;
    ingest_copy(
        &store,
        from(Source::Generic, alert("aa", AlertStatus::Firing, None)),
        "2026-11-28T10:00:02Z",
        fired,
    )
    .await;
    let resolve = ingest_one(
        &store,
        from(
            Source::Grafana,
            resolved("aa", STARTS, "2026-11-28T10:05:00Z"),
        ),
        "2026-11-28T10:05:01Z",
    )
    .await;
    assert_eq!((resolve.id, resolve.resolved_now), (fired, true));
    let incident = detail(&store, fired).await.incident;
    assert_eq!(incident.source, Source::Alertmanager);
    assert_eq!(incident.receive_count, 3);

    // The generic hook first (no start: salve assumes one), then Alertmanager with its
    // own start: the incident takes the monitor's start, and later copies find it.
    let generic = ingest_one(
        &store,
        from(Source::Generic, alert("bb", AlertStatus::Firing, None)),
        "2026-11-28T11:00:00Z",
    )
    .await;
    ingest_copy(
        &store,
        firing("bb", STARTS),
        "2026-11-28T11:00:01Z",
        generic.id,
    )
    .await;
    ingest_copy(
        &store,
        firing("bb", STARTS),
        "2026-11-28T11:00:02Z",
        generic.id,
    )
    .await;
    let detail = detail(&store, generic.id).await;
    assert_eq!(detail.incident.starts_at, time(STARTS));
    assert_eq!(detail.incident.receive_count, 3);
    assert_eq!(event_kinds(&detail), ["received", "start_known"]);
    assert_eq!(listed(&store, None).await.len(), 2);
}

#[tokio::test]
async fn another_alerts_fingerprint_is_another_key_only_by_the_fingerprint() {
    // The store keys on the fingerprint it is given; intake computes it from the labels
    // (intake tests), so a forged one never reaches here. Different fingerprints with
    // the same start are different incidents, whatever the source.
    let (_dir, store) = temp_store();
    let a = ingest_new(&store, firing("aa", STARTS), "2026-11-28T10:00:01Z").await;
    let b = ingest_new(
        &store,
        from(Source::Generic, firing("bb", STARTS)),
        "2026-11-28T10:00:01Z",
    )
    .await;
    assert_ne!(a, b);
}

#[tokio::test]
async fn an_alert_firing_again_while_its_incident_waits_is_that_incident_firing() {
    let (_dir, store) = temp_store();
    let later = "2026-11-28T10:07:00Z";
    let fired = matched(&store, "aa").await;
    resolve_aa(&store, "2026-11-28T10:05:01Z").await;
    // A new occurrence (Alertmanager gives it a new start) while the first still waits
    // for its host: no second incident, the waiting one fires again and takes the start.
    ingest_copy(&store, firing("aa", later), "2026-11-28T10:07:01Z", fired).await;
    ingest_copy(&store, firing("aa", later), "2026-11-28T10:07:02Z", fired).await;
    let detail = detail(&store, fired).await;
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
    resolve_aa(&store, "2026-11-28T10:07:03Z").await;
    assert_eq!(
        detail_state(&store, fired).await,
        (State::Matched, AlertStatus::Firing)
    );

    // Once it ran (or ended), firing anew is a new occurrence, a new incident.
    start_remediation(&store, fired).await;
    ingest_one(
        &store,
        resolved("aa", later, "2026-11-28T10:08:00Z"),
        "2026-11-28T10:08:01Z",
    )
    .await;
    ingest_new(
        &store,
        firing("aa", "2026-11-28T10:09:00Z"),
        "2026-11-28T10:09:01Z",
    )
    .await;
}

async fn detail_state(store: &SqliteStore, id: IncidentId) -> (State, AlertStatus) {
    let incident = detail(store, id).await.incident;
    (incident.state, incident.alert_status)
}

#[tokio::test]
async fn labels_crafted_to_collide_with_a_fingerprint_are_another_alert() {
    // FNV-1a is not collision resistant: here two label sets share fingerprint "aa"
    // (as crafted labels could) and the start. They are still two alerts.
    let (_dir, store) = temp_store();
    let victim = received(&store, "aa").await;
    let colliding = |status: AlertStatus| {
        let mut alert = alert("aa", status, Some(STARTS));
        alert
            .labels
            .insert("instance".into(), "attacker:9100".into());
        alert.ends_at = Some(time("2026-11-28T10:00:02Z"));
        alert
    };
    let forged = ingest_one(
        &store,
        colliding(AlertStatus::Resolved),
        "2026-11-28T10:00:02Z",
    )
    .await;
    assert!(forged.created && forged.id != victim);
    ingest_copy(
        &store,
        colliding(AlertStatus::Resolved),
        "2026-11-28T10:00:03Z",
        forged.id,
    )
    .await;
    // Without a start it does not join the victim's open incident either.
    let mut no_start = colliding(AlertStatus::Resolved);
    no_start.starts_at = None;
    let other = ingest_one(&store, no_start, "2026-11-28T10:00:04Z").await;
    assert_ne!(other.id, victim);
    let victim = detail(&store, victim).await;
    assert_eq!(victim.incident.alert_status, AlertStatus::Firing);
    assert_eq!(victim.incident.receive_count, 1);
    assert_eq!(event_kinds(&victim), ["received"]);
    // The victim's own copies still find it.
    ingest_copy(
        &store,
        firing("aa", STARTS),
        "2026-11-28T10:00:05Z",
        victim.incident.id,
    )
    .await;
}

#[tokio::test]
async fn resolved_before_run_is_refused_while_the_alert_fires() {
    let (_dir, store) = temp_store();
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
    assert_eq!(
        detail_state(&store, id).await,
        (State::Matched, AlertStatus::Firing)
    );
    resolve_aa(&store, "2026-11-28T10:05:01Z").await;
    close().await.unwrap();
    assert_eq!(
        detail_state(&store, id).await,
        (State::ResolvedBeforeRun, AlertStatus::Resolved)
    );
}

#[tokio::test]
async fn the_receive_count_saturates_instead_of_failing_the_ingest() {
    let (_dir, path, store) = store_in_temp_dir();
    let id = received(&store, "aa").await;
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE incidents SET receive_count = 9223372036854775807 WHERE id = ?1",
            [id.0],
        )
        .unwrap();
    for second in 2..4 {
        ingest_copy(
            &store,
            firing("aa", STARTS),
            &format!("2026-11-28T10:00:0{second}Z"),
            id,
        )
        .await;
    }
    assert_eq!(detail(&store, id).await.incident.receive_count, i64::MAX);
}

#[tokio::test]
async fn migration_4_keeps_rows_that_shared_a_key_across_sources_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("salve.db");
    {
        // A version-3 journal in which one alert came in on two routes (two rows).
        let conn = Connection::open(&path).unwrap();
        for step in &schema::MIGRATIONS[..3] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        for (source, starts_at, seen) in [
            (
                "alertmanager",
                "2026-11-28T10:00:00.000000000Z",
                "2026-11-28T10:00:01.000000000Z",
            ),
            (
                "generic",
                "2026-11-28T10:00:00.000000000Z",
                "2026-11-28T10:00:02.000000000Z",
            ),
            (
                "generic",
                "2026-11-28T11:00:00.000000000Z",
                "2026-11-28T11:00:00.000000000Z",
            ),
        ] {
            conn.execute(
                "INSERT INTO incidents (source, fingerprint, starts_at, alertname, alert_status,
                     labels, annotations, state, first_seen, last_seen, receive_count)
                 VALUES (?1, 'aa', ?2, 'DiskFull', 'firing', ?4, '{}', 'dry_run', ?3, ?3, 1)",
                params![
                    source,
                    starts_at,
                    seen,
                    r#"{"alertname":"DiskFull","instance":"host1:9100"}"#
                ],
            )
            .unwrap();
        }
    }
    {
        // Each with its journal, and the first with a run and an outbox row: the
        // rebuild must keep every reference valid.
        let conn = Connection::open(&path).unwrap();
        for id in 1..=3 {
            conn.execute(
                "INSERT INTO events (incident_id, at, kind, detail)
                 VALUES (?1, '2026-11-28T10:00:01.000000000Z', 'received', '{}')",
                [id],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO runs (incident_id, recipe, target, started_at, window_seconds)
                 VALUES (1, 'r', 'web1', '2026-11-28T10:00:02.000000000Z', 60);
             INSERT INTO outbox (incident_id, reason, channel, payload, status,
                 next_attempt_at, created_at)
                 VALUES (1, 'failed', 'mail', '{}', 'pending',
                 '2026-11-28T10:00:03.000000000Z', '2026-11-28T10:00:03.000000000Z');",
        )
        .unwrap();
    }
    let store = SqliteStore::open_path(&path).unwrap();
    assert_eq!(listed(&store, None).await.len(), 3);
    for id in 1..=3 {
        assert_eq!(
            event_kinds(&detail(&store, IncidentId(id)).await),
            ["received"]
        );
    }
    let conn = Connection::open(&path).unwrap();
    let orphans: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(orphans, 0);
    let constraints: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'incidents'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(!constraints.contains("UNIQUE"), "{constraints}");
    // A copy of the shared key joins the oldest row only.
    ingest_copy(
        &store,
        firing("aa", "2026-11-28T10:00:00Z"),
        "2026-11-28T12:00:00Z",
        IncidentId(1),
    )
    .await;
    // The generic row stored without a start (start = first seen) is known as assumed:
    // the monitor's start joins it.
    ingest_copy(
        &store,
        firing("aa", STARTS),
        "2026-11-28T12:00:01Z",
        IncidentId(3),
    )
    .await;
    let counts: Vec<i64> = listed(&store, None)
        .await
        .iter()
        .map(|i| i.receive_count)
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 5, "{counts:?}");
}

#[tokio::test]
async fn migration_6_counts_old_runs_and_resets_under_their_target_as_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("salve.db");
    {
        // A version-5 store: two runs of r on web1 (the second after a reset) and a
        // breaker_open incident, all counted per target.
        let conn = Connection::open(&path).unwrap();
        for step in &schema::MIGRATIONS[..5] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        for id in 1..=3 {
            conn.execute(
                "INSERT INTO incidents (id, source, fingerprint, starts_at, alert_status,
                     labels, annotations, state, plan, first_seen, last_seen, receive_count)
                 VALUES (?1, 'generic', 'aa', ?2, 'firing', '{}', '{}', ?3, ?4, ?2, ?2, 1)",
                params![
                    id,
                    format!("2026-11-28T10:00:0{id}.000000000Z"),
                    if id == 3 { "breaker_open" } else { "succeeded" },
                    r#"{"recipe":"r","target":{"name":"web1"},"breaker":{"max_runs":1,"window":"1h"}}"#,
                ],
            )
            .unwrap();
        }
        let now = Utc::now();
        let at = |seconds: i64| rows::time_text(now - chrono::Duration::seconds(seconds));
        conn.execute(
            "INSERT INTO runs (incident_id, recipe, target, started_at, max_runs, window_seconds)
             VALUES (1, 'r', 'web1', ?1, 1, 3600), (2, 'r', 'web1', ?2, 1, 3600)",
            params![at(30), at(10)],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO breaker_resets (recipe, target, reset_at) VALUES ('r', 'web1', ?1)",
            params![at(20)],
        )
        .unwrap();
    }
    let store = SqliteStore::open_path(&path).unwrap();
    let window = Duration::from_secs(3600);
    // The reset still hides the first run; the second counts under key web1.
    let runs = store.runs_in_window("r", "web1", window).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].incident_id, IncidentId(2));
    let breakers = store.breakers().await.unwrap();
    assert_eq!(breakers.len(), 1);
    assert_eq!((breakers[0].key.as_str(), breakers[0].open), ("web1", true));
    // A reset by the old pair's target finds the breaker_open incident (no key in its plan).
    let outcome = store.reset_breaker("r", "web1", "ops").await.unwrap();
    assert!(
        matches!(outcome, crate::store::BreakerResetOutcome::Reset(reset) if reset.incident == IncidentId(3) && reset.runs_forgotten == 1),
        "{outcome:?}"
    );
}

/// A write that succeeds inside its savepoint but makes its batch's COMMIT fail: a
/// foreign-key violation SQLite only checks at commit (`defer_foreign_keys`).
async fn write_failing_at_commit(store: &SqliteStore) -> Result<(), StoreError> {
    store
        .write_with(|conn| {
            conn.execute_batch(
                "PRAGMA defer_foreign_keys = ON;
                 INSERT INTO events (incident_id, at, kind, detail)
                 VALUES (999999, '2026-11-28T10:00:02.000000Z', 'orphan', '{}');",
            )
            .map_err(unavailable)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_every_operation_of_its_batch_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("salve.db");
    let store = Arc::new(SqliteStore::open_path(&path).unwrap());
    let planned = received(&store, "aa").await;
    let (gate_done, release) = hold_writer(&store).await;
    let commits_before = store.commits();

    let ingests: Vec<_> = ["bb", "cc"]
        .into_iter()
        .map(|fingerprint| spawn_ingest(&store, fingerprint))
        .collect();
    let plan = spawn_dry_run_plan(&store, planned, State::Received);
    let failing = tokio::spawn({
        let store = Arc::clone(&store);
        async move { write_failing_at_commit(&store).await }
    });
    wait_until_queued(&store, 4).await;
    release.send(()).unwrap();
    gate_done.await.unwrap().unwrap();

    // Every operation ran without error inside the batch; the commit refused them all.
    for ingest in ingests {
        let result = ingest.await.unwrap();
        assert!(
            matches!(&result, Err(StoreError::Unavailable(message)) if message.contains("commit failed")),
            "{result:?}"
        );
    }
    assert_unavailable(&plan.await.unwrap());
    assert_unavailable(&failing.await.unwrap());
    assert_eq!(store.commits(), commits_before + 1, "only the gate's batch");

    // The writer goes on: the next batch commits.
    ingest_new(&store, firing("dd", STARTS), "2026-11-28T10:00:03Z").await;
    Arc::into_inner(store).unwrap().close().unwrap();

    // After a restart nothing of the failed batch is there; what came before and after is.
    let reopened = SqliteStore::open_path(&path).unwrap();
    let incidents = listed(&reopened, None).await;
    let fingerprints: Vec<&str> = incidents
        .iter()
        .map(|incident| incident.fingerprint.as_str())
        .collect();
    assert_eq!(fingerprints, ["dd", "aa"]);
    let first = detail(&reopened, planned).await;
    assert_eq!(first.incident.state, State::Received);
    assert_eq!(event_kinds(&first), ["received"]);
    let orphans: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'orphan'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
}
