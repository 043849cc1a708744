//! The outbox on a real PostgreSQL (`TESTBED_POSTGRES_URL`, a fresh database per test):
//! the SQLite store's escalation, digest and follow-up behaviour, and what several
//! replicas add — a due row is delivered by one replica at a time, an incident escalated
//! by one, and a dead replica's claims are taken over.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{PgConnect, PgStore};
use crate::incident::{EscalationReason, Event, IncidentId};
use crate::store::{FollowUpCause, Store, time_text};

/// A database of its own on the test bed's server, and a plain connection to it for
/// arranging rows and reading what the store wrote.
struct Bed {
    url: String,
    sql: tokio_postgres::Client,
}

use crate::store::contract::{TestDatabase, with_database};

async fn connect_plain(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test bed's PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

async fn bed() -> Bed {
    let url = TestDatabase::create(None).await.url();
    let sql = connect_plain(&url).await;
    Bed { url, sql }
}

impl Bed {
    async fn store(&self) -> PgStore {
        PgStore::connect(&PgConnect {
            url: self.url.clone(),
            password: None,
            ca_file: None,
            pool_size: 4,
        })
        .await
        .expect("connect the PostgreSQL store")
    }

    /// A store that joined the replicas as `name`.
    async fn replica(&self, name: &str) -> PgStore {
        let store = self.store().await;
        store
            .join_replicas(name, Duration::from_secs(60))
            .await
            .unwrap();
        store
    }

    /// `store`'s lease ran out (its process was killed and never renewed it).
    async fn kill(&self, store: &PgStore) {
        self.sql
            .execute(
                "UPDATE replicas SET lease_until = now() - interval '1 second' WHERE id = $1",
                &[&store.me()],
            )
            .await
            .unwrap();
    }

    /// An incident of alert `fingerprint` (labels `{"alertname": "DiskFull"}`) in `state`.
    async fn incident(&self, fingerprint: &str, state: &str) -> IncidentId {
        let now = time_text(Utc::now());
        let row = self
            .sql
            .query_one(
                "INSERT INTO incidents (source, fingerprint, starts_at, alertname, alert_status,
                     labels, annotations, state, first_seen, last_seen, receive_count)
                 VALUES ('generic', $1, $2, 'DiskFull', 'firing', '{\"alertname\":\"DiskFull\"}',
                     '{}', $3, $2, $2, 1)
                 RETURNING id",
                &[&fingerprint, &now, &state],
            )
            .await
            .unwrap();
        IncidentId(row.get(0))
    }

    async fn resolve(&self, id: IncidentId) {
        self.sql
            .execute(
                "UPDATE incidents SET alert_status = 'resolved', resolved_at = $2 WHERE id = $1",
                &[&id.0, &time_text(Utc::now())],
            )
            .await
            .unwrap();
    }

    /// The incident's journal, oldest first.
    async fn journal(&self, id: IncidentId) -> Vec<Event> {
        self.sql
            .query(
                "SELECT kind, detail FROM events WHERE incident_id = $1 ORDER BY id",
                &[&id.0],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| Event::from_row(row.get(0), row.get(1)))
            .collect()
    }

    async fn kinds(&self, id: IncidentId) -> Vec<String> {
        self.journal(id)
            .await
            .iter()
            .map(|event| event.to_row().0.to_owned())
            .collect()
    }

    /// The claim on outbox row `id`: who, and whether it still runs.
    async fn outbox_claim(&self, id: i64) -> (Option<i64>, Option<bool>) {
        let row = self
            .sql
            .query_one(
                "SELECT claimed_by, claimed_until > now() FROM outbox WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> i64) -> BTreeSet<i64> {
    items.iter().map(id).collect()
}

#[tokio::test]
async fn escalations_queue_once_retry_and_are_sent() {
    let bed = bed().await;
    let store = bed.store().await;
    let id = bed.incident("00000000000000aa", "unmatched").await;
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
    let found: Vec<(&str, &serde_json::Value)> = due
        .iter()
        .map(|item| (item.channel.as_str(), &item.payload))
        .collect();
    assert_eq!(
        found,
        [
            ("mail", &json!({ "x": 1 })),
            ("tickets", &json!({ "x": 1 }))
        ]
    );
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
    assert_eq!(bed.outbox_claim(due[0].id).await, (None, None));
    assert_eq!(bed.outbox_claim(due[1].id).await, (None, None));

    let kinds = bed.kinds(id).await;
    assert_eq!(
        kinds,
        [
            "escalation_queued",
            "escalation_queued",
            "escalation_failed",
            "escalation_sent"
        ],
    );
    assert!(matches!(
        store
            .enqueue_escalation(
                IncidentId(999_999),
                EscalationReason::Novel,
                &channels,
                &json!({})
            )
            .await,
        Err(crate::store::StoreError::NotFound(IncidentId(999_999)))
    ));
}

#[tokio::test]
async fn a_digest_is_journaled_on_each_incident_and_a_retry_is_not_journaled_again() {
    let bed = bed().await;
    let store = bed.store().await;
    let first = bed.incident("00000000000000a1", "unmatched").await;
    let second = bed.incident("00000000000000a2", "unmatched").await;
    for id in [first, second] {
        store
            .enqueue_escalation(id, EscalationReason::Novel, &["mail".into()], &json!({}))
            .await
            .unwrap();
    }
    let items = store.due_escalations(10).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.incident_id).collect::<Vec<_>>(),
        [first, second]
    );

    let digest = store
        .new_digest("mail", "novel", items.len())
        .await
        .unwrap();
    store
        .digest_failed(digest, &items, "421 busy", Utc::now())
        .await
        .unwrap();
    let items = store.due_escalations(10).await.unwrap();
    assert_eq!(items.iter().map(|i| i.attempts).collect::<Vec<_>>(), [1, 1]);
    store
        .digest_failed(digest, &items, "421 busy", Utc::now())
        .await
        .unwrap();
    let items = store.due_escalations(10).await.unwrap();
    let again = store
        .new_digest("mail", "novel", items.len())
        .await
        .unwrap();
    assert!(again > digest);
    store.digest_sent(again, &items).await.unwrap();
    assert_eq!(store.outbox_pending().await.unwrap(), 0);
    assert!(store.due_escalations(10).await.unwrap().is_empty());

    let sent_at: Option<String> = bed
        .sql
        .query_one("SELECT sent_at FROM digests WHERE id = $1", &[&again])
        .await
        .unwrap()
        .get(0);
    assert!(sent_at.is_some());
    let journal = bed.journal(second).await;
    assert!(
        matches!(
            journal.as_slice(),
            [
                Event::EscalationQueued { .. },
                Event::EscalationFailed {
                    attempt: 1,
                    digest: Some(failed_in),
                    ..
                },
                Event::EscalationSent {
                    attempt: 3,
                    digest: Some(sent_in),
                    ..
                },
            ] if failed_in.digest == digest && sent_in.digest == again && sent_in.digest_size == 2
        ),
        "{journal:?}"
    );
}

/// An incident paged on "pager" and "mail", the mail page sent in a digest.
async fn paged_twice(bed: &Bed, store: &PgStore, fingerprint: &str) -> IncidentId {
    let id = bed.incident(fingerprint, "unmatched").await;
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
    store.escalation_sent(pager).await.unwrap();
    let digest = store.new_digest("mail", "novel", 1).await.unwrap();
    store
        .digest_sent(digest, std::slice::from_ref(mail))
        .await
        .unwrap();
    id
}

/// Every candidate decided as the engine would: a follow-up unless it went in a digest.
async fn decide_undigested(store: &PgStore) {
    let decisions: Vec<_> = store
        .follow_up_candidates(10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let wanted = !c.digested;
            (c, wanted)
        })
        .collect();
    store.decide_follow_ups(decisions).await.unwrap();
}

#[tokio::test]
async fn a_sent_page_is_followed_up_once_after_its_alert_resolved_never_a_digested_one() {
    let bed = bed().await;
    let store = bed.store().await;
    let id = paged_twice(&bed, &store, "00000000000000aa").await;
    assert!(store.follow_up_candidates(10).await.unwrap().is_empty());

    bed.resolve(id).await;
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
        (
            due[0].channel.as_str(),
            due[0].page.clone(),
            due[0].attempts
        ),
        ("pager", json!({ "x": 1 }), 0)
    );

    store
        .follow_up_failed(&due[0], "503", Utc::now())
        .await
        .unwrap();
    let due = store.due_follow_ups(10).await.unwrap();
    assert_eq!(due[0].attempts, 1);
    store.follow_up_sent(&due[0]).await.unwrap();
    store.follow_up_sent(&due[0]).await.unwrap();
    assert!(store.due_follow_ups(10).await.unwrap().is_empty());
    let follow_ups: Vec<Event> = bed
        .journal(id)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::FollowUpQueued { .. } | Event::FollowUpSent { .. }))
        .collect();
    assert_eq!(
        follow_ups,
        [
            Event::FollowUpQueued {
                channel: "pager".into(),
                cause: "resolved".into(),
                by: None
            },
            Event::FollowUpSent {
                channel: "pager".into(),
                attempt: 2
            }
        ]
    );
}

#[tokio::test]
async fn a_page_is_followed_up_when_a_later_incident_of_its_alert_is_fixed() {
    let bed = bed().await;
    let store = bed.store().await;
    let id = bed.incident("00000000000000bb", "unmatched").await;
    store
        .enqueue_escalation(id, EscalationReason::Novel, &["pager".into()], &json!({}))
        .await
        .unwrap();
    let page = store.due_escalations(10).await.unwrap().remove(0);
    store.escalation_sent(&page).await.unwrap();
    // Another alert's fix, or a fix that is not over, is no cause.
    bed.incident("00000000000000cc", "succeeded").await;
    bed.incident("00000000000000bb", "remediating").await;
    assert!(store.follow_up_candidates(10).await.unwrap().is_empty());

    let fixed = bed.incident("00000000000000bb", "succeeded").await;
    let candidates = store.follow_up_candidates(10).await.unwrap();
    assert_eq!(candidates.len(), 1);
    assert_eq!(
        (candidates[0].page_id, candidates[0].cause),
        (page.id, FollowUpCause::Succeeded(fixed))
    );
    decide_undigested(&store).await;
    let due = store.due_follow_ups(10).await.unwrap();
    assert_eq!(due[0].cause, FollowUpCause::Succeeded(fixed));
    assert!(bed.journal(id).await.contains(&Event::FollowUpQueued {
        channel: "pager".into(),
        cause: "succeeded".into(),
        by: Some(fixed)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_polling_the_outbox_never_take_one_row_at_once() {
    let bed = bed().await;
    let (a, b) = (bed.replica("a").await, bed.replica("b").await);
    for round in 0..20 {
        let id = bed.incident(&format!("{round:016x}"), "unmatched").await;
        a.enqueue_escalation(id, EscalationReason::Novel, &["mail".into()], &json!({}))
            .await
            .unwrap();
        let (from_a, from_b) = tokio::join!(a.due_escalations(10), b.due_escalations(10));
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        assert_eq!(
            from_a.len() + from_b.len(),
            1,
            "round {round}: {from_a:?} {from_b:?}"
        );
        let (winner, loser, item) = match from_a.first() {
            Some(item) => (&a, &b, item.clone()),
            None => (&b, &a, from_b[0].clone()),
        };
        assert_eq!(
            bed.outbox_claim(item.id).await,
            (Some(winner.me()), Some(true))
        );
        // The winner's claim holds while it delivers; the winner may read it again.
        assert!(loser.due_escalations(10).await.unwrap().is_empty());
        assert_eq!(
            winner.due_escalations(10).await.unwrap(),
            std::slice::from_ref(&item)
        );
        // A refusal ends the claim: the next attempt is anyone's.
        winner
            .escalation_failed(&item, "refused", Utc::now())
            .await
            .unwrap();
        let retried = loser.due_escalations(10).await.unwrap();
        assert_eq!(retried.len(), 1);
        loser.escalation_sent(&retried[0]).await.unwrap();
        assert!(winner.due_escalations(10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_dead_replicas_outbox_claim_is_taken_over_and_so_is_a_lapsed_claim() {
    let bed = bed().await;
    let (a, b) = (bed.replica("a").await, bed.replica("b").await);
    let id = bed.incident("00000000000000aa", "unmatched").await;
    a.enqueue_escalation(id, EscalationReason::Novel, &["mail".into()], &json!({}))
        .await
        .unwrap();
    let item = a.due_escalations(10).await.unwrap().remove(0);
    assert!(b.due_escalations(10).await.unwrap().is_empty());

    bed.kill(&a).await;
    assert_eq!(
        b.due_escalations(10).await.unwrap(),
        std::slice::from_ref(&item)
    );
    assert_eq!(bed.outbox_claim(item.id).await, (Some(b.me()), Some(true)));
    assert!(
        a.due_escalations(10).await.unwrap().is_empty(),
        "b's claim holds against a"
    );
    // a, back from its stall, reports its delivery failed: b's claim stands (ending it
    // would let a third replica deliver beside b), and nothing is counted or journaled.
    a.escalation_failed(&item, "timed out", Utc::now())
        .await
        .unwrap();
    assert_eq!(bed.outbox_claim(item.id).await, (Some(b.me()), Some(true)));
    assert!(a.due_escalations(10).await.unwrap().is_empty());
    assert!(
        !bed.kinds(id)
            .await
            .contains(&"escalation_failed".to_owned())
    );

    // A claim that ran out (a delivery stuck past it) is anyone's, its replica live or not.
    let c = bed.replica("c").await;
    assert!(c.due_escalations(10).await.unwrap().is_empty());
    bed.sql
        .execute(
            "UPDATE outbox SET claimed_until = now() - interval '1 second' WHERE id = $1",
            &[&item.id],
        )
        .await
        .unwrap();
    assert_eq!(c.due_escalations(10).await.unwrap(), [item]);
}

/// A follow-up due for the page of an incident (resolved), queued by `store`.
async fn follow_up_due(bed: &Bed, store: &PgStore, fingerprint: &str) -> IncidentId {
    let id = bed.incident(fingerprint, "unmatched").await;
    store
        .enqueue_escalation(id, EscalationReason::Novel, &["pager".into()], &json!({}))
        .await
        .unwrap();
    let page = store.due_escalations(10).await.unwrap().remove(0);
    store.escalation_sent(&page).await.unwrap();
    bed.resolve(id).await;
    decide_undigested(store).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_polling_follow_ups_never_take_one_at_once_and_a_dead_ones_are_taken_over() {
    let bed = bed().await;
    let (a, b) = (bed.replica("a").await, bed.replica("b").await);
    for round in 0..10 {
        let id = follow_up_due(&bed, &a, &format!("{round:016x}")).await;
        let (from_a, from_b) = tokio::join!(a.due_follow_ups(10), b.due_follow_ups(10));
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        assert_eq!(
            from_a.len() + from_b.len(),
            1,
            "round {round}: {from_a:?} {from_b:?}"
        );
        let (winner, loser, item) = match from_a.first() {
            Some(item) => (&a, &b, item.clone()),
            None => (&b, &a, from_b[0].clone()),
        };
        assert_eq!(item.incident_id, id);
        assert!(loser.due_follow_ups(10).await.unwrap().is_empty());
        winner
            .follow_up_failed(&item, "503", Utc::now())
            .await
            .unwrap();
        let retried = loser.due_follow_ups(10).await.unwrap();
        assert_eq!(retried.len(), 1);
        loser.follow_up_sent(&retried[0]).await.unwrap();
        assert!(winner.due_follow_ups(10).await.unwrap().is_empty());
    }

    follow_up_due(&bed, &a, "00000000000000ff").await;
    let item = a.due_follow_ups(10).await.unwrap().remove(0);
    assert!(b.due_follow_ups(10).await.unwrap().is_empty());
    bed.kill(&a).await;
    assert_eq!(
        b.due_follow_ups(10).await.unwrap(),
        std::slice::from_ref(&item)
    );
    assert!(a.due_follow_ups(10).await.unwrap().is_empty());
    // a's late failure report leaves b's claim alone.
    a.follow_up_failed(&item, "503", Utc::now()).await.unwrap();
    assert!(a.due_follow_ups(10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_escalate_disjoint_incidents_and_take_over_a_dead_ones() {
    let bed = bed().await;
    let (a, b) = (bed.replica("a").await, bed.replica("b").await);
    let mut all = BTreeSet::new();
    for n in 0..40 {
        let state = if n % 2 == 0 { "unmatched" } else { "failed" };
        all.insert(bed.incident(&format!("{n:016x}"), state).await.0);
    }
    // Not escalating, or escalated already: never claimed.
    bed.incident("00000000000000f1", "succeeded").await;
    let queued = bed.incident("00000000000000f2", "refused").await;
    bed.sql
        .execute(
            "UPDATE incidents SET escalated_at = $2 WHERE id = $1",
            &[&queued.0, &time_text(Utc::now())],
        )
        .await
        .unwrap();

    let (from_a, from_b) = tokio::join!(a.incidents_to_escalate(40), b.incidents_to_escalate(40));
    let (from_a, from_b) = (
        ids(&from_a.unwrap(), |i| i.id.0),
        ids(&from_b.unwrap(), |i| i.id.0),
    );
    assert!(from_a.is_disjoint(&from_b), "{from_a:?} {from_b:?}");
    assert_eq!(&from_a | &from_b, all);
    // Each keeps its own; neither takes the other's while both live.
    let again_a = ids(&a.incidents_to_escalate(40).await.unwrap(), |i| i.id.0);
    let again_b = ids(&b.incidents_to_escalate(40).await.unwrap(), |i| i.id.0);
    assert_eq!((&again_a, &again_b), (&from_a, &from_b));

    // b escalates one of its own; a dies before escalating any of its: b takes them.
    if let Some(&first) = from_b.iter().next() {
        b.enqueue_escalation(IncidentId(first), EscalationReason::Novel, &[], &json!({}))
            .await
            .unwrap();
    }
    bed.kill(&a).await;
    let after = ids(&b.incidents_to_escalate(40).await.unwrap(), |i| i.id.0);
    let mut expected = all.clone();
    if let Some(&first) = from_b.iter().next() {
        expected.remove(&first);
    }
    assert_eq!(after, expected);
    let owners: Vec<Option<i64>> = bed
        .sql
        .query(
            "SELECT DISTINCT owner FROM incidents WHERE escalated_at IS NULL AND state IN ('unmatched', 'failed')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(owners, [Some(b.me())]);
}

#[test]
fn the_test_database_replaces_the_urls_database_only() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "salve_t_1"),
        "postgres://postgres@127.0.0.1:5432/salve_t_1"
    );
    assert_eq!(
        with_database("postgres://u@h:1?sslmode=disable", "x"),
        "postgres://u@h:1/x?sslmode=disable"
    );
}
