//! Why an alert matched no recipe: the nearest recipes (most matchers satisfied) and the
//! first matcher each failed, with the value the alert had. Pure: labels in, text out.

use std::collections::BTreeMap;

use crate::plan::NearMiss;

use super::RecipeSet;

/// Near misses listed at most: the closest few explain a typo; a list of every recipe
/// would bury it.
const MAX_NEAR_MISSES: usize = 3;

impl RecipeSet {
    /// The recipes that came closest to matching `labels` (at least one matcher satisfied),
    /// most matchers satisfied first, then fewest matchers, then file order.
    pub fn near_misses(&self, labels: &BTreeMap<String, String>) -> Vec<NearMiss> {
        let mut misses: Vec<NearMiss> = self
            .recipes
            .iter()
            .filter_map(|recipe| {
                let failed = recipe.matchers.iter().find(|m| !m.matches(labels))?;
                let matched = recipe.matchers.iter().filter(|m| m.matches(labels)).count();
                (matched > 0).then(|| NearMiss {
                    recipe: recipe.name.clone(),
                    matched,
                    matchers: recipe.matchers.len(),
                    failed: failed.to_string(),
                    got: labels.get(failed.name()).cloned(),
                })
            })
            .collect();
        // Stable: ties keep file order.
        misses.sort_by_key(|miss| (std::cmp::Reverse(miss.matched), miss.matchers));
        misses.truncate(MAX_NEAR_MISSES);
        misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::test_support::{SERVICE_RESTART, or_panic};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(recipes: &[(&str, String)]) -> RecipeSet {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in recipes {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        or_panic(crate::recipe::load_dir(dir.path(), &Default::default()))
    }

    #[test]
    fn nearest_recipes_name_the_first_matcher_they_failed() {
        let critical = SERVICE_RESTART.replace(
            "match = ['alertname=\"ServiceDown\"']",
            "match = ['alertname=\"ServiceDown\"', 'severity=\"critical\"']",
        );
        let other = SERVICE_RESTART
            .replace("name = \"svc\"", "name = \"other\"")
            .replace("ServiceDown", "DiskFull");
        let set = set(&[("a.toml", critical), ("b.toml", other)]);
        let misses = set.near_misses(&labels(&[
            ("alertname", "ServiceDown"),
            ("severity", "warning"),
        ]));
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert_eq!(
            misses[0].to_string(),
            r#"svc (1 of 2 matchers; severity="critical" vs got "warning")"#
        );
        let absent = set.near_misses(&labels(&[("alertname", "ServiceDown")]));
        assert_eq!(
            absent[0].to_string(),
            r#"svc (1 of 2 matchers; severity="critical" vs no label severity)"#
        );
        assert!(
            set.near_misses(&labels(&[("alertname", "Nope")]))
                .is_empty()
        );
    }
}
