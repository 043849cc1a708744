//! Settings: `salve.toml` (or the embedded default) layered with `SALVE_SECTION__KEY`
//! environment overrides through the `config` crate. Every struct denies unknown keys;
//! secrets are `Secret` and never reach `Debug`, logs or output.

mod paths;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::duration::de_duration;
use crate::intake::Limits;
use crate::inventory::{Host, Inventory};
use crate::maintenance::{MaintenanceSettings, MaintenanceWindow};
use crate::notify::ChannelSettings;
use crate::plan::Mode;
use crate::secret::{BLANK_SECRET, Secret, secret_from};
use crate::ssh::SshSettings;
use crate::tomlspan;

/// The configuration salve runs on when no file is given and `./salve.toml` is absent.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Where the settings came from, for messages.
pub const EMBEDDED_NAME: &str = "<embedded default>";

/// `message` without the value serde quotes in a type error (`invalid type: integer
/// `123456`, expected a string` → `invalid type: integer, expected a string`): the value
/// may be a secret written with the wrong type (a numeric password, `headers = "Bearer …"`).
/// The file:line still says where.
fn without_quoted_values(message: &str) -> String {
    static QUOTED_VALUE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(invalid (?:type|value): (?:string|integer|floating point|boolean|character)) (?:"(?:[^"\\]|\\.)*"|`[^`]*`)"#,
        )
        .expect("a valid regex")
    });
    QUOTED_VALUE.replace_all(message, "$1").into_owned()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub intake: IntakeSettings,
    pub store: StoreSettings,
    pub recipes: RecipeSettings,
    pub engine: EngineSettings,
    pub escalation: EscalationSettings,
    pub ssh: SshSettings,
    pub limits: LimitSettings,
    /// Approve/deny links for recipes with `mode = "approve"`.
    pub approval: ApprovalSettings,
    /// `[alertmanager]`: silence an alert while salve fixes it (optional).
    pub alertmanager: crate::silence::AlertmanagerSettings,
    /// The inventory: the only hosts salve may ever touch.
    pub hosts: Vec<Host>,
    /// `[[maintenance]]`: scheduled windows in which matching remediations are paused.
    pub maintenance: Vec<MaintenanceSettings>,
}

/// `[approval]`: how the plans of `mode = "approve"` recipes wait for a human.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalSettings {
    /// The HMAC-SHA256 key that signs approve/deny links; prefer `key_file`. Required
    /// (`salve check` fails without it) when any recipe says `mode = "approve"`.
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
    /// How long a plan waits for a decision; then it is `approval_expired` and escalated.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// salve's URL as the people paged reach it (`https://salve.example`): links are
    /// `BASE/approve/TOKEN`. Without it, `http://` + `server.listen`.
    pub base_url: Option<String>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            key: None,
            key_file: None,
            timeout: Duration::from_secs(15 * 60),
            base_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on. Port 0 picks a free port (printed at startup).
    #[serde(deserialize_with = "de_listen")]
    pub listen: SocketAddr,
    /// Largest accepted webhook body in bytes; larger bodies get 413.
    pub body_limit_bytes: usize,
    /// `human` or `json` log lines on stderr.
    pub log_format: LogFormat,
    /// Allow webhooks without credentials on a non-loopback address. Without credentials
    /// salve only starts on loopback unless this is set.
    pub allow_unauthenticated: bool,
    pub auth: AuthSettings,
    /// Credentials for the incidents/breakers API, separate from the webhook's.
    pub api: ApiSettings,
    /// A request body must have arrived this long after its headers, or the request gets
    /// 408 and the connection is closed (a trickled body cannot hold a connection).
    #[serde(deserialize_with = "de_duration")]
    pub body_timeout: Duration,
    /// Most connections open at once, all workers together. Beyond it new connections
    /// wait in the listen backlog until a slot frees (the header and body deadlines free
    /// slots held by slow clients).
    pub max_connections: usize,
}

fn de_listen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!("server.listen: {text:?} is not an IP:port address"))
    })
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9095)),
            body_limit_bytes: 1024 * 1024,
            log_format: LogFormat::default(),
            allow_unauthenticated: false,
            auth: AuthSettings::default(),
            api: ApiSettings::default(),
            body_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Webhook credentials, as Alertmanager's `http_config` sends them. A request passes
/// with a matching bearer token OR matching basic credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Bearer token (`Authorization: Bearer …`). Prefer `SALVE_SERVER__AUTH__BEARER_TOKEN`
    /// or `bearer_token_file` over writing it here.
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_username: Option<String>,
    pub basic_password: Option<Secret>,
    pub basic_password_file: Option<PathBuf>,
}

/// `[server.api]`: who may read incidents and reset breakers. The webhook credential
/// (which every Alertmanager config holds) never can.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// `tokens = [{ name = "ops", token_file = "/etc/salve/ops-token", scope = "operate" }]`.
    /// Names are unique and recorded in the journal for what the token changes.
    #[serde(default)]
    pub tokens: Vec<ApiTokenSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenSettings {
    /// Who this is, as the journal records it (`breaker_reset` by = NAME).
    pub name: String,
    /// The bearer token; prefer `token_file`.
    pub token: Option<Secret>,
    /// File holding the token (a trailing newline is ignored).
    pub token_file: Option<PathBuf>,
    /// `read`: GET incidents and breakers. `operate`: also POST /api/v1/breakers/reset.
    pub scope: ApiScope,
}

/// What an API token may do; `Operate` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    Read,
    Operate,
}

impl ApiScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Read => "read",
            ApiScope::Operate => "operate",
        }
    }
}

/// One API token, resolved.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub token: Secret,
    pub scope: ApiScope,
}

/// `[intake]`: the bounds on one notification (its keys are [`Limits`]' fields, read
/// straight into it: `max_alerts`, `max_labels`, `max_name_bytes`, `max_value_bytes`; the
/// defaults are `Limits::default()`) and `[intake.grafana]`.
#[derive(Debug, Clone, Default)]
pub struct IntakeSettings {
    pub limits: Limits,
    pub grafana: GrafanaSettings,
}

/// By hand only because `[intake]` mixes `Limits`' keys with the `grafana` table: serde's
/// `flatten` does not go with `deny_unknown_fields`, and it buffers the values, which
/// risks environment overrides (text until read as the key's type) no longer reading as
/// numbers. Same shape as the derive: a field identifier (unknown keys refused), missing
/// keys keep their default.
impl<'de> Deserialize<'de> for IntakeSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IntakeSettings, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Key {
            MaxAlerts,
            MaxLabels,
            MaxNameBytes,
            MaxValueBytes,
            Grafana,
        }
        const KEYS: &[&str] = &[
            "max_alerts",
            "max_labels",
            "max_name_bytes",
            "max_value_bytes",
            "grafana",
        ];
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IntakeSettings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("struct IntakeSettings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<IntakeSettings, A::Error> {
                let mut settings = IntakeSettings::default();
                let mut seen = BTreeSet::new();
                while let Some(key) = map.next_key::<Key>()? {
                    let name = match key {
                        Key::MaxAlerts => "max_alerts",
                        Key::MaxLabels => "max_labels",
                        Key::MaxNameBytes => "max_name_bytes",
                        Key::MaxValueBytes => "max_value_bytes",
                        Key::Grafana => "grafana",
                    };
                    if !seen.insert(name) {
                        return Err(serde::de::Error::duplicate_field(name));
                    }
                    let limits = &mut settings.limits;
                    match key {
                        Key::MaxAlerts => limits.max_alerts = map.next_value()?,
                        Key::MaxLabels => limits.max_labels = map.next_value()?,
                        Key::MaxNameBytes => limits.max_name_bytes = map.next_value()?,
                        Key::MaxValueBytes => limits.max_value_bytes = map.next_value()?,
                        Key::Grafana => settings.grafana = map.next_value()?,
                    }
                }
                Ok(settings)
            }
        }
        deserializer.deserialize_struct("IntakeSettings", KEYS, Visitor)
    }
}

/// Grafana's optional HMAC-SHA256 webhook signature.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaSettings {
    /// Shared secret; when set, unsigned or badly signed Grafana posts get 401.
    pub hmac_secret: Option<Secret>,
    pub hmac_secret_file: Option<PathBuf>,
    pub signature_header: String,
    /// When Grafana is configured with a timestamp header, name it here: the signed
    /// string becomes `timestamp:body` and stale timestamps are refused.
    pub timestamp_header: Option<String>,
    #[serde(deserialize_with = "de_duration")]
    pub max_timestamp_skew: Duration,
}

impl Default for GrafanaSettings {
    fn default() -> Self {
        GrafanaSettings {
            hmac_secret: None,
            hmac_secret_file: None,
            signature_header: "X-Grafana-Alert-Signature".into(),
            timestamp_header: None,
            max_timestamp_skew: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://PATH` (relative to the config file's directory), `sqlite:///abs/path`, or
    /// `postgres://USER@HOST:PORT/DATABASE?sslmode=require` for several replicas (no
    /// password in the URL: `password_file` or `SALVE_STORE__PASSWORD`).
    pub url: String,
    /// Finished incidents (and their journal) older than this are deleted, hourly and at
    /// start; open ones, undelivered pages and runs a breaker window still counts are
    /// kept whatever their age. At least 1h; default 90 days.
    #[serde(deserialize_with = "de_duration")]
    pub retention: Duration,
    /// PostgreSQL: the password; prefer `password_file` (or `SALVE_STORE__PASSWORD`).
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// PostgreSQL over TLS (`sslmode=require` in the URL): the CA certificate(s), PEM, the
    /// server's certificate must chain to; the platform's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// How long a replica that stops renewing (it died) keeps its claims: after this,
    /// another replica takes its runs over. 3s to 5m; default 15s.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
    /// PostgreSQL: connections in the pool.
    pub pool_size: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: "sqlite://salve.db".into(),
            retention: Duration::from_secs(90 * 24 * 3600),
            password: None,
            password_file: None,
            ca_file: None,
            lease: Duration::from_secs(15),
            pool_size: 16,
        }
    }
}

impl StoreSettings {
    /// The URL names a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecipeSettings {
    /// Directory of `*.toml` recipes, relative to the config file's directory. A missing
    /// directory is a warning (`no recipes`), not an error.
    pub dir: PathBuf,
}

impl Default for RecipeSettings {
    fn default() -> Self {
        RecipeSettings {
            dir: PathBuf::from("recipes"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// `dry-run` (default): plan and journal, run nothing. `enforce`: recipes that say
    /// `mode = "enforce"` act; the others stay dry-run.
    #[serde(deserialize_with = "de_mode")]
    pub mode: Mode,
    /// Remediations running at once (on different hosts; one host never runs two).
    pub max_parallel: usize,
    /// On SIGTERM, running remediations get this long to finish; what is cut off is
    /// marked `interrupted` (or re-run, if idempotent) at the next start.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_grace: Duration,
    /// `error_budget = { max_failures = 5, window = "15m" }`: when that many remediations
    /// fail or fail verification fleet-wide within `window`, salve pauses every
    /// remediation, pages once (`escalation.default`) with the list, and stays paused
    /// until a human runs `salve resume`. Absent: no budget.
    pub error_budget: Option<ErrorBudget>,
}

/// The fleet error budget (`[engine] error_budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBudget {
    /// Failed or verify-failed remediations, all hosts and recipes together, that pause
    /// everything.
    pub max_failures: u32,
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
}

fn de_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Mode, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "enforce" => Ok(Mode::Enforce),
        "dry-run" => Ok(Mode::DryRun),
        other => Err(serde::de::Error::custom(format!(
            "unknown mode {other:?}, expected \"enforce\" or \"dry-run\""
        ))),
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            mode: Mode::DryRun,
            max_parallel: 16,
            shutdown_grace: Duration::from_secs(30),
            error_budget: None,
        }
    }
}

/// Remediation rate limits (token buckets). An incident over a limit waits up to
/// `max_wait` for a token, then is not run: it ends `rate_limited` and is escalated.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Remediations started per minute, all hosts together.
    pub remediations_per_minute: u32,
    /// Remediations started per minute on any one host.
    pub per_host_per_minute: u32,
    /// How long an incident may wait for a token before it escalates `rate_limited`.
    #[serde(deserialize_with = "de_duration")]
    pub max_wait: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            remediations_per_minute: 60,
            per_host_per_minute: 6,
            max_wait: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationSettings {
    /// Channels for an escalation no route matches: novel, refused, and any other whose
    /// recipe has no `escalate.to`.
    pub default: Vec<String>,
    /// `[[escalation.routes]]`: `match` (Alertmanager matchers on the alert's labels) and
    /// `to` (channels). For an escalation its recipe does not route itself, the first route
    /// whose matchers all match wins; `default` is last.
    pub routes: Vec<crate::recipe::Route>,
    pub channels: BTreeMap<String, ChannelSettings>,
    /// Floods become digests: a channel gets at most this many separate messages per
    /// `digest_window` for one escalation reason; more escalations for that (channel,
    /// reason) — or more than this many due at once — go out as one digest listing them
    /// all, at most one digest per `digest_window`. 0 sends every escalation as a digest.
    pub digest_after: usize,
    #[serde(deserialize_with = "de_duration")]
    pub digest_window: Duration,
    /// Deliveries in flight at once, across channels, so one slow channel (or a flood)
    /// never holds back another incident's page.
    pub max_concurrent_deliveries: usize,
}

impl EscalationSettings {
    /// The routes, then the default, as the engine chooses channels.
    pub fn routes(&self) -> crate::recipe::Routes {
        crate::recipe::Routes::new(self.routes.clone(), self.default.clone())
    }
}

impl Default for EscalationSettings {
    fn default() -> EscalationSettings {
        EscalationSettings {
            default: Vec::new(),
            routes: Vec::new(),
            channels: BTreeMap::new(),
            digest_after: 5,
            digest_window: Duration::from_secs(60),
            max_concurrent_deliveries: 8,
        }
    }
}

/// A configuration problem, located when it came from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The configuration salve runs on: the settings with their secrets resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// `salve.toml`'s path, or `<embedded default>`.
    pub origin: String,
    pub bearer_token: Option<Secret>,
    pub basic: Option<(String, Secret)>,
    pub grafana_secret: Option<Secret>,
    pub api_tokens: Vec<ApiToken>,
    /// `[approval] key`, resolved (inline or from its file).
    pub approval_key: Option<Secret>,
    /// `[store] password`, resolved (inline, `SALVE_STORE__PASSWORD`, or from its file).
    pub store_password: Option<Secret>,
    /// `[alertmanager]`'s credentials, read.
    pub alertmanager_credentials: Option<crate::silence::Credentials>,
    /// `[[maintenance]]`, validated.
    pub maintenance: Vec<MaintenanceWindow>,
}

impl Config {
    pub fn inventory(&self) -> Inventory {
        Inventory::new(self.settings.hosts.clone())
    }

    pub fn channel_names(&self) -> BTreeSet<String> {
        self.settings.escalation.channels.keys().cloned().collect()
    }

    /// What signs approve/deny links: `None` without `[approval] key`. Without
    /// `base_url` the links point at `listening` (the address salve bound).
    pub fn approval_links(&self, listening: SocketAddr) -> Option<crate::approval::LinkSigner> {
        let key = self.approval_key.clone()?;
        let base = match &self.settings.approval.base_url {
            Some(base) => base.clone(),
            None => format!("http://{listening}"),
        };
        Some(crate::approval::LinkSigner::new(key, &base))
    }

    pub fn auth_configured(&self) -> bool {
        self.bearer_token.is_some() || self.basic.is_some()
    }

    /// No webhook credential and no API token: the loopback default, where only the
    /// `Host` check stands between a browser on this machine and the API (DNS rebinding).
    pub fn no_credentials(&self) -> bool {
        !self.auth_configured() && self.api_tokens.is_empty()
    }
}

/// Which file to read: the explicit one, else `./salve.toml` when present, else none
/// (the embedded default).
pub fn resolve_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_owned()),
        None => {
            let local = PathBuf::from("salve.toml");
            local.exists().then_some(local)
        }
    }
}

/// Load settings from `path` (or the embedded default) plus the process environment.
pub fn load(path: Option<&Path>) -> Result<Config, Vec<ConfigProblem>> {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SALVE_"))
        .collect();
    load_with_env(path, env)
}

/// `load` with an explicit environment, so tests need not touch the process's.
pub fn load_with_env(
    path: Option<&Path>,
    env: BTreeMap<String, String>,
) -> Result<Config, Vec<ConfigProblem>> {
    match path {
        Some(path) => {
            let origin = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    // Absolute, so messages name the file an operator can look for.
                    let base = path.parent().and_then(|parent| {
                        std::env::current_dir().ok().map(|cwd| cwd.join(parent))
                    });
                    load_from_str_in(&origin, &text, env, base.as_deref())
                }
                Err(e) => Err(vec![ConfigProblem {
                    file: origin,
                    line: None,
                    message: format!("cannot read: {e}"),
                }]),
            }
        }
        None => load_from_str(EMBEDDED_NAME, EMBEDDED_DEFAULT, env),
    }
}

/// `load_with_env` on settings text already in memory; `origin` names it in problems
/// (`origin:line: message`) and in [`Config::origin`]. Still reads the `*_file` secrets
/// and checks `ssh.known_hosts` exists, as the file would.
///
/// Two phases: [`parse_layered`] stops at the first problem (nothing after it could be
/// trusted); the semantic checks then run section by section, in file order, and report
/// every problem they find.
pub fn load_from_str(
    origin: &str,
    text: &str,
    env: BTreeMap<String, String>,
) -> Result<Config, Vec<ConfigProblem>> {
    load_from_str_in(origin, text, env, None)
}

/// `load_from_str` for a file in directory `base`: its relative paths (`store.url`,
/// `recipes.dir`, every `*_file`, `ssh.known_hosts`, `ssh.control_dir`) are taken relative
/// to `base`, not to the working directory. `None` (the embedded default, text in memory)
/// leaves them relative to the working directory.
pub fn load_from_str_in(
    origin: &str,
    text: &str,
    env: BTreeMap<String, String>,
    base: Option<&Path>,
) -> Result<Config, Vec<ConfigProblem>> {
    let mut settings = parse_layered(origin, text, env)?;
    if let Some(base) = base.filter(|base| !base.as_os_str().is_empty()) {
        paths::resolve_relative(&mut settings, base);
    }

    let mut problems = Problems::new(origin, text);
    let credentials = server_problems(&settings.server, &mut problems);
    let api_tokens = api_tokens(&settings.server.api, &credentials, &mut problems);
    let grafana_secret = grafana_secret(&settings.intake.grafana, &mut problems);
    intake_problems(&settings.intake.limits, &mut problems);
    limit_problems(&settings.limits, &mut problems);
    engine_problems(&settings.engine, &settings.ssh, &mut problems);
    let store_password = store_problems(&settings.store, &mut problems);
    escalation_problems(&settings.escalation, &mut problems);
    host_problems(&settings.hosts, &mut problems);
    let approval_key = approval_problems(&settings.approval, &mut problems);
    if settings.store.retention < Duration::from_secs(3600) {
        problems.at(
            &["store", "retention"],
            "store.retention is at least 1h: it deletes the journal of finished incidents",
        );
    }
    let alertmanager_credentials = alertmanager_problems(&settings.alertmanager, &mut problems);
    let maintenance = maintenance_problems(&settings, &mut problems);

    if !problems.list.is_empty() {
        return Err(problems.list);
    }
    Ok(Config {
        settings,
        origin: origin.to_owned(),
        bearer_token: credentials.bearer_token,
        basic: credentials.basic,
        grafana_secret,
        api_tokens,
        approval_key,
        store_password,
        alertmanager_credentials,
        maintenance,
    })
}

/// The semantic problems found so far in one settings text, each located by its key
/// path (`[section, key]`) in that text.
struct Problems<'a> {
    origin: &'a str,
    text: &'a str,
    list: Vec<ConfigProblem>,
}

impl<'a> Problems<'a> {
    fn new(origin: &'a str, text: &'a str) -> Problems<'a> {
        Problems {
            origin,
            text,
            list: Vec::new(),
        }
    }

    /// A problem at `path`, blamed on the line where the file sets it (none when only the
    /// environment or a default does).
    fn at(&mut self, path: &[&str], message: impl Into<String>) {
        self.list.push(ConfigProblem {
            file: self.origin.to_owned(),
            line: tomlspan::line_of_path(self.text, path),
            message: message.into(),
        });
    }

    /// `section.key must be > 0` for each key whose value is zero.
    fn unless_positive(&mut self, section: &str, keys: &[(&str, bool)]) {
        for &(key, zero) in keys {
            if zero {
                self.at(&[section, key], format!("{section}.{key} must be > 0"));
            }
        }
    }

    /// The secret given inline or in `{key}_file`, or `None` (with the problem noted at
    /// `blame`) when it cannot be read.
    fn secret(
        &mut self,
        name: &str,
        inline: Option<Secret>,
        file: Option<&Path>,
        blame: &[&str],
    ) -> Option<Secret> {
        secret_from(name, inline, file).unwrap_or_else(|message| {
            self.at(blame, message);
            None
        })
    }
}

/// The first phase: the file alone (for toml's positions), then the environment's
/// overrides, then both layered through the `config` crate into [`Settings`]. Stops at
/// the first problem.
fn parse_layered(
    origin: &str,
    text: &str,
    env: BTreeMap<String, String>,
) -> Result<Settings, Vec<ConfigProblem>> {
    file_alone(origin, text)?;
    let blank = blank_overrides(&env);
    if !blank.is_empty() {
        return Err(blank);
    }
    layered(text, env).map_err(|problem| vec![problem])
}

/// The file parsed on its own: toml's own errors carry a position, the config crate's
/// do not, so a typo is reported as file:line. Every key the settings cannot take is
/// reported, not only the first: after each such problem its `key = value` line is set
/// aside and the rest is read again. A syntax error, or a problem that is not on a
/// `key = value` line (a missing key, a whole table), ends the search: past it, what
/// the file means is a guess.
fn file_alone(origin: &str, text: &str) -> Result<(), Vec<ConfigProblem>> {
    /// Enough for any real file; bounds the work a pathological one can cause.
    const MAX_PROBLEMS: usize = 50;
    let mut problems = Vec::new();
    let mut lines: Vec<&str> = text.lines().collect();
    let mut current = text.to_owned();
    while problems.len() < MAX_PROBLEMS {
        let Err(e) = toml::from_str::<Settings>(&current) else {
            break;
        };
        if !problems.is_empty() && e.message().starts_with("missing field") {
            // Likely the key set aside a moment ago: not a problem of the file.
            break;
        }
        let line = if e.message().trim() == BLANK_SECRET {
            // Inside a `kind`-tagged channel serde buffers the values and the span is
            // lost; the blank string itself is easy to find.
            first_blank_string(&current)
        } else {
            None
        }
        .or_else(|| {
            e.span()
                .map(|span| tomlspan::line_of_offset(&current, span.start))
        });
        problems.push(ConfigProblem {
            file: origin.to_owned(),
            line,
            message: without_quoted_values(e.message().trim()),
        });
        // Go on only past a key the settings refused, on a line of its own, in a file
        // that still parses as TOML without it.
        let syntax_ok = toml::from_str::<toml::Table>(&current).is_ok();
        let Some(index) = line.and_then(|line| line.checked_sub(1)) else {
            break;
        };
        let is_key_line = lines.get(index).is_some_and(|text| {
            let text = text.trim_start();
            !text.starts_with('[') && !text.starts_with('#') && text.contains('=')
        });
        if !syntax_ok || !is_key_line {
            break;
        }
        lines[index] = "";
        let next = lines.join("\n");
        if toml::from_str::<toml::Table>(&next).is_err() {
            break;
        }
        current = next;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        // In file order, as a person fixes them (serde finds them in its own order).
        problems.sort_by_key(|problem| problem.line);
        Err(problems)
    }
}

/// An override set to nothing is a mistake (`VAR=$(cat missing-file)`, `VAR=" "`), and
/// for a secret it would read as "configured": name the variable, never its value.
fn blank_overrides(env: &BTreeMap<String, String>) -> Vec<ConfigProblem> {
    env.iter()
        .filter(|(_, value)| value.trim().is_empty())
        .map(|(name, _)| ConfigProblem {
            file: "environment".into(),
            line: None,
            message: format!("{name} is set but empty or whitespace-only"),
        })
        .collect()
}

/// The file with the `SALVE_SECTION__KEY` overrides on top.
fn layered(text: &str, env: BTreeMap<String, String>) -> Result<Settings, ConfigProblem> {
    let names: Vec<String> = env.keys().cloned().collect();
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("SALVE")
                .prefix_separator("_")
                .separator("__")
                // Values stay text until serde reads them as the key's type (numbers and
                // booleans still parse): with parsing on, a secret of digits (`007`) would
                // arrive as the number 7.
                .try_parsing(false)
                .source(Some(env.into_iter().collect())),
        )
        .build()
        .and_then(|c| c.try_deserialize::<Settings>())
        .map_err(|e| {
            let message = e.to_string();
            ConfigProblem {
                file: blamed_variable(&message, &names).map_or_else(
                    || "environment (SALVE_*)".into(),
                    |name| format!("environment ({name})"),
                ),
                line: None,
                message: without_quoted_values(&message),
            }
        })
}

/// The `SALVE_SECTION__KEY` variable behind a config-crate error about key `section.key`,
/// when the environment sets it: a bad override is blamed on its variable by name.
fn blamed_variable(message: &str, names: &[String]) -> Option<String> {
    let key = message.split("for key `").nth(1)?.split('`').next()?;
    let wanted = format!("SALVE_{}", key.replace('.', "__"));
    names
        .iter()
        .find(|name| name.eq_ignore_ascii_case(&wanted))
        .cloned()
}

/// `[approval]`: the link key (inline or from its file), a timeout above zero, and an
/// `http(s)://` base URL.
/// How long an approve-mode plan may wait at most: beyond a week its plan is stale.
const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

fn approval_problems(approval: &ApprovalSettings, problems: &mut Problems) -> Option<Secret> {
    problems.unless_positive("approval", &[("timeout", approval.timeout.is_zero())]);
    if approval.timeout > MAX_APPROVAL_TIMEOUT {
        problems.at(
            &["approval", "timeout"],
            "approval.timeout is at most 7d: a plan waiting longer is stale (page a human instead)",
        );
    }
    if let Some(base) = &approval.base_url
        && !(base.starts_with("https://") || base.starts_with("http://"))
    {
        problems.at(
            &["approval", "base_url"],
            "approval.base_url must start with https:// or http://",
        );
    }
    problems.secret(
        "approval.key",
        approval.key.clone(),
        approval.key_file.as_deref(),
        &["approval", "key_file"],
    )
}

/// The webhook's credentials, as far as they could be read.
struct WebhookCredentials {
    bearer_token: Option<Secret>,
    basic: Option<(String, Secret)>,
}

/// `[server]`: sizes, the webhook's credentials, and no unauthenticated public listener.
fn server_problems(server: &ServerSettings, problems: &mut Problems) -> WebhookCredentials {
    problems.unless_positive(
        "server",
        &[("body_limit_bytes", server.body_limit_bytes == 0)],
    );
    let auth = &server.auth;
    let bearer_token = problems.secret(
        "server.auth.bearer_token",
        auth.bearer_token.clone(),
        auth.bearer_token_file.as_deref(),
        &["server", "auth", "bearer_token_file"],
    );
    let basic_password = problems.secret(
        "server.auth.basic_password",
        auth.basic_password.clone(),
        auth.basic_password_file.as_deref(),
        &["server", "auth", "basic_password_file"],
    );
    let basic = match (&auth.basic_username, basic_password) {
        (Some(user), Some(password)) => Some((user.clone(), password)),
        (None, None) => None,
        _ => {
            problems.at(
                &["server", "auth"],
                "server.auth: basic_username and basic_password must be set together",
            );
            None
        }
    };
    let addr = server.listen;
    if bearer_token.is_none()
        && basic.is_none()
        && !addr.ip().is_loopback()
        && !server.allow_unauthenticated
    {
        problems.at(
            &["server", "listen"],
            format!(
                "server.listen {addr} is not loopback and no webhook credentials are set: \
                     configure server.auth, or set server.allow_unauthenticated = true"
            ),
        );
    }
    problems.unless_positive(
        "server",
        &[
            ("body_timeout", server.body_timeout.is_zero()),
            ("max_connections", server.max_connections == 0),
        ],
    );
    WebhookCredentials {
        bearer_token,
        basic,
    }
}

/// `[server.api]`: each token named once, readable, and distinct from the others and
/// from the webhook's credentials. Only the good ones are returned.
fn api_tokens(
    api: &ApiSettings,
    webhook: &WebhookCredentials,
    problems: &mut Problems,
) -> Vec<ApiToken> {
    let mut api_tokens: Vec<ApiToken> = Vec::new();
    for (index, entry) in api.tokens.iter().enumerate() {
        let index_text = index.to_string();
        let entry_key = |key| ["server", "api", "tokens", index_text.as_str(), key];
        let label = format!("server.api.tokens[{index}]");
        if entry.name.trim().is_empty() {
            problems.at(&entry_key("name"), format!("{label}.name is empty"));
        } else if api.tokens[..index].iter().any(|t| t.name == entry.name) {
            problems.at(
                &entry_key("name"),
                format!("{label}: duplicate token name {:?}", entry.name),
            );
        }
        match secret_from(
            &format!("{label}.token"),
            entry.token.clone(),
            entry.token_file.as_deref(),
        ) {
            Ok(Some(token)) => {
                let same = |other: &Secret| other.expose() == token.expose();
                if api_tokens.iter().any(|t| same(&t.token)) {
                    problems.at(
                        &entry_key("name"),
                        format!("{label}: the same token as another API token"),
                    );
                } else if webhook.bearer_token.as_ref().is_some_and(same)
                    || webhook
                        .basic
                        .as_ref()
                        .is_some_and(|(_, password)| same(password))
                {
                    problems.at(
                        &entry_key("name"),
                        format!(
                            "{label}: the same secret as the webhook credential; the API needs its own"
                        ),
                    );
                } else {
                    api_tokens.push(ApiToken {
                        name: entry.name.clone(),
                        token,
                        scope: entry.scope,
                    });
                }
            }
            Ok(None) => problems.at(
                &entry_key("name"),
                format!("{label}: set token_file (or token)"),
            ),
            Err(message) => problems.at(&entry_key("token_file"), message),
        }
    }
    api_tokens
}

/// `[intake.grafana]`: the HMAC key, inline or from a file.
fn grafana_secret(grafana: &GrafanaSettings, problems: &mut Problems) -> Option<Secret> {
    problems.secret(
        "intake.grafana.hmac_secret",
        grafana.hmac_secret.clone(),
        grafana.hmac_secret_file.as_deref(),
        &["intake", "grafana"],
    )
}

/// `[intake]`: every bound on a notification's size is positive.
fn intake_problems(limits: &Limits, problems: &mut Problems) {
    problems.unless_positive(
        "intake",
        &[
            ("max_alerts", limits.max_alerts == 0),
            ("max_labels", limits.max_labels == 0),
            ("max_name_bytes", limits.max_name_bytes == 0),
            ("max_value_bytes", limits.max_value_bytes == 0),
        ],
    );
}

/// `[limits]`: both rates are positive.
fn limit_problems(limits: &LimitSettings, problems: &mut Problems) {
    problems.unless_positive(
        "limits",
        &[
            (
                "remediations_per_minute",
                limits.remediations_per_minute == 0,
            ),
            ("per_host_per_minute", limits.per_host_per_minute == 0),
        ],
    );
}

/// `[engine]` and `[ssh]`: enforce mode has the host keys it needs.
fn engine_problems(engine: &EngineSettings, ssh: &SshSettings, problems: &mut Problems) {
    problems.unless_positive("engine", &[("max_parallel", engine.max_parallel == 0)]);
    for (key, message) in ssh.problems() {
        problems.at(&["ssh", key], message);
    }
    // Strict host key checking needs the keys: refuse to enforce without them rather
    // than discover it at 3 a.m. on the first incident.
    if engine.mode == Mode::Enforce {
        match &ssh.known_hosts {
            None => problems.at(
                &["engine", "mode"],
                "engine.mode = \"enforce\" needs ssh.known_hosts (salve never trusts a host key on first use)",
            ),
            Some(path) if !path.is_file() => problems.at(
                &["ssh", "known_hosts"],
                format!("ssh.known_hosts {}: no such file", path.display()),
            ),
            Some(_) => {}
        }
    }
}

/// Longest and shortest `store.lease`: a dead replica's work waits this long at most, and
/// a heartbeat every third of it must fit a slow database round trip.
const MAX_LEASE: Duration = Duration::from_secs(300);
const MIN_LEASE: Duration = Duration::from_secs(3);

/// `[store]`: a URL this build can open, and its password. Returns the password.
fn store_problems(store: &StoreSettings, problems: &mut Problems) -> Option<Secret> {
    let postgres = store.is_postgres();
    if !store.url.starts_with("sqlite://") && !postgres {
        problems.at(
            &["store", "url"],
            // Only the scheme: a database URL may carry a password.
            match store.url.split_once("://") {
                Some((scheme, _)) => format!(
                    "store.url: scheme {scheme:?} is not supported (sqlite://PATH or postgres://USER@HOST/DATABASE)"
                ),
                None => "store.url: expected sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
            },
        );
    }
    if postgres && let Some(why) = postgres_url_problem(&store.url) {
        problems.at(&["store", "url"], why);
    }
    if !(MIN_LEASE..=MAX_LEASE).contains(&store.lease) {
        problems.at(
            &["store", "lease"],
            "store.lease is between 3s and 5m: a dead replica's work waits that long",
        );
    }
    if store.pool_size == 0 {
        problems.at(&["store", "pool_size"], "store.pool_size must be > 0");
    }
    if !postgres {
        for (key, set) in [
            ("password", store.password.is_some()),
            ("password_file", store.password_file.is_some()),
            ("ca_file", store.ca_file.is_some()),
        ] {
            if set {
                problems.at(
                    &["store", key],
                    format!("store.{key} is for a postgres:// store.url"),
                );
            }
        }
    }
    problems.secret(
        "store.password",
        store.password.clone(),
        store.password_file.as_deref(),
        &["store", "password_file"],
    )
}

/// What is wrong with a `postgres://` URL, in words that never repeat a password in it.
fn postgres_url_problem(url: &str) -> Option<String> {
    match url.parse::<tokio_postgres::Config>() {
        Err(e) => Some(format!("store.url is not a PostgreSQL URL: {e}")),
        Ok(config) if config.get_password().is_some() => Some(
            "store.url must not hold a password: it would show wherever the URL is logged; use store.password_file or SALVE_STORE__PASSWORD"
                .into(),
        ),
        Ok(config) if config.get_hosts().is_empty() => {
            Some("store.url names no host (postgres://USER@HOST:PORT/DATABASE)".into())
        }
        Ok(_) => None,
    }
}

/// `[escalation]`: the default route names channels that exist, the pacing is
/// positive, and each channel is one that can be built.
fn escalation_problems(escalation: &EscalationSettings, problems: &mut Problems) {
    for name in &escalation.default {
        if !escalation.channels.contains_key(name) {
            problems.at(
                &["escalation", "default"],
                format!("escalation.default names unknown channel {name:?}"),
            );
        }
    }
    route_problems(escalation, problems);
    if escalation.max_concurrent_deliveries == 0 {
        problems.at(
            &["escalation", "max_concurrent_deliveries"],
            "escalation.max_concurrent_deliveries: must be > 0",
        );
    }
    if escalation.digest_window.is_zero() {
        problems.at(
            &["escalation", "digest_window"],
            "escalation.digest_window: must be > 0",
        );
    }
    for (name, channel) in &escalation.channels {
        channel_problems(name, channel, problems);
    }
}

/// `[[escalation.routes]]`: each has matchers (one without would shadow every route after
/// it and the default) and names channels that exist.
fn route_problems(escalation: &EscalationSettings, problems: &mut Problems) {
    for (index, route) in escalation.routes.iter().enumerate() {
        let index_text = index.to_string();
        let key = |key| ["escalation", "routes", index_text.as_str(), key];
        if route.matchers.is_empty() {
            problems.at(
                &key("match"),
                format!("escalation.routes[{index}].match is empty: a route for every alert is escalation.default"),
            );
        }
        if route.to.is_empty() {
            problems.at(
                &key("to"),
                format!(
                    "escalation.routes[{index}].to is empty: its escalations would reach no channel"
                ),
            );
        }
        for name in &route.to {
            if !escalation.channels.contains_key(name) {
                problems.at(
                    &key("to"),
                    format!("escalation.routes[{index}].to names unknown channel {name:?}"),
                );
            }
        }
    }
}

/// What `salve check` adds about routes to what loading checked, as (problems, warnings):
/// an escalation that could reach no channel (no default and a label set no route
/// matches) is a problem; in enforce mode, a route (or the default) whose channels are all
/// `log` is a warning — a failed fix it escalates pages nobody — and so is, in any mode, a
/// webhook `body` without `body_resolved` (its pages are never followed up). `text` is the
/// settings file's text, for lines.
pub fn route_findings(config: &Config, text: &str) -> (Vec<ConfigProblem>, Vec<ConfigProblem>) {
    let escalation = &config.settings.escalation;
    let mut problems = Problems::new(&config.origin, text);
    if let Some(labels) = escalation.routes().unrouted_example() {
        problems.at(
            &["escalation", "default"],
            format!(
                "escalation: an escalation could reach no channel: an alert with labels {} matches no route and escalation.default is empty",
                crate::recipe::route::labels_text(&labels)
            ),
        );
    }
    let mut warnings = Problems::new(&config.origin, text);
    for (name, channel) in &escalation.channels {
        if let ChannelSettings::Webhook(webhook) = channel
            && webhook.body.is_some()
            && webhook.body_resolved.is_none()
        {
            warnings.at(
                &["escalation", "channels", name, "body"],
                format!("escalation.channels.{name} has a body but no body_resolved: its pages get no follow-up when their incident is over"),
            );
        }
    }
    if config.settings.engine.mode == Mode::Enforce {
        let log_only = |channels: &[String]| {
            !channels.is_empty()
                && channels.iter().all(|name| {
                    matches!(
                        escalation.channels.get(name),
                        Some(ChannelSettings::Log { .. })
                    )
                })
        };
        if log_only(&escalation.default) {
            warnings.at(
                &["escalation", "default"],
                "escalation.default sends only to log channels in enforce mode: nobody is paged",
            );
        }
        for (index, route) in escalation.routes.iter().enumerate() {
            if log_only(&route.to) {
                warnings.at(
                    &["escalation", "routes", &index.to_string(), "to"],
                    format!("escalation.routes[{index}] sends only to log channels in enforce mode: nobody is paged"),
                );
            }
        }
    }
    (problems.list, warnings.list)
}

/// `[escalation.channels.NAME]`: its secret file readable and not blank, its rate
/// positive, and whatever its kind checks without the network.
fn channel_problems(name: &str, channel: &ChannelSettings, problems: &mut Problems) {
    // Read here (not only when the channel is built) so an empty file is a located
    // config error for `salve check` too.
    let secret_file = match channel {
        ChannelSettings::Email(email) => email
            .password_file
            .as_deref()
            .map(|file| ("password", email.password.clone(), file)),
        ChannelSettings::Webhook(webhook) => webhook
            .routing_key_file
            .as_deref()
            .map(|file| ("routing_key", webhook.routing_key.clone(), file)),
        ChannelSettings::Log { .. } => None,
    };
    if let Some((key, inline, file)) = secret_file {
        let file_key = format!("{key}_file");
        problems.secret(
            &format!("escalation.channels.{name}.{key}"),
            inline,
            Some(file),
            &["escalation", "channels", name, &file_key],
        );
    }
    if channel.max_per_minute() == Some(0) {
        problems.at(
            &["escalation", "channels", name, "max_per_minute"],
            format!(
                "escalation.channels.{name}.max_per_minute: must be > 0 (leave it out for no limit)"
            ),
        );
    }
    for (key, message) in crate::notify::channel_problems(channel) {
        problems.at(
            &["escalation", "channels", name, key],
            format!("escalation.channels.{name}.{key}: {message}"),
        );
    }
}

/// `[alertmanager]`: its URLs and settings (`silence::settings_problems`), and its
/// credentials read.
fn alertmanager_problems(
    settings: &crate::silence::AlertmanagerSettings,
    problems: &mut Problems,
) -> Option<crate::silence::Credentials> {
    for (key, message) in crate::silence::settings_problems(settings) {
        problems.at(
            &["alertmanager", key],
            format!("alertmanager.{key}: {message}"),
        );
    }
    let bearer = problems.secret(
        "alertmanager.bearer_token",
        settings.bearer_token.clone(),
        settings.bearer_token_file.as_deref(),
        &["alertmanager", "bearer_token_file"],
    );
    let password = problems.secret(
        "alertmanager.password",
        settings.password.clone(),
        settings.password_file.as_deref(),
        &["alertmanager", "password_file"],
    );
    match (bearer, settings.username.clone(), password) {
        (Some(token), None, None) => Some(crate::silence::Credentials::Bearer(token)),
        (None, Some(username), Some(password)) => {
            Some(crate::silence::Credentials::Basic { username, password })
        }
        _ => None,
    }
}

/// `[[maintenance]]` windows (each problem at its key) and `[engine] error_budget`.
fn maintenance_problems(settings: &Settings, problems: &mut Problems) -> Vec<MaintenanceWindow> {
    if let Some(budget) = &settings.engine.error_budget {
        if budget.max_failures == 0 {
            problems.at(
                &["engine", "error_budget", "max_failures"],
                "engine.error_budget.max_failures must be > 0",
            );
        }
        if budget.window.is_zero() {
            problems.at(
                &["engine", "error_budget", "window"],
                "engine.error_budget.window must be > 0",
            );
        }
    }
    let mut windows = Vec::new();
    for (index, window) in settings.maintenance.iter().enumerate() {
        let index_text = index.to_string();
        match window.window() {
            Ok(window) => {
                if windows
                    .iter()
                    .any(|w: &MaintenanceWindow| w.name == window.name)
                {
                    problems.at(
                        &["maintenance", &index_text, "name"],
                        format!(
                            "maintenance[{index}]: a second window named {:?}",
                            window.name
                        ),
                    );
                }
                windows.push(window);
            }
            Err(found) => {
                for (key, message) in found {
                    problems.at(
                        &["maintenance", &index_text, key],
                        format!("maintenance[{index}]: {message}"),
                    );
                }
            }
        }
    }
    windows
}

/// `[[hosts]]`: the inventory's own checks, located by entry.
fn host_problems(hosts: &[Host], problems: &mut Problems) {
    for (index, message) in Inventory::new(hosts.to_vec()).problems() {
        problems.at(
            &["hosts", &index.to_string()],
            format!("hosts[{index}]: {message}"),
        );
    }
}

/// The line of the first empty or whitespace-only string value in `text`.
fn first_blank_string(text: &str) -> Option<usize> {
    use toml_edit::{Item, Value};
    fn in_value(value: &Value) -> Option<usize> {
        match value {
            Value::String(string) if string.value().trim().is_empty() => {
                string.span().map(|span| span.start)
            }
            Value::Array(array) => array.iter().find_map(in_value),
            Value::InlineTable(table) => table.iter().find_map(|(_, value)| in_value(value)),
            _ => None,
        }
    }
    fn in_item(item: &Item) -> Option<usize> {
        match item {
            Item::Value(value) => in_value(value),
            Item::Table(table) => table.iter().find_map(|(_, item)| in_item(item)),
            Item::ArrayOfTables(tables) => tables
                .iter()
                .find_map(|table| table.iter().find_map(|(_, item)| in_item(item))),
            Item::None => None,
        }
    }
    let document = toml_edit::Document::parse(text).ok()?;
    in_item(document.as_item()).map(|offset| tomlspan::line_of_offset(text, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<ConfigProblem>> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_from_str("salve.toml", text, env)
    }

    #[test]
    fn a_file_and_its_text_load_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salve.toml");
        std::fs::write(&path, "[server]\nlisen = 1\n").unwrap();
        let from_file = load_with_env(Some(&path), BTreeMap::new()).unwrap_err();
        let origin = path.display().to_string();
        let from_text = load_from_str(&origin, "[server]\nlisen = 1\n", BTreeMap::new());
        assert_eq!(from_file, from_text.unwrap_err());
        assert_eq!(from_file[0].file, origin);
        assert_eq!(from_file[0].line, Some(2));
    }

    fn messages(problems: Vec<ConfigProblem>) -> Vec<String> {
        problems.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn embedded_default_is_loopback_dry_run_sqlite() {
        let loaded = load_with_env(None, BTreeMap::new()).unwrap();
        assert_eq!(
            loaded.settings.server.listen,
            "127.0.0.1:9095".parse().unwrap()
        );
        assert_eq!(loaded.settings.store.url, "sqlite://salve.db");
        assert_eq!(loaded.settings.recipes.dir, PathBuf::from("recipes"));
        assert_eq!(loaded.settings.engine.mode, Mode::DryRun);
        assert!(!loaded.auth_configured());
        assert_eq!(loaded.origin, EMBEDDED_NAME);
    }

    #[test]
    fn an_approval_timeout_past_a_week_is_located() {
        let problems = load_text("[approval]\nkey = \"k\"\ntimeout = \"8d\"\n", &[]).unwrap_err();
        let text = messages(problems).join("\n");
        assert!(
            text.starts_with("salve.toml:3: approval.timeout is at most 7d"),
            "{text}"
        );
        assert!(load_text("[approval]\nkey = \"k\"\ntimeout = \"7d\"\n", &[]).is_ok());
    }

    #[test]
    fn store_retention_defaults_to_90_days_and_is_at_least_an_hour() {
        let loaded = load_with_env(None, BTreeMap::new()).unwrap();
        assert_eq!(
            loaded.settings.store.retention,
            Duration::from_secs(90 * 24 * 3600)
        );
        let problems = load_text("[store]\nretention = \"10m\"\n", &[]).unwrap_err();
        let text = messages(problems).join("\n");
        assert!(
            text.starts_with("salve.toml:2: store.retention is at least 1h"),
            "{text}"
        );
        assert!(load_text("[store]\nretention = \"1h\"\n", &[]).is_ok());
    }

    #[test]
    fn hostile_store_settings_are_refused_at_their_line_and_never_echo_a_password() {
        for (text, expected) in [
            (
                "[store]\nurl = \"\"\n",
                "salve.toml:2: store.url: expected sqlite://PATH",
            ),
            (
                "[store]\nurl = \"garbage\"\n",
                "salve.toml:2: store.url: expected sqlite://PATH",
            ),
            (
                "[store]\nurl = \"mysql://u:hunter2@h/db\"\n",
                "salve.toml:2: store.url: scheme \"mysql\" is not supported",
            ),
            (
                "[store]\nurl = \"postgres://u:hunter2@h/db\"\n",
                "salve.toml:2: store.url must not hold a password",
            ),
            (
                "[store]\nurl = \"postgres://u:hunter2@h:notaport/db\"\n",
                "salve.toml:2: store.url is not a PostgreSQL URL",
            ),
            (
                "[store]\nurl = \"postgres://u@h/db?sslmode=hunter2\"\n",
                "salve.toml:2: store.url is not a PostgreSQL URL",
            ),
            (
                "[store]\nurl = \"postgres://\"\n",
                "salve.toml:2: store.url names no host",
            ),
            (
                "[store]\nlease = \"2s\"\n",
                "salve.toml:2: store.lease is between 3s and 5m",
            ),
            (
                "[store]\nlease = \"301s\"\n",
                "salve.toml:2: store.lease is between 3s and 5m",
            ),
            (
                "[store]\nlease = \"0s\"\n",
                "salve.toml:2: store.lease is between 3s and 5m",
            ),
            (
                "[store]\npool_size = 0\n",
                "salve.toml:2: store.pool_size must be > 0",
            ),
            (
                "[store]\npool_size = -1\n",
                "salve.toml:2: invalid value: integer, expected usize",
            ),
            (
                "[store]\npassword = \"hunter2\"\n",
                "salve.toml:2: store.password is for a postgres:// store.url",
            ),
            (
                "[store]\nca_file = \"/etc/hunter2\"\n",
                "salve.toml:2: store.ca_file is for a postgres:// store.url",
            ),
        ] {
            let found = messages(load_text(text, &[]).unwrap_err());
            assert_eq!(found.len(), 1, "{text}: {found:?}");
            assert!(found[0].starts_with(expected), "{text}: {found:?}");
            assert!(
                !found[0].contains("hunter2") || text.contains("ca_file"),
                "{text}: {found:?}"
            );
        }
        for text in [
            "[store]\nlease = \"3s\"\npool_size = 1\n",
            "[store]\nlease = \"5m\"\n",
            "[store]\nurl = \"postgresql://salve@db.example:5433/salve?sslmode=require\"\n",
        ] {
            assert!(load_text(text, &[]).is_ok(), "{text}");
        }
    }

    #[test]
    fn the_store_password_comes_from_the_environment_and_never_prints() {
        let url = "[store]\nurl = \"postgres://salve@127.0.0.1:5432/salve\"\n";
        let loaded = load_text(url, &[("SALVE_STORE__PASSWORD", "007-hunter2")]).unwrap();
        assert_eq!(
            loaded.store_password.as_ref().unwrap().expose(),
            "007-hunter2"
        );
        assert!(!format!("{loaded:?}").contains("hunter2"));
        // The file wins over nothing, and both set is refused.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let with_file = format!("{url}password_file = {:?}\n", file.display().to_string());
        let loaded = load_text(&with_file, &[]).unwrap();
        assert_eq!(loaded.store_password.unwrap().expose(), "from-file");
        let both = load_text(&with_file, &[("SALVE_STORE__PASSWORD", "x")]).unwrap_err();
        assert!(messages(both)[0].contains("both set"));
        // Blank from the environment is an error, not an empty password.
        let blank = load_text(url, &[("SALVE_STORE__PASSWORD", " ")]).unwrap_err();
        let blank = messages(blank).join("\n");
        assert!(
            blank.contains("SALVE_STORE__PASSWORD is set but empty"),
            "{blank}"
        );
        // On SQLite there is nothing to log in to.
        let sqlite = load_text("", &[("SALVE_STORE__PASSWORD", "hunter2")]).unwrap_err();
        let sqlite = messages(sqlite).join("\n");
        assert!(
            sqlite.contains("store.password is for a postgres:// store.url"),
            "{sqlite}"
        );
        assert!(!sqlite.contains("hunter2"), "{sqlite}");
    }

    #[test]
    fn every_key_the_settings_refuse_is_reported_in_one_run() {
        let text =
            "[server]\nlisen = \"x\"\nbody_limit_bytes = \"big\"\n\n[engine]\nmod = \"enforce\"\n";
        let found = messages(load_text(text, &[]).unwrap_err());
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("salve.toml:2: unknown field `lisen`"),
            "{found:?}"
        );
        assert!(found[1].starts_with("salve.toml:3: "), "{found:?}");
        assert!(
            found[2].starts_with("salve.toml:6: unknown field `mod`"),
            "{found:?}"
        );
        // A syntax error ends the search: past it the file's meaning is a guess.
        let broken = "[server]\nlisen = \"x\"\n[engine\nmod = 1\n";
        let found = messages(load_text(broken, &[]).unwrap_err());
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let problems =
            load_text("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n", &[]).unwrap_err();
        let text = messages(problems).join("\n");
        assert!(
            text.starts_with("salve.toml:3: unknown field `lisen`"),
            "{text}"
        );
    }

    #[test]
    fn bad_duration_and_bad_listen_are_located() {
        let problems = load_text(
            "[server]\nlisten = \"nowhere\"\n\n[intake.grafana]\nmax_timestamp_skew = \"5 parsecs\"\n",
            &[],
        )
        .unwrap_err();
        // Both, in file order.
        let found = messages(problems);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("salve.toml:2: server.listen"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("salve.toml:5: invalid duration"),
            "{found:?}"
        );
        let problems = load_text("[server]\nlisten = \"nowhere\"\n", &[]).unwrap_err();
        assert_eq!(
            messages(problems),
            vec!["salve.toml:2: server.listen: \"nowhere\" is not an IP:port address"]
        );
    }

    #[test]
    fn environment_overrides_file_and_secrets_do_not_print() {
        let loaded = load_text(
            "[server]\nlisten = \"127.0.0.1:1\"\n",
            &[
                ("SALVE_SERVER__LISTEN", "127.0.0.1:2"),
                ("SALVE_SERVER__AUTH__BEARER_TOKEN", "hunter2-token"),
            ],
        )
        .unwrap();
        assert_eq!(loaded.settings.server.listen.port(), 2);
        assert_eq!(
            loaded.bearer_token.as_ref().unwrap().expose(),
            "hunter2-token"
        );
        assert!(!format!("{loaded:?}").contains("hunter2"));
    }

    #[test]
    fn environment_values_keep_their_text_and_still_fill_numbers_and_booleans() {
        // A secret of digits must arrive as written: `007` is not the number 7.
        let loaded = load_text(
            "",
            &[
                ("SALVE_SERVER__AUTH__BEARER_TOKEN", "007"),
                ("SALVE_SERVER__ALLOW_UNAUTHENTICATED", "true"),
                ("SALVE_ENGINE__MAX_PARALLEL", "3"),
            ],
        )
        .unwrap();
        assert_eq!(loaded.bearer_token.as_ref().unwrap().expose(), "007");
        assert!(loaded.settings.server.allow_unauthenticated);
        assert_eq!(loaded.settings.engine.max_parallel, 3);
        let problems = load_text("", &[("SALVE_ENGINE__MAX_PARALLEL", "many")]).unwrap_err();
        assert!(
            messages(problems)[0].contains("max_parallel"),
            "names the key"
        );
    }

    #[test]
    fn type_errors_do_not_quote_a_secret_written_with_the_wrong_type() {
        for (text, expected) in [
            (
                "[server.auth]\nbearer_token = 918273645546\n",
                "salve.toml:2: invalid type: integer, expected a string",
            ),
            (
                "[server]\nauth = \"hunter2\"\n",
                "salve.toml:2: invalid type: string, expected struct AuthSettings",
            ),
        ] {
            assert_eq!(messages(load_text(text, &[]).unwrap_err()), [expected]);
        }
        assert_eq!(
            without_quoted_values(
                r#"invalid value: string "a\"b", expected x; invalid type: floating point `1.5`"#
            ),
            "invalid value: string, expected x; invalid type: floating point"
        );
    }

    #[test]
    fn unknown_environment_key_is_an_error() {
        let problems = load_text("", &[("SALVE_SERVER__LISTN", "x")]).unwrap_err();
        assert!(messages(problems)[0].contains("listn"));
    }

    #[test]
    fn public_listen_without_credentials_is_refused() {
        let problems = load_text("[server]\nlisten = \"0.0.0.0:9095\"\n", &[]).unwrap_err();
        assert!(messages(problems)[0].contains("not loopback"));
        assert!(
            load_text(
                "[server]\nlisten = \"0.0.0.0:9095\"\nallow_unauthenticated = true\n",
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn secret_from_file_and_both_set() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "from-file\n").unwrap();
        let text = format!(
            "[server.auth]\nbearer_token_file = {:?}\n",
            token.display().to_string()
        );
        let loaded = load_text(&text, &[]).unwrap();
        assert_eq!(loaded.bearer_token.unwrap().expose(), "from-file");
        let text = format!("{text}bearer_token = \"x\"\n");
        assert!(messages(load_text(&text, &[]).unwrap_err())[0].contains("both set"));
    }

    #[test]
    fn blank_secrets_are_config_errors_wherever_they_come_from() {
        // Inline in the file: located at the key's line.
        for (text, line) in [
            ("[server.auth]\nbearer_token = \"\"\n", 2),
            (
                "[server.auth]\nbasic_username = \"am\"\nbasic_password = \" \\t \"\n",
                3,
            ),
            ("[intake.grafana]\nhmac_secret = \"\\n\"\n", 2),
            (
                "[escalation.channels.t]\nkind = \"webhook\"\nurl = \"https://t.example/\"\n\
                 headers = { Authorization = \"  \" }\n",
                4,
            ),
            (
                "[escalation.channels.p]\nkind = \"webhook\"\npreset = \"pagerduty\"\n\
                 routing_key = \" \"\n",
                4,
            ),
            (
                "[escalation.channels.m]\nkind = \"email\"\nsmtp_url = \"smtp://m.example\"\n\
                 from = \"s@example.com\"\nto = [\"o@example.com\"]\nusername = \"u\"\npassword = \"\"\n",
                7,
            ),
            (
                "[server.api]\ntokens = [{ name = \"ops\", token = \" \", scope = \"read\" }]\n",
                2,
            ),
        ] {
            let problems = messages(load_text(text, &[]).unwrap_err());
            assert_eq!(
                problems,
                [format!("salve.toml:{line}: {BLANK_SECRET}")],
                "{text}"
            );
        }
        // In a file: a file with just a newline.
        let dir = tempfile::tempdir().unwrap();
        let newline = dir.path().join("newline");
        std::fs::write(&newline, "\n").unwrap();
        let path = format!("{:?}", newline.display().to_string());
        for (text, line) in [
            (format!("[server.auth]\nbearer_token_file = {path}\n"), 2),
            (
                format!(
                    "[server]\n\n[server.api]\ntokens = [\n  {{ name = \"ops\", token_file = {path}, scope = \"read\" }},\n]\n"
                ),
                5,
            ),
            (
                format!(
                    "[escalation.channels.p]\nkind = \"webhook\"\npreset = \"pagerduty\"\nrouting_key_file = {path}\n"
                ),
                4,
            ),
            (
                format!(
                    "[escalation.channels.m]\nkind = \"email\"\nsmtp_url = \"smtp://m.example\"\nfrom = \"s@example.com\"\nto = [\"o@example.com\"]\nusername = \"u\"\npassword_file = {path}\n"
                ),
                7,
            ),
        ] {
            let problems = load_text(&text, &[]).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].line, Some(line), "{text}");
            assert!(
                problems[0]
                    .message
                    .contains("empty or holds only whitespace"),
                "{problems:?}"
            );
        }
        // In the environment: named by variable, never "auth configured".
        for name in [
            "SALVE_SERVER__AUTH__BEARER_TOKEN",
            "SALVE_INTAKE__GRAFANA__HMAC_SECRET",
            "SALVE_ESCALATION__CHANNELS__T__HEADERS__AUTHORIZATION",
        ] {
            for blank in ["", " ", "\t\n"] {
                let problems = messages(load_text("", &[(name, blank)]).unwrap_err());
                assert_eq!(
                    problems,
                    [format!(
                        "environment: {name} is set but empty or whitespace-only"
                    )]
                );
            }
        }
    }

    #[test]
    fn api_tokens_are_named_scoped_distinct_and_not_the_webhook_credential() {
        let loaded = load_text(
            "[server.auth]\nbearer_token = \"hook\"\n\n[server.api]\ntokens = [\n\
             { name = \"viewer\", token = \"r\", scope = \"read\" },\n\
             { name = \"ops\", token = \"o\", scope = \"operate\" },\n]\n",
            &[],
        )
        .unwrap();
        let tokens: Vec<(&str, ApiScope)> = loaded
            .api_tokens
            .iter()
            .map(|t| (t.name.as_str(), t.scope))
            .collect();
        assert_eq!(
            tokens,
            [("viewer", ApiScope::Read), ("ops", ApiScope::Operate)]
        );
        assert!(!loaded.no_credentials());
        assert!(!format!("{loaded:?}").contains("\"o\""));

        for (tokens, expected) in [
            (
                "{ name = \"a\", token = \"x\", scope = \"read\" },\n{ name = \"a\", token = \"y\", scope = \"read\" }",
                "salve.toml:7: server.api.tokens[1]: duplicate token name \"a\"",
            ),
            (
                "{ name = \" \", token = \"x\", scope = \"read\" }",
                "salve.toml:6: server.api.tokens[0].name is empty",
            ),
            (
                "{ name = \"a\", token = \"x\", scope = \"read\" },\n{ name = \"b\", token = \"x\", scope = \"operate\" }",
                "salve.toml:7: server.api.tokens[1]: the same token as another API token",
            ),
            (
                "{ name = \"a\", token = \"hook\", scope = \"read\" }",
                "salve.toml:6: server.api.tokens[0]: the same secret as the webhook credential; the API needs its own",
            ),
            (
                "{ name = \"a\", scope = \"read\" }",
                "salve.toml:6: server.api.tokens[0]: set token_file (or token)",
            ),
        ] {
            let text = format!(
                "[server.auth]\nbearer_token = \"hook\"\n\n[server.api]\ntokens = [\n{tokens},\n]\n"
            );
            let problems = messages(load_text(&text, &[]).unwrap_err());
            assert_eq!(problems, [expected], "{text}");
        }
        let problems = load_text(
            "[server.api]\ntokens = [{ name = \"a\", token = \"x\", scope = \"admin\" }]\n",
            &[],
        )
        .unwrap_err();
        assert!(messages(problems)[0].starts_with("salve.toml:2: unknown variant `admin`"));
    }

    #[test]
    fn body_timeout_and_max_connections() {
        let loaded = load_text("", &[]).unwrap();
        assert_eq!(loaded.settings.server.body_timeout, Duration::from_secs(10));
        assert_eq!(loaded.settings.server.max_connections, 512);
        assert!(loaded.no_credentials());
        let problems = load_text(
            "[server]\nbody_timeout = \"0s\"\nmax_connections = 0\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            messages(problems),
            [
                "salve.toml:2: server.body_timeout must be > 0",
                "salve.toml:3: server.max_connections must be > 0"
            ]
        );
    }

    #[test]
    fn escalation_default_must_name_a_channel_and_hosts_are_checked() {
        let problems = load_text(
            "[escalation]\ndefault = [\"pager\"]\n\n[[hosts]]\nname = \"a\"\n\n[[hosts]]\nname = \"a\"\n",
            &[],
        )
        .unwrap_err();
        let text = messages(problems);
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with("salve.toml:2: escalation.default names unknown channel \"pager\"")
        );
        assert!(
            text[1].starts_with("salve.toml:7: hosts[1]: duplicate host name"),
            "{text:?}"
        );
    }

    #[test]
    fn escalation_routes_need_matchers_and_known_channels_with_lines() {
        let text = "[escalation]\ndefault = [\"log\"]\n\n\
                    [[escalation.routes]]\nmatch = []\nto = [\"log\"]\n\n\
                    [[escalation.routes]]\nmatch = ['severity=\"critical\"']\nto = [\"pagr\"]\n\n\
                    [[escalation.routes]]\nmatch = ['team=~\"db\"']\nto = []\n\n\
                    [escalation.channels.log]\nkind = \"log\"\n";
        let text = messages(load_text(text, &[]).unwrap_err());
        assert_eq!(
            text,
            [
                "salve.toml:5: escalation.routes[0].match is empty: a route for every alert is escalation.default",
                "salve.toml:10: escalation.routes[1].to names unknown channel \"pagr\"",
                "salve.toml:14: escalation.routes[2].to is empty: its escalations would reach no channel",
            ],
        );
        let bad = load_text(
            "[[escalation.routes]]\nmatch = ['severity==\"x\"']\nto = []\n",
            &[],
        );
        let text = messages(bad.unwrap_err());
        assert!(
            text[0].starts_with("salve.toml:2: ") && text[0].contains("bad matcher"),
            "{text:?}"
        );
    }

    #[test]
    fn label_keys_keep_their_case() {
        let loaded = load_text(
            "[[hosts]]\nname = \"web1\"\nlabels = { Team = \"Core\" }\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            loaded.settings.hosts[0]
                .labels
                .get("Team")
                .map(|value| value.items()),
            Some(vec!["Core"])
        );
    }

    #[test]
    fn host_labels_may_be_lists_through_the_config_layers() {
        let loaded = load_text(
            "[[hosts]]\nname = \"web1\"\nlabels = { services = [\"nginx\", \"app\"], mounts = \"/,/var\" }\n",
            &[],
        )
        .unwrap();
        let labels = &loaded.settings.hosts[0].labels;
        assert_eq!(labels["services"].items(), ["nginx", "app"]);
        assert_eq!(labels["mounts"].items(), ["/", "/var"]);
    }

    #[test]
    fn ssh_sessions_per_host_are_bounded_with_a_located_error() {
        let loaded = load_text("", &[]).unwrap();
        assert_eq!(loaded.settings.ssh.max_sessions_per_host, 8);
        for bad in ["0", "257"] {
            let problems =
                load_text(&format!("[ssh]\nmax_sessions_per_host = {bad}\n"), &[]).unwrap_err();
            assert_eq!(
                messages(problems),
                vec![format!(
                    "salve.toml:2: ssh.max_sessions_per_host must be between 1 and 256 (keep it \
                     below the hosts' sshd MaxSessions, 10 by default), got {bad}"
                )]
            );
        }
        let loaded = load_text("[ssh]\nmax_sessions_per_host = 3\n", &[]).unwrap();
        assert_eq!(loaded.settings.ssh.max_sessions_per_host, 3);
    }

    #[test]
    fn intake_keys_read_straight_into_the_limits_from_file_and_environment() {
        let loaded = load_text(
            "[intake]\nmax_labels = 4\n\n[intake.grafana]\nsignature_header = \"X-Sig\"\n",
            &[("SALVE_INTAKE__MAX_ALERTS", "7")],
        )
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            loaded.settings.intake.limits,
            Limits {
                max_alerts: 7,
                max_labels: 4,
                ..Limits::default()
            }
        );
        assert_eq!(loaded.settings.intake.grafana.signature_header, "X-Sig");
        assert_eq!(
            load_text("", &[]).unwrap().settings.intake.limits,
            Limits::default()
        );

        let problems = load_text("[intake]\nmax_alerts = 2\nmax_alert = 3\n", &[]).unwrap_err();
        let text = messages(problems).join("\n");
        assert!(
            text.starts_with("salve.toml:3: unknown field `max_alert`"),
            "{text}"
        );
        let problems = load_text("[intake]\n\nmax_value_bytes = 0\n", &[]).unwrap_err();
        assert_eq!(
            messages(problems),
            vec!["salve.toml:3: intake.max_value_bytes must be > 0"]
        );
        let problems = load_text("", &[("SALVE_INTAKE__MAX_LABLES", "3")]).unwrap_err();
        let text = messages(problems).join("\n");
        assert!(text.contains("max_lables"), "{text}");
    }

    #[test]
    fn one_ssh_connect_timeout_default() {
        let five = Duration::from_secs(5);
        let loaded = load_text("", &[]).unwrap();
        assert_eq!(loaded.settings.ssh.connect_timeout, five);
        assert_eq!(SshSettings::default().connect_timeout, five);
        let built = SshSettings::new("salve", "/k".into(), "/c".into());
        assert_eq!(built.connect_timeout, five);
        let loaded = load_text("[ssh]\nconnect_timeout = \"12s\"\n", &[]).unwrap();
        assert_eq!(loaded.settings.ssh.connect_timeout, Duration::from_secs(12));
        assert_eq!(loaded.settings.ssh.command_timeout, Duration::from_secs(30));
        let loaded = load_text("", &[("SALVE_SSH__CONNECT_TIMEOUT", "7s")]).unwrap();
        assert_eq!(loaded.settings.ssh.connect_timeout, Duration::from_secs(7));
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("salve.example.toml");
        let loaded =
            load_with_env(Some(&path), BTreeMap::new()).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(loaded.settings.hosts.len(), 2);
        assert!(loaded.channel_names().contains("tickets"));
    }
}
