//! The web UI for the on-call, in a real headless Chromium against the real salve and a
//! real sshd: log in with an API token, filter the incidents, open one, reset a breaker
//! and see the reset in the journal, pause and resume; an alert's `<script>` label is text.
//! Screenshots of each page go to `target/ui-screenshots/`. And over plain HTTP: every
//! POST without the session's CSRF token is refused (403), `read` sessions cannot act,
//! the cookie is `HttpOnly; SameSite=Strict; Path=/ui`.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::webdriver::{Browser, screenshot_dir};
use crate::support::{Channel, Enforcing, SalveConfig, SshHost};

const READ_TOKEN: &str = "ui-viewer-6b1f0e2d9c8a7354";
const OPERATE_TOKEN: &str = "ui-ops-3a9d5c7e1f2b4068";
/// A label value that would run if the page did not escape it.
const SCRIPT_LABEL: &str = "<script>window.salveXss = 1</script>";

/// The pages the main browser test photographs, in order.
const SCREENSHOTS: [&str; 14] = [
    "01-login",
    "02-incidents",
    "03-incidents-filtered",
    "04-incident",
    "05-incident-commands",
    "06-breakers",
    "07-breaker-reset-journaled",
    "08-incident-script-label",
    "09-pauses",
    "10-pauses-resumed",
    "11-approvals",
    "12-gaps",
    "13-incidents-phone",
    "14-incident-phone",
];

fn ui_tokens(config: SalveConfig) -> SalveConfig {
    config
        .api_token("viewer", READ_TOKEN, "read")
        .api_token("ops", OPERATE_TOKEN, "operate")
}

#[tokio::test]
async fn an_on_call_logs_in_filters_opens_an_incident_and_resets_a_breaker_in_chromium() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host)
        // One run per window: the second Echo finds the breaker open.
        .patch_recipe(
            "echo-message.toml",
            "[escalate]",
            "[breaker]\nmax_runs = 1\nwindow = \"1h\"\n\n[escalate]",
        )
        .config(ui_tokens)
        .start()
        .await;
    let salve = &enforcing.salve;
    let echo = |message: &str| json!({ "labels": { "alertname": "Echo", "instance": "web1:9100", "message": message } });
    salve.post_generic(echo("first")).await;
    salve.wait_for_final(1, Duration::from_secs(30)).await;
    salve.post_generic(echo("second")).await;
    salve.wait_for_final(2, Duration::from_secs(30)).await;
    salve
        .post_generic(json!({ "labels": { "alertname": "NoRecipeForThis", "instance": "web1:9100", "note": SCRIPT_LABEL } }))
        .await;
    let history = salve.wait_for_final(3, Duration::from_secs(30)).await;
    let id_of = |pick: &dyn Fn(&Value) -> bool| {
        history.iter().find(|i| pick(i)).expect("incident")["id"]
            .as_i64()
            .unwrap()
    };
    let open_id = id_of(&|i| i["labels"]["message"] == "second");
    let script_id = id_of(&|i| i["labels"]["alertname"] == "NoRecipeForThis");
    let base = salve.base_url();
    // This test's own screenshots must be new (other tests write theirs beside them).
    for name in SCREENSHOTS {
        let _ = std::fs::remove_file(screenshot_dir().join(format!("{name}.png")));
    }

    let browser = Browser::start(1280, 1000).await;
    // Not logged in: the login page.
    browser.goto(&format!("{base}/ui/incidents")).await;
    browser.find("#token").await;
    assert!(browser.current_url().await.ends_with("/ui/login"));
    browser.screenshot("01-login").await;
    browser.find("#token").await.type_text(OPERATE_TOKEN).await;
    browser.find("#login").await.click().await;
    browser.find("#incidents").await;
    assert!(browser.text("nav").await.contains("ops"));
    assert_eq!(browser.find_all("#incidents tbody tr").await.len(), 3);
    browser.screenshot("02-incidents").await;

    // Filter: Echo incidents stopped by the breaker — one of the three.
    browser
        .find("#f-state option[value=breaker_open]")
        .await
        .click()
        .await;
    browser.find("#f-alertname").await.type_text("Echo").await;
    browser.click_and_load("#apply-filters").await;
    let rows = browser.find_all("#incidents tbody tr").await;
    assert_eq!(rows.len(), 1, "{}", browser.text("#incidents").await);
    let row = rows[0].text().await;
    assert!(
        row.contains("breaker_open") && row.contains("Echo"),
        "{row}"
    );
    assert!(
        row.contains("echo-message") && row.contains("web1"),
        "{row}"
    );
    browser.screenshot("03-incidents-filtered").await;

    // Open it: the timeline says why it did not run.
    browser
        .find(&format!("#incidents a[href='/ui/incidents/{open_id}']"))
        .await
        .click()
        .await;
    browser.find("#timeline").await;
    let timeline = browser.text("#timeline").await;
    assert!(timeline.contains("breaker_open"), "{timeline}");
    assert!(!timeline.contains("breaker_reset"), "{timeline}");
    browser.screenshot("04-incident").await;

    // The first Echo's timeline shows each command with its exit status and output.
    let first_id = id_of(&|i| i["labels"]["message"] == "first");
    browser
        .goto(&format!("{base}/ui/incidents/{first_id}"))
        .await;
    let timeline = browser.find("#timeline").await.text().await;
    assert!(timeline.contains("step_finished"), "{timeline}");
    assert!(timeline.contains("exit"), "{timeline}");
    browser.screenshot("05-incident-commands").await;

    // Breakers: reset the open one; the page that follows is its incident's journal.
    browser.goto(&format!("{base}/ui/breakers")).await;
    let breakers = browser.find("#breakers").await.text().await;
    assert!(
        breakers.contains("echo-message") && breakers.contains("open"),
        "{breakers}"
    );
    browser.screenshot("06-breakers").await;
    browser.find("#breakers button.reset").await.click().await;
    browser.find("#timeline").await;
    assert!(
        browser
            .current_url()
            .await
            .contains(&format!("/ui/incidents/{open_id}")),
        "{}",
        browser.current_url().await
    );
    let timeline = browser.text("#timeline").await;
    assert!(timeline.contains("breaker_reset"), "{timeline}");
    assert!(
        timeline.contains("ops"),
        "the reset names who did it: {timeline}"
    );
    browser.screenshot("07-breaker-reset-journaled").await;

    // The `<script>` label is shown as text and never ran.
    browser
        .goto(&format!("{base}/ui/incidents/{script_id}"))
        .await;
    let labels = browser.find("#labels").await.text().await;
    assert!(labels.contains(SCRIPT_LABEL), "{labels}");
    assert_eq!(
        browser.execute("return typeof window.salveXss").await,
        "undefined"
    );
    assert!(browser.find_all("main script").await.is_empty());
    browser.screenshot("08-incident-script-label").await;

    // Pause web1 for an hour, then resume it.
    browser.goto(&format!("{base}/ui/pauses")).await;
    browser
        .find("#p-host option[value=web1]")
        .await
        .click()
        .await;
    browser.find("#p-for").await.type_text("1h").await;
    browser
        .find("#p-reason")
        .await
        .type_text("deploying <web1>")
        .await;
    browser.click_and_load("form.card button").await;
    let pauses = browser.text("#pauses").await;
    assert!(
        pauses.contains("deploying <web1>") && pauses.contains("ops"),
        "{pauses}"
    );
    browser.screenshot("09-pauses").await;
    let listed = salve.run_cli(&["pause", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["pauses"][0]["created_by"], "ops", "{listed:#}");
    browser.click_and_load("#pauses tbody button").await;
    let pauses = browser.text("#pauses").await;
    assert!(pauses.contains("Nothing is paused"), "{pauses}");
    browser.screenshot("10-pauses-resumed").await;

    browser.goto(&format!("{base}/ui/approvals")).await;
    browser.find("h1").await;
    browser.screenshot("11-approvals").await;
    browser.goto(&format!("{base}/ui/gaps")).await;
    let gaps = browser.find("#gaps").await.text().await;
    assert!(gaps.contains("NoRecipeForThis"), "{gaps}");
    browser.screenshot("12-gaps").await;

    // On a phone.
    browser.resize(390, 844).await;
    browser.goto(&format!("{base}/ui/incidents")).await;
    browser.find("#incidents").await;
    browser.screenshot("13-incidents-phone").await;
    browser
        .goto(&format!("{base}/ui/incidents/{open_id}"))
        .await;
    browser.find("#timeline").await;
    browser.screenshot("14-incident-phone").await;

    // Logging out ends the session.
    browser.find("nav button").await.click().await;
    browser.find("#token").await;
    browser.goto(&format!("{base}/ui/breakers")).await;
    browser.find("#token").await;
    drop(browser);

    for name in SCREENSHOTS {
        let path = screenshot_dir().join(format!("{name}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{}", path.display());
    }
}

/// `application/x-www-form-urlencoded`, as a browser posts a form.
trait FormFields {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self;
}

impl FormFields for reqwest::RequestBuilder {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self {
        let encode = |text: &str| {
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        };
        let body: Vec<String> = fields
            .iter()
            .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
            .collect();
        self.header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.join("&"))
    }
}

/// No redirects followed: the tests look at the 303s and their cookies.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The `name=value` of a `Set-Cookie` for `name`, and the whole header.
fn set_cookie(response: &reqwest::Response, name: &str) -> (String, String) {
    let header = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie: {:?}", response.headers()))
        .to_owned();
    (header.split(';').next().unwrap().to_owned(), header)
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a csrf field") + marker.len();
    page[start..][..64].to_owned()
}

/// Logs in with `token` over HTTP; the session cookie (`name=value`) and a page's CSRF token.
async fn login(base: &str, token: &str) -> (String, String) {
    let client = client();
    let page = client.get(format!("{base}/ui/login")).send().await.unwrap();
    let (login_cookie, header) = set_cookie(&page, "salve_ui_login");
    assert!(header.contains("HttpOnly") && header.contains("SameSite=Strict"));
    let csrf = csrf_of(&page.text().await.unwrap());
    let answer = client
        .post(format!("{base}/ui/login"))
        .header(COOKIE, &login_cookie)
        .form_fields(&[("csrf", csrf.as_str()), ("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    let (session, header) = set_cookie(&answer, "salve_ui_session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(header.contains(attribute), "{header}");
    }
    let page = client
        .get(format!("{base}/ui/pauses"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    (session, csrf_of(&page.text().await.unwrap()))
}

#[tokio::test]
async fn every_ui_post_needs_the_sessions_csrf_token_and_read_sessions_cannot_act() {
    let files = tempfile::tempdir().unwrap();
    std::fs::create_dir(files.path().join("recipes")).unwrap();
    let salve = ui_tokens(
        SalveConfig::new()
            .bearer_token(crate::support::TOKEN)
            .recipes_dir("recipes")
            .escalation_default(&["oncall-email"])
            .channel("oncall-email", Channel::log())
            .channel("tickets", Channel::log()),
    )
    .start_with_shipped_recipes()
    .await;
    let base = salve.base_url();
    let client = client();

    // The login form itself: no login CSRF token, no session; a wrong token, no session.
    let answer = client
        .post(format!("{base}/ui/login"))
        .form_fields(&[("token", OPERATE_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    assert!(answer.headers().get(SET_COOKIE).is_none());
    let page = client.get(format!("{base}/ui/login")).send().await.unwrap();
    let (login_cookie, _) = set_cookie(&page, "salve_ui_login");
    let csrf = csrf_of(&page.text().await.unwrap());
    let answer = client
        .post(format!("{base}/ui/login"))
        .header(COOKIE, &login_cookie)
        .form_fields(&[("csrf", csrf.as_str()), ("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    // The webhook credential is no UI login either.
    let answer = client
        .post(format!("{base}/ui/login"))
        .header(COOKIE, &login_cookie)
        .form_fields(&[("csrf", csrf.as_str()), ("token", crate::support::TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);

    let (ops, ops_csrf) = login(base, OPERATE_TOKEN).await;
    let pause = |csrf: Option<&str>| {
        let mut fields = vec![("for", "1h"), ("reason", "csrf test")];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        client
            .post(format!("{base}/ui/pauses"))
            .header(COOKIE, &ops)
            .form_fields(&fields)
            .send()
    };
    assert_eq!(pause(None).await.unwrap().status().as_u16(), 403);
    let wrong = "0".repeat(64);
    assert_eq!(pause(Some(&wrong)).await.unwrap().status().as_u16(), 403);
    for path in [
        "/ui/breakers/reset",
        "/ui/pauses/1/resume",
        "/ui/incidents/1/approve",
        "/ui/incidents/1/deny",
        "/ui/logout",
    ] {
        let answer = client
            .post(format!("{base}{path}"))
            .header(COOKIE, &ops)
            .form_fields(&[("recipe", "echo-message"), ("key", "web1")])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{path}");
    }
    let listed = salve.run_cli(&["pause", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed["pauses"],
        json!([]),
        "a CSRF-less POST paused: {listed:#}"
    );
    // With the token it works, as `ops`.
    let answer = pause(Some(&ops_csrf)).await.unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    let listed = salve.run_cli(&["pause", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["pauses"][0]["created_by"], "ops", "{listed:#}");

    // A read session sees but may not act, even with its own CSRF token.
    let (viewer, viewer_csrf) = login(base, READ_TOKEN).await;
    let page = client
        .get(format!("{base}/ui/pauses"))
        .header(COOKIE, &viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("csrf test") && !page.contains("Resume"),
        "{page}"
    );
    let id = listed["pauses"][0]["id"].to_string();
    let answer = client
        .post(format!("{base}/ui/pauses/{id}/resume"))
        .header(COOKIE, &viewer)
        .form_fields(&[("csrf", viewer_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    // Another session's token is not this session's.
    let answer = client
        .post(format!("{base}/ui/pauses/{id}/resume"))
        .header(COOKIE, &ops)
        .form_fields(&[("csrf", viewer_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let answer = client
        .post(format!("{base}/ui/pauses/{id}/resume"))
        .header(COOKIE, &ops)
        .form_fields(&[("csrf", ops_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    let listed = salve.run_cli(&["pause", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["pauses"], json!([]), "{listed:#}");

    // Paging: 51 alerts make a full page of 50 and a link to the one older incident.
    let alerts: Vec<Value> = (0..51)
        .map(|n| json!({ "labels": { "alertname": format!("Paged{n:02}"), "instance": "web1:9100" } }))
        .collect();
    salve.post_generic(json!({ "alerts": alerts })).await;
    let page = |url: String| {
        let client = &client;
        let viewer = &viewer;
        async move {
            client
                .get(url)
                .header(COOKIE, viewer)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let first = page(format!("{base}/ui/incidents")).await;
    assert_eq!(first.matches("<td data-label=\"#\">").count(), 50);
    assert!(first.contains("Paged50") && !first.contains("Paged00"));
    let marker = "<a href=\"";
    let next = first
        .split(marker)
        .find(|rest| rest.contains("rel=\"next\""))
        .and_then(|rest| rest.split('"').next())
        .expect("a next link")
        // As a browser reads the attribute: minijinja escapes `/` and `&`.
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    let older = page(format!("{base}{next}")).await;
    assert_eq!(older.matches("<td data-label=\"#\">").count(), 1, "{older}");
    assert!(older.contains("Paged00"));
    // And the filter: one alertname, or none in the future.
    let one = page(format!("{base}/ui/incidents?alertname=Paged07")).await;
    assert_eq!(one.matches("<td data-label=\"#\">").count(), 1);
    let none = page(format!("{base}/ui/incidents?since=2999-01-01T00:00:00Z")).await;
    assert!(none.contains("No incident matches"), "{none}");

    // No session: every page sends to the login page.
    let answer = client
        .get(format!("{base}/ui/incidents"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    assert_eq!(answer.headers()[LOCATION], "/ui/login");
}

/// The loopback default (no credential of any kind): the UI follows the API's rule — open
/// to requests addressed to a loopback name, 421 for any other `Host` — and still needs
/// the session's CSRF token on every POST.
#[tokio::test]
async fn without_credentials_the_ui_is_open_on_loopback_names_only() {
    let salve = SalveConfig::new()
        .recipes_dir("recipes")
        .escalation_default(&["oncall-email"])
        .channel("oncall-email", Channel::log())
        .channel("tickets", Channel::log())
        .start_with_shipped_recipes()
        .await;
    let base = salve.base_url();
    let client = client();
    for path in ["/ui/login", "/ui/incidents"] {
        let answer = client
            .get(format!("{base}{path}"))
            .header(reqwest::header::HOST, "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 421, "{path}");
    }
    let page = client.get(format!("{base}/ui/login")).send().await.unwrap();
    let (login_cookie, _) = set_cookie(&page, "salve_ui_login");
    let page = page.text().await.unwrap();
    assert!(!page.contains("name=\"token\""), "no token to ask: {page}");
    let answer = client
        .post(format!("{base}/ui/login"))
        .header(COOKIE, &login_cookie)
        .form_fields(&[("csrf", &csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303);
    let (session, _) = set_cookie(&answer, "salve_ui_session");
    let page = client
        .get(format!("{base}/ui/pauses"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("anonymous (loopback"), "{page}");
    let pause = |csrf: &str| {
        client
            .post(format!("{base}/ui/pauses"))
            .header(COOKIE, &session)
            .form_fields(&[("csrf", csrf), ("for", "1h"), ("reason", "open default")])
            .send()
    };
    assert_eq!(pause("").await.unwrap().status().as_u16(), 403);
    assert_eq!(pause(&csrf_of(&page)).await.unwrap().status().as_u16(), 303);
    let listed = salve.run_cli(&["pause", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let by = listed["pauses"][0]["created_by"]
        .as_str()
        .unwrap_or_default();
    assert!(by.starts_with("anonymous (loopback"), "{listed:#}");
}

/// Approvals waiting, in Chromium: the shipped service-restart recipe in approve mode; one
/// plan approved and one denied (with a reason) from the approvals page, each journaled
/// with the token's name.
#[tokio::test]
async fn an_on_call_approves_and_denies_waiting_plans_in_chromium() {
    let host = SshHost::start().await;
    let enforcing = Enforcing::on(&host)
        .patch_recipe(
            "service-restart.toml",
            "mode = \"enforce\"",
            "mode = \"approve\"",
        )
        .config(|config| {
            ui_tokens(config)
                .approval_setting("key", "\"ui-approval-test-key\"")
                .approval_setting("timeout", "\"1h\"")
        })
        .start()
        .await;
    let salve = &enforcing.salve;
    let port = crate::support::free_port();
    salve
        .post_generic(json!({ "alerts": [
            crate::support::service_down_on_web1("shop-api", port),
            crate::support::service_down_on_web1("broken-api", port),
        ] }))
        .await;
    let waiting = crate::support::wait_until(
        Duration::from_secs(60),
        "two plans awaiting approval",
        || async {
            let history = salve.history_json().await;
            let ids: Vec<i64> = history
                .iter()
                .filter(|i| i["state"] == "awaiting_approval")
                .filter_map(|i| i["id"].as_i64())
                .collect();
            (ids.len() == 2).then_some(ids)
        },
    )
    .await;
    let base = salve.base_url();

    let browser = Browser::start(1280, 1000).await;
    browser.goto(&format!("{base}/ui/login")).await;
    browser.find("#token").await.type_text(OPERATE_TOKEN).await;
    browser.find("#login").await.click().await;
    browser.find("#incidents").await;
    browser.goto(&format!("{base}/ui/approvals")).await;
    for id in &waiting {
        browser.find(&format!("#a-{id}")).await;
    }
    let page = browser.text("main").await;
    assert!(page.contains("service-restart"), "{page}");
    browser.screenshot("15-approvals-waiting").await;

    let (approve_id, deny_id) = (waiting[0], waiting[1]);
    browser
        .find(&format!(
            "form[action='/ui/incidents/{approve_id}/approve'] button"
        ))
        .await
        .click()
        .await;
    browser.find("#timeline").await;
    let timeline = browser.text("#timeline").await;
    assert!(
        timeline.contains("approved") && timeline.contains("ops"),
        "{timeline}"
    );
    browser.screenshot("16-approved").await;

    browser.goto(&format!("{base}/ui/approvals")).await;
    browser
        .find(&format!("#r-{deny_id}"))
        .await
        .type_text("not during the sale")
        .await;
    browser
        .find(&format!(
            "form[action='/ui/incidents/{deny_id}/deny'] button"
        ))
        .await
        .click()
        .await;
    browser.find("#timeline").await;
    let timeline = browser.text("#timeline").await;
    assert!(
        timeline.contains("denied") && timeline.contains("not during the sale"),
        "{timeline}"
    );
    browser.screenshot("17-denied").await;
    drop(browser);

    let history = salve.history_json().await;
    let denied = history.iter().find(|i| i["id"] == deny_id).unwrap();
    assert_ne!(denied["state"], "awaiting_approval", "{denied:#}");
    let approved = history.iter().find(|i| i["id"] == approve_id).unwrap();
    assert_ne!(approved["state"], "awaiting_approval", "{approved:#}");
}
