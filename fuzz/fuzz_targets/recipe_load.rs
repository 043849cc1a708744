//! `salve::recipe::load_recipe` (what `load_dir` runs on each `recipes/*.toml`) on arbitrary
//! text: never panics, and every refusal is a list of `file:line: message` problems that
//! point into the text, in line order.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use salve::recipe::{Templates, load_recipe};

const FILE: &str = "fuzz.toml";

/// The channel names of the embedded default config, which the shipped recipes use.
static CHANNELS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    ["oncall-email", "tickets"]
        .into_iter()
        .map(str::to_owned)
        .collect()
});

/// Built once: templates are checked with `template_from_str`, which keeps nothing.
static TEMPLATES: LazyLock<Templates> = LazyLock::new(Templates::new);

fuzz_target!(|data: &[u8]| {
    // load_dir reads files with read_to_string: text that is not UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match load_recipe(Path::new(FILE), text, &CHANNELS, &TEMPLATES) {
        Ok(recipe) => {
            assert_eq!(recipe.file, Path::new(FILE));
            assert!(
                !recipe.name.is_empty() && recipe.name.len() <= 64,
                "{recipe:?}"
            );
            assert!(!recipe.matchers.is_empty(), "{recipe:?}");
            assert!(!recipe.run.is_empty(), "{recipe:?}");
            assert!(!recipe.target.is_empty(), "{recipe:?}");
            assert!(
                recipe
                    .escalate_to
                    .iter()
                    .all(|name| CHANNELS.contains(name)),
                "{recipe:?}"
            );
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            for problem in &problems {
                assert_eq!(problem.file, Path::new(FILE));
                assert!(
                    (1..=lines).contains(&problem.line),
                    "line {} of a {lines}-line text: {problem}",
                    problem.line
                );
                assert!(!problem.message.trim().is_empty(), "{problem:?}");
            }
            assert!(
                problems.is_sorted_by_key(|problem| problem.line),
                "{problems:?}"
            );
        }
    }
});
