//! Retention on the real binary: a week of finished incidents, backdated in the journal
//! while salve is stopped, is pruned to `store.retention` when salve starts again; an old
//! incident whose page is still undelivered stays, and the file is in incremental
//! auto-vacuum.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::support::{SalveConfig, wait_until};

/// Sets every time of incident `id` (and its journal) `age` back.
fn backdate(db: &Path, id: i64, age: chrono::Duration) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let at = (Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    conn.execute(
        "UPDATE incidents SET first_seen = ?2, last_seen = ?2 WHERE id = ?1",
        rusqlite::params![id, at],
    )
    .unwrap();
    conn.execute(
        "UPDATE events SET at = ?2 WHERE incident_id = ?1",
        rusqlite::params![id, at],
    )
    .unwrap();
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_week_of_finished_incidents_is_pruned_to_the_retention_window() {
    let mut salve = SalveConfig::standard()
        .salve()
        .recipes_dir(&crate::support::shipped_recipes())
        .env("SALVE_STORE__RETENTION", "3d")
        .start()
        .await;
    // Eight novel alerts: each ends `unmatched` with a page queued for the log channel.
    for day in 1..=8 {
        salve
            .post_generic(
                json!({ "labels": { "alertname": format!("Day{day}"), "instance": "web1:9100" } }),
            )
            .await;
    }
    salve.wait_for_final(8, Duration::from_secs(60)).await;
    let history = salve
        .wait_for_history("every page queued", |all| {
            all.iter()
                .all(|i| !crate::support::events(i, "escalation_queued").is_empty())
        })
        .await;
    salve.terminate(Duration::from_secs(20)).await;

    // Day N is N days old (less a minute); Day8's page is made undelivered again.
    let db = salve.dir().join("salve.db");
    let id_of = |name: &str| {
        history
            .iter()
            .find(|i| i["alertname"] == name)
            .unwrap_or_else(|| panic!("no {name}"))["id"]
            .as_i64()
            .unwrap()
    };
    for day in 1..=8 {
        let age = chrono::Duration::days(day) - chrono::Duration::minutes(1);
        backdate(&db, id_of(&format!("Day{day}")), age);
    }
    // Every page delivered (as its channel would have, some time back), but Day8's.
    let undelivered = id_of("Day8");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = '2000-01-01T00:00:00.000000000Z',
                follow_up = 'none'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE outbox SET status = 'pending', sent_at = NULL,
                next_attempt_at = '2999-01-01T00:00:00.000000000Z'
         WHERE incident_id = ?1",
        [undelivered],
    )
    .unwrap();
    drop(conn);

    salve.restart().await;
    let kept = wait_until(
        Duration::from_secs(30),
        "incidents older than 3 days pruned",
        || async {
            let mut names: Vec<String> = salve
                .api_incidents()
                .await
                .iter()
                .map(|i| i["alertname"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            (names.len() < 8).then_some(names)
        },
    )
    .await;
    assert_eq!(
        kept,
        ["Day1", "Day2", "Day3", "Day8"],
        "Day8's page is undelivered"
    );
    let kept_ids = [id_of("Day1"), id_of("Day2"), id_of("Day3"), undelivered];
    let orphans = count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM events WHERE incident_id NOT IN ({})",
            kept_ids.map(|id| id.to_string()).join(", ")
        ),
    );
    assert_eq!(orphans, 0, "journal entries of pruned incidents remain");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM outbox"), 4);
    assert_eq!(
        count(&db, "PRAGMA auto_vacuum"),
        2,
        "incremental auto-vacuum"
    );
}
