//! Webhook intake: authenticate, bound, parse, journal, then answer. A 2xx means every
//! alert of the notification is committed; any doubt answers 5xx so the sender retries.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;

use super::AppState;
use crate::alert::Source;
use crate::intake::{self, IntakeError};
use crate::metrics::{Metrics, RequestLabels};

pub async fn alertmanager(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    receive(Source::Alertmanager, req, body, state).await
}

pub async fn grafana(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    receive(Source::Grafana, req, body, state).await
}

pub async fn generic(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    receive(Source::Generic, req, body, state).await
}

/// Any method but POST on a webhook path: 405 with `Allow: POST` (a GET from a browser or
/// a probe is told what the path takes, not that it does not exist).
pub async fn post_only() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST"))
        .json(json!({
            "status": "error",
            "error": "webhooks take POST with a JSON body",
        }))
}

/// Why a webhook was not accepted; each maps to one status code and a reason body.
#[derive(Debug)]
pub(super) enum Rejection {
    Unauthorized(&'static str),
    /// The body did not arrive within `server.body_timeout`.
    BodyTimeout(std::time::Duration),
    UnsupportedMediaType(String),
    TooLarge(usize),
    BadRequest(String),
    Unavailable(String),
    ShuttingDown,
}

impl Rejection {
    fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::Unavailable(_) | Rejection::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn reason(&self) -> String {
        match self {
            Rejection::Unauthorized(why) => (*why).to_owned(),
            Rejection::UnsupportedMediaType(got) => {
                format!(
                    "content type must be application/json, got {}",
                    intake::quote(got)
                )
            }
            Rejection::TooLarge(limit) => format!("body exceeds the limit of {limit} bytes"),
            Rejection::BodyTimeout(limit) => format!(
                "the body did not arrive within {}",
                humantime::format_duration(*limit)
            ),
            Rejection::BadRequest(why) => why.clone(),
            Rejection::Unavailable(why) => format!("store unavailable, retry later: {why}"),
            Rejection::ShuttingDown => "salve is shutting down, retry later".to_owned(),
        }
    }

    pub(super) fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if let Rejection::BodyTimeout(_) | Rejection::TooLarge(_) = self {
            // The rest of the body may still trickle in: free the connection instead.
            response.force_close();
        }
        if let Rejection::Unauthorized(_) = self {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"salve\", Basic realm=\"salve\"",
            ));
        }
        if let Rejection::Unavailable(_) | Rejection::ShuttingDown = self {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
        }
        response.json(json!({ "status": "error", "error": self.reason() }))
    }
}

/// `Retry-After` on a 503 (store unavailable, shutting down), webhooks and `/readyz`
/// alike: long enough for a restart's drain to get going, short enough not to hold alerts.
pub(super) const RETRY_AFTER_SECONDS: &str = "5";

async fn receive(
    source: Source,
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let response = match accept(source, &req, body, &state).await {
        Ok(response) => response,
        Err(rejection) => {
            // Client mistakes are the sender's to fix; log them at debug to keep a
            // misconfigured sender from flooding the log. Store failures are ours.
            match rejection {
                Rejection::Unavailable(ref why) => {
                    tracing::error!(source = %source, error = %why, "webhook not stored")
                }
                ref other => {
                    tracing::info!(source = %source, status = other.status().as_u16(), reason = %other.reason(), "webhook rejected")
                }
            }
            rejection.response()
        }
    };
    state
        .metrics
        .webhook_duration
        .get_or_create(&RequestLabels {
            source: source.as_str(),
            code: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn accept(
    source: Source,
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, Rejection> {
    if state.is_draining() {
        return Err(Rejection::ShuttingDown);
    }
    let headers = req.headers();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.credentials.accepts(authorization) {
        return Err(Rejection::Unauthorized(if authorization.is_some() {
            "invalid credentials"
        } else {
            "missing credentials"
        }));
    }
    check_content_type(headers)?;
    let body = read_body_within(headers, body, state.body_limit_bytes, state.body_timeout).await?;

    if source == Source::Grafana
        && let Some(signature) = &state.grafana
    {
        let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        intake::grafana::verify_signature(
            signature.secret.expose().as_bytes(),
            &body,
            header_text(&signature.settings.signature_header),
            // Configured but absent must fail, not quietly fall back to body-only signing.
            signature
                .settings
                .timestamp_header
                .as_deref()
                .map(|name| header_text(name).unwrap_or("")),
            chrono::Utc::now(),
            signature.settings.max_timestamp_skew,
        )
        .map_err(|e| match e {
            IntakeError::Signature(_) => {
                Rejection::Unauthorized("invalid or missing Grafana signature")
            }
            other => Rejection::BadRequest(other.to_string()),
        })?;
    }

    let notification = intake::parse(source, &body, &state.limits)
        .map_err(|e| Rejection::BadRequest(e.to_string()))?;
    if notification.truncated_alerts > 0 {
        tracing::warn!(
            source = %source,
            truncated = notification.truncated_alerts,
            "Alertmanager truncated this notification: raise max_alerts in its webhook_config"
        );
        Metrics::saturating_inc_by(
            &state.metrics.truncated_alerts,
            notification.truncated_alerts,
        );
    }

    let received = notification.alerts.len();
    let ingested = state
        .store
        .ingest(notification.alerts, chrono::Utc::now())
        .await
        .map_err(|e| Rejection::Unavailable(e.to_string()))?;

    record_metrics(&state.metrics, source, &ingested);
    if ingested.iter().any(|i| i.created) {
        state.wake.notify_one();
    }
    let ids: Vec<i64> = ingested.iter().map(|i| i.id.0).collect();
    Ok(HttpResponse::Ok().json(json!({ "status": "ok", "alerts": received, "incidents": ids })))
}

fn record_metrics(metrics: &Metrics, source: Source, ingested: &[crate::store::Ingested]) {
    let label = Metrics::source(source);
    Metrics::saturating_inc_by(
        &metrics.alerts_received.get_or_create(&label),
        ingested.len() as u64,
    );
    let duplicates = ingested.iter().filter(|i| !i.created).count() as u64;
    Metrics::saturating_inc_by(&metrics.alert_duplicates.get_or_create(&label), duplicates);
    let resolved = ingested.iter().filter(|i| i.resolved_now).count() as u64;
    Metrics::saturating_inc_by(&metrics.alerts_resolved.get_or_create(&label), resolved);
}

/// JSON only: `application/json`, optionally with parameters (`; charset=utf-8`).
pub(super) fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<not text>").to_owned())
        .unwrap_or_default();
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Rejection::UnsupportedMediaType(value))
    }
}

/// `read_body` bounded in time as well: a client that trickles its body (authenticated
/// or not) gets 408 after `timeout` instead of holding a connection and a worker slot.
pub(super) async fn read_body_within(
    headers: &HeaderMap,
    body: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::Bytes, Rejection> {
    tokio::time::timeout(timeout, read_body(headers, body, limit))
        .await
        .unwrap_or(Err(Rejection::BodyTimeout(timeout)))
}

/// Read the body, refusing as soon as it passes the limit (by Content-Length up front,
/// or while streaming for chunked bodies).
async fn read_body(
    headers: &HeaderMap,
    mut body: web::Payload,
    limit: usize,
) -> Result<web::Bytes, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Rejection::TooLarge(limit));
    }
    let mut buffer =
        web::BytesMut::with_capacity(declared.unwrap_or(8192).min(limit as u64) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Rejection::BadRequest(format!("reading body: {e}")))?;
        if buffer.len() + chunk.len() > limit {
            return Err(Rejection::TooLarge(limit));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}
