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
    Alertmanager, Channel, SMTP_TEST_USER, SalveConfig, SalveProcess, SmtpOptions, SmtpServer,
    WebhookCapture, events, fixture, free_port, http_client, toml_path, toml_string, wait_until,
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

/// Every credential of the leak test: the ones salve knows, and the ones a client presents
/// that salve must refuse. Each a fresh random value.
struct Secrets {
    bearer_token: String,
    basic_password: String,
    grafana_key: String,
    smtp_password: String,
    wrong_smtp_password_in_file: String,
    wrong_smtp_password_in_env: String,
    tickets_token: String,
    tickets_api_key: String,
    tickets_url_token: String,
    routing_key: String,
    unreachable_path_token: String,
    presented_bearer: String,
    presented_basic_password: String,
    presented_scheme_token: String,
    presented_api_bearer: String,
    presented_grafana_key: String,
    inbound_cookie: String,
    inbound_api_key: String,
    api_token: String,
}

/// The basic-auth user the leak test's Alertmanager and refused requests present.
const BASIC_USER: &str = "alertmanager";

impl Secrets {
    fn fresh() -> Secrets {
        Secrets {
            bearer_token: fresh_secret("bearer"),
            basic_password: fresh_secret("basic"),
            grafana_key: fresh_secret("hmac"),
            smtp_password: fresh_secret("smtp"),
            wrong_smtp_password_in_file: fresh_secret("smtp-file"),
            wrong_smtp_password_in_env: fresh_secret("smtp-env"),
            tickets_token: fresh_secret("tickets"),
            tickets_api_key: fresh_secret("tickets-key"),
            tickets_url_token: fresh_secret("tickets-url"),
            routing_key: fresh_secret("routing"),
            unreachable_path_token: fresh_secret("unreachable"),
            presented_bearer: fresh_secret("wrong-bearer"),
            presented_basic_password: fresh_secret("wrong-basic"),
            presented_scheme_token: fresh_secret("wrong-token"),
            presented_api_bearer: fresh_secret("wrong-api"),
            presented_grafana_key: fresh_secret("wrong-hmac"),
            inbound_cookie: fresh_secret("cookie"),
            inbound_api_key: fresh_secret("inbound-key"),
            api_token: fresh_secret("api"),
        }
    }

    /// Every secret, and the encodings basic auth and SMTP AUTH PLAIN carry a password in.
    fn watchlist(&self) -> Watchlist {
        let mut watch = Watchlist::default();
        for (what, value) in [
            ("server.auth.bearer_token", &self.bearer_token),
            ("server.auth.basic_password", &self.basic_password),
            ("intake.grafana.hmac_secret", &self.grafana_key),
            ("server.api token", &self.api_token),
            ("oncall-email password", &self.smtp_password),
            ("badmail password (file)", &self.wrong_smtp_password_in_file),
            ("badmail password (env)", &self.wrong_smtp_password_in_env),
            ("tickets Authorization", &self.tickets_token),
            ("tickets X-Api-Key", &self.tickets_api_key),
            ("tickets url token", &self.tickets_url_token),
            ("pager routing key", &self.routing_key),
            (
                "unreachable webhook path token",
                &self.unreachable_path_token,
            ),
            ("presented wrong bearer", &self.presented_bearer),
            (
                "presented wrong basic password",
                &self.presented_basic_password,
            ),
            (
                "presented token of an unknown scheme",
                &self.presented_scheme_token,
            ),
            ("presented wrong API bearer", &self.presented_api_bearer),
            ("presented wrong Grafana key", &self.presented_grafana_key),
            ("inbound Cookie", &self.inbound_cookie),
            ("inbound X-Api-Key", &self.inbound_api_key),
        ] {
            watch.secret(what, value);
        }
        watch.form(
            "basic credentials (base64)",
            base64(format!("{BASIC_USER}:{}", self.basic_password)),
        );
        watch.form(
            "presented basic credentials (base64)",
            base64(format!("{BASIC_USER}:{}", self.presented_basic_password)),
        );
        for (what, password) in [
            ("oncall-email AUTH PLAIN", &self.smtp_password),
            (
                "badmail AUTH PLAIN (file)",
                &self.wrong_smtp_password_in_file,
            ),
            ("badmail AUTH PLAIN (env)", &self.wrong_smtp_password_in_env),
        ] {
            watch.form(what, base64(format!("\0{SMTP_TEST_USER}\0{password}")));
        }
        watch
    }
}

/// What the leak test's salve escalates to, and the files its config points at.
struct Receivers {
    smtp: SmtpServer,
    tickets: WebhookCapture,
    pager: WebhookCapture,
    password_file: PathBuf,
    routing_key_file: PathBuf,
    recipes: PathBuf,
    _files: tempfile::TempDir,
}

impl Receivers {
    async fn start(secrets: &Secrets) -> Receivers {
        let smtp = SmtpServer::start_with_password(
            SmtpOptions {
                starttls: true,
                auth: true,
                ..SmtpOptions::default()
            },
            &secrets.smtp_password,
        )
        .await;
        let tickets = WebhookCapture::start().await;
        // The ticket system first fails, quoting what it got, as some APIs' errors do.
        tickets.set_response_status(500);
        tickets.set_response_body(&format!(
            "{{\"error\": \"backend down\", \"request\": {{\"authorization\": \"Bearer {}\", \
             \"x-api-key\": \"{}\", \"url\": \"/tickets?api_key={}\"}}}}",
            secrets.tickets_token, secrets.tickets_api_key, secrets.tickets_url_token
        ));
        let pager = WebhookCapture::start().await;
        let files = tempfile::tempdir().unwrap();
        let password_file = files.path().join("smtp-password");
        std::fs::write(&password_file, format!("{}\n", secrets.smtp_password)).unwrap();
        let routing_key_file = files.path().join("routing-key");
        std::fs::write(&routing_key_file, &secrets.routing_key).unwrap();
        let recipes = files.path().join("recipes");
        std::fs::create_dir(&recipes).unwrap();
        Receivers {
            smtp,
            tickets,
            pager,
            password_file,
            routing_key_file,
            recipes,
            _files: files,
        }
    }

    /// Basic auth, an API token and a Grafana key in the file; five channels on the
    /// default route (two emails, a ticket webhook, PagerDuty, one that cannot connect).
    fn config(&self, secrets: &Secrets) -> SalveConfig {
        let email = |password: (&str, String)| {
            Channel::email(&format!("smtp://localhost:{}", self.smtp.port()))
                .set("tls", "\"starttls\"")
                .set("username", &toml_string(SMTP_TEST_USER))
                .set(password.0, &password.1)
                .set("ca_file", &toml_path(self.smtp.ca_file()))
        };
        SalveConfig::new()
            .basic_auth(BASIC_USER, &secrets.basic_password)
            .api_token("ops", &secrets.api_token, "operate")
            .grafana_setting("hmac_secret", &toml_string(&secrets.grafana_key))
            .recipes_dir("recipes")
            .escalation_default(&["oncall-email", "badmail", "tickets", "pager", "unreachable"])
            .channel(
                "oncall-email",
                email(("password_file", toml_path(&self.password_file))),
            )
            .channel(
                "badmail",
                email((
                    "password",
                    toml_string(&secrets.wrong_smtp_password_in_file),
                )),
            )
            .channel(
                "tickets",
                Channel::webhook(
                    &self
                        .tickets
                        .url(&format!("/tickets?api_key={}", secrets.tickets_url_token)),
                )
                .set(
                    "headers",
                    &format!(
                        "{{ X-Api-Key = {} }}",
                        toml_string(&secrets.tickets_api_key)
                    ),
                ),
            )
            .channel(
                "pager",
                Channel::webhook(&self.pager.url("/v2/enqueue"))
                    .set("preset", "\"pagerduty\"")
                    .set("routing_key_file", &toml_path(&self.routing_key_file)),
            )
            .channel(
                "unreachable",
                Channel::webhook(&format!(
                    "http://127.0.0.1:{}/hooks/{}",
                    free_port(),
                    secrets.unreachable_path_token
                ))
                .set("timeout", "\"2s\""),
            )
    }

    /// salve on [`Receivers::config`], the bearer token and two more secrets from the
    /// environment, logging everything at trace level.
    async fn start_salve(&self, secrets: &Secrets) -> SalveProcess {
        self.config(secrets)
            .salve()
            .recipes_dir(&self.recipes)
            // The widest log there is: every crate, every level.
            .env("RUST_LOG", "trace")
            .env("SALVE_SERVER__AUTH__BEARER_TOKEN", &secrets.bearer_token)
            .env(
                "SALVE_ESCALATION__CHANNELS__BADMAIL__PASSWORD",
                &secrets.wrong_smtp_password_in_env,
            )
            .env(
                "SALVE_ESCALATION__CHANNELS__TICKETS__HEADERS__AUTHORIZATION",
                &format!("Bearer {}", secrets.tickets_token),
            )
            .start()
            .await
    }
}

/// The generic body the leak test posts.
fn secrets_generic_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "labels": { "alertname": "SecretsViaGeneric", "instance": "web1:9100" },
        "annotations": { "summary": "posted by a script" }
    }))
    .unwrap()
}

/// Act 1: requests salve must refuse, each presenting a credential of its own; their answers.
async fn post_refused(salve: &SalveProcess, secrets: &Secrets) -> Vec<Place> {
    let mut places = Vec::new();
    let generic = secrets_generic_body();
    let grafana = grafana_body("SecretsViaGrafana");
    let wrong_basic = format!(
        "Basic {}",
        base64(format!("{BASIC_USER}:{}", secrets.presented_basic_password))
    );
    let wrong_bearer = format!("Bearer {}", secrets.presented_bearer);
    let right_bearer = format!("Bearer {}", secrets.bearer_token);
    let unknown_scheme = format!("Token {}", secrets.presented_scheme_token);
    let wrong_signature = hmac_hex(&secrets.presented_grafana_key, &grafana);
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
            vec![("cookie", secrets.inbound_cookie.as_str())],
        ),
    ];
    for (path, body, headers) in &refused {
        let (status, answer) = post_raw(salve, path, body, headers).await;
        assert_eq!(status, 401, "{}", answer.text());
        places.push(answer);
    }
    let response = http_client()
        .get(format!("{}/api/v1/incidents", salve.base_url()))
        .header(
            "authorization",
            format!("Bearer {}", secrets.presented_api_bearer),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    places.push(answer_place("GET /api/v1/incidents (wrong bearer)", response).await);
    places
}

/// Act 2: accepted webhooks (bearer with other credential-like headers, Grafana signed, a
/// real Alertmanager with basic auth) and one with a broken body; their answers, and the
/// Alertmanager (it must outlive its delivery).
async fn post_accepted(salve: &SalveProcess, secrets: &Secrets) -> (Vec<Place>, Alertmanager) {
    let mut places = Vec::new();
    let generic = secrets_generic_body();
    let grafana = grafana_body("SecretsViaGrafana");
    let right_bearer = format!("Bearer {}", secrets.bearer_token);
    let wrong_basic = format!(
        "Basic {}",
        base64(format!("{BASIC_USER}:{}", secrets.presented_basic_password))
    );
    let cookie = format!("session={}", secrets.inbound_cookie);
    let (status, answer) = post_raw(
        salve,
        "/hooks/generic",
        &generic,
        &[
            ("authorization", &right_bearer),
            ("cookie", &cookie),
            ("x-api-key", &secrets.inbound_api_key),
            ("proxy-authorization", &wrong_basic),
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", answer.text());
    places.push(answer);
    let signature = hmac_hex(&secrets.grafana_key, &grafana);
    let (status, answer) = post_raw(
        salve,
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
        salve,
        "/hooks/generic",
        b"{\"labels\": {\"alertname\": ",
        &[("authorization", &right_bearer)],
    )
    .await;
    assert_eq!(status, 400, "{}", answer.text());
    places.push(answer);
    let alertmanager = Alertmanager::builder(&format!("{}/hooks/alertmanager", salve.base_url()))
        .basic_auth(BASIC_USER, &secrets.basic_password)
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
    (places, alertmanager)
}

/// Act 3: three novel alerts escalate to four channels each. The ticket endpoint fails
/// first (journaled, retried), then accepts; badmail's login is refused for good. Returns
/// the settled history.
async fn settle_escalations(salve: &SalveProcess, tickets: &WebhookCapture) -> Vec<Value> {
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
    wait_until(
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
    .await
}

/// Each path really ran: one incident per hook, every refused channel journaled with its
/// error. Returns the ticket endpoint's journaled (quoted) first failure.
fn assert_every_path_ran(history: &[Value]) -> String {
    let mut sources: Vec<&str> = history
        .iter()
        .map(|incident| incident["source"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["alertmanager", "generic", "grafana"]);
    for incident in history {
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
    let quoted = ticket_failures[0]["error"].as_str().unwrap().to_owned();
    assert!(
        quoted.contains("500") && quoted.contains("backend down"),
        "the ticket endpoint's answer is journaled: {quoted}"
    );
    quoted
}

/// What the receivers got, each checked to hold what it should, as places; the
/// channels' own credentials (where they belong) left out.
fn escalation_places(receivers: &Receivers, secrets: &Secrets, watch: &Watchlist) -> Vec<Place> {
    let mut places = Vec::new();
    let mails = receivers.smtp.messages();
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
    let ticket_requests = receivers.tickets.requests();
    assert!(ticket_requests.len() >= 6, "3 refused + 3 accepted tickets");
    let tickets_authorization = format!("Bearer {}", secrets.tickets_token);
    for (index, request) in ticket_requests.iter().enumerate() {
        // Where the channel's credentials belong: on the request itself, not in its body.
        assert_eq!(
            request.header("authorization"),
            Some(tickets_authorization.as_str())
        );
        assert_eq!(
            request.header("x-api-key"),
            Some(secrets.tickets_api_key.as_str())
        );
        assert_eq!(
            request.path,
            format!("/tickets?api_key={}", secrets.tickets_url_token)
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
    let pages = receivers.pager.requests();
    assert_eq!(pages.len(), 3, "one PagerDuty event per incident");
    for (index, page) in pages.iter().enumerate() {
        let mut body = page.json();
        assert_eq!(body["routing_key"], secrets.routing_key.as_str());
        body.as_object_mut().unwrap().remove("routing_key");
        places.push(request_place(
            &format!("page {index}"),
            page,
            &[],
            Some(body),
        ));
    }
    places
}

/// salve's own files, checked to be there and the log to hold every level and both paths.
fn checked_salve_files(salve: &SalveProcess) -> Vec<Place> {
    let files = salve_files(salve);
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
    files
}

#[tokio::test]
async fn secrets_never_reach_logs_cli_api_store_or_escalations() {
    // Arrange: a fresh value for every credential salve knows, and for those a client
    // presents that salve must refuse.
    let secrets = Secrets::fresh();
    let watch = secrets.watchlist();
    let receivers = Receivers::start(&secrets).await;
    let salve = receivers.start_salve(&secrets).await;

    // Act: refused requests, accepted ones, and the escalations they cause.
    let mut places = post_refused(&salve, &secrets).await;
    let (accepted, _alertmanager) = post_accepted(&salve, &secrets).await;
    places.extend(accepted);
    let history = settle_escalations(&salve, &receivers.tickets).await;

    // Assert, first that each path really ran and each capture holds what it should.
    let quoted = assert_every_path_ran(&history);
    places.extend(escalation_places(&receivers, &secrets, &watch));
    let api_bearer = format!("Bearer {}", secrets.api_token);
    places.extend(cli_and_api_places(&salve, &api_bearer, &history).await);
    places.extend(checked_salve_files(&salve));

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
    let salve = SalveConfig::new()
        .server_setting("log_format", "\"json\"")
        .auth_setting("bearer_token_file", &path_of("bearer-token"))
        .auth_setting("basic_username", "\"am\"")
        .auth_setting("basic_password_file", &path_of("basic-password"))
        .grafana_setting("hmac_secret_file", &path_of("grafana-key"))
        .recipes_dir("recipes")
        .api_token_file("ops", &files.path().join("api-token"), "operate")
        // `salve check` (one of the places) fails on an escalation that reaches no channel.
        .escalation_default(&["oncall"])
        .channel("oncall", Channel::log())
        .salve()
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

/// The start every broken config shares: listen, a store and recipes in `dir`; and a file
/// holding a token, for the "both inline and from a file" cases.
struct ConfigHead {
    head: String,
    store_url: String,
    token_file: PathBuf,
}

impl ConfigHead {
    fn new(dir: &Path) -> ConfigHead {
        let token_file = dir.join("token");
        std::fs::write(&token_file, "from-a-file-0123456789\n").unwrap();
        let recipes = dir.join("recipes");
        std::fs::create_dir(&recipes).unwrap();
        let store_url = format!("sqlite://{}", dir.join("salve.db").display());
        let head = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"{store_url}\"\n\n\
             [recipes]\ndir = {}\n\n",
            toml_path(&recipes)
        );
        ConfigHead {
            head,
            store_url,
            token_file,
        }
    }

    /// The head and an email channel `mail` with `extra` lines.
    fn email(&self, extra: &str) -> String {
        format!(
            "{}[escalation.channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://mail.example.com:587\"\n\
             from = \"salve@example.com\"\nto = [\"oncall@example.com\"]\n{extra}\n",
            self.head
        )
    }

    /// The head and a webhook channel `tickets` with `extra` lines.
    fn webhook(&self, extra: &str) -> String {
        format!(
            "{}[escalation.channels.tickets]\nkind = \"webhook\"\n{extra}\n",
            self.head
        )
    }
}

/// Secrets TOML reads as another type than the string they must be.
fn secrets_of_the_wrong_type(config: &ConfigHead) -> Vec<BrokenConfig> {
    let head = config.head.as_str();
    let email = |extra: &str| config.email(extra);
    let webhook = |extra: &str| config.webhook(extra);
    vec![
        broken(
            "a numeric SMTP password",
            |s| {
                (
                    email(&format!("username = \"salve\"\npassword = {s}")),
                    vec![],
                )
            },
            "expected a string",
            fresh_numeric_secret(),
        ),
        broken(
            "a numeric bearer token",
            |s| (format!("{head}[server.auth]\nbearer_token = {s}\n"), vec![]),
            "expected a string",
            fresh_numeric_secret(),
        ),
        broken(
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
        ),
    ]
}

/// Secrets inside URLs that are wrong, or not accepted with credentials.
fn secrets_in_urls(config: &ConfigHead) -> Vec<BrokenConfig> {
    let email = |extra: &str| config.email(extra);
    let webhook = |extra: &str| config.webhook(extra);
    vec![
        broken(
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
        ),
        broken(
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
        ),
        broken(
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
        ),
        broken(
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
        ),
        broken(
            "a webhook URL with a token and another scheme",
            |s| {
                (
                    webhook(&format!("url = \"ftp://tickets.example.com/{s}\"")),
                    vec![],
                )
            },
            "expected http or https",
            fresh_secret("url-token"),
        ),
    ]
}

/// Secrets in webhook headers and presets that are wrong.
fn secrets_in_headers(config: &ConfigHead) -> Vec<BrokenConfig> {
    let webhook = |extra: &str| config.webhook(extra);
    vec![
        broken(
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
        ),
        broken(
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
        ),
        broken(
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
        ),
    ]
}

/// Secrets in a store URL, misshapen or misspelt keys, both inline and from a file, broken TOML, an environment beside a bad setting.
fn secrets_in_misshapen_settings(config: &ConfigHead) -> Vec<BrokenConfig> {
    let head = config.head.as_str();
    let webhook = |extra: &str| config.webhook(extra);
    let token_file = &config.token_file;
    vec![
        broken(
            "a database URL with a password",
            |s| {
                (
                    head.replace(
                        &config.store_url,
                        &format!("postgres://salve:{s}@db.example.com/salve"),
                    ),
                    vec![],
                )
            },
            "store.url",
            fresh_secret("db"),
        ),
        broken(
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
        ),
        broken(
            "server.auth written as the token itself",
            |s| {
                (
                    head.replace("[server]\n", &format!("[server]\nauth = \"{s}\"\n")),
                    vec![],
                )
            },
            "invalid type: string",
            fresh_secret("auth"),
        ),
        broken(
            "a misspelt secret key",
            |s| {
                (
                    format!("{head}[server.auth]\nbearer_tokn = \"{s}\"\n"),
                    vec![],
                )
            },
            "unknown field `bearer_tokn`",
            fresh_secret("typo"),
        ),
        broken(
            "a misspelt secret key in the environment",
            |s| {
                (
                    head.to_owned(),
                    vec![("SALVE_SERVER__AUTH__BEARER_TOKN", s.to_owned())],
                )
            },
            "bearer_tokn",
            fresh_secret("env-typo"),
        ),
        broken(
            "a secret both inline and from a file",
            |s| {
                (
                    format!(
                        "{head}[server.auth]\nbearer_token = \"{s}\"\nbearer_token_file = {}\n",
                        toml_path(token_file)
                    ),
                    vec![],
                )
            },
            "both set",
            fresh_secret("both"),
        ),
        broken(
            "a Grafana key both inline and from a file",
            |s| {
                (
                    format!(
                        "{head}[intake.grafana]\nhmac_secret = \"{s}\"\nhmac_secret_file = {}\n",
                        toml_path(token_file)
                    ),
                    vec![],
                )
            },
            "both set",
            fresh_secret("hmac"),
        ),
        broken(
            "basic password without a user",
            |s| {
                (
                    format!("{head}[server.auth]\nbasic_password = \"{s}\"\n"),
                    vec![],
                )
            },
            "must be set together",
            fresh_secret("basic"),
        ),
        broken(
            "an unterminated secret string",
            |s| {
                (
                    format!("{head}[server.auth]\nbasic_password = \"{s}\n"),
                    vec![],
                )
            },
            ":11:",
            fresh_secret("unterminated"),
        ),
        broken(
            "an unquoted secret",
            |s| (format!("{head}[server.auth]\nbearer_token = {s}\n"), vec![]),
            ":11:",
            fresh_secret("unquoted"),
        ),
        broken(
            "a secret from the environment and a bad listen address",
            |s| {
                (
                    head.replace("127.0.0.1:0", "0.0.0.0"),
                    vec![("SALVE_SERVER__AUTH__BEARER_TOKEN", s.to_owned())],
                )
            },
            "server.listen",
            fresh_secret("env-bearer"),
        ),
    ]
}

/// Runs `salve check` on `case` in `dir`; what went wrong, if anything: it passed, did not
/// say what it should, or printed the secret.
async fn check_broken(dir: &Path, case: &BrokenConfig) -> String {
    let mut failures = String::new();
    let secret = &case.secret;
    let path = dir.join("salve.toml");
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
    let output = run_salve(dir, &["check", "--config"], &path, &case.env).await;
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
    failures
}

/// `serve` gets past the config, secrets loaded, and fails at startup: its port is taken.
/// What went wrong, if anything.
async fn serve_with_secrets_and_a_taken_port(dir: &Path, config: &ConfigHead) -> String {
    let mut failures = String::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let password = fresh_secret("serve-smtp");
    let bearer = fresh_secret("serve-bearer");
    let toml = config
        .email(&format!("username = \"salve\"\npassword = \"{password}\""))
        .replace("127.0.0.1:0", &taken.local_addr().unwrap().to_string());
    let path = dir.join("salve.toml");
    std::fs::write(&path, toml).unwrap();
    let env = [
        ("SALVE_SERVER__AUTH__BEARER_TOKEN", bearer.clone()),
        ("RUST_LOG", "trace".to_owned()),
    ];
    let output = run_salve(dir, &["serve", "--config"], &path, &env).await;
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
    failures
}

#[tokio::test]
async fn config_errors_never_print_the_secret_they_are_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigHead::new(dir.path());
    let cases = [
        secrets_of_the_wrong_type(&config),
        secrets_in_urls(&config),
        secrets_in_headers(&config),
        secrets_in_misshapen_settings(&config),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    assert_eq!(cases.len(), 22, "every case made it into the list");

    let mut failures = String::new();
    for case in &cases {
        failures.push_str(&check_broken(dir.path(), case).await);
    }
    failures.push_str(&serve_with_secrets_and_a_taken_port(dir.path(), &config).await);

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
