//! Alertmanager silences for the life of a fix: the `[alertmanager]` settings and a small
//! client for Alertmanager's API v2 that creates a silence matching an alert's labels,
//! expires it, and lists the silences salve made. It never decides when to silence (the
//! engine does), never puts alert text into a URL (labels travel only as JSON values, a
//! silence id only as one encoded path segment), and never shows a credential.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::de_duration;
use crate::incident::IncidentId;
use crate::secret::Secret;

/// `createdBy` of every silence salve makes; the restart cleanup touches no other.
pub const CREATED_BY: &str = "salve";

/// Every comment salve writes starts so, followed by the incident id and a colon.
const COMMENT_PREFIX: &str = "salve incident ";

/// How much of an error answer's body is kept for the journal.
const ERROR_BODY_CHARS: usize = 300;

/// `[alertmanager]`: where salve silences an alert while it fixes it. Without `url` (or
/// `urls`) salve makes no silences.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerSettings {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093` (a path prefix is kept).
    pub url: Option<String>,
    /// An HA cluster instead of `url`: each request goes to the first replica that
    /// answers, and the silence reaches the others by gossip.
    pub urls: Vec<String>,
    /// `Authorization: Bearer …` on every request; prefer `bearer_token_file`.
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic auth, with `password` or (better) `password_file`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// Bound on each request to one replica (connect included).
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Added to the fix's longest duration (its steps' timeouts and its verify window) for
    /// the silence's `endsAt`: the silence lapses by itself if salve never expires it.
    #[serde(deserialize_with = "de_duration")]
    pub margin: Duration,
    /// salve's own URL as humans reach it: the silence's comment links the incident
    /// (`{external_url}/api/v1/incidents/{id}`). Without it the comment names the id only.
    pub external_url: Option<String>,
}

impl Default for AlertmanagerSettings {
    fn default() -> Self {
        AlertmanagerSettings {
            url: None,
            urls: Vec::new(),
            bearer_token: None,
            bearer_token_file: None,
            username: None,
            password: None,
            password_file: None,
            timeout: Duration::from_secs(5),
            margin: Duration::from_secs(120),
            external_url: None,
        }
    }
}

impl AlertmanagerSettings {
    /// The configured replicas, `url` or `urls`, as written.
    pub fn replicas(&self) -> Vec<&str> {
        self.url
            .iter()
            .chain(&self.urls)
            .map(String::as_str)
            .collect()
    }
}

/// The semantic problems of `[alertmanager]`, each with the key to blame; no I/O (the
/// secrets are read by the config loader).
pub fn settings_problems(settings: &AlertmanagerSettings) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if settings.url.is_some() && !settings.urls.is_empty() {
        problems.push(("url", "set url or urls, not both".to_owned()));
    }
    for replica in settings.replicas() {
        let key = if settings.url.is_some() {
            "url"
        } else {
            "urls"
        };
        if let Err(message) = base_url(replica) {
            problems.push((key, message));
        }
    }
    if let Some(external) = &settings.external_url
        && let Err(message) = base_url(external)
    {
        problems.push(("external_url", message));
    }
    if settings.timeout.is_zero() {
        problems.push(("timeout", "must be > 0".to_owned()));
    }
    let basic = settings.password.is_some() || settings.password_file.is_some();
    if settings.username.is_some() != basic {
        problems.push((
            "username",
            "username and password (or password_file) must be set together".to_owned(),
        ));
    }
    if basic && (settings.bearer_token.is_some() || settings.bearer_token_file.is_some()) {
        problems.push((
            "bearer_token_file",
            "choose a bearer token or basic auth, not both".to_owned(),
        ));
    }
    problems
}

/// An `http(s)` base URL without credentials, query or fragment (credentials have their
/// own keys, so they are never printed with the URL).
fn base_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?}: only http and https", url.scheme()));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err("no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL: use username and password_file".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL takes no query or fragment".to_owned());
    }
    Ok(url)
}

/// How salve authenticates to Alertmanager (resolved from the settings by the config).
#[derive(Debug, Clone)]
pub enum Credentials {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// Why a silence request did not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// No replica answered (connect failed or timed out on each).
    #[error("no Alertmanager answered: {0}")]
    Unreachable(String),
    /// A replica answered with an error.
    #[error("Alertmanager answered {status}: {body}")]
    Refused { status: u16, body: String },
    /// The answer was not what API v2 says.
    #[error("unexpected answer from Alertmanager: {0}")]
    Malformed(String),
    /// Nothing to silence: the alert has no label with a value.
    #[error("the alert has no labels to match")]
    NoMatchers,
    #[error("setting up the Alertmanager client: {0}")]
    Setup(String),
}

/// One silence salve made and that is still active (or pending), as Alertmanager lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnSilence {
    pub id: String,
    /// The incident its comment names.
    pub incident: IncidentId,
    /// Its matchers, when every one is an equality (as salve writes them); else `None`.
    pub labels: Option<BTreeMap<String, String>>,
}

/// The client: one per process, shared by the remediator and the startup cleanup.
pub struct Silencer {
    http: reqwest::Client,
    replicas: Vec<reqwest::Url>,
    credentials: Option<Credentials>,
    margin: Duration,
    external_url: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Matcher {
    name: String,
    value: String,
    is_regex: bool,
    #[serde(default = "yes")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence<'a> {
    matchers: Vec<Matcher>,
    starts_at: String,
    ends_at: String,
    created_by: &'a str,
    comment: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    id: String,
    #[serde(default)]
    matchers: Vec<Matcher>,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
    status: ListedStatus,
}

#[derive(Deserialize)]
struct ListedStatus {
    state: String,
}

impl Silencer {
    /// The client for `settings`, or `None` when no Alertmanager is configured.
    pub fn new(
        settings: &AlertmanagerSettings,
        credentials: Option<Credentials>,
    ) -> Result<Option<Silencer>, SilenceError> {
        let replicas = settings
            .replicas()
            .into_iter()
            .map(|text| base_url(text).map_err(|e| SilenceError::Setup(format!("{text}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if replicas.is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Silences go where the config says, not through a proxy from the environment.
            .no_proxy()
            .timeout(settings.timeout)
            .user_agent(concat!("salve/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SilenceError::Setup(e.to_string()))?;
        Ok(Some(Silencer {
            http,
            replicas,
            credentials,
            margin: settings.margin,
            external_url: settings
                .external_url
                .as_ref()
                .map(|url| url.trim_end_matches('/').to_owned()),
        }))
    }

    /// Added to a fix's longest duration for the silence's end.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// `salve incident <id>: <recipe> on <target> <link>` (the link when `external_url`
    /// is set): the shape the restart cleanup recognises.
    pub fn comment(&self, incident: IncidentId, recipe: &str, target: &str) -> String {
        let mut comment = format!("{COMMENT_PREFIX}{incident}: {recipe} on {target}");
        if let Some(base) = &self.external_url {
            comment.push_str(&format!(" {base}/api/v1/incidents/{incident}"));
        }
        comment
    }

    /// Creates a silence from now to `ends_at` with one equality matcher per label (labels
    /// with an empty value match absence in Alertmanager, so they are left out); returns
    /// its id.
    pub async fn create(
        &self,
        labels: &BTreeMap<String, String>,
        ends_at: DateTime<Utc>,
        comment: &str,
    ) -> Result<String, SilenceError> {
        let matchers: Vec<Matcher> = labels
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| Matcher {
                name: name.clone(),
                value: value.clone(),
                is_regex: false,
                is_equal: true,
            })
            .collect();
        if matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        let body = PostableSilence {
            matchers,
            starts_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            ends_at: ends_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            created_by: CREATED_BY,
            comment,
        };
        let response = self
            .send(|base| self.http.post(endpoint(base, &["silences"])).json(&body))
            .await?;
        let created: Created = read_json(response).await?;
        Ok(created.silence_id)
    }

    /// Expires the silence `id`. One already expired or unknown counts as expired.
    pub async fn expire(&self, id: &str) -> Result<(), SilenceError> {
        let result = self
            .send(|base| self.http.delete(endpoint(base, &["silence", id])))
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SilenceError::Refused { status: 404, .. }) => Ok(()),
            // Alertmanager answers 500 "silence … already expired" to a second expiry.
            Err(SilenceError::Refused { body, .. }) if body.contains("already expired") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The active and pending silences salve made: `createdBy` salve and a comment of
    /// salve's shape. Every other silence is left out.
    pub async fn own_active(&self) -> Result<Vec<OwnSilence>, SilenceError> {
        let response = self
            .send(|base| self.http.get(endpoint(base, &["silences"])))
            .await?;
        let listed: Vec<Listed> = read_json(response).await?;
        Ok(listed
            .into_iter()
            .filter(|silence| silence.created_by == CREATED_BY)
            .filter(|silence| matches!(silence.status.state.as_str(), "active" | "pending"))
            .filter_map(|silence| {
                let incident = incident_of_comment(&silence.comment)?;
                let labels = silence
                    .matchers
                    .iter()
                    .all(|m| m.is_equal && !m.is_regex)
                    .then(|| {
                        silence
                            .matchers
                            .iter()
                            .map(|m| (m.name.clone(), m.value.clone()))
                            .collect()
                    });
                Some(OwnSilence {
                    id: silence.id,
                    incident,
                    labels,
                })
            })
            .collect())
    }

    /// Sends the request `build` makes for each replica in turn until one answers; an
    /// answer that is not a success is an error (the next replica is not asked: the
    /// cluster shares its silences, so it would say the same).
    async fn send(
        &self,
        build: impl Fn(&reqwest::Url) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SilenceError> {
        let mut failures = Vec::new();
        for base in &self.replicas {
            let request = match &self.credentials {
                Some(Credentials::Bearer(token)) => build(base).bearer_auth(token.expose()),
                Some(Credentials::Basic { username, password }) => {
                    build(base).basic_auth(username, Some(password.expose()))
                }
                None => build(base),
            };
            match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    return Err(SilenceError::Refused {
                        status,
                        body: body.trim().chars().take(ERROR_BODY_CHARS).collect(),
                    });
                }
                Err(error) => failures.push(format!("{}: {}", host_of(base), describe(&error))),
            }
        }
        Err(SilenceError::Unreachable(failures.join("; ")))
    }
}

/// The incident id a comment of salve's shape names.
pub fn incident_of_comment(comment: &str) -> Option<IncidentId> {
    let rest = comment.strip_prefix(COMMENT_PREFIX)?;
    let (id, _) = rest.split_once(':')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().map(IncidentId)
}

/// `base` + `/api/v2/` + `segments`, each segment percent-encoded.
fn endpoint(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("a checked base URL has path segments")
        .pop_if_empty()
        .extend(["api", "v2"])
        .extend(segments);
    url
}

/// `host:port` only: the path could carry a token some proxies put there.
fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "?".to_owned(),
    }
}

fn describe(error: &reqwest::Error) -> String {
    let mut message = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    // The causes, without the URL reqwest's own Display adds.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, SilenceError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SilenceError::Malformed(describe(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| SilenceError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(edit: impl FnOnce(&mut AlertmanagerSettings)) -> AlertmanagerSettings {
        let mut settings = AlertmanagerSettings::default();
        edit(&mut settings);
        settings
    }

    #[test]
    fn a_comment_names_its_incident_and_only_salves_shape_is_read_back() {
        let silencer = Silencer::new(
            &settings(|s| {
                s.url = Some("http://127.0.0.1:9093".into());
                s.external_url = Some("https://salve.example/".into());
            }),
            None,
        )
        .unwrap()
        .unwrap();
        let comment = silencer.comment(IncidentId(42), "service-restart", "web1");
        assert_eq!(
            comment,
            "salve incident 42: service-restart on web1 https://salve.example/api/v1/incidents/42"
        );
        assert_eq!(incident_of_comment(&comment), Some(IncidentId(42)));
        for foreign in [
            "salve incident : x",
            "salve incident 4x2: x",
            "salve incident 42",
            "maintenance by alice",
            " salve incident 42: x",
            "salve incident -1: x",
        ] {
            assert_eq!(incident_of_comment(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn no_url_means_no_silencer() {
        assert!(Silencer::new(&settings(|_| {}), None).unwrap().is_none());
    }

    #[test]
    fn a_silence_id_is_one_encoded_path_segment_under_a_kept_prefix() {
        let base = base_url("http://am.example:9093/prefix/").unwrap();
        assert_eq!(
            endpoint(&base, &["silence", "../x?y#z"]).as_str(),
            "http://am.example:9093/prefix/api/v2/silence/..%2Fx%3Fy%23z"
        );
    }

    #[test]
    fn settings_problems_name_their_key() {
        let check = |edit: fn(&mut AlertmanagerSettings), expected: &[&str]| {
            let keys: Vec<&str> = settings_problems(&settings(edit))
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            assert_eq!(keys, expected);
        };
        check(|s| s.url = Some("http://127.0.0.1:9093".into()), &[]);
        check(|s| s.url = Some("ftp://127.0.0.1".into()), &["url"]);
        check(|s| s.url = Some("not a url".into()), &["url"]);
        check(|s| s.url = Some("http://u:p@127.0.0.1".into()), &["url"]);
        check(
            |s| s.urls = vec!["http://a:1".into(), "http://b:2/?q".into()],
            &["urls"],
        );
        check(
            |s| {
                s.url = Some("http://a:1".into());
                s.urls = vec!["http://b:2".into()];
            },
            &["url"],
        );
        check(|s| s.username = Some("ops".into()), &["username"]);
        check(
            |s| s.external_url = Some("javascript:x".into()),
            &["external_url"],
        );
        check(|s| s.timeout = Duration::ZERO, &["timeout"]);
    }
}
