//! Webhook channels: one JSON POST per escalation, for ticket systems (the generic preset
//! or a body template) and PagerDuty (Events API v2 `trigger`). It never follows
//! redirects, never disables certificate verification, and never prints the URL's path or
//! query, header values or the routing key (any of them may be a credential).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::content::{Digest, Escalation, render_digest_text, render_text};
use super::followup::{FollowUp, generic_resolved_body, pagerduty_resolve_body};
use super::template::{PageTemplates, truncate_chars};
use super::{SendError, redact};
use crate::duration::de_duration;
use crate::secret::{Secret, secret_from};

/// PagerDuty's Events API v2 endpoint, the default URL of the `pagerduty` preset.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty refuses a `payload.summary` longer than this.
const PAGERDUTY_SUMMARY_CHARS: usize = 1024;
/// How much of an error response is quoted in the error message.
const RESPONSE_EXCERPT_BYTES: usize = 512;
/// How much of an error response is read at all (before redaction and the cut).
const ERROR_BODY_MAX_BYTES: usize = 4 * 1024;

/// A webhook channel (`kind = "webhook"`): each escalation is one JSON POST; any 2xx
/// answer means accepted.
///
/// ```toml
/// [escalation.channels.tickets]
/// kind = "webhook"
/// url = "https://tickets.example.com/api/issues"
/// headers = { Authorization = "Bearer …" }   # or SALVE_ESCALATION__CHANNELS__TICKETS__HEADERS__AUTHORIZATION
///
/// [escalation.channels.pager]
/// kind = "webhook"
/// preset = "pagerduty"
/// routing_key_file = "/etc/salve/pagerduty-key"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// Where to POST (`http://` or `https://`). Required for `generic`; `pagerduty`
    /// defaults to PagerDuty's Events API v2 URL. Treated as a secret (some services put
    /// a token in it): messages only ever show its scheme, host and port.
    pub url: Option<Secret>,
    /// `generic` (default): the escalation as JSON plus `text`, the plain-text report.
    /// `pagerduty`: an Events API v2 `trigger` with `dedup_key = "salve-incident-<id>"`.
    #[serde(default)]
    pub preset: WebhookPreset,
    /// Extra request headers. Values are secrets (never logged). To keep a value out of
    /// the file, set it in the environment instead, with the header name in lower case:
    /// `SALVE_ESCALATION__CHANNELS__<NAME>__HEADERS__AUTHORIZATION`. A lower-case name
    /// (what the environment gives) wins over the same header written in another case.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `generic` only: a minijinja template producing the JSON body, over the escalation's
    /// fields and `text`. Every `{{ … }}` value is written as JSON (strings come quoted
    /// and escaped), so write `"title": {{ summary }}`, not `"title": "{{ summary }}"`;
    /// `{{ x | tojson }}` is the same, said explicitly. Salve checks the result is JSON.
    pub body: Option<String>,
    /// `generic` only: the body of the follow-up sent when a paged incident is over (its
    /// alert resolved, or a later incident of the alert was fixed), a template like `body`
    /// over the page's fields plus `event = "resolved"`, `resolved_at`, `fixed_by`,
    /// `resolution` and `text`. Without it the generic preset sends those fields as JSON;
    /// a channel with a `body` but no `body_resolved` sends no follow-up.
    pub body_resolved: Option<String>,
    /// `pagerduty` only: the integration's routing key. Prefer `routing_key_file` or
    /// `SALVE_ESCALATION__CHANNELS__<NAME>__ROUTING_KEY`.
    pub routing_key: Option<Secret>,
    /// File holding the routing key (a trailing newline is ignored).
    pub routing_key_file: Option<PathBuf>,
    /// Bound for one POST, connect to last byte of the answer.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// At most this many messages (single escalations or digests) per minute to this
    /// channel; more wait in the outbox (never dropped). No limit when unset.
    #[serde(default)]
    pub max_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookPreset {
    #[default]
    Generic,
    Pagerduty,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn parse_url(channel: &WebhookChannel) -> Result<reqwest::Url, (&'static str, String)> {
    let text = match (&channel.url, channel.preset) {
        (Some(url), _) => url.expose(),
        (None, WebhookPreset::Pagerduty) => PAGERDUTY_EVENTS_URL,
        (None, WebhookPreset::Generic) => {
            return Err(("url", "a url is needed (preset = \"generic\")".into()));
        }
    };
    // The URL may carry a token: the message names the problem, not the text.
    let url =
        reqwest::Url::parse(text).map_err(|error| ("url", format!("not a valid URL: {error}")))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        "http" | "https" => Err(("url", "no host".into())),
        other => Err(("url", format!("scheme {other:?}: expected http or https"))),
    }
}

/// `scheme://host:port` of a URL: what messages may say about it.
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// Headers as given, with a lower-case name applied last so an environment override
/// (the config crate lower-cases environment keys) wins over the file's spelling.
fn header_map(headers: &BTreeMap<String, Secret>) -> Result<HeaderMap, (&'static str, String)> {
    let mut ordered: Vec<(&String, &Secret)> = headers.iter().collect();
    ordered.sort_by_key(|(name, _)| **name == name.to_ascii_lowercase());
    let mut map = HeaderMap::new();
    for (name, value) in ordered {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ("headers", format!("{name:?} is not a valid header name")))?;
        let mut header_value = HeaderValue::from_str(value.expose()).map_err(|_| {
            (
                "headers",
                format!("the value of {name:?} is not a valid header value (line breaks or control characters)"),
            )
        })?;
        header_value.set_sensitive(true);
        map.insert(header_name, header_value);
    }
    Ok(map)
}

/// Problems found without touching the network. Each is `(key, message)`.
pub(crate) fn problems(channel: &WebhookChannel) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Err(problem) = parse_url(channel) {
        problems.push(problem);
    }
    if let Err(problem) = header_map(&channel.headers) {
        problems.push(problem);
    }
    let has_key = channel.routing_key.is_some() || channel.routing_key_file.is_some();
    match channel.preset {
        WebhookPreset::Generic => {
            if has_key {
                problems.push((
                    "routing_key",
                    "routing_key is for preset = \"pagerduty\"".into(),
                ));
            }
            if let Some(body) = &channel.body {
                let templates = PageTemplates::new();
                if let Err(error) = PageTemplates::check_syntax(body) {
                    problems.push(("body", error));
                } else if let Err(error) = templates.render_json(body, &super::content::sample()) {
                    // Rendered against a sample so a template that cannot produce JSON
                    // fails `salve check`, not the first page.
                    problems.push(("body", error));
                }
            }
            if let Some(body) = &channel.body_resolved {
                let sample = generic_resolved_body(&super::followup::sample());
                if let Err(error) = PageTemplates::check_syntax(body) {
                    problems.push(("body_resolved", error));
                } else if let Err(error) = PageTemplates::new().render_json_over(body, sample) {
                    problems.push(("body_resolved", error));
                }
            }
        }
        WebhookPreset::Pagerduty => {
            if !has_key {
                problems.push((
                    "routing_key",
                    "preset = \"pagerduty\" needs routing_key or routing_key_file".into(),
                ));
            }
            if channel.body.is_some() {
                problems.push((
                    "body",
                    "body replaces the preset's body: use preset = \"generic\" with a body".into(),
                ));
            }
            if channel.body_resolved.is_some() {
                problems.push((
                    "body_resolved",
                    "PagerDuty is sent a `resolve` for the page's dedup_key: use preset = \"generic\" for a body_resolved".into(),
                ));
            }
        }
    }
    // routing_key and routing_key_file (both set, unreadable, blank) are checked once, where
    // the config reads the secret (`config::channel_problems`).
    if channel.timeout.is_zero() {
        problems.push(("timeout", "must be > 0".into()));
    }
    problems
}

enum Body {
    Generic,
    Template(String),
    Pagerduty { routing_key: Secret },
}

/// A built webhook channel.
pub(crate) struct WebhookSender {
    url: reqwest::Url,
    headers: HeaderMap,
    body: Body,
    /// `body_resolved`, for a follow-up of the generic preset.
    body_resolved: Option<String>,
    timeout: Duration,
    /// What this channel sends that may be a credential: an error answer that quotes the
    /// request back must not carry any of it into the log or journal (`redact`).
    credentials: Vec<String>,
}

/// Parts of a header value or URL this short are left alone in error excerpts (words like
/// `Bearer`); tokens are longer.
const MIN_CREDENTIAL_WORD_CHARS: usize = 8;

/// Header values (whole, and each word: `Bearer <token>` is quoted back either way), the
/// routing key, the URL's query values and path segments.
fn credentials(url: &reqwest::Url, headers: &HeaderMap, body: &Body) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let long_enough = |word: &str| word.chars().count() >= MIN_CREDENTIAL_WORD_CHARS;
    for value in headers.values() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        found.extend(
            value
                .split_whitespace()
                .filter(|w| long_enough(w))
                .map(str::to_owned),
        );
        found.push(value);
    }
    if let Body::Pagerduty { routing_key } = body {
        found.push(routing_key.expose().to_owned());
    }
    // Query values both decoded and as written, path segments as written.
    let query_values = url.query_pairs().map(|(_, value)| value.into_owned());
    let raw_query_values = url
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(|pair| pair.split_once('=').map(|(_, value)| value.to_owned()));
    let path_segments = url.path_segments().into_iter().flatten().map(str::to_owned);
    found.extend(
        query_values
            .chain(raw_query_values)
            .chain(path_segments)
            .filter(|part| long_enough(part)),
    );
    found
}

impl WebhookSender {
    pub(crate) fn build(channel: &WebhookChannel) -> Result<WebhookSender, String> {
        if let Some((key, message)) = problems(channel).into_iter().next() {
            return Err(format!("{key}: {message}"));
        }
        let url = parse_url(channel).map_err(|(key, message)| format!("{key}: {message}"))?;
        let headers =
            header_map(&channel.headers).map_err(|(key, message)| format!("{key}: {message}"))?;
        let body = match (channel.preset, &channel.body) {
            (WebhookPreset::Pagerduty, _) => Body::Pagerduty {
                routing_key: secret_from(
                    "routing_key",
                    channel.routing_key.clone(),
                    channel.routing_key_file.as_deref(),
                )?
                .ok_or("routing_key: missing")?,
            },
            (WebhookPreset::Generic, Some(template)) => Body::Template(template.clone()),
            (WebhookPreset::Generic, None) => Body::Generic,
        };
        let credentials = credentials(&url, &headers, &body);
        Ok(WebhookSender {
            url,
            headers,
            body,
            body_resolved: channel.body_resolved.clone(),
            timeout: channel.timeout,
            credentials,
        })
    }

    pub(crate) async fn send(
        &self,
        client: &reqwest::Client,
        templates: &PageTemplates,
        escalation: &Escalation,
    ) -> Result<(), SendError> {
        let body = match &self.body {
            Body::Generic => generic_body(escalation),
            Body::Template(source) => {
                templates
                    .render_json(source, escalation)
                    .map_err(|error| SendError {
                        message: format!("webhook body: {error}"),
                        retryable: false,
                    })?
            }
            Body::Pagerduty { routing_key } => pagerduty_body(routing_key.expose(), escalation),
        };
        self.post(client, &body).await
    }

    /// Whether this channel sends follow-ups: not a generic body template without
    /// `body_resolved` (salve cannot guess what the receiver expects).
    pub(crate) fn follows_up(&self) -> bool {
        !matches!(self.body, Body::Template(_)) || self.body_resolved.is_some()
    }

    /// One POST following up a page: PagerDuty a `resolve` of its `dedup_key`, the
    /// generic preset the `resolved` event (or `body_resolved`).
    pub(crate) async fn send_follow_up(
        &self,
        client: &reqwest::Client,
        templates: &PageTemplates,
        follow_up: &FollowUp,
    ) -> Result<(), SendError> {
        let body = match (&self.body, &self.body_resolved) {
            (Body::Pagerduty { routing_key }, _) => {
                pagerduty_resolve_body(routing_key.expose(), follow_up)
            }
            (_, Some(source)) => templates
                .render_json_over(source, generic_resolved_body(follow_up))
                .map_err(|error| SendError {
                    message: format!("webhook body_resolved: {error}"),
                    retryable: false,
                })?,
            (Body::Generic, None) => generic_resolved_body(follow_up),
            (Body::Template(_), None) => {
                return Err(SendError {
                    message:
                        "a webhook with a body template and no body_resolved sends no follow-up"
                            .into(),
                    retryable: false,
                });
            }
        };
        self.post(client, &body).await
    }

    /// One POST for a whole digest: the generic preset sends the digest as JSON plus
    /// `text`; a body template is rendered over the digest's fields; PagerDuty gets one
    /// trigger with `dedup_key = "salve-digest-<id>"`.
    pub(crate) async fn send_digest(
        &self,
        client: &reqwest::Client,
        templates: &PageTemplates,
        digest: &Digest,
    ) -> Result<(), SendError> {
        let body = match &self.body {
            Body::Generic => generic_digest_body(digest),
            Body::Template(source) => templates
                .render_json_over(source, generic_digest_body(digest))
                .map_err(|error| SendError {
                    message: format!("webhook body: {error}"),
                    retryable: false,
                })?,
            Body::Pagerduty { routing_key } => pagerduty_digest_body(routing_key.expose(), digest),
        };
        self.post(client, &body).await
    }

    async fn post(&self, client: &reqwest::Client, body: &Value) -> Result<(), SendError> {
        let body = serde_json::to_vec(body).expect("a JSON value always serialises");
        let origin = origin(&self.url);
        let response = client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|error| SendError {
                // `without_url`: reqwest would print the whole URL, token and all.
                message: format!("POST {origin}: {}", describe_reqwest(error.without_url())),
                retryable: true,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        let bytes = read_at_most(response, ERROR_BODY_MAX_BYTES).await;
        // Redacted before the cut, so a credential the cut would split is still
        // recognised whole.
        let text = redact(&String::from_utf8_lossy(&bytes), &self.credentials);
        let end = text.floor_char_boundary(RESPONSE_EXCERPT_BYTES);
        let excerpt = super::content::one_line(text[..end].trim());
        Err(SendError {
            message: format!(
                "POST {origin}: answered {status}{}{}",
                if excerpt.is_empty() { "" } else { ": " },
                excerpt
            ),
            retryable,
        })
    }
}

/// The first `max` bytes of an answer's body; the rest is never read (the connection is
/// dropped), so a channel answering with a huge error body costs salve `max` bytes.
async fn read_at_most(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    while bytes.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(max - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    bytes
}

fn describe_reqwest(error: reqwest::Error) -> String {
    let mut message = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// The generic preset: the escalation's fields plus `event = "triggered"` (its follow-up
/// says `resolved`) and `text`, the plain-text report.
pub fn generic_body(escalation: &Escalation) -> Value {
    let mut body = serde_json::to_value(escalation).expect("an escalation always serialises");
    if let Value::Object(fields) = &mut body {
        fields.insert("event".into(), Value::String("triggered".into()));
        fields.insert("text".into(), Value::String(render_text(escalation)));
    }
    body
}

/// The `dedup_key` of an incident's PagerDuty alert: its trigger and its `resolve`.
pub fn incident_dedup_key(incident_id: i64) -> String {
    format!("salve-incident-{incident_id}")
}

/// PagerDuty's `payload.source`: where the problem is — the target host, else the
/// alert's `instance` label, else `salve`.
pub fn pagerduty_source(escalation: &Escalation) -> String {
    escalation
        .target
        .as_ref()
        .map(|target| target.name.clone())
        .or_else(|| escalation.labels.get("instance").cloned())
        .filter(|source| !source.trim().is_empty())
        .unwrap_or_else(|| "salve".to_owned())
}

/// PagerDuty's `payload.summary`: `<reason>: <the alert's summary annotation>` when it
/// has one, else the escalation's summary.
pub fn pagerduty_summary(escalation: &Escalation) -> String {
    let summary = match escalation.annotations.get("summary") {
        Some(annotation) if !annotation.trim().is_empty() => format!(
            "{}: {}",
            escalation.reason.as_str(),
            super::content::one_line(annotation.trim())
        ),
        _ => escalation.summary_line(),
    };
    truncate_chars(&summary, PAGERDUTY_SUMMARY_CHARS)
}

/// The generic preset for a digest: its fields plus `digest: true`, `summary` and `text`.
pub fn generic_digest_body(digest: &Digest) -> Value {
    let mut body = serde_json::to_value(digest).expect("a digest always serialises");
    if let Value::Object(fields) = &mut body {
        fields.insert("digest".into(), Value::Bool(true));
        fields.insert("summary".into(), Value::String(digest.summary_line()));
        fields.insert("text".into(), Value::String(render_digest_text(digest)));
    }
    body
}

/// One Events API v2 `trigger` for a digest.
pub fn pagerduty_digest_body(routing_key: &str, digest: &Digest) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": format!("salve-digest-{}", digest.digest_id),
        "payload": {
            "summary": truncate_chars(&digest.summary_line(), PAGERDUTY_SUMMARY_CHARS),
            "source": "salve",
            "severity": "error",
            "timestamp": digest.created_at.to_rfc3339(),
            "custom_details": generic_digest_body(digest),
        },
        "client": "salve",
    })
}

/// PagerDuty's four severities from the alert's `severity` label; unknown or missing is
/// `error` (a human was asked to act, so not `info`).
pub fn pagerduty_severity(label: Option<&str>) -> &'static str {
    match label.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("critical" | "crit" | "fatal" | "emergency" | "emerg" | "alert" | "page" | "p1") => {
            "critical"
        }
        Some("warning" | "warn" | "minor" | "medium" | "p3") => "warning",
        Some("info" | "informational" | "notice" | "low" | "none" | "p4" | "p5") => "info",
        _ => "error",
    }
}

/// An Events API v2 `trigger`. One `dedup_key` per incident: a second escalation of the
/// same incident (another reason, a retry) updates PagerDuty's alert instead of opening
/// a second one.
pub fn pagerduty_body(routing_key: &str, escalation: &Escalation) -> Value {
    let mut payload = json!({
        "summary": pagerduty_summary(escalation),
        "source": pagerduty_source(escalation),
        "severity": pagerduty_severity(escalation.severity.as_deref()),
        "timestamp": escalation.created_at.to_rfc3339(),
        "custom_details": generic_body(escalation),
    });
    if let Some(alertname) = &escalation.alertname {
        payload["class"] = Value::String(alertname.clone());
    }
    let component = ["service", "job"]
        .iter()
        .find_map(|label| escalation.labels.get(*label));
    if let Some(component) = component {
        payload["component"] = Value::String(component.clone());
    }
    let mut links = Vec::new();
    if let Some(url) = &escalation.generator_url {
        links.push(json!({ "href": url, "text": "Alert source" }));
    }
    if let Some(url) = &escalation.silence_url {
        links.push(json!({ "href": url, "text": "Silence in Alertmanager" }));
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": incident_dedup_key(escalation.incident_id),
        "payload": payload,
        "links": links,
        "client": "salve",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::content::sample;

    fn channel(preset: WebhookPreset) -> WebhookChannel {
        WebhookChannel {
            url: None,
            preset,
            headers: BTreeMap::new(),
            body: None,
            body_resolved: None,
            routing_key: None,
            routing_key_file: None,
            timeout: default_timeout(),
            max_per_minute: None,
        }
    }

    #[test]
    fn pagerduty_body_has_the_events_api_v2_fields() {
        let mut e = sample();
        e.summary = "x".repeat(2000);
        e.annotations.clear();
        let body = pagerduty_body("R0UTING", &e);
        assert_eq!(body["routing_key"], "R0UTING");
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "salve-incident-42");
        assert_eq!(body["payload"]["source"], "web1");
        assert_eq!(body["payload"]["severity"], "critical");
        assert_eq!(body["payload"]["component"], "nginx");
        assert_eq!(body["payload"]["class"], "ServiceDown");
        assert_eq!(body["payload"]["custom_details"]["reason"], "verify_failed");
        let summary = body["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), PAGERDUTY_SUMMARY_CHARS);
        assert_eq!(body["links"][0]["text"], "Alert source");
        assert_eq!(body["client"], "salve");
    }

    #[test]
    fn pagerduty_pages_say_where_and_use_the_summary_annotation() {
        let with_annotation = pagerduty_body("R", &sample());
        assert_eq!(
            with_annotation["payload"]["summary"],
            "verify_failed: nginx is down on web1"
        );
        assert_eq!(with_annotation["payload"]["source"], "web1");
        // No target (novel): the alert's instance, never the alertname.
        let mut novel = sample();
        novel.target = None;
        novel.annotations.clear();
        let body = pagerduty_body("R", &novel);
        assert_eq!(body["payload"]["source"], "web1:9100");
        assert_eq!(body["payload"]["summary"], novel.summary_line());
        novel.labels.remove("instance");
        assert_eq!(pagerduty_body("R", &novel)["payload"]["source"], "salve");
    }

    #[test]
    fn severities_map_to_pagerduty_words() {
        for (label, expected) in [
            (Some("CRITICAL"), "critical"),
            (Some("page"), "critical"),
            (Some("warning"), "warning"),
            (Some("info"), "info"),
            (Some("high"), "error"),
            (None, "error"),
        ] {
            assert_eq!(pagerduty_severity(label), expected, "{label:?}");
        }
    }

    #[test]
    fn problems_name_their_key_and_never_print_secrets() {
        let keys = |c: &WebhookChannel| -> Vec<&'static str> {
            problems(c).into_iter().map(|(key, _)| key).collect()
        };
        assert_eq!(keys(&channel(WebhookPreset::Generic)), ["url"]);
        assert_eq!(keys(&channel(WebhookPreset::Pagerduty)), ["routing_key"]);
        let mut c = channel(WebhookPreset::Generic);
        c.url = Some(Secret::new("ftp://hunter2@x/".into()));
        c.headers
            .insert("Authorization".into(), Secret::new("hunter2\nX: y".into()));
        c.body = Some(r#"{"t": "{{ summary }}"}"#.into());
        let found = problems(&c);
        assert_eq!(
            found.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["url", "headers", "body"]
        );
        assert!(!format!("{found:?}").contains("hunter2"), "{found:?}");
    }

    #[test]
    fn error_excerpts_hide_what_the_channel_sends() {
        let mut c = channel(WebhookPreset::Pagerduty);
        c.url = Some(Secret::new(
            "https://x.test/hook/0123456789abcdef?token=hunter2-in-query&v=1".into(),
        ));
        c.headers.insert(
            "Authorization".into(),
            Secret::new("Bearer hunter2-bearer".into()),
        );
        c.routing_key = Some(Secret::new("hunter2-routing".into()));
        let sender = WebhookSender::build(&c).unwrap();
        let answer = "bad token hunter2-bearer (Bearer hunter2-bearer) for \
                      /hook/0123456789abcdef?token=hunter2-in-query, key hunter2-routing, v=1";
        let redacted = redact(answer, &sender.credentials);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(!redacted.contains("0123456789abcdef"), "{redacted}");
        // Short words (`Bearer`, `1`) are left alone.
        assert_eq!(
            redacted,
            "bad token [redacted] ([redacted]) for /hook/[redacted]?token=[redacted], \
             key [redacted], v=1"
        );
    }

    #[test]
    fn lower_case_header_from_the_environment_wins() {
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_owned(), Secret::new("file".into()));
        headers.insert("authorization".to_owned(), Secret::new("env".into()));
        let map = header_map(&headers).unwrap();
        assert_eq!(map.get("authorization").unwrap(), "env");
        assert_eq!(map.len(), 1);
    }
}
