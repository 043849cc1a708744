//! The enforcing setup most end-to-end tests share: the real salve in enforce mode with the
//! shipped recipes plus the test-only ones, strict host keys, and an inventory of bed sshds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::config::{Channel, HostEntry, SalveConfig, TOKEN, fixture, shipped_recipes};
use super::journal::text;
use super::{SalveProcess, SshHost, http_client, write_known_hosts};

/// One inventory entry: a name, the sshd that plays it, and the SSH user.
pub struct Inventory<'a> {
    pub name: &'a str,
    pub host: &'a SshHost,
    pub user: &'a str,
}

impl<'a> Inventory<'a> {
    /// `name` played by `host`, logged into as the bed's target user.
    pub fn of(name: &'a str, host: &'a SshHost) -> Inventory<'a> {
        Inventory {
            name,
            host,
            user: host.user(),
        }
    }
}

/// A salve in enforce mode with the shipped recipes plus the test-only ones, strict host
/// keys from `known_hosts`, and the given inventory.
pub struct Enforcing {
    pub salve: SalveProcess,
    pub known_hosts: PathBuf,
    pub _files: TempDir,
}

impl Enforcing {
    /// web1, played by `host` and trusted in known_hosts: the common single-host setup.
    pub fn on(host: &SshHost) -> EnforcingBuilder<'_> {
        Enforcing::builder(vec![Inventory::of("web1", host)], &[host])
    }

    /// Only `recipe`, and one inventory host per (name, user), all played by `host`,
    /// without labels.
    pub fn single_recipe<'a>(
        host: &'a SshHost,
        hosts: &[(&'a str, &'a str)],
        recipe: &str,
    ) -> EnforcingBuilder<'a> {
        let inventory = hosts
            .iter()
            .map(|(name, user)| Inventory { name, host, user })
            .collect();
        Enforcing::builder(inventory, &[host])
            .only_recipe(recipe)
            .without_host_labels()
    }

    /// The given inventory; `known_hosts_for` are the hosts whose keys salve trusts.
    pub fn builder<'a>(
        inventory: Vec<Inventory<'a>>,
        known_hosts_for: &[&'a SshHost],
    ) -> EnforcingBuilder<'a> {
        EnforcingBuilder {
            inventory,
            known_hosts_for: known_hosts_for.to_vec(),
            recipe_patches: Vec::new(),
            only_recipe: None,
            host_services: Some("shop-api,broken-api"),
            serve_args: Vec::new(),
            env: Vec::new(),
            config: SalveConfig::new()
                .bearer_token(TOKEN)
                .recipes_dir("recipes")
                .enforce()
                .ssh_setting("user", "\"nobody-by-default\"")
                .escalation_default(&["oncall-email"])
                .channel("oncall-email", Channel::log())
                .channel("tickets", Channel::log()),
        }
    }
}

/// What an enforcing setup is started with; see [`Enforcing::on`].
pub struct EnforcingBuilder<'a> {
    inventory: Vec<Inventory<'a>>,
    known_hosts_for: Vec<&'a SshHost>,
    recipe_patches: Vec<(String, String, String)>,
    only_recipe: Option<String>,
    host_services: Option<&'static str>,
    serve_args: Vec<String>,
    env: Vec<(String, String)>,
    config: SalveConfig,
}

impl EnforcingBuilder<'_> {
    /// Replaces `from` by `to` in the recipe `file` (asserting it is there): shorter
    /// timings for a test, stated where used.
    pub fn patch_recipe(mut self, file: &str, from: &str, to: &str) -> Self {
        self.recipe_patches
            .push((file.to_owned(), from.to_owned(), to.to_owned()));
        self
    }

    /// Only this recipe (as `recipe.toml`), instead of the shipped and test-only ones.
    pub fn only_recipe(mut self, recipe: &str) -> Self {
        self.only_recipe = Some(recipe.to_owned());
        self
    }

    /// Inventory hosts without the `services` label the shipped recipes read.
    pub fn without_host_labels(mut self) -> Self {
        self.host_services = None;
        self
    }

    /// One `[ssh]` setting on top (replacing the setup's own `connect_timeout`, if that).
    pub fn ssh_setting(self, key: &str, value: &str) -> Self {
        self.config(|config| config.ssh_setting(key, value))
    }

    /// One `[limits]` setting on top.
    pub fn limit(self, key: &str, value: &str) -> Self {
        self.config(|config| config.limit(key, value))
    }

    /// Arguments for `salve serve`.
    pub fn serve_args(mut self, args: &[&str]) -> Self {
        self.serve_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// One variable in salve's environment, e.g. `SALVE_SERVER__LISTEN` for a port chosen
    /// before salve starts (an Alertmanager that sends to it must know it first).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// More settings on top of the enforcing config (channels replace the `log` ones of the
    /// same name).
    pub fn config(mut self, edit: impl FnOnce(SalveConfig) -> SalveConfig) -> Self {
        self.config = edit(self.config);
        self
    }

    pub async fn start(self) -> Enforcing {
        let files = tempfile::tempdir().unwrap();
        let recipes = files.path().join("recipes");
        std::fs::create_dir(&recipes).unwrap();
        match &self.only_recipe {
            Some(recipe) => std::fs::write(recipes.join("recipe.toml"), recipe).unwrap(),
            None => {
                copy_recipes(&shipped_recipes(), &recipes);
                copy_recipes(&fixture("e2e-recipes"), &recipes);
            }
        }
        for (file, from, to) in &self.recipe_patches {
            let path = recipes.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from.as_str()), "{file} has no {from:?}");
            std::fs::write(&path, text.replace(from.as_str(), to)).unwrap();
        }
        let known_hosts = write_known_hosts(files.path(), &self.known_hosts_for);
        // One identity for salve, authorized on every host of the inventory.
        let key = self.inventory[0].host.client_key().to_owned();
        for entry in &self.inventory[1..] {
            if entry.host.client_key() != key {
                entry.host.also_authorize(&key);
            }
        }
        let mut config = self
            .config
            .ssh_identity(&key)
            .known_hosts(&known_hosts)
            .ssh_setting("connect_timeout", "\"2s\"");
        for entry in &self.inventory {
            let host = HostEntry::on(entry.name, entry.host, entry.user);
            config = config.host(match self.host_services {
                Some(services) => host.services(services),
                None => host,
            });
        }
        let serve_args: Vec<&str> = self.serve_args.iter().map(String::as_str).collect();
        let mut salve = SalveProcess::builder(&config.build())
            .recipes_dir(&recipes)
            .serve_args(&serve_args);
        for (key, value) in &self.env {
            salve = salve.env(key, value);
        }
        let salve = salve.start().await;
        Enforcing {
            salve,
            known_hosts,
            _files: files,
        }
    }
}

fn copy_recipes(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

impl SshHost {
    /// Writes the unit the `systemctl` stand-in runs (e.g. a real HTTP health server).
    pub async fn define_unit(&self, unit: &str, command: &str) {
        let output = self
            .exec(&format!("mkdir -p /srv/units && printf '%s\\n' '{command}' > /srv/units/{unit}.cmd && chmod -R a+rwX /srv/units"))
            .await;
        assert!(
            output.status.success(),
            "define unit: {}",
            text(&output.stderr)
        );
    }

    /// The lines of a file on the target; an absent file has none.
    pub async fn file_lines(&self, path: &str) -> Vec<String> {
        let output = self.exec(&format!("cat {path} 2>/dev/null || true")).await;
        text(&output.stdout).lines().map(str::to_owned).collect()
    }
}

/// The status of `GET /healthz` on a local port; `None` when nothing answers.
pub async fn health_status(port: u16) -> Option<u16> {
    http_client()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}
