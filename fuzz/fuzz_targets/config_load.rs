//! `salve::config::load_from_str` on arbitrary settings text plus `SALVE_*` overrides: never
//! panics, and every refusal is a list of problems with a message, located in the text when
//! they came from it.
//!
//! Input: the TOML text, then optionally a NUL byte and `KEY=VALUE` lines, each KEY given
//! the `SALVE_` prefix (e.g. `SERVER__LISTEN=0.0.0.0:1`).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use salve::config::load_from_str;

const ORIGIN: &str = "fuzz.toml";

/// Loading reads `*_file` secrets and stats `ssh.known_hosts`, as it must. Inputs naming the
/// kernel's endless or blocking files (`/dev/zero`, `/proc/self/fd/0`) are skipped: reading
/// them would only stall the fuzzer. (No chdir to an empty directory instead: libFuzzer
/// writes the corpus and crash files by relative path.)
fn names_a_special_file(text: &str) -> bool {
    ["/dev", "/proc", "/sys"]
        .iter()
        .any(|prefix| text.contains(prefix))
}

/// Every string in the document after TOML unescaping, so `"\u002Fdev"` is seen too.
fn strings(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(text) => out.push(text.clone()),
        toml::Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        toml::Value::Table(table) => table.iter().for_each(|(key, item)| {
            out.push(key.clone());
            strings(item, out);
        }),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // `load_with_env` reads the file with read_to_string: text that is not UTF-8 never gets here.
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, env_lines) = input.split_once('\0').unwrap_or((input, ""));
    let env: BTreeMap<String, String> = env_lines
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (format!("SALVE_{key}"), value.to_owned()))
        .collect();
    let mut texts: Vec<String> = env.values().cloned().collect();
    if let Ok(document) = text.parse::<toml::Table>() {
        strings(&toml::Value::Table(document), &mut texts);
    }
    if texts.iter().any(|text| names_a_special_file(text)) {
        return;
    }

    let lines = text.split('\n').count();
    match load_from_str(ORIGIN, text, env) {
        Ok(loaded) => {
            assert_eq!(loaded.origin, ORIGIN);
            assert!(loaded.settings.server.body_limit_bytes > 0);
            assert!(loaded.settings.engine.max_parallel > 0);
            // Never on a public address without credentials unless explicitly allowed.
            assert!(
                loaded.settings.server.listen.ip().is_loopback()
                    || loaded.auth_configured()
                    || loaded.settings.server.allow_unauthenticated,
                "{loaded:?}"
            );
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            for problem in &problems {
                assert!(!problem.message.trim().is_empty(), "{problem:?}");
                if let Some(line) = problem.line {
                    assert_eq!(problem.file, ORIGIN, "{problem}");
                    assert!(
                        (1..=lines).contains(&line),
                        "line {line} of a {lines}-line text: {problem}"
                    );
                }
            }
        }
    }
});
