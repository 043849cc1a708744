//! The one typed builder for `salve.toml` in the tests: every config a test starts salve
//! with is built here, so a test says what it needs (`.enforce()`, `.host(..)`,
//! `.webhook_channel(..)`) instead of formatting TOML. Tests whose subject is a broken or
//! hostile config file keep their literal text; that text is the test.

use std::path::{Path, PathBuf};

use super::SshHost;

/// The webhook bearer token of [`SalveConfig::standard`] and the enforcing setups.
pub const TOKEN: &str = "it-webhook-token";
/// The `authorization` header that carries [`TOKEN`].
pub const BEARER: (&str, &str) = ("authorization", "Bearer it-webhook-token");
/// The `[server.api]` token [`SalveConfig::standard`] sets (name "it", scope operate): the
/// webhook credential cannot read incidents.
pub const API_TOKEN: &str = "it-api-token";
/// The `authorization` header that carries [`API_TOKEN`].
pub const API_BEARER: (&str, &str) = ("authorization", "Bearer it-api-token");

/// The repository's own recipes directory (the shipped recipes).
pub fn shipped_recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

/// A file or directory under `tests/fixtures`.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// `text` as a TOML basic string (quotes and escapes included).
pub fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// `path` as a TOML basic string.
pub fn toml_path(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

/// One `[escalation.channels.NAME]` table: its keys with their TOML values, in order.
#[derive(Clone, Debug)]
pub struct Channel {
    keys: Vec<(String, String)>,
}

impl Channel {
    /// `kind = "log"`: escalations go to salve's log.
    pub fn log() -> Channel {
        Channel::kind("log")
    }

    /// `kind = "webhook"` posting to `url`.
    pub fn webhook(url: &str) -> Channel {
        Channel::kind("webhook").set("url", &toml_string(url))
    }

    /// `kind = "email"` through `smtp_url` (TLS as the URL implies unless `tls` is set),
    /// from the test sender to the on-call address.
    pub fn email(smtp_url: &str) -> Channel {
        Channel::kind("email")
            .set("smtp_url", &toml_string(smtp_url))
            .set("from", "\"salve <salve@test.invalid>\"")
            .set("to", "[\"oncall@test.invalid\"]")
    }

    fn kind(kind: &str) -> Channel {
        Channel {
            keys: vec![("kind".to_owned(), toml_string(kind))],
        }
    }

    /// One more key, `value` already TOML (e.g. `toml_path(..)`, `"3"`); replaces the value
    /// of a key already set.
    pub fn set(mut self, key: &str, value: &str) -> Channel {
        match self.keys.iter_mut().find(|(have, _)| have == key) {
            Some((_, existing)) => *existing = value.to_owned(),
            None => self.keys.push((key.to_owned(), value.to_owned())),
        }
        self
    }
}

/// One `[[hosts]]` entry of the inventory.
#[derive(Clone, Debug)]
pub struct HostEntry {
    name: String,
    address: String,
    port: Option<u16>,
    user: Option<String>,
    labels: Option<String>,
}

impl HostEntry {
    /// `name` at `address`, on the default port and user, without labels.
    pub fn new(name: &str, address: &str) -> HostEntry {
        HostEntry {
            name: name.to_owned(),
            address: address.to_owned(),
            port: None,
            user: None,
            labels: None,
        }
    }

    /// `name` played by the bed's sshd `host`, logged into as `user`.
    pub fn on(name: &str, host: &SshHost, user: &str) -> HostEntry {
        HostEntry::new(name, &host.address())
            .port(host.port())
            .user(user)
    }

    pub fn port(mut self, port: u16) -> HostEntry {
        self.port = Some(port);
        self
    }

    pub fn user(mut self, user: &str) -> HostEntry {
        self.user = Some(user.to_owned());
        self
    }

    /// `labels = { services = "<services>" }`.
    pub fn services(self, services: &str) -> HostEntry {
        self.labels(&format!("{{ services = {} }}", toml_string(services)))
    }

    /// `labels = <table>`, the inline TOML table as written.
    pub fn labels(mut self, table: &str) -> HostEntry {
        self.labels = Some(table.to_owned());
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("\n[[hosts]]\n");
        out.push_str(&format!("name = {}\n", toml_string(&self.name)));
        out.push_str(&format!("address = {}\n", toml_string(&self.address)));
        if let Some(port) = self.port {
            out.push_str(&format!("port = {port}\n"));
        }
        if let Some(user) = &self.user {
            out.push_str(&format!("user = {}\n", toml_string(user)));
        }
        if let Some(labels) = &self.labels {
            out.push_str(&format!("labels = {labels}\n"));
        }
    }
}

/// A `salve.toml` under construction. [`SalveConfig::new`] is the minimal config (listen on a
/// free port, journal `salve.db` in salve's working directory); each method adds one setting.
#[derive(Clone, Debug)]
pub struct SalveConfig {
    server: Vec<(String, String)>,
    auth: Vec<(String, String)>,
    api_tokens: Vec<String>,
    recipes_dir: Option<String>,
    store_url: Option<String>,
    /// `[store]` keys beside `url`.
    store: Vec<(String, String)>,
    engine: Vec<(String, String)>,
    ssh: Vec<(String, String)>,
    escalation: Vec<(String, String)>,
    channels: Vec<(String, Channel)>,
    /// Other tables (`[limits]`, `[intake]`, `[intake.grafana]`), in first-use order.
    tables: Vec<(String, Vec<(String, String)>)>,
    hosts: Vec<HostEntry>,
}

impl Default for SalveConfig {
    fn default() -> Self {
        SalveConfig::new()
    }
}

impl SalveConfig {
    pub fn new() -> SalveConfig {
        SalveConfig {
            server: Vec::new(),
            auth: Vec::new(),
            api_tokens: Vec::new(),
            recipes_dir: None,
            store_url: None,
            store: Vec::new(),
            engine: Vec::new(),
            ssh: Vec::new(),
            escalation: Vec::new(),
            channels: Vec::new(),
            tables: Vec::new(),
            hosts: Vec::new(),
        }
    }

    /// The common dry-run setup: [`TOKEN`] for webhooks, [`API_TOKEN`] for the API, recipes
    /// from `recipes` in salve's directory, `log` channels `oncall-email` (the default route)
    /// and `tickets`, and hosts web1 (127.0.0.1) and web2 (127.0.0.2) running nginx and
    /// postgresql.
    pub fn standard() -> SalveConfig {
        let services = "nginx,postgresql";
        SalveConfig::new()
            .api_token("it", API_TOKEN, "operate")
            .bearer_token(TOKEN)
            .recipes_dir("recipes")
            .escalation_default(&["oncall-email"])
            .channel("oncall-email", Channel::log())
            .channel("tickets", Channel::log())
            .host(HostEntry::new("web1", "127.0.0.1").services(services))
            .host(HostEntry::new("web2", "127.0.0.2").services(services))
    }

    /// A `[server]` key besides `listen` (e.g. `log_format`), `value` already TOML.
    pub fn server_setting(mut self, key: &str, value: &str) -> SalveConfig {
        self.server.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `[server.auth] bearer_token`.
    pub fn bearer_token(self, token: &str) -> SalveConfig {
        self.auth_setting("bearer_token", &toml_string(token))
    }

    /// `[server.auth] basic_username` and `basic_password`.
    pub fn basic_auth(self, username: &str, password: &str) -> SalveConfig {
        self.auth_setting("basic_username", &toml_string(username))
            .auth_setting("basic_password", &toml_string(password))
    }

    /// Any other `[server.auth]` key, `value` already TOML.
    pub fn auth_setting(mut self, key: &str, value: &str) -> SalveConfig {
        self.auth.push((key.to_owned(), value.to_owned()));
        self
    }

    /// One `[server.api]` token given inline.
    pub fn api_token(mut self, name: &str, token: &str, scope: &str) -> SalveConfig {
        self.api_tokens.push(format!(
            "{{ name = {}, token = {}, scope = {} }}",
            toml_string(name),
            toml_string(token),
            toml_string(scope)
        ));
        self
    }

    /// One `[server.api]` token read from `file`.
    pub fn api_token_file(mut self, name: &str, file: &Path, scope: &str) -> SalveConfig {
        self.api_tokens.push(format!(
            "{{ name = {}, token_file = {}, scope = {} }}",
            toml_string(name),
            toml_path(file),
            toml_string(scope)
        ));
        self
    }

    /// `[recipes] dir`: relative to salve's directory, or absolute.
    pub fn recipes_dir(mut self, dir: impl AsRef<Path>) -> SalveConfig {
        self.recipes_dir = Some(toml_path(dir.as_ref()));
        self
    }

    /// One `[store]` key beside `url` (a TOML value: `"3s"` quoted).
    pub fn store_setting(mut self, key: &str, value: &str) -> SalveConfig {
        self.store.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `[store] url` (default `sqlite://salve.db` in salve's directory).
    pub fn store_url(mut self, url: &str) -> SalveConfig {
        self.store_url = Some(toml_string(url));
        self
    }

    /// `[engine] mode = "enforce"` (the default is dry-run).
    pub fn enforce(self) -> SalveConfig {
        self.engine_setting("mode", "\"enforce\"")
    }

    /// Any other `[engine]` key (e.g. `shutdown_grace`), `value` already TOML.
    pub fn engine_setting(mut self, key: &str, value: &str) -> SalveConfig {
        self.engine.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `[ssh] identity_file`.
    pub fn ssh_identity(self, key: &Path) -> SalveConfig {
        self.ssh_setting("identity_file", &toml_path(key))
    }

    /// `[ssh] known_hosts`.
    pub fn known_hosts(self, file: &Path) -> SalveConfig {
        self.ssh_setting("known_hosts", &toml_path(file))
    }

    /// Any other `[ssh]` key, `value` already TOML (e.g. `("connect_timeout", "\"2s\"")`);
    /// replaces the value of a key already set.
    pub fn ssh_setting(mut self, key: &str, value: &str) -> SalveConfig {
        match self.ssh.iter_mut().find(|(have, _)| have == key) {
            Some((_, existing)) => *existing = value.to_owned(),
            None => self.ssh.push((key.to_owned(), value.to_owned())),
        }
        self
    }

    /// `[escalation] default`: the channels an escalation without a route goes to.
    pub fn escalation_default(self, channels: &[&str]) -> SalveConfig {
        let list: Vec<String> = channels.iter().map(|c| toml_string(c)).collect();
        self.escalation_setting("default", &format!("[{}]", list.join(", ")))
    }

    /// One more `[[escalation.routes]]` entry, after those added before: `matchers` as
    /// written in the file (`severity="critical"`), then the channels.
    pub fn escalation_route(mut self, matchers: &[&str], channels: &[&str]) -> SalveConfig {
        let list = |items: &[&str]| {
            let quoted: Vec<String> = items.iter().map(|item| toml_string(item)).collect();
            format!("[{}]", quoted.join(", "))
        };
        let entry = format!("{{ match = {}, to = {} }}", list(matchers), list(channels));
        match self.escalation.iter_mut().find(|(key, _)| key == "routes") {
            Some((_, routes)) => {
                routes.pop();
                routes.push_str(&format!(", {entry}]"));
            }
            None => self
                .escalation
                .push(("routes".to_owned(), format!("[{entry}]"))),
        }
        self
    }

    /// Any other `[escalation]` key (e.g. `digest_after`), `value` already TOML.
    pub fn escalation_setting(mut self, key: &str, value: &str) -> SalveConfig {
        self.escalation.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `[escalation.channels.NAME]`; replaces a channel of the same name, in its place.
    pub fn channel(mut self, name: &str, channel: Channel) -> SalveConfig {
        match self.channels.iter_mut().find(|(have, _)| have == name) {
            Some((_, existing)) => *existing = channel,
            None => self.channels.push((name.to_owned(), channel)),
        }
        self
    }

    /// `[escalation.channels.NAME]` posting to `url`.
    pub fn webhook_channel(self, name: &str, url: &str) -> SalveConfig {
        self.channel(name, Channel::webhook(url))
    }

    /// One more `[[hosts]]` entry.
    pub fn host(mut self, host: HostEntry) -> SalveConfig {
        self.hosts.push(host);
        self
    }

    /// One `[limits]` key (rate limits), `value` already TOML.
    pub fn limit(self, key: &str, value: &str) -> SalveConfig {
        self.table_setting("limits", key, value)
    }

    /// One `[intake]` key (intake bounds), `value` already TOML.
    pub fn intake_setting(self, key: &str, value: &str) -> SalveConfig {
        self.table_setting("intake", key, value)
    }

    /// One `[alertmanager]` key (silences for the life of a fix), `value` already TOML.
    pub fn alertmanager_setting(self, key: &str, value: &str) -> SalveConfig {
        self.table_setting("alertmanager", key, value)
    }

    /// One `[intake.grafana]` key (the HMAC secret), `value` already TOML.
    pub fn grafana_setting(self, key: &str, value: &str) -> SalveConfig {
        self.table_setting("intake.grafana", key, value)
    }

    /// One `[approval]` key (link key, timeout, base_url), `value` already TOML.
    pub fn approval_setting(self, key: &str, value: &str) -> SalveConfig {
        self.table_setting("approval", key, value)
    }

    /// One more `[[maintenance]]` window, its keys (`value`s already TOML) as written.
    pub fn maintenance_window(mut self, keys: &[(&str, &str)]) -> SalveConfig {
        let keys = keys
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        // `table` writes `[NAME]`: this name makes it `[[maintenance]]`, one per call.
        self.tables.push(("[maintenance]".to_owned(), keys));
        self
    }

    fn table_setting(mut self, table: &str, key: &str, value: &str) -> SalveConfig {
        let entry = (key.to_owned(), value.to_owned());
        match self.tables.iter_mut().find(|(name, _)| name == table) {
            Some((_, keys)) => keys.push(entry),
            None => self.tables.push((table.to_owned(), vec![entry])),
        }
        self
    }

    /// Sets the labels of the inventory host `name` (an inline TOML table, as written).
    pub fn host_labels(mut self, name: &str, table: &str) -> SalveConfig {
        let host = self
            .hosts
            .iter_mut()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the config"));
        host.labels = Some(table.to_owned());
        self
    }

    /// Writes the TOML to `dir/salve.toml`, for the one-shot CLI commands.
    pub fn write_to(&self, dir: &Path) {
        let path = dir.join("salve.toml");
        std::fs::write(&path, self.build())
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    }

    /// The TOML text.
    pub fn build(&self) -> String {
        let mut out = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
        for (key, value) in &self.server {
            out.push_str(&format!("{key} = {value}\n"));
        }
        let store_url = self.store_url.as_deref().unwrap_or("\"sqlite://salve.db\"");
        out.push_str(&format!("\n[store]\nurl = {store_url}\n"));
        for (key, value) in &self.store {
            out.push_str(&format!("{key} = {value}\n"));
        }
        if !self.api_tokens.is_empty() {
            out.push_str(&format!(
                "\n[server.api]\ntokens = [\n  {},\n]\n",
                self.api_tokens.join(",\n  ")
            ));
        }
        table(&mut out, "server.auth", &self.auth);
        if let Some(dir) = &self.recipes_dir {
            out.push_str(&format!("\n[recipes]\ndir = {dir}\n"));
        }
        table(&mut out, "engine", &self.engine);
        table(&mut out, "ssh", &self.ssh);
        table(&mut out, "escalation", &self.escalation);
        for (name, channel) in &self.channels {
            table(
                &mut out,
                &format!("escalation.channels.{name}"),
                &channel.keys,
            );
        }
        for (name, keys) in &self.tables {
            table(&mut out, name, keys);
        }
        for host in &self.hosts {
            host.write(&mut out);
        }
        out
    }
}

/// `[name]` with its keys; nothing when there are none.
fn table(out: &mut String, name: &str, keys: &[(String, String)]) {
    if keys.is_empty() {
        return;
    }
    out.push_str(&format!("\n[{name}]\n"));
    for (key, value) in keys {
        out.push_str(&format!("{key} = {value}\n"));
    }
}

impl SalveConfig {
    /// A salve builder on this config (add recipes, env, serve args, then start).
    pub fn salve(&self) -> super::SalveBuilder {
        super::SalveProcess::builder(&self.build())
    }

    /// Starts salve on this config with the shipped recipes.
    pub async fn start_with_shipped_recipes(&self) -> super::SalveProcess {
        self.salve().recipes_dir(&shipped_recipes()).start().await
    }
}
