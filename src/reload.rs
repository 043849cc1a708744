//! Reload without restart (SIGHUP, `POST /-/reload`): re-reads the config file, its
//! inventory and the recipes, validates all of it as a start would, then swaps the live set
//! the engine plans with in one step. A reload that finds any problem changes nothing. It
//! never touches an incident already planned: that plan is in the journal and runs as it
//! was planned.
//!
//! What reloads: the recipes, the inventory (`[[hosts]]`) and the escalation routes
//! (`[escalation] default` and `[[escalation.routes]]`). Everything else (listen address,
//! store, mode, SSH, channels, credentials, limits, ...) is bound into running parts at
//! start: a change there is reported as a warning ("restart needed") and the old value
//! stays in force.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{self, Config, Settings};
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::recipe::{self, RecipeSet, Routes};

/// What the engine plans with; replaced as a whole by a reload. A planning pass takes one
/// `Arc` of it at its start, so a pass never mixes an old recipe with a new inventory.
#[derive(Debug)]
pub struct LiveSet {
    pub recipes: Arc<RecipeSet>,
    pub inventory: Inventory,
    /// `[[escalation.routes]]` and the default: the channels a plan gets when its recipe
    /// does not route itself.
    pub escalation_routes: Arc<Routes>,
}

impl LiveSet {
    pub fn new(recipes: RecipeSet, loaded: &Config) -> LiveSet {
        LiveSet {
            recipes: Arc::new(recipes),
            inventory: loaded.inventory(),
            escalation_routes: Arc::new(loaded.settings.escalation.routes()),
        }
    }
}

/// The shared handle on the current [`LiveSet`].
#[derive(Debug, Clone)]
pub struct Live(Arc<RwLock<Arc<LiveSet>>>);

impl Live {
    pub fn new(set: LiveSet) -> Live {
        Live(Arc::new(RwLock::new(Arc::new(set))))
    }

    /// The set in force now; it stays valid for the holder after a reload.
    pub fn current(&self) -> Arc<LiveSet> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, set: LiveSet) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
    }
}

/// What a successful reload changed, and what it could not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Reloaded {
    pub recipes: usize,
    pub hosts: usize,
    pub recipes_added: Vec<String>,
    pub recipes_removed: Vec<String>,
    pub recipes_changed: Vec<String>,
    /// Settings that changed in the file but only take effect at the next start.
    pub warnings: Vec<String>,
}

/// Why a reload was refused (the running set is unchanged): every problem found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("reload refused, still running the previous config: {}", .problems.join("; "))]
pub struct ReloadFailed {
    pub problems: Vec<String>,
}

/// Re-reads and swaps; one reload at a time.
pub struct Reloader {
    /// The file `serve` started from; `None` for the embedded default (nothing to re-read
    /// but the recipes directory).
    config_path: Option<PathBuf>,
    live: Live,
    metrics: Arc<Metrics>,
    /// The settings as loaded at start (what the non-reloadable parts run on), plus the
    /// running recipes' debug text for "changed".
    running: Mutex<Running>,
}

struct Running {
    settings: Settings,
    recipes: BTreeMap<String, String>,
}

impl Reloader {
    /// For the app built from `loaded` (with `live` made from it). Marks the start as a
    /// successful load in the metrics.
    pub fn new(loaded: &Config, live: Live, metrics: Arc<Metrics>) -> Reloader {
        let config_path =
            (loaded.origin != config::EMBEDDED_NAME).then(|| PathBuf::from(&loaded.origin));
        let recipes = recipe_texts(&live.current().recipes);
        metrics.config_reloaded(true);
        Reloader {
            config_path,
            live,
            metrics,
            running: Mutex::new(Running {
                settings: loaded.settings.clone(),
                recipes,
            }),
        }
    }

    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// Loads the config file (with the process's `SALVE_*` overrides) and the recipes,
    /// validates them as `serve` would at start, and swaps the live set. On any problem
    /// the running set stays and `salve_config_last_reload_successful` is 0. Blocking
    /// (reads files): call it off the async workers.
    pub fn reload(&self) -> Result<Reloaded, ReloadFailed> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = self.load_and_check(&running.settings);
        match result {
            Ok((loaded, recipes, mut reloaded)) => {
                let texts = recipe_texts(&recipes);
                diff_recipes(&running.recipes, &texts, &mut reloaded);
                reloaded.recipes = recipes.len();
                reloaded.hosts = loaded.settings.hosts.len();
                self.live.replace(LiveSet::new(recipes, &loaded));
                running.recipes = texts;
                // The reloadable parts of the settings now run on the new values; the
                // others keep what the start read, so a warning repeats until a restart.
                running.settings.hosts = loaded.settings.hosts.clone();
                running.settings.recipes = loaded.settings.recipes.clone();
                running.settings.escalation.default = loaded.settings.escalation.default.clone();
                running.settings.escalation.routes = loaded.settings.escalation.routes.clone();
                self.metrics.config_reloaded(true);
                tracing::info!(
                    recipes = reloaded.recipes,
                    hosts = reloaded.hosts,
                    added = %reloaded.recipes_added.join(","),
                    removed = %reloaded.recipes_removed.join(","),
                    changed = %reloaded.recipes_changed.join(","),
                    "config reloaded"
                );
                for warning in &reloaded.warnings {
                    tracing::warn!("reload: {warning}");
                }
                Ok(reloaded)
            }
            Err(failed) => {
                self.metrics.config_reloaded(false);
                for problem in &failed.problems {
                    tracing::error!("reload: {problem}");
                }
                tracing::error!(
                    problems = failed.problems.len(),
                    "reload refused: still running the previous config and recipes"
                );
                Err(failed)
            }
        }
    }

    fn load_and_check(
        &self,
        running: &Settings,
    ) -> Result<(Config, RecipeSet, Reloaded), ReloadFailed> {
        let loaded =
            config::load(self.config_path.as_deref()).map_err(|problems| ReloadFailed {
                problems: problems.iter().map(ToString::to_string).collect(),
            })?;
        let mut problems = Vec::new();
        // Channels are not reloaded: recipes and routes may only name running ones.
        let channels: std::collections::BTreeSet<String> =
            running.escalation.channels.keys().cloned().collect();
        let mut no_recipes = None;
        let recipes = match load_recipes(&loaded.settings.recipes.dir, &channels) {
            Ok((recipes, warning)) => {
                no_recipes = warning;
                Some(recipes)
            }
            Err(found) => {
                problems.extend(found.iter().map(ToString::to_string));
                None
            }
        };
        let escalation = &loaded.settings.escalation;
        for name in escalation
            .default
            .iter()
            .chain(escalation.routes.iter().flat_map(|route| route.to.iter()))
        {
            if !channels.contains(name) {
                problems.push(format!(
                    "{}: escalation names channel {name:?}, which the running salve does not have (new channels need a restart)",
                    loaded.origin
                ));
            }
        }
        if let Some(recipes) = &recipes {
            let approve_mode: Vec<&str> = recipes
                .iter()
                .filter(|r| r.approval)
                .map(|r| r.name.as_str())
                .collect();
            if !approve_mode.is_empty()
                && running.approval.key.is_none()
                && running.approval.key_file.is_none()
            {
                problems.push(format!(
                    "recipe(s) {} say mode = \"approve\" but the running salve has no [approval] key_file (or key)",
                    approve_mode.join(", ")
                ));
            }
        }
        match recipes {
            Some(recipes) if problems.is_empty() => {
                let mut reloaded = Reloaded {
                    warnings: restart_needed(running, &loaded.settings),
                    ..Reloaded::default()
                };
                reloaded.warnings.extend(no_recipes);
                // What a start warns about, a reload does too.
                reloaded
                    .warnings
                    .extend(recipes.warnings().map(ToString::to_string));
                reloaded.warnings.extend(
                    recipes
                        .inventory_warnings(&loaded.inventory())
                        .into_iter()
                        .map(|(index, label, message)| {
                            format!("hosts[{index}] label {label}: {message}")
                        }),
                );
                Ok((loaded, recipes, reloaded))
            }
            _ => Err(ReloadFailed { problems }),
        }
    }
}

/// Each non-reloadable section whose value differs from the running one.
fn restart_needed(running: &Settings, new: &Settings) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut compare = |name: &str, old: String, new: String| {
        if old != new {
            warnings.push(format!(
                "{name} changed: restart needed (the running salve keeps the old value)"
            ));
        }
    };
    compare(
        "[server]",
        format!("{:?}", running.server),
        format!("{:?}", new.server),
    );
    compare(
        "[intake]",
        format!("{:?}", running.intake),
        format!("{:?}", new.intake),
    );
    compare(
        "[store]",
        format!("{:?}", running.store),
        format!("{:?}", new.store),
    );
    compare(
        "[engine]",
        format!("{:?}", running.engine),
        format!("{:?}", new.engine),
    );
    compare(
        "[ssh]",
        format!("{:?}", running.ssh),
        format!("{:?}", new.ssh),
    );
    compare(
        "[limits]",
        format!("{:?}", running.limits),
        format!("{:?}", new.limits),
    );
    compare(
        "[escalation.channels]",
        format!("{:?}", running.escalation.channels),
        format!("{:?}", new.escalation.channels),
    );
    compare(
        "[escalation] pacing",
        format!(
            "{:?}",
            (
                running.escalation.digest_after,
                running.escalation.digest_window,
                running.escalation.max_concurrent_deliveries
            )
        ),
        format!(
            "{:?}",
            (
                new.escalation.digest_after,
                new.escalation.digest_window,
                new.escalation.max_concurrent_deliveries
            )
        ),
    );
    compare(
        "[approval]",
        format!("{:?}", running.approval),
        format!("{:?}", new.approval),
    );
    compare(
        "[alertmanager]",
        format!("{:?}", running.alertmanager),
        format!("{:?}", new.alertmanager),
    );
    compare(
        "[[maintenance]]",
        format!("{:?}", running.maintenance),
        format!("{:?}", new.maintenance),
    );
    warnings
}

fn recipe_texts(recipes: &RecipeSet) -> BTreeMap<String, String> {
    recipes
        .iter()
        .map(|recipe| (recipe.name.as_str().to_owned(), format!("{recipe:?}")))
        .collect()
}

fn diff_recipes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    reloaded: &mut Reloaded,
) {
    for (name, text) in new {
        match old.get(name) {
            None => reloaded.recipes_added.push(name.clone()),
            Some(before) if before != text => reloaded.recipes_changed.push(name.clone()),
            Some(_) => {}
        }
    }
    reloaded.recipes_removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .cloned()
        .collect();
}

/// The recipes in `dir`, as `recipe::load_dir` loads them, except that a directory that
/// does not exist is an empty set with a warning (the quick start in an empty directory
/// runs without `recipes/`: every alert is then escalated as unmatched).
pub fn load_recipes(
    dir: &std::path::Path,
    channels: &std::collections::BTreeSet<String>,
) -> Result<(RecipeSet, Option<String>), Vec<recipe::Problem>> {
    if !dir.exists() {
        return Ok((
            RecipeSet::new(Vec::new()),
            Some(format!(
                "no recipes: {} does not exist, so every alert is escalated as unmatched",
                dir.display()
            )),
        ));
    }
    recipe::load_dir(dir, channels).map(|recipes| (recipes, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_changed_store_or_listen_address_is_a_restart_needed_warning_routes_are_not() {
        let running = settings("[store]\nurl = \"sqlite://a.db\"\n");
        let same = settings("[store]\nurl = \"sqlite://a.db\"\n[escalation]\ndefault = []\n");
        assert_eq!(restart_needed(&running, &same), Vec::<String>::new());

        let moved =
            settings("[server]\nlisten = \"127.0.0.1:1\"\n[store]\nurl = \"sqlite://b.db\"\n");
        let warnings = restart_needed(&running, &moved);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("[server] changed: restart needed"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("[store] changed: restart needed"),
            "{warnings:?}"
        );
    }

    #[test]
    fn recipes_are_reported_added_removed_and_changed_by_name() {
        let old = BTreeMap::from([
            ("kept".to_owned(), "a".to_owned()),
            ("edited".to_owned(), "b".to_owned()),
            ("gone".to_owned(), "c".to_owned()),
        ]);
        let new = BTreeMap::from([
            ("kept".to_owned(), "a".to_owned()),
            ("edited".to_owned(), "B".to_owned()),
            ("fresh".to_owned(), "d".to_owned()),
        ]);
        let mut reloaded = Reloaded::default();
        diff_recipes(&old, &new, &mut reloaded);
        assert_eq!(reloaded.recipes_added, ["fresh"]);
        assert_eq!(reloaded.recipes_removed, ["gone"]);
        assert_eq!(reloaded.recipes_changed, ["edited"]);
    }
}
