//! Secrets stay secret. With every credential salve knows set to a fresh random value (the
//! webhook bearer token and basic password, the Grafana HMAC key, SMTP passwords, a ticket
//! webhook's headers and URL token, a PagerDuty routing key) and real traffic through the
//! paths that log (accepted and refused webhooks, a real Alertmanager with basic auth, an
//! SMTP login that is refused, a ticket endpoint that fails and quotes the request back,
//! then accepts), none of them shows up in salve's log at trace level, its CLI output, its
//! HTTP answers, its store files or the escalations it sends; nor in the errors of a broken
//! config. Each place is also checked to hold what it should, so a test cannot pass by
//! looking at nothing.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::{
    Alertmanager, SMTP_TEST_USER, SalveConfig, SalveProcess, SmtpOptions, SmtpServer,
    WebhookCapture, events, fixture, free_port, http_client, wait_until,
};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const DEADLINE: Duration = Duration::from_secs(60);

/// A value nobody could guess or find by accident: `label-` and 32 random hex digits.
fn fresh_secret(label: &str) -> String {
    // RandomState is seeded randomly per process and stepped per instance: no extra crate.
    let state = std::collections::hash_map::RandomState::new();
    let mut value = format!("{label}-");
    for round in 0..2u64 {
        let mut hasher = state.build_hasher();
        hasher.write_u64(round);
        write!(value, "{:016x}", hasher.finish()).unwrap();
    }
    value
}

fn base64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One place salve shows something: a file, a command's output, an HTTP answer, a mail.
struct Place {
    name: String,
    bytes: Vec<u8>,
}

impl Place {
    fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Place {
        Place {
            name: name.into(),
            bytes: bytes.into(),
        }
    }

    fn of_output(name: &str, output: &Output) -> Place {
        let mut bytes = output.stdout.clone();
        bytes.extend_from_slice(b"\n--- stderr ---\n");
        bytes.extend_from_slice(&output.stderr);
        Place::new(name, bytes)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// The secrets of one test, each with the encodings it could leak in.
#[derive(Default)]
struct Watchlist {
    /// (what, exact bytes to look for)
    needles: Vec<(String, String)>,
}

impl Watchlist {
    /// `value` itself and its base64 form.
    fn secret(&mut self, what: &str, value: &str) {
        self.form(what, value.to_owned());
        self.form(&format!("{what} (base64)"), base64(value));
    }

    /// Another encoding a secret travels in, e.g. base64 of `user:password`.
    fn form(&mut self, what: &str, needle: String) {
        assert!(needle.len() >= 16, "{what}: too short to search for");
        self.needles.push((what.to_owned(), needle));
    }

    /// What of the watchlist `bytes` contain.
    fn found_in(&self, bytes: &[u8]) -> Vec<&str> {
        self.needles
            .iter()
            .filter(|(_, needle)| contains(bytes, needle.as_bytes()))
            .map(|(what, _)| what.as_str())
            .collect()
    }

    /// Panics listing every secret found in any place, with some context around it.
    fn assert_nowhere(&self, places: &[Place]) {
        let mut leaks = String::new();
        for place in places {
            for (what, needle) in &self.needles {
                if let Some(at) = find(&place.bytes, needle.as_bytes()) {
                    let from = at.saturating_sub(120);
                    let to = (at + needle.len() + 120).min(place.bytes.len());
                    writeln!(
                        leaks,
                        "- {what} in {}: …{}…",
                        place.name,
                        String::from_utf8_lossy(&place.bytes[from..to])
                    )
                    .unwrap();
                }
            }
        }
        assert!(
            leaks.is_empty(),
            "secrets leaked (checked {} places):\n{leaks}",
            places.len()
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn toml_path(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

/// Every file salve wrote in its directory (log, stdout, SQLite database, WAL, shared
/// memory…): all but the config and the recipes, which the test wrote.
fn salve_files(salve: &SalveProcess) -> Vec<Place> {
    fn walk(dir: &Path, places: &mut Vec<Place>, skip: &[PathBuf]) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if skip.contains(&path) {
                continue;
            }
            if path.is_dir() {
                walk(&path, places, skip);
            } else if let Ok(bytes) = std::fs::read(&path) {
                // A file can vanish between listing and reading (SQLite's journal).
                places.push(Place::new(path.display().to_string(), bytes));
            }
        }
    }
    let skip = [salve.config_path(), salve.dir().join("recipes")];
    let mut places = Vec::new();
    walk(salve.dir(), &mut places, &skip);
    places
}

/// A request's answer as one place: status line, headers and body.
async fn answer_place(name: &str, response: reqwest::Response) -> Place {
    let mut text = format!("{:?} {}\n", response.version(), response.status());
    for (header, value) in response.headers() {
        writeln!(
            text,
            "{header}: {}",
            String::from_utf8_lossy(value.as_bytes())
        )
        .unwrap();
    }
    text.push('\n');
    text.push_str(&response.text().await.unwrap_or_default());
    Place::new(name, text)
}

/// Every CLI command that prints state, and every HTTP endpoint salve serves (the API with
/// valid credentials), for a running salve with `incidents` in its journal.
async fn cli_and_api_places(
    salve: &SalveProcess,
    authorization: &str,
    incidents: &[Value],
) -> Vec<Place> {
    let mut places = Vec::new();
    let mut commands: Vec<Vec<String>> = [
        &["check"][..],
        &["history"],
        &["history", "--json", "--limit", "1000"],
        &["gaps"],
        &["gaps", "--json"],
        &["breaker", "list"],
        &["breaker", "list", "--json"],
    ]
    .iter()
    .map(|args| args.iter().map(|a| (*a).to_owned()).collect())
    .collect();
    for incident in incidents {
        commands.push(vec![
            "history".into(),
            "--id".into(),
            incident["id"].to_string(),
        ]);
    }
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = salve.run_cli(&args).await;
        assert!(
            output.status.success(),
            "salve {args:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        places.push(Place::of_output(
            &format!("salve {}", args.join(" ")),
            &output,
        ));
    }

    let client = http_client();
    let base = salve.base_url();
    let mut paths = vec![
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
        "/api/v1/incidents?limit=1000".to_owned(),
        "/api/v1/incidents/999999".to_owned(),
    ];
    paths.extend(
        incidents
            .iter()
            .map(|incident| format!("/api/v1/incidents/{}", incident["id"])),
    );
    for path in &paths {
        let response = client
            .get(format!("{base}{path}"))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        places.push(answer_place(&format!("GET {path}"), response).await);
    }
    let response = client
        .post(format!("{base}/api/v1/breakers/reset"))
        .header("authorization", authorization)
        .json(&json!({ "recipe": "service-restart", "target": "web1" }))
        .send()
        .await
        .expect("POST /api/v1/breakers/reset");
    // 404 when that breaker never ran: the answer still counts as a place.
    assert!(
        matches!(response.status().as_u16(), 200 | 404),
        "{}",
        response.status()
    );
    places.push(answer_place("POST /api/v1/breakers/reset", response).await);
    places
}

/// POSTs raw bytes as JSON with extra headers; returns the answer as a place.
async fn post_raw(
    salve: &SalveProcess,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, Place) {
    let mut request = http_client()
        .post(format!("{}{path}", salve.base_url()))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {error}"));
    let status = response.status().as_u16();
    let headers_text = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",");
    (
        status,
        answer_place(
            &format!("POST {path} [{headers_text}] → {status}"),
            response,
        )
        .await,
    )
}

fn grafana_body(alertname: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("intake/grafana-firing.json")).unwrap(),
    )
    .unwrap();
    // One alert of the fixture's two: one incident.
    body["alerts"].as_array_mut().unwrap().truncate(1);
    body["alerts"][0]["labels"]["alertname"] = json!(alertname);
    serde_json::to_vec(&body).unwrap()
}

fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The channel's events of one kind on one incident.
fn channel_events<'a>(incident: &'a Value, kind: &str, channel: &str) -> Vec<&'a Value> {
    events(incident, kind)
        .into_iter()
        .filter(|detail| detail["channel"] == channel)
        .collect()
}

#[tokio::test]
async fn secrets_never_reach_logs_cli_api_store_or_escalations() {
    // Arrange: a fresh value for every credential salve knows, and for those a client
    // presents that salve must refuse.
    let bearer_token = fresh_secret("bearer");
    let basic_password = fresh_secret("basic");
    let grafana_key = fresh_secret("hmac");
    let smtp_password = fresh_secret("smtp");
    let wrong_smtp_password_in_file = fresh_secret("smtp-file");
    let wrong_smtp_password_in_env = fresh_secret("smtp-env");
    let tickets_token = fresh_secret("tickets");
    let tickets_api_key = fresh_secret("tickets-key");
    let tickets_url_token = fresh_secret("tickets-url");
    let routing_key = fresh_secret("routing");
    let unreachable_path_token = fresh_secret("unreachable");
    let presented_bearer = fresh_secret("wrong-bearer");
    let presented_basic_password = fresh_secret("wrong-basic");
    let presented_scheme_token = fresh_secret("wrong-token");
    let presented_api_bearer = fresh_secret("wrong-api");
    let presented_grafana_key = fresh_secret("wrong-hmac");
    let inbound_cookie = fresh_secret("cookie");
    let inbound_api_key = fresh_secret("inbound-key");
    let api_token = fresh_secret("api");

    let mut watch = Watchlist::default();
    for (what, value) in [
        ("server.auth.bearer_token", &bearer_token),
        ("server.auth.basic_password", &basic_password),
        ("intake.grafana.hmac_secret", &grafana_key),
        ("server.api token", &api_token),
        ("oncall-email password", &smtp_password),
        ("badmail password (file)", &wrong_smtp_password_in_file),
        ("badmail password (env)", &wrong_smtp_password_in_env),
        ("tickets Authorization", &tickets_token),
        ("tickets X-Api-Key", &tickets_api_key),
        ("tickets url token", &tickets_url_token),
        ("pager routing key", &routing_key),
        ("unreachable webhook path token", &unreachable_path_token),
        ("presented wrong bearer", &presented_bearer),
        ("presented wrong basic password", &presented_basic_password),
        (
            "presented token of an unknown scheme",
            &presented_scheme_token,
        ),
        ("presented wrong API bearer", &presented_api_bearer),
        ("presented wrong Grafana key", &presented_grafana_key),
        ("inbound Cookie", &inbound_cookie),
        ("inbound X-Api-Key", &inbound_api_key),
    ] {
        watch.secret(what, value);
    }
    // How basic auth and SMTP AUTH PLAIN carry a password.
    let basic_user = "alertmanager";
    watch.form(
        "basic credentials (base64)",
        base64(format!("{basic_user}:{basic_password}")),
    );
    watch.form(
        "presented basic credentials (base64)",
        base64(format!("{basic_user}:{presented_basic_password}")),
    );
    for (what, password) in [
        ("oncall-email AUTH PLAIN", &smtp_password),
        ("badmail AUTH PLAIN (file)", &wrong_smtp_password_in_file),
        ("badmail AUTH PLAIN (env)", &wrong_smtp_password_in_env),
    ] {
        watch.form(what, base64(format!("\0{SMTP_TEST_USER}\0{password}")));
    }

    let smtp = SmtpServer::start_with_password(
        SmtpOptions {
            starttls: true,
            auth: true,
            ..SmtpOptions::default()
        },
        &smtp_password,
    )
    .await;
    let tickets = WebhookCapture::start().await;
    // The ticket system first fails, quoting what it got, as some APIs' errors do.
    tickets.set_response_status(500);
    tickets.set_response_body(&format!(
        "{{\"error\": \"backend down\", \"request\": {{\"authorization\": \"Bearer {tickets_token}\", \
         \"x-api-key\": \"{tickets_api_key}\", \"url\": \"/tickets?api_key={tickets_url_token}\"}}}}"
    ));
    let pager = WebhookCapture::start().await;
    let files = tempfile::tempdir().unwrap();
    let password_file = files.path().join("smtp-password");
    std::fs::write(&password_file, format!("{smtp_password}\n")).unwrap();
    let routing_key_file = files.path().join("routing-key");
    std::fs::write(&routing_key_file, &routing_key).unwrap();
    let recipes = files.path().join("recipes");
    std::fs::create_dir(&recipes).unwrap();

    let email = |name: &str, password: &str| {
        format!(
            "[escalation.channels.{name}]\nkind = \"email\"\nsmtp_url = \"smtp://localhost:{}\"\n\
             tls = \"starttls\"\nusername = \"{SMTP_TEST_USER}\"\n{password}\nca_file = {}\n\
             from = \"salve <salve@test.invalid>\"\nto = [\"oncall@test.invalid\"]\n",
            smtp.port(),
            toml_path(smtp.ca_file()),
        )
    };
    let config = format!(
        "{template}\n\
         [server.auth]\nbasic_username = \"{basic_user}\"\nbasic_password = \"{basic_password}\"\n\n\
         [server.api]\ntokens = [{{ name = \"ops\", token = \"{api_token}\", scope = \"operate\" }}]\n\n\
         [intake.grafana]\nhmac_secret = \"{grafana_key}\"\n\n\
         [recipes]\ndir = \"recipes\"\n\n\
         [escalation]\ndefault = [\"oncall-email\", \"badmail\", \"tickets\", \"pager\", \"unreachable\"]\n\n\
         {oncall}\n{badmail}\n\
         [escalation.channels.tickets]\nkind = \"webhook\"\nurl = {tickets_url}\n\
         headers = {{ X-Api-Key = \"{tickets_api_key}\" }}\n\n\
         [escalation.channels.pager]\nkind = \"webhook\"\npreset = \"pagerduty\"\nurl = {pager_url}\n\
         routing_key_file = {routing_key_file}\n\n\
         [escalation.channels.unreachable]\nkind = \"webhook\"\nurl = {unreachable_url}\ntimeout = \"2s\"\n",
        template = SalveConfig::new().build(),
        oncall = email(
            "oncall-email",
            &format!("password_file = {}", toml_path(&password_file))
        ),
        badmail = email(
            "badmail",
            &format!("password = \"{wrong_smtp_password_in_file}\"")
        ),
        tickets_url = toml_string(&tickets.url(&format!("/tickets?api_key={tickets_url_token}"))),
        pager_url = toml_string(&pager.url("/v2/enqueue")),
        routing_key_file = toml_path(&routing_key_file),
        unreachable_url = toml_string(&format!(
            "http://127.0.0.1:{}/hooks/{unreachable_path_token}",
            free_port()
        )),
    );
    let salve = SalveProcess::builder(&config)
        .recipes_dir(&recipes)
        // The widest log there is: every crate, every level.
        .env("RUST_LOG", "trace")
        .env("SALVE_SERVER__AUTH__BEARER_TOKEN", &bearer_token)
        .env(
            "SALVE_ESCALATION__CHANNELS__BADMAIL__PASSWORD",
            &wrong_smtp_password_in_env,
        )
        .env(
            "SALVE_ESCALATION__CHANNELS__TICKETS__HEADERS__AUTHORIZATION",
            &format!("Bearer {tickets_token}"),
        )
        .start()
        .await;
    let mut places = Vec::new();

    // Act 1: requests salve must refuse, each presenting a credential of its own.
    let generic = serde_json::to_vec(&json!({
        "labels": { "alertname": "SecretsViaGeneric", "instance": "web1:9100" },
        "annotations": { "summary": "posted by a script" }
    }))
    .unwrap();
    let grafana = grafana_body("SecretsViaGrafana");
    let wrong_basic = format!(
        "Basic {}",
        base64(format!("{basic_user}:{presented_basic_password}"))
    );
    let wrong_bearer = format!("Bearer {presented_bearer}");
    let right_bearer = format!("Bearer {bearer_token}");
    let unknown_scheme = format!("Token {presented_scheme_token}");
    let wrong_signature = hmac_hex(&presented_grafana_key, &grafana);
    let refused = [
        (
            "/hooks/generic",
            &generic,
            vec![("authorization", wrong_bearer.as_str())],
        ),
        (
            "/hooks/alertmanager",
            &generic,
            vec![("authorization", wrong_basic.as_str())],
        ),
        (
            "/hooks/generic",
            &generic,
            vec![("authorization", unknown_scheme.as_str())],
        ),
        (
            "/hooks/grafana",
            &grafana,
            vec![
                ("authorization", right_bearer.as_str()),
                ("x-grafana-alert-signature", wrong_signature.as_str()),
            ],
        ),
        (
            "/hooks/grafana",
            &grafana,
            vec![("cookie", inbound_cookie.as_str())],
        ),
    ];
    for (path, body, headers) in &refused {
        let (status, answer) = post_raw(&salve, path, body, headers).await;
        assert_eq!(status, 401, "{}", answer.text());
        places.push(answer);
    }
    let response = http_client()
        .get(format!("{}/api/v1/incidents", salve.base_url()))
        .header("authorization", format!("Bearer {presented_api_bearer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    places.push(answer_place("GET /api/v1/incidents (wrong bearer)", response).await);

    // Act 2: accepted webhooks (bearer with other credential-like headers, Grafana signed,
    // a real Alertmanager with basic auth) and one with a broken body.
    let cookie = format!("session={inbound_cookie}");
    let (status, answer) = post_raw(
        &salve,
        "/hooks/generic",
        &generic,
        &[
            ("authorization", &right_bearer),
            ("cookie", &cookie),
            ("x-api-key", &inbound_api_key),
            ("proxy-authorization", &wrong_basic),
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", answer.text());
    places.push(answer);
    let signature = hmac_hex(&grafana_key, &grafana);
    let (status, answer) = post_raw(
        &salve,
        "/hooks/grafana",
        &grafana,
        &[
            ("authorization", &right_bearer),
            ("x-grafana-alert-signature", &signature),
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", answer.text());
    places.push(answer);
    let (status, answer) = post_raw(
        &salve,
        "/hooks/generic",
        b"{\"labels\": {\"alertname\": ",
        &[("authorization", &right_bearer)],
    )
    .await;
    assert_eq!(status, 400, "{}", answer.text());
    places.push(answer);
    let alertmanager = Alertmanager::builder(&format!("{}/hooks/alertmanager", salve.base_url()))
        .basic_auth(basic_user, &basic_password)
        .start()
        .await;
    alertmanager
        .post_alert(
            &[
                ("alertname", "SecretsViaAlertmanager"),
                ("instance", "web2:9100"),
            ],
            &[("summary", "sent by a real Alertmanager")],
        )
        .await;

    // Act 3: three novel alerts escalate to four channels each. The ticket endpoint fails
    // first (journaled, retried), then accepts; badmail's login is refused for good.
    wait_until(
        DEADLINE,
        "a failed ticket escalation per incident",
        || async {
            let history = salve.history_json().await;
            let failed = history.iter().all(|incident| {
                !channel_events(incident, "escalation_failed", "tickets").is_empty()
            });
            (history.len() == 3 && failed).then_some(())
        },
    )
    .await;
    tickets.set_response_status(201);
    tickets.set_response_body("");
    let history = wait_until(
        DEADLINE,
        "every escalation delivered or refused",
        || async {
            let history = salve.history_json().await;
            let settled = history.iter().all(|incident| {
                ["oncall-email", "tickets", "pager"]
                    .iter()
                    .all(|channel| !channel_events(incident, "escalation_sent", channel).is_empty())
                    && !channel_events(incident, "escalation_failed", "badmail").is_empty()
                    && !channel_events(incident, "escalation_failed", "unreachable").is_empty()
            });
            (history.len() == 3 && settled).then_some(history)
        },
    )
    .await;

    // Assert, first that each path really ran and each capture holds what it should.
    let mut sources: Vec<&str> = history
        .iter()
        .map(|incident| incident["source"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["alertmanager", "generic", "grafana"]);
    for incident in &history {
        assert_eq!(incident["state"], "unmatched", "{incident:#}");
        let refused_login = channel_events(incident, "escalation_failed", "badmail");
        assert!(
            refused_login[0]["error"].as_str().unwrap().contains("535"),
            "{refused_login:#?}"
        );
        let unreachable = channel_events(incident, "escalation_failed", "unreachable");
        assert!(
            unreachable[0]["error"]
                .as_str()
                .unwrap()
                .contains("cannot connect"),
            "{unreachable:#?}"
        );
    }
    let ticket_failures: Vec<&Value> = history
        .iter()
        .flat_map(|incident| channel_events(incident, "escalation_failed", "tickets"))
        .collect();
    let quoted = ticket_failures[0]["error"].as_str().unwrap();
    assert!(
        quoted.contains("500") && quoted.contains("backend down"),
        "the ticket endpoint's answer is journaled: {quoted}"
    );

    let mails = smtp.messages();
    assert_eq!(mails.len(), 3, "one mail per incident through oncall-email");
    for (index, mail) in mails.iter().enumerate() {
        assert!(mail.tls, "mail {index} not over STARTTLS");
        assert_eq!(mail.auth_login.as_deref(), Some(SMTP_TEST_USER));
        let mut text = format!("Subject: {}\n", mail.subject);
        for (name, value) in &mail.headers {
            writeln!(text, "{name}: {value}").unwrap();
        }
        text.push_str(&mail.body);
        places.push(Place::new(format!("mail {index}"), text));
    }
    let ticket_requests = tickets.requests();
    assert!(ticket_requests.len() >= 6, "3 refused + 3 accepted tickets");
    let tickets_authorization = format!("Bearer {tickets_token}");
    for (index, request) in ticket_requests.iter().enumerate() {
        // Where the channel's credentials belong: on the request itself, not in its body.
        assert_eq!(
            request.header("authorization"),
            Some(tickets_authorization.as_str())
        );
        assert_eq!(request.header("x-api-key"), Some(tickets_api_key.as_str()));
        assert_eq!(
            request.path,
            format!("/tickets?api_key={tickets_url_token}")
        );
        places.push(request_place(
            &format!("ticket {index}"),
            request,
            &["authorization", "x-api-key"],
            None,
        ));
    }
    // The watchlist finds a secret where one legitimately is.
    assert_eq!(
        watch.found_in(tickets_authorization.as_bytes()),
        ["tickets Authorization"]
    );
    let pages = pager.requests();
    assert_eq!(pages.len(), 3, "one PagerDuty event per incident");
    for (index, page) in pages.iter().enumerate() {
        let mut body = page.json();
        assert_eq!(body["routing_key"], routing_key.as_str());
        body.as_object_mut().unwrap().remove("routing_key");
        places.push(request_place(
            &format!("page {index}"),
            page,
            &[],
            Some(body),
        ));
    }

    let api_bearer = format!("Bearer {api_token}");
    places.extend(cli_and_api_places(&salve, &api_bearer, &history).await);
    let files = salve_files(&salve);
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    for expected in ["salve.stderr.log", "salve.stdout.log", "salve.db"] {
        assert!(
            names.iter().any(|name| name.ends_with(expected)),
            "{expected} not among {names:?}"
        );
    }
    let log = files
        .iter()
        .find(|file| file.name.ends_with("salve.stderr.log"))
        .unwrap()
        .text();
    for expected in ["TRACE", "DEBUG", "webhook rejected", "escalation delivered"] {
        assert!(
            log.contains(expected),
            "the log lacks {expected:?}:\n{}",
            &log[..log.len().min(4000)]
        );
    }
    places.extend(files);

    // The watchlist does find a secret where one is (the config salve was given).
    let config_found = watch.found_in(&std::fs::read(salve.config_path()).unwrap());
    for expected in [
        "server.auth.basic_password",
        "intake.grafana.hmac_secret",
        "badmail password (file)",
        "tickets X-Api-Key",
        "tickets url token",
    ] {
        assert!(
            config_found.contains(&expected),
            "{expected}: {config_found:?}"
        );
    }

    watch.assert_nowhere(&places);
    assert!(
        quoted.contains("[redacted]"),
        "the quoted credentials are marked: {quoted}"
    );
}

/// A captured request as a place: path, headers but `legitimate` ones, and the body (or
/// `body` when the caller took a legitimate field out of it).
fn request_place(
    name: &str,
    request: &crate::support::CapturedRequest,
    legitimate: &[&str],
    body: Option<Value>,
) -> Place {
    let mut text = String::new();
    for (header, value) in &request.headers {
        if !legitimate.contains(&header.as_str()) {
            writeln!(text, "{header}: {value}").unwrap();
        }
    }
    text.push('\n');
    match body {
        Some(body) => text.push_str(&body.to_string()),
        None => text.push_str(&String::from_utf8_lossy(&request.body)),
    }
    Place::new(name, text)
}

#[tokio::test]
async fn refused_credentials_are_not_echoed_in_answers_or_json_logs() {
    // Credentials from files this time, and the JSON log format.
    let bearer_token = fresh_secret("bearer");
    let basic_password = fresh_secret("basic");
    let grafana_key = fresh_secret("hmac");
    let api_token = fresh_secret("api");
    let files = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("bearer-token", &bearer_token),
        ("basic-password", &basic_password),
        ("grafana-key", &grafana_key),
        ("api-token", &api_token),
    ] {
        std::fs::write(files.path().join(name), format!("{value}\n")).unwrap();
    }
    let path_of = |name: &str| toml_path(&files.path().join(name));
    let recipes = files.path().join("recipes");
    std::fs::create_dir(&recipes).unwrap();
    let config = format!(
        "{}\n[server.auth]\nbearer_token_file = {}\nbasic_username = \"am\"\nbasic_password_file = {}\n\n\
         [intake.grafana]\nhmac_secret_file = {}\n\n[recipes]\ndir = \"recipes\"\n\n\
         [server.api]\ntokens = [{{ name = \"ops\", token_file = {}, scope = \"operate\" }}]\n",
        SalveConfig::new()
            .build()
            .replace("[server]\n", "[server]\nlog_format = \"json\"\n"),
        path_of("bearer-token"),
        path_of("basic-password"),
        path_of("grafana-key"),
        path_of("api-token"),
    );
    let salve = SalveProcess::builder(&config)
        .recipes_dir(&recipes)
        .env("RUST_LOG", "debug")
        .start()
        .await;

    let mut watch = Watchlist::default();
    watch.secret("bearer_token_file", &bearer_token);
    watch.secret("basic_password_file", &basic_password);
    watch.secret("hmac_secret_file", &grafana_key);
    watch.secret("server.api token_file", &api_token);
    watch.form(
        "basic credentials (base64)",
        base64(format!("am:{basic_password}")),
    );
    watch.form(
        "bearer token as a basic password (base64)",
        base64(format!("am:{bearer_token}")),
    );
    let mut presented = Vec::new();
    for label in ["wrong-bearer", "wrong-basic", "wrong-scheme", "near-miss"] {
        let value = fresh_secret(label);
        watch.secret(&format!("presented {label}"), &value);
        presented.push(value);
    }
    watch.form(
        "presented basic credentials (base64)",
        base64(format!("am:{}", presented[1])),
    );
    let authorizations = [
        format!("Bearer {}", presented[0]),
        format!("Basic {}", base64(format!("am:{}", presented[1]))),
        format!("ApiKey {}", presented[2]),
        // The right token with something appended: close, still refused.
        format!("Bearer {bearer_token}{}", presented[3]),
        // The right password sent as a bearer token, the right token as a password.
        format!("Bearer {basic_password}"),
        format!("Basic {}", base64(format!("am:{bearer_token}"))),
    ];

    // Act: every endpoint that takes credentials, with each wrong one.
    let grafana = grafana_body("RefusedGrafana");
    let signature = hmac_hex(&grafana_key, &grafana);
    let mut places = Vec::new();
    for authorization in &authorizations {
        for path in ["/hooks/alertmanager", "/hooks/generic", "/hooks/grafana"] {
            let (status, answer) = post_raw(
                &salve,
                path,
                &grafana,
                &[
                    ("authorization", authorization),
                    ("x-grafana-alert-signature", &signature),
                ],
            )
            .await;
            assert_eq!(status, 401, "{}", answer.text());
            places.push(answer);
        }
        let client = http_client();
        for request in [
            client.get(format!("{}/api/v1/incidents", salve.base_url())),
            client.get(format!("{}/api/v1/incidents/1", salve.base_url())),
            client
                .post(format!("{}/api/v1/breakers/reset", salve.base_url()))
                .json(&json!({ "recipe": "r", "target": "t" })),
        ] {
            let response = request
                .header("authorization", authorization)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 401);
            places.push(answer_place("API with wrong credentials", response).await);
        }
    }
    // One accepted webhook (basic), so the log holds both outcomes.
    let right_basic = format!("Basic {}", base64(format!("am:{basic_password}")));
    let (status, answer) = post_raw(
        &salve,
        "/hooks/grafana",
        &grafana,
        &[
            ("authorization", &right_basic),
            ("x-grafana-alert-signature", &signature),
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", answer.text());
    places.push(answer);
    let history = wait_until(DEADLINE, "the accepted alert planned", || async {
        let history = salve.history_json().await;
        (history.len() == 1 && history[0]["state"] != "received").then_some(history)
    })
    .await;

    // Assert
    let bearer = format!("Bearer {api_token}");
    places.extend(cli_and_api_places(&salve, &bearer, &history).await);
    let files = salve_files(&salve);
    let log = files
        .iter()
        .find(|file| file.name.ends_with("salve.stderr.log"))
        .expect("salve's log")
        .text();
    let rejected: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "webhook rejected")
        .collect();
    assert_eq!(
        rejected.len(),
        authorizations.len() * 3,
        "one JSON log line per refused webhook:\n{log}"
    );
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "not at debug level:\n{log}"
    );
    places.extend(files);
    watch.assert_nowhere(&places);
}

/// `SALVE_*` variables for one run.
type Env = Vec<(&'static str, String)>;

/// A config with a problem next to a secret.
struct BrokenConfig {
    what: &'static str,
    toml: String,
    env: Env,
    /// Part of the message that shows the right problem was found.
    expect: &'static str,
    /// What the config (or its environment) holds that must not be printed.
    secret: String,
}

/// The case `what`: `make` writes the config (and environment) around `secret`.
fn broken(
    what: &'static str,
    make: impl FnOnce(&str) -> (String, Env),
    expect: &'static str,
    secret: String,
) -> BrokenConfig {
    let (toml, env) = make(&secret);
    BrokenConfig {
        what,
        toml,
        env,
        expect,
        secret,
    }
}

/// A fresh secret that TOML reads as an integer (18 digits: fits an i64).
fn fresh_numeric_secret() -> String {
    let hex = fresh_secret("n");
    let number = u64::from_str_radix(&hex[2..18], 16).unwrap();
    format!("1{:017}", number % 100_000_000_000_000_000)
}

#[tokio::test]
async fn config_errors_never_print_the_secret_they_are_about() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "from-a-file-0123456789\n").unwrap();
    let recipes = dir.path().join("recipes");
    std::fs::create_dir(&recipes).unwrap();
    let head = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n\n\
         [recipes]\ndir = {}\n\n",
        dir.path().join("salve.db").display(),
        toml_path(&recipes)
    );
    let email = |extra: &str| {
        format!(
            "{head}[escalation.channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://mail.example.com:587\"\n\
             from = \"salve@example.com\"\nto = [\"oncall@example.com\"]\n{extra}\n"
        )
    };
    let webhook =
        |extra: &str| format!("{head}[escalation.channels.tickets]\nkind = \"webhook\"\n{extra}\n");

    let mut cases = Vec::new();
    cases.push(broken(
        "a numeric SMTP password",
        |s| {
            (
                email(&format!("username = \"salve\"\npassword = {s}")),
                vec![],
            )
        },
        "expected a string",
        fresh_numeric_secret(),
    ));
    cases.push(broken(
        "a numeric bearer token",
        |s| (format!("{head}[server.auth]\nbearer_token = {s}\n"), vec![]),
        "expected a string",
        fresh_numeric_secret(),
    ));
    cases.push(broken(
        "a numeric webhook header value",
        |s| {
            (
                webhook(&format!(
                    "url = \"https://tickets.example.com/\"\nheaders = {{ X-Api-Key = {s} }}"
                )),
                vec![],
            )
        },
        "expected a string",
        fresh_numeric_secret(),
    ));
    cases.push(broken(
        "an SMTP URL with a password and a bad port",
        |s| {
            (
                email("").replace(
                    "smtp://mail.example.com:587",
                    &format!("smtp://salve:{s}@mail.example.com:99999"),
                ),
                vec![],
            )
        },
        "smtp_url",
        fresh_secret("smtp-url"),
    ));
    cases.push(broken(
        "an SMTP URL with a password",
        |s| {
            (
                email("").replace(
                    "smtp://mail.example.com:587",
                    &format!("smtp://salve:{s}@mail.example.com:587"),
                ),
                vec![],
            )
        },
        "credentials in the URL are not accepted",
        fresh_secret("smtp-url"),
    ));
    cases.push(broken(
        "a plain-text SMTP channel with a password",
        |s| {
            (
                email(&format!(
                    "tls = \"none\"\nusername = \"salve\"\npassword = \"{s}\""
                )),
                vec![],
            )
        },
        "clear text",
        fresh_secret("smtp"),
    ));
    cases.push(broken(
        "a webhook URL with a token and a bad port",
        |s| {
            (
                webhook(&format!(
                    "url = \"https://tickets.example.com:99999/hook?token={s}\""
                )),
                vec![],
            )
        },
        "not a valid URL",
        fresh_secret("url-token"),
    ));
    cases.push(broken(
        "a webhook URL with a token and another scheme",
        |s| {
            (
                webhook(&format!("url = \"ftp://tickets.example.com/{s}\"")),
                vec![],
            )
        },
        "expected http or https",
        fresh_secret("url-token"),
    ));
    cases.push(broken(
        "a webhook header value with a line break",
        |s| {
            (
                webhook(&format!(
                    "url = \"https://tickets.example.com/\"\n\
                     headers = {{ Authorization = \"Bearer {s}\\r\\nX-Evil: 1\" }}"
                )),
                vec![],
            )
        },
        "not a valid header value",
        fresh_secret("header"),
    ));
    cases.push(broken(
        "a webhook header from the environment with a line break",
        |s| {
            (
                webhook("url = \"https://tickets.example.com/\""),
                vec![(
                    "SALVE_ESCALATION__CHANNELS__TICKETS__HEADERS__AUTHORIZATION",
                    format!("Bearer {s}\nX-Evil: 1"),
                )],
            )
        },
        "not a valid header value",
        fresh_secret("env-header"),
    ));
    cases.push(broken(
        "a PagerDuty routing key with a body",
        |s| {
            (
                webhook(&format!(
                    "preset = \"pagerduty\"\nrouting_key = \"{s}\"\nbody = \"{{}}\""
                )),
                vec![],
            )
        },
        "body replaces the preset's body",
        fresh_secret("routing"),
    ));
    cases.push(broken(
        "a database URL with a password",
        |s| {
            (
                head.replace(
                    &format!("sqlite://{}", dir.path().join("salve.db").display()),
                    &format!("postgres://salve:{s}@db.example.com/salve"),
                ),
                vec![],
            )
        },
        "store.url",
        fresh_secret("db"),
    ));
    cases.push(broken(
        "webhook headers written as one string",
        |s| {
            (
                webhook(&format!(
                    "url = \"https://tickets.example.com/\"\nheaders = \"Authorization: Bearer {s}\""
                )),
                vec![],
            )
        },
        "invalid type: string, expected a map",
        fresh_secret("headers"),
    ));
    cases.push(broken(
        "server.auth written as the token itself",
        |s| {
            (
                head.replace("[server]\n", &format!("[server]\nauth = \"{s}\"\n")),
                vec![],
            )
        },
        "invalid type: string",
        fresh_secret("auth"),
    ));
    cases.push(broken(
        "a misspelt secret key",
        |s| {
            (
                format!("{head}[server.auth]\nbearer_tokn = \"{s}\"\n"),
                vec![],
            )
        },
        "unknown field `bearer_tokn`",
        fresh_secret("typo"),
    ));
    cases.push(broken(
        "a misspelt secret key in the environment",
        |s| {
            (
                head.clone(),
                vec![("SALVE_SERVER__AUTH__BEARER_TOKN", s.to_owned())],
            )
        },
        "bearer_tokn",
        fresh_secret("env-typo"),
    ));
    cases.push(broken(
        "a secret both inline and from a file",
        |s| {
            (
                format!(
                    "{head}[server.auth]\nbearer_token = \"{s}\"\nbearer_token_file = {}\n",
                    toml_path(&token_file)
                ),
                vec![],
            )
        },
        "both set",
        fresh_secret("both"),
    ));
    cases.push(broken(
        "a Grafana key both inline and from a file",
        |s| {
            (
                format!(
                    "{head}[intake.grafana]\nhmac_secret = \"{s}\"\nhmac_secret_file = {}\n",
                    toml_path(&token_file)
                ),
                vec![],
            )
        },
        "both set",
        fresh_secret("hmac"),
    ));
    cases.push(broken(
        "basic password without a user",
        |s| {
            (
                format!("{head}[server.auth]\nbasic_password = \"{s}\"\n"),
                vec![],
            )
        },
        "must be set together",
        fresh_secret("basic"),
    ));
    cases.push(broken(
        "an unterminated secret string",
        |s| {
            (
                format!("{head}[server.auth]\nbasic_password = \"{s}\n"),
                vec![],
            )
        },
        ":11:",
        fresh_secret("unterminated"),
    ));
    cases.push(broken(
        "an unquoted secret",
        |s| (format!("{head}[server.auth]\nbearer_token = {s}\n"), vec![]),
        ":11:",
        fresh_secret("unquoted"),
    ));
    cases.push(broken(
        "a secret from the environment and a bad listen address",
        |s| {
            (
                head.replace("127.0.0.1:0", "0.0.0.0"),
                vec![("SALVE_SERVER__AUTH__BEARER_TOKEN", s.to_owned())],
            )
        },
        "server.listen",
        fresh_secret("env-bearer"),
    ));

    let mut failures = String::new();
    for case in &cases {
        let secret = &case.secret;
        let path = dir.path().join("salve.toml");
        std::fs::write(&path, &case.toml).unwrap();
        assert!(
            contains(case.toml.as_bytes(), secret.as_bytes())
                || case
                    .env
                    .iter()
                    .any(|(_, value)| value.contains(secret.as_str())),
            "{}: the case does not hold its secret",
            case.what
        );
        let output = run_salve(dir.path(), &["check", "--config"], &path, &case.env).await;
        let printed = Place::of_output(case.what, &output).text();
        if output.status.success() || !printed.contains(case.expect) {
            writeln!(
                failures,
                "- {}: expected a failure mentioning {:?}, got {}:\n{printed}",
                case.what, case.expect, output.status
            )
            .unwrap();
        }
        let mut watch = Watchlist::default();
        watch.secret(case.what, secret);
        if !watch.found_in(printed.as_bytes()).is_empty() {
            writeln!(
                failures,
                "- {}: the secret is printed:\n{printed}",
                case.what
            )
            .unwrap();
        }
    }

    // `serve` gets past the config, secrets loaded, and fails at startup: its port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let password = fresh_secret("serve-smtp");
    let bearer = fresh_secret("serve-bearer");
    let toml = email(&format!("username = \"salve\"\npassword = \"{password}\""))
        .replace("127.0.0.1:0", &taken.local_addr().unwrap().to_string());
    let path = dir.path().join("salve.toml");
    std::fs::write(&path, toml).unwrap();
    let env = [
        ("SALVE_SERVER__AUTH__BEARER_TOKEN", bearer.clone()),
        ("RUST_LOG", "trace".to_owned()),
    ];
    let output = run_salve(dir.path(), &["serve", "--config"], &path, &env).await;
    let printed = Place::of_output("serve", &output).text();
    if output.status.success() || !printed.contains("binding") {
        writeln!(
            failures,
            "- serve: expected a bind error, got {}:\n{printed}",
            output.status
        )
        .unwrap();
    }
    let mut watch = Watchlist::default();
    watch.secret("serve SMTP password", &password);
    watch.secret("serve bearer token", &bearer);
    if !watch.found_in(printed.as_bytes()).is_empty() {
        writeln!(failures, "- serve: a secret is printed:\n{printed}").unwrap();
    }

    assert!(failures.is_empty(), "{failures}");
}

/// `salve ARGS CONFIG` in `dir` with only PATH and `env`, bounded in time.
async fn run_salve(dir: &Path, args: &[&str], config: &Path, env: &[(&str, String)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_salve"));
    command
        .args(args)
        .arg(config)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(30), command.output()).await {
        Ok(output) => output.expect("run salve"),
        Err(_) => panic!("salve {args:?} did not exit within 30 s (a broken config must stop it)"),
    }
}
