//! The incidents API on the real binary: filters (`state`, `alertname`, `host`, `recipe`,
//! `since`, `before`), summaries without plan or journal, the next link keeping the
//! filters, JSON errors for bad query strings, paths and routes, and 405 on a GET of a hook.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{API_BEARER, SalveConfig, SalveProcess, http_client, service_down_on_web1};

/// GET `path_and_query` with the API token: status, headers, body as JSON.
async fn get(
    salve: &SalveProcess,
    path_and_query: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = http_client()
        .get(format!("{}{path_and_query}", salve.base_url()))
        .header(API_BEARER.0, API_BEARER.1)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{path_and_query} answered {status} with non-JSON {text:?}: {e}")
    });
    (status, headers, body)
}

fn alertnames(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}@{}",
                i["alertname"].as_str().unwrap(),
                i["host"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[tokio::test]
async fn incidents_filter_and_every_error_is_json() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    salve
        .post_generic(service_down_on_web1("nginx", 8080))
        .await;
    salve
        .post_generic(json!({ "labels": {
            "alertname": "ServiceDown", "instance": "web2:9100", "service": "postgresql" } }))
        .await;
    salve
        .post_generic(json!({ "labels": { "alertname": "NeverSeen", "instance": "web1:9100" } }))
        .await;
    salve
        .wait_for_incidents("every incident planned", |all| {
            all.len() == 3 && all.iter().all(|i| i["state"] != "received")
        })
        .await;

    let (status, _, all) = get(&salve, "/api/v1/incidents").await;
    assert_eq!(status, 200);
    assert_eq!(
        alertnames(&all),
        ["NeverSeen@-", "ServiceDown@web2", "ServiceDown@web1"]
    );
    for summary in all.as_array().unwrap() {
        assert!(
            summary.get("plan").is_none() && summary.get("events").is_none(),
            "{summary:#}"
        );
        let (_, _, detail) = get(&salve, summary["url"].as_str().unwrap()).await;
        assert!(
            detail["plan"].is_object() && detail["events"].is_array(),
            "{detail:#}"
        );
    }

    for (query, expected) in [
        (
            "state=dry_run",
            vec!["ServiceDown@web2", "ServiceDown@web1"],
        ),
        ("state=unmatched", vec!["NeverSeen@-"]),
        ("alertname=ServiceDown&host=web2", vec!["ServiceDown@web2"]),
        ("recipe=service-restart&host=web1", vec!["ServiceDown@web1"]),
        ("host=web3", vec![]),
        ("since=2999-01-01T00:00:00Z", vec![]),
        (
            "since=2000-01-01T00:00:00%2B02:00&alertname=NeverSeen",
            vec!["NeverSeen@-"],
        ),
    ] {
        let (status, _, list) = get(&salve, &format!("/api/v1/incidents?{query}")).await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(alertnames(&list), expected, "{query}");
    }

    // Paging keeps the filters: the next link of a one-item page of ServiceDown.
    let (_, headers, first) = get(&salve, "/api/v1/incidents?limit=1&alertname=ServiceDown").await;
    assert_eq!(alertnames(&first), ["ServiceDown@web2"]);
    let link = headers["link"].to_str().unwrap();
    let next = link
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .map(|(url, _)| url.to_owned())
        .unwrap_or_else(|| panic!("link {link}"));
    assert!(next.contains("alertname=ServiceDown"), "{next}");
    let (_, headers, second) = get(&salve, &next).await;
    assert_eq!(alertnames(&second), ["ServiceDown@web1"]);
    assert!(headers.get("link").is_none(), "no page after the last");

    // Every refusal is JSON with a reason.
    for (path, status) in [
        ("/api/v1/incidents?state=bogus", 400),
        ("/api/v1/incidents?since=yesterday", 400),
        ("/api/v1/incidents?limit=abc", 400),
        ("/api/v1/incidents?colour=red", 400),
        ("/api/v1/incidents/abc", 400),
        ("/api/v1/incidents/999999", 404),
        ("/no/such/route", 404),
    ] {
        let (got, headers, body) = get(&salve, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        assert_eq!(body["status"], "error", "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }

    // The breakers and pauses lists answer.
    for path in ["/api/v1/breakers", "/api/v1/pauses"] {
        let (status, _, body) = get(&salve, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_get_on_a_hook_is_405_allowing_post() {
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    for hook in ["alertmanager", "grafana", "generic"] {
        let response = http_client()
            .get(format!("{}/hooks/{hook}", salve.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{hook}");
        assert_eq!(response.headers()["allow"], "POST", "{hook}");
    }
    let unknown = http_client()
        .get(format!("{}/hooks/nagios", salve.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test]
async fn remediation_started_names_the_effective_ssh_user() {
    let host = crate::support::SshHost::start().await;
    let enforcing = crate::support::Enforcing::on(&host).start().await;
    let salve = &enforcing.salve;
    salve
        .post_generic(json!({ "labels": {
            "alertname": "Echo", "instance": "web1:9100", "message": "hello" } }))
        .await;
    let history = salve.wait_for_final(1, Duration::from_secs(60)).await;
    let started = crate::support::events(&history[0], "remediation_started");
    assert_eq!(started.len(), 1, "{:#}", history[0]);
    assert_eq!(started[0]["ssh_user"], host.user(), "{:#}", started[0]);
}
