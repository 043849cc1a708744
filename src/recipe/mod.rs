//! Recipes: the operator-written, bounded remediations. Loading and validation (`loader`),
//! Alertmanager matchers (`matcher`), templating (`template`), shell quoting and remote lines
//! (`shell`), the pure planner (`plan`), `salve test` fixtures (`fixtures`), and escalation
//! routes by the same matchers (`route`). Nothing here runs a command, opens a connection
//! or lets raw alert text into a shell line.

pub mod fixtures;
pub mod loader;
pub mod matcher;
pub mod model;
mod near_miss;
mod nested;
pub mod planner;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reference_tests;
pub mod route;
pub mod shell;
pub mod template;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::path::{Path, PathBuf};

pub use fixtures::{
    CaseResult, FixtureCase, FixtureReport, fixture_case, run_fixtures, run_fixtures_routed,
};
pub use loader::{load_dir, load_recipe};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use model::{Breaker, Check, Param, ParamSource, Recipe, Verify};
pub use planner::PlanContext;
pub use route::{Route, Routes};
pub use template::{CommandContext, RecipeTemplates};

/// One problem in a recipe (or fixture) file, with the 1-based line of the offending key or
/// value. Displays as `file:line: message`; line 0 means the whole file or directory (it
/// could not be read) and displays as `file: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, line: usize, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for Problem {}

/// The loaded recipes, in file-name order, with the template engines that render them.
#[derive(Debug, Default)]
pub struct RecipeSet {
    recipes: Vec<Recipe>,
    templates: RecipeTemplates,
}

impl RecipeSet {
    /// A set from already validated recipes (from [`load_dir`] / [`load_recipe`]), kept in
    /// the given order, which should be file-name order: ties in priority go to the first.
    pub fn new(recipes: Vec<Recipe>) -> RecipeSet {
        RecipeSet {
            recipes,
            templates: RecipeTemplates::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.recipes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recipes.is_empty()
    }

    /// Recipe names, in file-name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.recipes.iter().map(|recipe| recipe.name.as_str())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Recipe> {
        self.recipes.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Recipe> {
        self.recipes.iter().find(|recipe| recipe.name == name)
    }

    /// Every recipe's warnings (`salve check` prints them; they do not stop loading).
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.recipes
            .iter()
            .flat_map(|recipe| recipe.warnings.iter())
    }

    /// Host label items that a recipe reading them (`one_of_host_label`) will always refuse,
    /// because they fail the param's pattern or match its `deny`: the operator listed
    /// something that will never run. `(host index, label name, message)`.
    pub fn inventory_warnings(
        &self,
        inventory: &crate::inventory::Inventory,
    ) -> Vec<(usize, String, String)> {
        let mut warnings = Vec::new();
        for recipe in &self.recipes {
            for param in recipe.params.values() {
                let Some(label) = &param.one_of_host_label else {
                    continue;
                };
                for (index, host) in inventory.hosts().iter().enumerate() {
                    let Some(value) = host.labels.get(label) else {
                        continue;
                    };
                    for item in value.items() {
                        let why = if !param.pattern.is_match(item) {
                            format!("does not match its pattern {:?}", param.pattern_text)
                        } else if let Some(rule) = param.denied_by(item) {
                            format!("is denied by {rule:?}")
                        } else {
                            continue;
                        };
                        warnings.push((
                            index,
                            label.clone(),
                            format!(
                                "hosts[{index}].labels.{label} lists {item:?}, which recipe {} \
                                 (params.{}) always refuses: it {why}",
                                recipe.name, param.name
                            ),
                        ));
                    }
                }
            }
        }
        warnings
    }
}

impl<'a> IntoIterator for &'a RecipeSet {
    type Item = &'a Recipe;
    type IntoIter = std::slice::Iter<'a, Recipe>;

    fn into_iter(self) -> Self::IntoIter {
        self.recipes.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::inventory::Inventory;
    use crate::plan::Mode;
    use crate::recipe::shell::is_simple_command;
    use crate::recipe::test_support::{inventory_of, or_panic};

    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
    }

    fn shipped() -> RecipeSet {
        let channels: BTreeSet<String> = ["oncall-email", "tickets"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        or_panic(load_dir(&shipped_dir(), &channels))
    }

    #[test]
    fn the_shipped_recipes_load_cleanly() {
        let set = shipped();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["disk-space", "service-restart"]
        );
        assert_eq!(set.len(), 2);
        assert!(
            set.iter()
                .all(|recipe| recipe.sudo && recipe.breaker.is_some() && recipe.verify.is_some())
        );
    }

    #[test]
    fn the_shipped_fixtures_pass() {
        let set = shipped();
        let inventory = Inventory::default();
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::DryRun,
            default_escalation: &[],
        };
        let report = or_panic(run_fixtures(&shipped_dir().join("tests"), &set, &ctx));
        assert!(report.is_success(), "{report}");
        assert!(report.cases.len() >= 8, "{report}");
    }

    /// README promises a least-privilege sudo rule can name the shipped recipes' lines:
    /// they must stay simple commands (no `sh -c` wrapper on the target).
    #[test]
    fn the_shipped_remediation_commands_are_simple() {
        let set = shipped();
        let inventory = inventory_of("web1", [("services".to_owned(), "nginx".into())].into());
        let ctx = PlanContext {
            inventory: &inventory,
            global_mode: Mode::Enforce,
            default_escalation: &[],
        };
        for labels in [
            [("alertname", "ServiceDown"), ("service", "nginx")],
            [("alertname", "DiskSpaceLow"), ("mountpoint", "/var")],
        ] {
            let labels = labels
                .into_iter()
                .chain([("instance", "web1:9100")])
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let plan = set.plan(&crate::alert::Alert::firing_generic(labels), &ctx);
            assert!(!plan.commands.is_empty(), "{plan:?}");
            for command in &plan.commands {
                assert!(is_simple_command(command), "{command}");
            }
        }
    }

    #[test]
    fn host_labels_that_a_recipe_always_refuses_are_warnings() {
        let services = "nginx, poweroff.target, sshd, bad name";
        let inventory = inventory_of("web1", [("services".to_owned(), services.into())].into());
        let warnings: Vec<String> = shipped()
            .inventory_warnings(&inventory)
            .into_iter()
            .map(|(index, label, message)| format!("{index} {label}: {message}"))
            .collect();
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].starts_with(
            "0 services: hosts[0].labels.services lists \"poweroff.target\", which recipe \
             service-restart (params.service) always refuses: it is denied by"
        ));
        assert!(warnings[1].contains("\"sshd\""), "{warnings:#?}");
        assert!(warnings[2].contains("\"bad name\"") && warnings[2].contains("pattern"));
    }

    #[test]
    fn problems_display_as_file_line_message() {
        assert_eq!(
            Problem::new(Path::new("r/a.toml"), 3, "bad").to_string(),
            "r/a.toml:3: bad"
        );
        assert_eq!(
            Problem::new(Path::new("r"), 0, "missing").to_string(),
            "r: missing"
        );
    }
}
