//! Tests of what only the SQLite store has: its file, WAL and pragmas, migrations of old
//! files, the single writer thread and its group commit. The behaviour every store shares
//! is the store's contract (`store/contract/`), run on SQLite and PostgreSQL alike.

use std::collections::BTreeMap;
use std::time::Instant;

use tempfile::TempDir;

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
