//! The pauses API: list what is paused now (store pauses and open maintenance windows),
//! pause (`operate`), resume (`operate`). Every change is recorded in the store with the
//! token's name; the remediator's pause gate reads the same rows. Also the checks and the
//! listing `salve pause` shares, so the CLI and the API accept and show the same things.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::AppState;
use super::{authorized, refusal};
use crate::config::ApiScope;
use crate::maintenance::{MaintenanceWindow, WindowView};
use crate::store::{NewPause, Pause, Store, StoreError};

/// A pause request needs no more.
const MAX_PAUSE_BODY: usize = 8 * 1024;

/// What pausing is checked against and listed with, beyond the store.
#[derive(Debug, Clone, Default)]
pub struct PauseContext {
    /// `[[maintenance]]`, validated.
    pub windows: Vec<MaintenanceWindow>,
    /// Inventory names: a pause may only name a host salve knows. Read from `live`
    /// instead when set (a serving salve: the inventory a reload brought in).
    pub hosts: Vec<String>,
    pub live: Option<crate::reload::Live>,
}

impl PauseContext {
    /// The inventory's host names now.
    pub fn host_names(&self) -> Vec<String> {
        match &self.live {
            Some(live) => live
                .current()
                .inventory
                .hosts()
                .iter()
                .map(|host| host.name.clone())
                .collect(),
            None => self.hosts.clone(),
        }
    }
}

/// What is paused now: `salve pause list --json` and `GET /api/v1/pauses`.
#[derive(Debug, Clone, Serialize)]
pub struct PauseListing {
    pub pauses: Vec<Pause>,
    /// Maintenance windows open now.
    pub maintenance: Vec<WindowView>,
}

/// The active pauses and the windows open at `now`.
pub async fn listing(
    store: &dyn Store,
    context: &PauseContext,
    now: DateTime<Utc>,
) -> Result<PauseListing, StoreError> {
    Ok(PauseListing {
        pauses: store.active_pauses(now).await?,
        maintenance: context
            .windows
            .iter()
            .filter(|window| window.is_open(now))
            .map(MaintenanceWindow::view)
            .collect(),
    })
}

/// A pause's reason is read on pages and terminals: a sentence, not a document.
const MAX_REASON_CHARS: usize = 500;

/// A pause as asked for, by the CLI's flags or the API's body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    pub recipe: Option<String>,
    pub host: Option<String>,
    /// How long, e.g. `2h`. Required unless `until_resumed`.
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// Open-ended: until a human resumes it.
    #[serde(default)]
    pub until_resumed: bool,
    pub reason: String,
    /// Journal paused incidents, page no one.
    #[serde(default)]
    pub silent: bool,
}

impl PauseRequest {
    /// The pause to record, or why not: a reason is required, the host must be in the
    /// inventory, and exactly one of `for` and `until_resumed` is given.
    pub fn to_new_pause(
        &self,
        context: &PauseContext,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<NewPause, String> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err("a pause needs a reason (--reason / \"reason\")".into());
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(format!(
                "a pause's reason is at most {MAX_REASON_CHARS} characters"
            ));
        }
        let blank = |name: &Option<String>| name.as_deref().is_some_and(|n| n.trim().is_empty());
        if blank(&self.recipe) || blank(&self.host) {
            return Err(
                "an empty recipe or host name pauses nothing; leave it out to pause all".into(),
            );
        }
        if let Some(host) = &self.host
            && !context.host_names().iter().any(|known| known == host)
        {
            return Err(format!("host {host:?} is not in the inventory"));
        }
        let until = match (&self.for_, self.until_resumed) {
            (Some(_), true) => {
                return Err("give either a duration (--for) or --until-resumed, not both".into());
            }
            (None, false) => {
                return Err(
                    "say how long: --for 2h (or --until-resumed for a pause a human ends)".into(),
                );
            }
            (None, true) => None,
            (Some(text), false) => {
                let length: Duration =
                    crate::duration::parse(text).map_err(|e| format!("--for {text:?}: {e}"))?;
                if length.is_zero() {
                    return Err("--for must be longer than 0".into());
                }
                let too_long = || format!("--for {text:?} is too long");
                let length = chrono::Duration::from_std(length).map_err(|_| too_long())?;
                Some(now.checked_add_signed(length).ok_or_else(too_long)?)
            }
        };
        Ok(NewPause {
            recipe: self.recipe.clone(),
            host: self.host.clone(),
            reason: reason.to_owned(),
            silent: self.silent,
            created_by: by.to_owned(),
            until,
        })
    }
}

fn unavailable(e: StoreError) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({ "status": "error", "error": e.to_string() }))
}

/// `GET /api/v1/pauses`: the active pauses and the maintenance windows open now — what
/// `salve pause list --json` prints. Needs a `read` token.
pub async fn list_pauses(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(denied) = authorized(&req, &state, ApiScope::Read) {
        return refusal(denied, ApiScope::Read);
    }
    match listing(state.store.as_ref(), &state.pauses, Utc::now()).await {
        Ok(listing) => HttpResponse::Ok().json(listing),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/v1/pauses` with `{"host": …, "recipe": …, "for": "2h", "reason": …}`
/// (`until_resumed`, `silent` optional): 201 with the pause. Needs an `operate` token,
/// whose name the pause records (`created_by`).
pub async fn create_pause(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let shape = r#"{"host": "…", "recipe": "…", "for": "2h", "reason": "…"}"#;
    let (by, request): (String, PauseRequest) =
        match super::operate_json(&req, body, &state, MAX_PAUSE_BODY, shape).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    let pause = match request.to_new_pause(&state.pauses, &by, Utc::now()) {
        Ok(pause) => pause,
        Err(message) => {
            return HttpResponse::BadRequest().json(json!({ "status": "error", "error": message }));
        }
    };
    match state.store.create_pause(pause).await {
        Ok(pause) => {
            tracing::warn!(pause = pause.id, recipe = ?pause.recipe, host = ?pause.host, by = %by, "paused through the API");
            HttpResponse::Created().json(pause)
        }
        Err(e) => unavailable(e),
    }
}

/// `POST /api/v1/pauses/{id}/resume`: ends an active pause now, recording the token's
/// name (`resumed_by`). 404 when no active pause has that id. Needs an `operate` token.
pub async fn resume_pause(
    req: HttpRequest,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let by = match authorized(&req, &state, ApiScope::Operate) {
        Ok(by) => by,
        Err(denied) => return refusal(denied, ApiScope::Operate),
    };
    let id = path.into_inner();
    match state.store.resume_pauses(Some(id), &by).await {
        Ok(resumed) => match resumed.into_iter().next() {
            Some(pause) => {
                tracing::warn!(pause = pause.id, by = %by, "pause resumed through the API");
                HttpResponse::Ok().json(pause)
            }
            None => HttpResponse::NotFound().json(json!({
                "status": "error",
                "error": "no active pause has this id (salve pause list)",
            })),
        },
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> PauseContext {
        PauseContext {
            windows: Vec::new(),
            hosts: vec!["web1".into()],
            live: None,
        }
    }

    fn request(for_: &str, reason: &str) -> PauseRequest {
        PauseRequest {
            for_: Some(for_.into()),
            reason: reason.into(),
            ..PauseRequest::default()
        }
    }

    #[test]
    fn a_pause_too_long_to_represent_is_refused_not_a_panic() {
        let now = Utc::now();
        let asked = request("1000000000000h", "far");
        let refused = asked.to_new_pause(&context(), "ops", now).unwrap_err();
        assert!(refused.contains("too long"), "{refused}");
        let fine = request("2h", "deploy").to_new_pause(&context(), "ops", now);
        assert_eq!(fine.unwrap().until, Some(now + chrono::Duration::hours(2)));
    }

    #[test]
    fn a_reason_is_a_sentence_not_a_document() {
        let now = Utc::now();
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let refused = request("1h", &long).to_new_pause(&context(), "ops", now);
        assert!(refused.unwrap_err().contains("at most 500"));
        let longest = "x".repeat(MAX_REASON_CHARS);
        assert!(
            request("1h", &longest)
                .to_new_pause(&context(), "ops", now)
                .is_ok()
        );
    }
}
