//! Approve/deny links (`/approve/{token}`, `/deny/{token}`): the signed token is the
//! credential. A GET only shows a confirm page (mail clients and link scanners fetch
//! links); the page's form POSTs to the same URL, and only that POST decides, through the
//! store, as `link`. Every value on a page is HTML-escaped; nothing here runs anything.

use std::fmt::Write;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::Utc;

use super::AppState;
use crate::approval::{LinkAction, LinkClaim, LinkError};
use crate::incident::State;
use crate::store::{ApprovalDecision, ApprovalOutcome, ApprovalRefusal, LinkProof};

/// Who decided, in the journal, for a decision by link.
pub const LINK_ACTOR: &str = "link";

pub async fn approve_page(token: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    confirm_page(&token, LinkAction::Approve, &state).await
}

pub async fn deny_page(token: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    confirm_page(&token, LinkAction::Deny, &state).await
}

pub async fn approve_post(token: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    act(&token, ApprovalDecision::Approve, &state).await
}

pub async fn deny_post(
    token: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let reason = form_field(&body, "reason");
    let decision = ApprovalDecision::deny(reason.as_deref(), "denied by link (no reason given)");
    act(&token, decision, &state).await
}

/// The token's claim, or the page saying why it is not accepted.
fn claim_of(
    token: &str,
    action: LinkAction,
    state: &AppState,
) -> Result<LinkClaim, Box<HttpResponse>> {
    let Some(signer) = &state.approval_links else {
        return Err(Box::new(page(
            StatusCode::NOT_FOUND,
            "No approvals here",
            "<p>This salve has no [approval] key: it issues no approval links.</p>",
        )));
    };
    signer.verify(token, action, Utc::now()).map_err(|error| {
        Box::new(match error {
            LinkError::Expired(_) => page(
                StatusCode::GONE,
                "Link expired",
                &format!("<p>{}. Nothing was done.</p>", escape(&error.to_string())),
            ),
            _ => page(
                StatusCode::FORBIDDEN,
                "Link not valid",
                &format!("<p>{}. Nothing was done.</p>", escape(&error.to_string())),
            ),
        })
    })
}

/// GET: what the link would do, and a button that does it. Changes nothing.
async fn confirm_page(token: &str, action: LinkAction, state: &AppState) -> HttpResponse {
    let claim = match claim_of(token, action, state) {
        Ok(claim) => claim,
        Err(response) => return *response,
    };
    let incident = match state.store.incident(claim.incident).await {
        Ok(Some(detail)) => detail.incident,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such incident",
                "<p>Nothing was done.</p>",
            );
        }
        Err(e) => return unavailable(&e.to_string()),
    };
    let Some(plan) = incident.plan.as_ref() else {
        return page(StatusCode::CONFLICT, "No plan", "<p>Nothing was done.</p>");
    };
    if plan.digest() != claim.plan_digest {
        return refused(&ApprovalRefusal::PlanChanged);
    }
    if incident.state != State::AwaitingApproval {
        return refused(&ApprovalRefusal::NotAwaiting {
            id: claim.incident,
            state: incident.state,
        });
    }
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Incident {} is <b>{}</b>. Its plan, as this link was issued for it:</p><dl>\
         <dt>Alert</dt><dd>{}</dd><dt>Recipe</dt><dd>{}</dd><dt>Target</dt><dd>{}</dd>\
         <dt>Commands</dt><dd><pre>",
        claim.incident,
        escape(incident.state.as_str()),
        escape(incident.alertname.as_deref().unwrap_or("(no alertname)")),
        escape(plan.recipe.as_deref().unwrap_or("")),
        escape(plan.target.as_ref().map_or("", |t| t.name.as_str())),
    );
    for command in &plan.commands {
        let _ = writeln!(body, "{}", escape(command));
    }
    let _ = write!(
        body,
        "</pre></dd><dt>Link valid until</dt><dd>{}</dd></dl>",
        escape(&claim.expires_at.to_rfc3339())
    );
    let (title, form) = match action {
        LinkAction::Approve => (
            "Approve this plan?",
            "<form method=\"post\"><button type=\"submit\">Approve and run</button></form>",
        ),
        LinkAction::Deny => (
            "Deny this plan?",
            "<form method=\"post\"><label>Reason <input name=\"reason\" maxlength=\"500\"></label> \
             <button type=\"submit\">Deny</button></form>",
        ),
    };
    body.push_str("<p>Opening this page did nothing. The button below decides.</p>");
    body.push_str(form);
    page(StatusCode::OK, title, &body)
}

/// POST: decide, once, for the plan and request the link was issued for.
async fn act(token: &str, decision: ApprovalDecision, state: &AppState) -> HttpResponse {
    let action = match decision {
        ApprovalDecision::Approve => LinkAction::Approve,
        ApprovalDecision::Deny { .. } => LinkAction::Deny,
    };
    let claim = match claim_of(token, action, state) {
        Ok(claim) => claim,
        Err(response) => return *response,
    };
    let proof = LinkProof {
        plan_digest: claim.plan_digest.clone(),
        nonce: claim.nonce.clone(),
    };
    match state
        .store
        .decide_approval(claim.incident, decision, LINK_ACTOR, Some(proof))
        .await
    {
        Ok(ApprovalOutcome::Decided { .. }) => {
            tracing::info!(incident = %claim.incident, action = action.as_str(), by = LINK_ACTOR, "approval decided by link");
            state.wake.notify_one();
            let what = match action {
                LinkAction::Approve => {
                    "Approved. The plan now goes through salve's usual gates (breaker, rate limit, host order) and runs."
                }
                LinkAction::Deny => "Denied. Nothing is run; the incident is escalated.",
            };
            page(
                StatusCode::OK,
                "Done",
                &format!("<p>Incident {}: {}</p>", claim.incident, escape(what)),
            )
        }
        Ok(ApprovalOutcome::Refused(why)) => refused(&why),
        Err(e) => unavailable(&e.to_string()),
    }
}

fn refused(why: &ApprovalRefusal) -> HttpResponse {
    let status = match why {
        ApprovalRefusal::NotFound(_) => StatusCode::NOT_FOUND,
        ApprovalRefusal::Expired(_) => StatusCode::GONE,
        _ => StatusCode::CONFLICT,
    };
    page(
        status,
        "Not done",
        &format!("<p>{}. Nothing was done.</p>", escape(&why.to_string())),
    )
}

fn unavailable(error: &str) -> HttpResponse {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        &format!("<p>The store is unavailable: {}</p>", escape(error)),
    )
}

/// A small HTML page; `body` is already escaped HTML.
fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; form-action 'self'",
        ))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>salve: {0}</title></head>\
             <body><h1>{0}</h1>{1}</body></html>\n",
            escape(title),
            body
        ))
}

/// `text` safe inside HTML text and attribute values, control characters escaped too.
pub fn escape(text: &str) -> String {
    let text = crate::terminal::escape_controls(text).to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(key) == name).then(|| decode(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&reason=not+now%21", "reason").as_deref(),
            Some("not now!")
        );
        assert_eq!(form_field(b"a=1", "reason"), None);
    }
}
