//! salve stays up under HTTP abuse, on the real binary over real sockets: authenticated
//! bodies that trickle in get 408 at the body deadline, open connections stay under
//! `server.max_connections` while `/readyz` and a real webhook still answer, and the
//! incidents API and `history --json` page instead of answering everything at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{
    API_BEARER, BEARER, SalveConfig, SalveProcess, TOKEN, http_client, parse_json_output,
    post_json, shipped_recipes, wait_until,
};
use serde_json::{Value, json};

const MAX_CONNECTIONS: usize = 4;
const SLOW_CLIENTS: usize = 2 * MAX_CONNECTIONS;

async fn start(env: &[(&str, &str)]) -> SalveProcess {
    let mut builder =
        SalveProcess::builder(&SalveConfig::standard().build()).recipes_dir(&shipped_recipes());
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    builder.start().await
}

/// TCP connections salve's process has accepted on `port` (a connection still waiting in
/// the listen backlog is not salve's yet): its socket fds matched against /proc/net/tcp.
fn accepted_connections(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let target = std::fs::read_link(entry.path()).ok()?;
                    let target = target.to_string_lossy();
                    Some(
                        target
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let local_port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // State 0A is LISTEN: the listener itself is not a connection.
                    fields.len() > 9
                        && fields[1].ends_with(&local_port)
                        && fields[3] != "0A"
                        && inodes.contains(fields[9])
                })
                .count()
        })
        .sum()
}

/// One attacker: connects, sends an authenticated webhook head announcing a large body,
/// then trickles it a byte at a time for as long as salve listens; when salve answers, it
/// records the answer and connects again, until `stop`.
fn trickle(address: String, stop: Arc<AtomicBool>, answers: Arc<Mutex<Vec<String>>>) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = TcpStream::connect(&address) else {
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let head = format!(
            "POST /hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"alerts\": ["
        );
        if stream.write_all(head.as_bytes()).is_err() {
            continue;
        }
        let mut answer = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let mut buffer = [0u8; 4096];
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if !answer.is_empty() {
                        break;
                    }
                }
                Err(_) => break,
            }
            // Never the whole body: one more byte per round trip.
            if answer.is_empty() && stream.write_all(b" ").is_err() {
                break;
            }
        }
        if !answer.is_empty() {
            answers
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&answer).into_owned());
        }
    }
}

#[tokio::test]
async fn trickled_bodies_get_408_and_the_connection_limit_keeps_health_and_hooks_answering() {
    let max = MAX_CONNECTIONS.to_string();
    let salve = start(&[
        ("SALVE_SERVER__BODY_TIMEOUT", "1s"),
        ("SALVE_SERVER__MAX_CONNECTIONS", &max),
    ])
    .await;
    let pid = salve.pid().unwrap();
    let address = salve.base_url().trim_start_matches("http://").to_owned();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let attackers: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let (address, stop, answers) = (address.clone(), stop.clone(), answers.clone());
            std::thread::spawn(move || trickle(address, stop, answers))
        })
        .collect();
    // Salve's own count of accepted connections, sampled all through the flood. A count
    // is "held" when two samples 20 ms apart both see it: when one connection ends, its
    // slot is handed to the next a moment before the old socket's fd is closed, and that
    // hand-over is not a connection held.
    let peak = Arc::new(Mutex::new(0usize));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::SeqCst) {
                let accepted = accepted_connections(pid, port);
                let mut peak = peak.lock().unwrap();
                *peak = (*peak).max(accepted.min(last));
                drop(peak);
                last = accepted;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Every attacker is cut off by the body deadline, at least once each.
    wait_until(
        Duration::from_secs(30),
        "every trickled body to be answered 408",
        || async { (answers.lock().unwrap().len() >= SLOW_CLIENTS).then_some(()) },
    )
    .await;
    // While the flood goes on (the attackers reconnect at once), health and a real
    // webhook are still answered: the deadlines free a slot every second.
    for _ in 0..3 {
        let readyz = http_client()
            .get(format!("{}/readyz", salve.base_url()))
            .send()
            .await
            .expect("/readyz during the flood");
        assert_eq!(readyz.status().as_u16(), 200);
    }
    let hook = post_json(
        &format!("{}/hooks/generic", salve.base_url()),
        &json!({ "labels": { "alertname": "DuringTheFlood", "instance": "web1:9100" } }),
        &[BEARER],
    )
    .await;
    assert_eq!(hook.status().as_u16(), 200, "the webhook during the flood");

    stop.store(true, Ordering::SeqCst);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    sampler.join().unwrap();

    let answers = answers.lock().unwrap().clone();
    for answer in &answers {
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a trickled body got: {answer}"
        );
        assert!(
            answer.contains("did not arrive within 1s"),
            "the 408 says why: {answer}"
        );
    }
    let peak = *peak.lock().unwrap();
    assert!(
        peak <= MAX_CONNECTIONS,
        "salve held {peak} connections at once, over max_connections = {MAX_CONNECTIONS}"
    );
    assert!(
        peak >= 2,
        "the flood never filled salve's slots (peak {peak}): the test saw nothing"
    );
    let incidents = salve.api_incidents().await;
    assert!(
        incidents
            .iter()
            .any(|i| i["labels"]["alertname"] == "DuringTheFlood"),
        "{incidents:#?}"
    );
}

async fn get_page(url: &str) -> (Vec<Value>, Option<String>, usize) {
    let response = http_client()
        .get(url)
        .header(API_BEARER.0, API_BEARER.1)
        .send()
        .await
        .expect("GET incidents");
    assert_eq!(response.status().as_u16(), 200);
    let next = response
        .headers()
        .get("link")
        .map(|link| link.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    let items: Vec<Value> = serde_json::from_slice(&body).unwrap();
    (items, next, body.len())
}

/// `</api/v1/incidents?limit=N&before=ID>; rel="next"` → the absolute URL.
fn next_url(base: &str, link: &str) -> String {
    let path = link
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .map(|(path, rest)| {
            assert!(rest.contains("rel=\"next\""), "{link}");
            path
        })
        .unwrap_or_else(|| panic!("not a Link header: {link}"));
    format!("{base}{path}")
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn the_incidents_api_and_history_page_and_bound_their_answers() {
    let salve = start(&[]).await;
    let base = salve.base_url().to_owned();
    let alerts: Vec<Value> = (0..600)
        .map(|n| json!({ "labels": { "alertname": "Paged", "n": n.to_string() } }))
        .collect();
    let posted = post_json(
        &format!("{base}/hooks/generic"),
        &json!({ "alerts": alerts }),
        &[BEARER],
    )
    .await;
    assert_eq!(posted.status().as_u16(), 200);

    // An attacker's limit is cut to 500, and the rest is one cursor away.
    let (first, next, _) = get_page(&format!("{base}/api/v1/incidents?limit=1000000")).await;
    assert_eq!(first.len(), 500);
    let first_ids = ids(&first);
    assert!(first_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let next = next.expect("a next link after a full page");
    assert!(
        next.contains(&format!("before={}", first_ids[499])),
        "{next}"
    );
    let (rest, after, _) = get_page(&next_url(&base, &next)).await;
    assert_eq!(rest.len(), 100);
    assert!(after.is_none(), "the last page has no next link: {after:?}");
    assert!(ids(&rest)[0] < first_ids[499]);

    let (three, link, _) = get_page(&format!("{base}/api/v1/incidents?limit=3")).await;
    assert_eq!(ids(&three), first_ids[..3]);
    let (three_more, _, _) = get_page(&next_url(&base, &link.unwrap())).await;
    assert_eq!(ids(&three_more), first_ids[3..6]);

    // history --json pages the same way, with the journal of each incident.
    let before = first_ids[10].to_string();
    let output = salve
        .run_cli(&["history", "--json", "--limit", "3", "--before", &before])
        .await;
    let page = parse_json_output("history --json --before", &output);
    assert_eq!(ids(&page), first_ids[11..14]);
    assert!(
        page.iter()
            .all(|i| i["events"].as_array().is_some_and(|e| !e.is_empty())),
        "{page:#?}"
    );

    // Large incidents: the answer stops near 4 MiB however many were asked for.
    let annotations: serde_json::Map<String, Value> = (0..56)
        .map(|n| (format!("a{n}"), json!("x".repeat(16_000))))
        .collect();
    for n in 0..6 {
        let posted = post_json(
            &format!("{base}/hooks/generic"),
            &json!({ "labels": { "alertname": "Large", "n": n.to_string() }, "annotations": annotations }),
            &[BEARER],
        )
        .await;
        assert_eq!(posted.status().as_u16(), 200);
    }
    let (large, next, bytes) = get_page(&format!("{base}/api/v1/incidents?limit=10")).await;
    assert!(
        bytes <= 4 * 1024 * 1024,
        "answer of {bytes} bytes, over the bound"
    );
    assert!(
        (1..6).contains(&large.len()),
        "{} large incidents in one answer",
        large.len()
    );
    let next = next.expect("a cut answer names the next page");
    let (more, _, _) = get_page(&next_url(&base, &next)).await;
    assert_eq!(
        ids(&more)[0],
        ids(&large).last().unwrap() - 1,
        "the next page continues where the cut one stopped"
    );
}

/// Hostile paging values: negative, non-numeric, NUL, past u64, are each a 400 that quotes
/// none of the input; a zero limit and a cursor below every id are empty pages, not errors.
#[tokio::test]
async fn hostile_paging_values_are_refused_without_echo() {
    let salve = start(&[]).await;
    let client = http_client();
    for (query, status) in [
        ("limit=-5", 400),
        ("limit=abc%1b%5b2J", 400),
        ("limit=99999999999999999999", 400),
        ("before=%00", 400),
        ("before=99999999999999999999999", 400),
        ("before=-1", 200),
        ("limit=0", 200),
    ] {
        let response = client
            .get(format!("{}/api/v1/incidents?{query}", salve.base_url()))
            .header(API_BEARER.0, API_BEARER.1)
            .send()
            .await
            .expect("GET /api/v1/incidents");
        assert_eq!(response.status().as_u16(), status, "{query}");
        let body = response.text().await.unwrap();
        if status == 200 {
            assert_eq!(body, "[]", "{query}");
        } else {
            assert!(
                !body.contains("abc") && !body.contains('\u{1b}') && !body.contains("9999"),
                "{query}: {body}"
            );
        }
    }
}
