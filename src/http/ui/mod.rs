//! The web UI for the on-call at `/ui/`: server-rendered pages (minijinja templates under
//! `templates/ui/`, HTML-escaped by the engine) over the same store calls as the API.
//! Login exchanges an API token for a cookie session (`read` sees, `operate` acts); every
//! POST carries the session's CSRF token. No JavaScript; a GET never changes anything.

use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::pauses::{PauseRequest, listing};
use crate::config::ApiScope;
use crate::incident::{IncidentId, State};
use crate::store::{
    ApprovalDecision, ApprovalOutcome, BreakerResetOutcome, IncidentFilter, StoreError,
};

pub mod session;
mod templates;

use session::{LOGIN_COOKIE, SESSION_COOKIE, SESSION_LIFETIME, Session, Sessions};

/// Incidents per page of the list.
const PAGE: usize = 50;
/// `gaps` shows this many alertnames.
const GAPS: usize = 200;

/// Registers `/ui/…`. `sessions` is shared by every worker.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/ui", web::get().to(home))
        .route("/ui/", web::get().to(home))
        .route("/ui/salve.css", web::get().to(stylesheet))
        .route("/ui/login", web::get().to(login_page))
        .route("/ui/login", web::post().to(login))
        .route("/ui/logout", web::post().to(logout))
        .route("/ui/incidents", web::get().to(incidents))
        .route("/ui/incidents/{id}", web::get().to(incident))
        .route("/ui/incidents/{id}/approve", web::post().to(approve))
        .route("/ui/incidents/{id}/deny", web::post().to(deny))
        .route("/ui/breakers", web::get().to(breakers))
        .route("/ui/breakers/reset", web::post().to(reset_breaker))
        .route("/ui/pauses", web::get().to(pauses))
        .route("/ui/pauses", web::post().to(create_pause))
        .route("/ui/pauses/{id}/resume", web::post().to(resume_pause))
        .route("/ui/approvals", web::get().to(approvals))
        .route("/ui/gaps", web::get().to(gaps));
}

/// A serde value for a template.
fn ser<T: Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(body)
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A page in the layout, for `session` (its name, scope and CSRF token go to the nav).
fn page(
    status: StatusCode,
    template: &str,
    session: Option<&Session>,
    context: minijinja::Value,
) -> HttpResponse {
    let merged = context! {
        me => session.map(|s| s.by.clone()),
        may_operate => session.is_some_and(Session::may_operate),
        csrf => session.map(|s| s.csrf.clone()),
        ..context
    };
    match templates::render(template, merged) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, template, "web UI template failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>salve</title><p>This page failed to render; see salve's log.</p>"
                    .into(),
            )
        }
    }
}

fn message(status: StatusCode, session: Option<&Session>, title: &str, text: &str) -> HttpResponse {
    page(
        status,
        "message.html",
        session,
        context! { title => title, text => text },
    )
}

fn store_down(session: &Session, e: StoreError) -> HttpResponse {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(session),
        "The journal did not answer",
        &e.to_string(),
    )
}

fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.cookie(name).map(|c| c.value().to_owned())
}

fn secure(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// The caller's session, or the answer to give instead (to the login page).
fn session_of(req: &HttpRequest, sessions: &Sessions) -> Result<Session, Box<HttpResponse>> {
    cookie_value(req, SESSION_COOKIE)
        .and_then(|id| sessions.get(&id, Utc::now()))
        .ok_or_else(|| Box::new(see_other("/ui/login")))
}

/// A POST's form fields, percent-decoded (`application/x-www-form-urlencoded`).
fn form(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    std::str::from_utf8(body)
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// A form is a few short fields: a token, a reason, names.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A POST's form, read within `server.body_timeout` and `MAX_FORM_BYTES` (as the API reads
/// its bodies), or the refusal.
async fn read_form(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<BTreeMap<String, String>, HttpResponse> {
    super::hooks::read_body_within(req.headers(), body, MAX_FORM_BYTES, state.body_timeout)
        .await
        .map(|bytes| form(&bytes))
        .map_err(|rejection| rejection.response())
}

/// The session of a POST whose form carries its CSRF token, and that may `needed`; else
/// 403 (or the login page without a session).
fn acting_session(
    req: &HttpRequest,
    sessions: &Sessions,
    fields: &BTreeMap<String, String>,
    needed: ApiScope,
) -> Result<Session, Box<HttpResponse>> {
    let session = session_of(req, sessions)?;
    let presented = fields.get("csrf").map(String::as_str).unwrap_or_default();
    if !session::same_secret(presented, &session.csrf) {
        return Err(Box::new(message(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Refused",
            "This form carried no valid CSRF token. Reload the page and try again.",
        )));
    }
    if session.scope < needed {
        return Err(Box::new(message(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Refused",
            &format!(
                "Token {:?} has scope {:?}; this needs {:?}.",
                session.by,
                session.scope.as_str(),
                needed.as_str()
            ),
        )));
    }
    Ok(session)
}

fn text_field(fields: &BTreeMap<String, String>, name: &str) -> Option<String> {
    fields
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

async fn home(req: HttpRequest, sessions: web::Data<Sessions>) -> HttpResponse {
    match session_of(&req, &sessions) {
        Ok(_) => see_other("/ui/incidents"),
        Err(to_login) => *to_login,
    }
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(templates::STYLESHEET)
}

/// The login form, with a fresh login CSRF token in its own cookie.
async fn login_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    login_form(&req, &state, StatusCode::OK, None)
}

fn login_form(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
) -> HttpResponse {
    let Some(token) = session::random_hex() else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            "<!doctype html><title>salve</title><p>No randomness for a session.</p>".into(),
        );
    };
    let mut response = page(
        status,
        "login.html",
        None,
        context! {
            login_csrf => token.clone(),
            open => state.api.open,
            no_tokens => !state.api.open && state.api.tokens.is_empty(),
            error => error,
        },
    );
    let set = session::cookie(LOGIN_COOKIE, &token, 600, secure(req));
    if let Ok(value) = header::HeaderValue::from_str(&set) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /ui/login` with `token` (and the login CSRF token): the same check as the API's
/// bearer token; the session gets the token's name and scope. With the open loopback
/// default (no credential configured) no token is asked and the session may operate, as
/// the API may.
async fn login(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let fields = match read_form(&req, body, &state).await {
        Ok(fields) => fields,
        Err(rejected) => return rejected,
    };
    let expected = cookie_value(&req, LOGIN_COOKIE).unwrap_or_default();
    let presented = fields.get("csrf").map(String::as_str).unwrap_or_default();
    if !session::same_secret(presented, &expected) {
        return message(
            StatusCode::FORBIDDEN,
            None,
            "Refused",
            "The login form carried no valid CSRF token. Reload the login page and try again.",
        );
    }
    let (by, scope) = if state.api.open {
        (super::auth::ANONYMOUS.to_owned(), ApiScope::Operate)
    } else {
        let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
        let bearer = format!("Bearer {token}");
        match state.api.authorize(Some(&bearer), ApiScope::Read) {
            Ok(name) => {
                let scope = if state
                    .api
                    .authorize(Some(&bearer), ApiScope::Operate)
                    .is_ok()
                {
                    ApiScope::Operate
                } else {
                    ApiScope::Read
                };
                (name, scope)
            }
            Err(denied) => {
                tracing::warn!(reason = %denied.reason(ApiScope::Read), "web UI login refused");
                return login_form(
                    &req,
                    &state,
                    StatusCode::UNAUTHORIZED,
                    Some(&denied.reason(ApiScope::Read)),
                );
            }
        }
    };
    let Some(id) = sessions.create(by.clone(), scope, Utc::now()) else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "No session",
            "The kernel gave no randomness for a session id.",
        );
    };
    tracing::info!(by = %by, scope = scope.as_str(), "web UI login");
    let mut response = see_other("/ui/incidents");
    let headers = response.headers_mut();
    for set in [
        session::cookie(
            SESSION_COOKIE,
            &id,
            SESSION_LIFETIME.num_seconds(),
            secure(&req),
        ),
        session::cookie(LOGIN_COOKIE, "", 0, secure(&req)),
    ] {
        if let Ok(value) = header::HeaderValue::from_str(&set) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn logout(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let fields = match read_form(&req, body, &state).await {
        Ok(fields) => fields,
        Err(rejected) => return rejected,
    };
    if let Err(refused) = acting_session(&req, &sessions, &fields, ApiScope::Read) {
        return *refused;
    }
    if let Some(id) = cookie_value(&req, SESSION_COOKIE) {
        sessions.remove(&id);
    }
    let mut response = see_other("/ui/login");
    if let Ok(value) =
        header::HeaderValue::from_str(&session::cookie(SESSION_COOKIE, "", 0, secure(&req)))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The incidents list's filters, as the form sends them (empty = any).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct IncidentQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    recipe: String,
    /// `1h`, `7d` (that long ago) or an RFC 3339 time.
    #[serde(default)]
    since: String,
    before: Option<i64>,
}

impl IncidentQuery {
    /// The store filter, or what is wrong with the form.
    fn filter(&self, now: DateTime<Utc>) -> Result<IncidentFilter, String> {
        let some = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        let state = match some(&self.state) {
            None => None,
            Some(text) => {
                Some(State::parse(&text).ok_or_else(|| format!("no state is called {text:?}"))?)
            }
        };
        let since = match some(&self.since) {
            None => None,
            Some(text) => Some(match DateTime::parse_from_rfc3339(&text) {
                Ok(time) => time.to_utc(),
                Err(_) => {
                    let ago = crate::duration::parse(&text).map_err(|_| {
                        format!("since {text:?}: give a duration (1h, 7d) or an RFC 3339 time")
                    })?;
                    chrono::Duration::from_std(ago)
                        .ok()
                        .and_then(|ago| now.checked_sub_signed(ago))
                        .ok_or_else(|| format!("since {text:?} is too long ago"))?
                }
            }),
        };
        Ok(IncidentFilter {
            state,
            alertname: some(&self.alertname),
            host: some(&self.host),
            recipe: some(&self.recipe),
            since,
            before: self.before.map(IncidentId),
        })
    }

    /// This query's URL for the page of incidents below `before`.
    fn page_url(&self, before: i64) -> String {
        let encode = |text: &str| {
            percent_encoding::utf8_percent_encode(text.trim(), percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        };
        format!(
            "/ui/incidents?state={}&alertname={}&host={}&recipe={}&since={}&before={before}",
            encode(&self.state),
            encode(&self.alertname),
            encode(&self.host),
            encode(&self.recipe),
            encode(&self.since),
        )
    }
}

/// One row of the list: what an on-call scans for.
#[derive(Serialize)]
struct IncidentRow {
    id: i64,
    state: &'static str,
    alertname: Option<String>,
    host: Option<String>,
    recipe: Option<String>,
    first_seen: String,
    alert_status: String,
    labels: BTreeMap<String, String>,
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

async fn incidents(
    req: HttpRequest,
    query: web::Query<IncidentQuery>,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let session = match session_of(&req, &sessions) {
        Ok(session) => session,
        Err(to_login) => return *to_login,
    };
    let states: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
    let filter = match query.filter(Utc::now()) {
        Ok(filter) => filter,
        Err(problem) => {
            return page(
                StatusCode::BAD_REQUEST,
                "incidents.html",
                Some(&session),
                context! { query => ser(&*query), states => states, rows => Vec::<Value>::new(), problem => problem },
            );
        }
    };
    let found = match state.store.incidents_matching(&filter, PAGE + 1).await {
        Ok(found) => found,
        Err(e) => return store_down(&session, e),
    };
    let more = found.len() > PAGE;
    let rows: Vec<IncidentRow> = found
        .into_iter()
        .take(PAGE)
        .map(|incident| IncidentRow {
            id: incident.id.0,
            state: incident.state.as_str(),
            host: incident
                .plan
                .as_ref()
                .and_then(|plan| plan.target.as_ref())
                .map(|target| target.name.clone()),
            recipe: incident.plan.as_ref().and_then(|plan| plan.recipe.clone()),
            alertname: incident.alertname,
            first_seen: when(incident.first_seen),
            alert_status: format!("{:?}", incident.alert_status).to_lowercase(),
            labels: incident.labels,
        })
        .collect();
    let next = more
        .then(|| rows.last().map(|row| query.page_url(row.id)))
        .flatten();
    page(
        StatusCode::OK,
        "incidents.html",
        Some(&session),
        context! { query => ser(&*query), states => states, rows => ser(&rows), next => next, paged => query.before.is_some() },
    )
}

/// One journal entry as the timeline shows it: its kind and each detail field as text.
#[derive(Serialize)]
struct TimelineEntry {
    at: String,
    kind: String,
    fields: Vec<(String, String)>,
}

fn field_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "—".into(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

async fn incident(
    req: HttpRequest,
    path: web::Path<i64>,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let session = match session_of(&req, &sessions) {
        Ok(session) => session,
        Err(to_login) => return *to_login,
    };
    let id = IncidentId(path.into_inner());
    let detail = match state.store.incident(id).await {
        Ok(Some(detail)) => detail,
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                Some(&session),
                "No such incident",
                &format!("There is no incident {}.", id.0),
            );
        }
        Err(e) => return store_down(&session, e),
    };
    let approval = if detail.incident.state == State::AwaitingApproval {
        state.store.approval(id).await.ok().flatten()
    } else {
        None
    };
    let timeline: Vec<TimelineEntry> = detail
        .events
        .iter()
        .map(|entry| {
            let (kind, detail) = entry.event.to_row();
            let fields = match detail {
                serde_json::Value::Object(map) => map
                    .iter()
                    .map(|(key, value)| (key.clone(), field_text(value)))
                    .collect(),
                serde_json::Value::Null => Vec::new(),
                other => vec![("detail".into(), field_text(&other))],
            };
            TimelineEntry {
                at: when(entry.at),
                kind: kind.to_string(),
                fields,
            }
        })
        .collect();
    let incident = &detail.incident;
    let plan = incident.plan.as_ref().map(|plan| {
        context! {
            outcome => format!("{:?}", plan.outcome).to_lowercase(),
            recipe => plan.recipe.clone(),
            reason => plan.reason.clone(),
            mode => format!("{:?}", plan.mode).to_lowercase(),
            target => plan.target.as_ref().map(|t| t.name.clone()),
            sudo => plan.sudo,
            params => plan.params.clone(),
            commands => plan.commands.clone(),
            escalate => plan.escalate.clone(),
        }
    });
    page(
        StatusCode::OK,
        "incident.html",
        Some(&session),
        context! {
            id => incident.id.0,
            state => incident.state.as_str(),
            reason => incident.reason.clone(),
            alertname => incident.alertname.clone(),
            alert_status => format!("{:?}", incident.alert_status).to_lowercase(),
            source => format!("{:?}", incident.source).to_lowercase(),
            first_seen => when(incident.first_seen),
            last_seen => when(incident.last_seen),
            starts_at => when(incident.starts_at),
            receive_count => incident.receive_count,
            labels => incident.labels.clone(),
            annotations => incident.annotations.clone(),
            plan => plan,
            awaiting => approval.filter(|a| a.decision.is_none()).map(|a| when(a.expires_at)),
            timeline => ser(&timeline),
        },
    )
}

async fn breakers(
    req: HttpRequest,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let session = match session_of(&req, &sessions) {
        Ok(session) => session,
        Err(to_login) => return *to_login,
    };
    match state.store.breakers().await {
        Ok(breakers) => {
            let rows: Vec<_> = breakers
                .into_iter()
                .map(|b| {
                    context! {
                        recipe => b.recipe, key => b.key, target => b.target,
                        runs => b.runs_in_window, max_runs => b.max_runs,
                        window_seconds => b.window_seconds, open => b.open,
                        last_run => when(b.last_run), reset_at => b.reset_at.map(when),
                    }
                })
                .collect();
            page(
                StatusCode::OK,
                "breakers.html",
                Some(&session),
                context! { breakers => rows },
            )
        }
        Err(e) => store_down(&session, e),
    }
}

/// `POST /ui/breakers/reset` (`recipe`, `key`): as `POST /api/v1/breakers/reset`; then
/// shows the incident whose journal records the reset.
async fn reset_breaker(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let fields = match read_form(&req, body, &state).await {
        Ok(fields) => fields,
        Err(rejected) => return rejected,
    };
    let session = match acting_session(&req, &sessions, &fields, ApiScope::Operate) {
        Ok(session) => session,
        Err(refused) => return *refused,
    };
    let (Some(recipe), Some(key)) = (text_field(&fields, "recipe"), text_field(&fields, "key"))
    else {
        return message(
            StatusCode::BAD_REQUEST,
            Some(&session),
            "Nothing to reset",
            "A reset names a recipe and a breaker key.",
        );
    };
    match state.store.reset_breaker(&recipe, &key, &session.by).await {
        Ok(BreakerResetOutcome::Reset(done)) => {
            tracing::info!(recipe = %recipe, key = %key, by = %session.by, incident = done.incident.0, "breaker reset through the web UI");
            see_other(&format!("/ui/incidents/{}#journal-end", done.incident.0))
        }
        Ok(BreakerResetOutcome::UnknownRecipe | BreakerResetOutcome::UnknownKey { .. }) => message(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such breaker",
            "This recipe never ran under this breaker key; nothing to reset.",
        ),
        Err(e) => store_down(&session, e),
    }
}

async fn pauses(
    req: HttpRequest,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let session = match session_of(&req, &sessions) {
        Ok(session) => session,
        Err(to_login) => return *to_login,
    };
    pauses_page(&state, &session, StatusCode::OK, None).await
}

async fn pauses_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    problem: Option<String>,
) -> HttpResponse {
    match listing(state.store.as_ref(), &state.pauses, Utc::now()).await {
        Ok(listing) => {
            let rows: Vec<_> = listing
                .pauses
                .into_iter()
                .map(|p| {
                    context! {
                        id => p.id, recipe => p.recipe, host => p.host, reason => p.reason,
                        silent => p.silent, created_by => p.created_by,
                        created_at => when(p.created_at), until => p.until.map(when),
                    }
                })
                .collect();
            page(
                status,
                "pauses.html",
                Some(session),
                context! {
                    pauses => rows,
                    maintenance => ser(&listing.maintenance),
                    hosts => state.pauses.host_names(),
                    problem => problem,
                },
            )
        }
        Err(e) => store_down(session, e),
    }
}

/// `POST /ui/pauses` (`recipe`, `host`, `for`, `until_resumed`, `reason`, `silent`): the
/// same checks as `POST /api/v1/pauses`.
async fn create_pause(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let fields = match read_form(&req, body, &state).await {
        Ok(fields) => fields,
        Err(rejected) => return rejected,
    };
    let session = match acting_session(&req, &sessions, &fields, ApiScope::Operate) {
        Ok(session) => session,
        Err(refused) => return *refused,
    };
    let until_resumed = fields.contains_key("until_resumed");
    let request = PauseRequest {
        recipe: text_field(&fields, "recipe"),
        host: text_field(&fields, "host"),
        for_: text_field(&fields, "for").filter(|_| !until_resumed),
        until_resumed,
        reason: fields.get("reason").cloned().unwrap_or_default(),
        silent: fields.contains_key("silent"),
    };
    let pause = match request.to_new_pause(&state.pauses, &session.by, Utc::now()) {
        Ok(pause) => pause,
        Err(problem) => {
            return pauses_page(&state, &session, StatusCode::BAD_REQUEST, Some(problem)).await;
        }
    };
    match state.store.create_pause(pause).await {
        Ok(pause) => {
            tracing::warn!(pause = pause.id, recipe = ?pause.recipe, host = ?pause.host, by = %session.by, "paused through the web UI");
            see_other("/ui/pauses")
        }
        Err(e) => store_down(&session, e),
    }
}

async fn resume_pause(
    req: HttpRequest,
    path: web::Path<i64>,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let fields = match read_form(&req, body, &state).await {
        Ok(fields) => fields,
        Err(rejected) => return rejected,
    };
    let session = match acting_session(&req, &sessions, &fields, ApiScope::Operate) {
        Ok(session) => session,
        Err(refused) => return *refused,
    };
    let id = path.into_inner();
    match state.store.resume_pauses(Some(id), &session.by).await {
        Ok(resumed) if !resumed.is_empty() => {
            tracing::warn!(pause = id, by = %session.by, "pause resumed through the web UI");
            see_other("/ui/pauses")
        }
        Ok(_) => message(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such pause",
            "No active pause has this id; it may have ended already.",
        ),
        Err(e) => store_down(&session, e),
    }
}

async fn approvals(
    req: HttpRequest,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let session = match session_of(&req, &sessions) {
        Ok(session) => session,
        Err(to_login) => return *to_login,
    };
    let filter = IncidentFilter {
        state: Some(State::AwaitingApproval),
        ..IncidentFilter::default()
    };
    let waiting = match state.store.incidents_matching(&filter, 200).await {
        Ok(waiting) => waiting,
        Err(e) => return store_down(&session, e),
    };
    let mut rows = Vec::with_capacity(waiting.len());
    for incident in waiting {
        let expires = match state.store.approval(incident.id).await {
            Ok(request) => request.map(|r| when(r.expires_at)),
            Err(e) => return store_down(&session, e),
        };
        let plan = incident.plan.as_ref();
        rows.push(context! {
            id => incident.id.0,
            alertname => incident.alertname.clone(),
            recipe => plan.and_then(|p| p.recipe.clone()),
            host => plan.and_then(|p| p.target.as_ref()).map(|t| t.name.clone()),
            commands => plan.map(|p| p.commands.clone()).unwrap_or_default(),
            expires => expires,
        });
    }
    page(
        StatusCode::OK,
        "approvals.html",
        Some(&session),
        context! { approvals => rows },
    )
}

async fn approve(
    req: HttpRequest,
    path: web::Path<i64>,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    decide(req, path.into_inner(), body, state, sessions, false).await
}

async fn deny(
    req: HttpRequest,
    path: web::Path<i64>,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    decide(req, path.into_inner(), body, state, sessions, true).await
}

/// Approve or deny through the store as `decide_approval` (no link proof: the plan the
/// incident holds now), as the API does; then shows the incident.
async fn decide(
    req: HttpRequest,
    id: i64,
    body: web::Payload,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
    denied: bool,
) -> HttpResponse {
    let fields = match read_form(&req, body, &state).await {
        Ok(fields) => fields,
        Err(rejected) => return rejected,
    };
    let session = match acting_session(&req, &sessions, &fields, ApiScope::Operate) {
        Ok(session) => session,
        Err(refused) => return *refused,
    };
    let decision = if denied {
        let reason = text_field(&fields, "reason");
        ApprovalDecision::deny(reason.as_deref(), "denied in the web UI (no reason given)")
    } else {
        ApprovalDecision::Approve
    };
    match state
        .store
        .decide_approval(IncidentId(id), decision, &session.by, None)
        .await
    {
        Ok(ApprovalOutcome::Decided { .. }) => {
            tracing::info!(incident = id, by = %session.by, denied, "approval decided through the web UI");
            state.wake.notify_one();
            see_other(&format!("/ui/incidents/{id}"))
        }
        Ok(ApprovalOutcome::Refused(why)) => message(
            StatusCode::CONFLICT,
            Some(&session),
            "Not decided",
            &why.to_string(),
        ),
        Err(e) => store_down(&session, e),
    }
}

async fn gaps(
    req: HttpRequest,
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    let session = match session_of(&req, &sessions) {
        Ok(session) => session,
        Err(to_login) => return *to_login,
    };
    match state.store.gaps(GAPS).await {
        Ok(gaps) => {
            let rows: Vec<_> = gaps
                .into_iter()
                .map(|g| {
                    let link = format!(
                        "/ui/incidents?alertname={}",
                        percent_encoding::utf8_percent_encode(
                            &g.alertname,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    );
                    context! {
                        link => link,
                        alertname => g.alertname, incidents => g.incidents,
                        unmatched => g.unmatched, escalated => g.escalated,
                        last_seen => when(g.last_seen), last_reason => g.last_reason,
                    }
                })
                .collect();
            page(
                StatusCode::OK,
                "gaps.html",
                Some(&session),
                context! { gaps => rows },
            )
        }
        Err(e) => store_down(&session, e),
    }
}
