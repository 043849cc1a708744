//! Credentials mean something, over real HTTP against the real binary: the incidents and
//! breakers API takes its own named, scoped tokens and never the webhook credential that
//! every Alertmanager config holds; what a token changes is journaled with its name; a
//! blank credential is a config error, never "auth configured"; and with no credentials
//! at all only loopback host names are served (DNS rebinding).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{
    BEARER, Channel, Enforcing, SalveConfig, SshHost, TOKEN, events, http_client, post_json, text,
};
use serde_json::{Value, json};

const READ_TOKEN: &str = "viewer-9f3c2a61d0b84e57";
const OPERATE_TOKEN: &str = "ops-5e1d7c90ab3f4268";

/// The `[server.api]` tokens of these tests: `viewer` (read) from a file that ends in a
/// newline, as `echo token > file` writes it, and `ops` (operate) inline.
fn api_tokens(config: SalveConfig, dir: &std::path::Path) -> SalveConfig {
    let file = dir.join("viewer-token");
    std::fs::write(&file, format!("{READ_TOKEN}\n")).unwrap();
    config
        .api_token_file("viewer", &file, "read")
        .api_token("ops", OPERATE_TOKEN, "operate")
}

async fn call(
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http_client().request(method, url);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn the_webhook_credential_cannot_read_incidents_or_reset_breakers() {
    let files = tempfile::tempdir().unwrap();
    let config = SalveConfig::new()
        .bearer_token(TOKEN)
        .recipes_dir("recipes")
        .escalation_default(&["oncall-email"])
        .channel("oncall-email", Channel::log())
        .channel("tickets", Channel::log());
    let salve = api_tokens(config, files.path())
        .start_with_shipped_recipes()
        .await;
    let base = salve.base_url();
    // The webhook credential still posts alerts.
    let posted = post_json(
        &format!("{base}/hooks/generic"),
        &json!({ "labels": { "alertname": "NeverSeenBefore", "instance": "web1:9100" } }),
        &[BEARER],
    )
    .await;
    assert_eq!(posted.status().as_u16(), 200);
    let id = posted.json::<Value>().await.unwrap()["incidents"][0]
        .as_i64()
        .unwrap();

    let incidents = format!("{base}/api/v1/incidents");
    let incident = format!("{base}/api/v1/incidents/{id}");
    let reset = format!("{base}/api/v1/breakers/reset");
    let breakers = format!("{base}/api/v1/breakers");
    let reset_body = || Some(json!({ "recipe": "service-restart", "target": "web1" }));
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);

    // The hostile value: the webhook token, which every Alertmanager config holds.
    for (method, url, body) in [
        (get.clone(), &incidents, None),
        (get.clone(), &incident, None),
        (get.clone(), &breakers, None),
        (post.clone(), &reset, reset_body()),
    ] {
        let (status, answer) = call(method.clone(), url, Some(BEARER.1), body).await;
        assert_eq!(
            status, 403,
            "{method} {url} with the webhook token: {answer}"
        );
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("webhook credential")),
            "the refusal says why: {answer}"
        );
        let (status, answer) = call(method.clone(), url, None, None).await;
        assert_eq!(status, 401, "{method} {url} without credentials: {answer}");
        let (status, answer) = call(method.clone(), url, Some("Bearer not-a-token"), None).await;
        assert_eq!(status, 401, "{method} {url} with a wrong token: {answer}");
    }

    // `read` reads (its token came from a file ending in a newline) but does not operate.
    let (status, answer) = call(get.clone(), &incidents, Some(&bearer(READ_TOKEN)), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer[0]["id"], id);
    let (status, answer) = call(get.clone(), &incident, Some(&bearer(READ_TOKEN)), None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["events"].as_array().is_some_and(|e| !e.is_empty()));
    let (status, answer) = call(get.clone(), &breakers, Some(&bearer(READ_TOKEN)), None).await;
    assert_eq!((status, answer), (200, json!([])), "nothing ran yet");
    let (status, answer) = call(
        post.clone(),
        &reset,
        Some(&bearer(READ_TOKEN)),
        reset_body(),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("viewer") && e.contains("read") && e.contains("operate")),
        "{answer}"
    );
    // `operate` may reset; this breaker never ran, so there is nothing to reset.
    let (status, answer) = call(
        post.clone(),
        &reset,
        Some(&bearer(OPERATE_TOKEN)),
        reset_body(),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = call(get, &incidents, Some(&bearer(OPERATE_TOKEN)), None).await;
    assert_eq!(status, 200, "{answer}");
}

/// A reset through the API is on the record with the token's name, and one through the
/// CLI with the Unix user; the breaker really was open and really is closed after.
#[tokio::test]
async fn breaker_resets_are_journaled_with_who_did_them() {
    let host = SshHost::start().await;
    let files = tempfile::tempdir().unwrap();
    let enforcing = Enforcing::on(&host)
        // One run per window: the second Echo finds the breaker open.
        .patch_recipe(
            "echo-message.toml",
            "[escalate]",
            "[breaker]\nmax_runs = 1\nwindow = \"1h\"\n\n[escalate]",
        )
        .config(|config| api_tokens(config, files.path()))
        .start()
        .await;
    let salve = &enforcing.salve;
    let echo = |message: &str| json!({ "labels": { "alertname": "Echo", "instance": "web1:9100", "message": message } });
    salve.post_generic(echo("first")).await;
    salve.wait_for_final(1, Duration::from_secs(30)).await;
    salve.post_generic(echo("second")).await;
    let history = salve.wait_for_final(2, Duration::from_secs(30)).await;
    let second = history
        .iter()
        .find(|i| i["labels"]["message"] == "second")
        .unwrap();
    assert_eq!(second["state"], "breaker_open", "{second:#}");

    let reset = format!("{}/api/v1/breakers/reset", salve.base_url());
    let body = json!({ "recipe": "echo-message", "target": "web1" });
    let (status, answer) = call(
        reqwest::Method::POST,
        &reset,
        Some(BEARER.1),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 403, "the webhook token reset a breaker: {answer}");
    let (status, answer) = call(
        reqwest::Method::POST,
        &reset,
        Some(&bearer(OPERATE_TOKEN)),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["by"], "ops");
    assert_eq!(answer["journaled_on"], second["id"]);

    // On the record: the breaker_open incident's journal, through the API and history.
    let (status, detail) = call(
        reqwest::Method::GET,
        &format!("{}/api/v1/incidents/{}", salve.base_url(), second["id"]),
        Some(&bearer(READ_TOKEN)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let resets = events(&detail, "breaker_reset");
    assert_eq!(resets.len(), 1, "{detail:#}");
    assert_eq!(resets[0]["by"], "ops");
    assert_eq!(resets[0]["recipe"], "echo-message");
    assert_eq!(resets[0]["runs_forgotten"], 1);

    // Closed again: the next Echo runs.
    salve.post_generic(echo("third")).await;
    let history = salve.wait_for_final(3, Duration::from_secs(30)).await;
    let third = history
        .iter()
        .find(|i| i["labels"]["message"] == "third")
        .unwrap();
    assert_eq!(third["state"], "succeeded", "{third:#}");

    // The CLI records the Unix user it runs as.
    let output = salve
        .run_cli(&["breaker", "reset", "echo-message", "web1"])
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = salve
        .run_cli(&["history", "--json", "--id", &third["id"].to_string()])
        .await;
    let third: Value = serde_json::from_slice(&output.stdout).unwrap();
    let resets = events(&third, "breaker_reset");
    assert_eq!(resets.len(), 1, "{third:#}");
    assert_eq!(resets[0]["by"], "cli:root");
}

/// Each blank credential stops `salve check` and `salve serve` with where it is.
#[tokio::test]
async fn blank_credentials_are_config_errors_not_auth_configured() {
    let dir = tempfile::tempdir().unwrap();
    // Everything else `serve` needs is there: only the credential can stop it.
    std::fs::create_dir(dir.path().join("recipes")).unwrap();
    let newline = dir.path().join("token-with-just-a-newline");
    std::fs::write(&newline, "\n").unwrap();
    let newline = format!("{:?}", newline.display().to_string());
    // (config, environment, where the problem must be located)
    type Case = (String, Vec<(&'static str, &'static str)>, &'static str);
    let cases: [Case; 5] = [
        (
            format!("[server.auth]\nbearer_token_file = {newline}\n"),
            vec![],
            "salve.toml:7:",
        ),
        (
            "[server.auth]\nbasic_username = \"am\"\nbasic_password = \"   \"\n".into(),
            vec![],
            "salve.toml:8:",
        ),
        (
            String::new(),
            vec![("SALVE_SERVER__AUTH__BEARER_TOKEN", " ")],
            "SALVE_SERVER__AUTH__BEARER_TOKEN",
        ),
        (
            format!(
                "[server.api]\ntokens = [{{ name = \"ops\", token_file = {newline}, scope = \"operate\" }}]\n"
            ),
            vec![],
            "salve.toml:7:",
        ),
        (
            "[escalation.channels.t]\nkind = \"webhook\"\nurl = \"https://t.example/\"\n\
             headers = { Authorization = \"\" }\n"
                .into(),
            vec![],
            "salve.toml:9:",
        ),
    ];
    for (config, env, located) in cases {
        let config_path = dir.path().join("salve.toml");
        // A free port, in case a bug lets `serve` start.
        std::fs::write(
            &config_path,
            format!("{}{config}", SalveConfig::new().build()),
        )
        .unwrap();
        for command in ["check", "serve"] {
            let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_salve"));
            cli.args([command, "--config"])
                .arg(&config_path)
                .current_dir(dir.path())
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
            for (name, value) in &env {
                cli.env(name, value);
            }
            // `serve` must refuse before it listens: a bounded wait, killed if it serves.
            let mut child = cli
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if std::time::Instant::now() > deadline {
                    child.kill().unwrap();
                    panic!("salve {command} started with a blank credential:\n{config}{env:?}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let output = child.wait_with_output().unwrap();
            let stderr = text(&output.stderr);
            assert!(
                !output.status.success(),
                "salve {command} accepted {config}{env:?}"
            );
            assert!(
                stderr.contains(located) && stderr.contains("empty or"),
                "salve {command} on {config}{env:?}: {stderr}"
            );
        }
    }
}

/// Sends one raw HTTP/1.1 request with exactly these headers and returns the status.
fn raw_status(base_url: &str, request: &str) -> u16 {
    let address = base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}

#[tokio::test]
async fn without_credentials_only_loopback_host_names_are_served() {
    // The loopback default: no webhook credential, no API token.
    let salve = SalveConfig::new()
        .recipes_dir("recipes")
        .escalation_default(&["oncall-email"])
        .channel("oncall-email", Channel::log())
        .channel("tickets", Channel::log())
        .start_with_shipped_recipes()
        .await;
    let base = salve.base_url().to_owned();
    let port = base.rsplit(':').next().unwrap().to_owned();
    let get = |path: &str, host: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
    };
    let alert = r#"{"labels":{"alertname":"Rebound","instance":"web1:9100"}}"#;
    let post = |host: &str| {
        format!(
            "POST /hooks/generic HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{alert}",
            alert.len()
        )
    };

    // What a DNS-rebinding page sends: its own name, resolved to 127.0.0.1.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        for path in [
            "/api/v1/incidents",
            "/api/v1/incidents/1",
            "/readyz",
            "/metrics",
        ] {
            assert_eq!(
                raw_status(&base, &get(path, &host, "")),
                421,
                "{path} {host}"
            );
        }
        assert_eq!(raw_status(&base, &post(&host)), 421, "hook with {host}");
    }
    // A proxy-style header does not stand in for Host.
    let forwarded = "X-Forwarded-Host: localhost\r\nForwarded: host=localhost\r\n";
    assert_eq!(
        raw_status(&base, &get("/api/v1/incidents", "evil.example", forwarded)),
        421
    );
    // Liveness says nothing and stays answerable for probes.
    assert_eq!(raw_status(&base, &get("/healthz", "evil.example", "")), 200);

    // Nothing was stored by the refused posts.
    let list = get("/api/v1/incidents", &format!("127.0.0.1:{port}"), "");
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(list.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("[]"),
        "a refused post was stored: {answer}"
    );

    // Loopback names are served, with or without a port.
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            raw_status(&base, &get("/api/v1/incidents", &host, "")),
            200,
            "{host}"
        );
    }
    assert_eq!(raw_status(&base, &post(&format!("localhost:{port}"))), 200);
}
