//! `salve::recipe::shell::for_login_shell` on arbitrary lines: never panics, and what it
//! hands the login shell is either the line itself — only when the line is made of the
//! characters every login shell reads alike — or the one fixed command that makes `/bin/sh`
//! read the line from stdin, wrapped so a cut script is a syntax error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use salve::recipe::shell::{POSIX_SHELL_ON_STDIN, for_login_shell};

/// What a direct line may contain, inside or outside its single quotes.
fn inert(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./:=,+@%- '".contains(c)
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(invocation) = for_login_shell(line) else {
        assert!(line.contains('\0'), "refused a line without NUL: {line:?}");
        return;
    };
    match &invocation.stdin {
        None => {
            assert_eq!(invocation.command, line);
            assert!(line.chars().all(inert), "direct line with {line:?}");
            // The first word as a shell reads it: `sudo''` is `sudo` in every shell.
            let first = line
                .split(' ')
                .find(|word| !word.is_empty())
                .map(|word| word.replace('\'', ""));
            assert!(
                matches!(first.as_deref(), Some("sudo" | "timeout")),
                "direct line starting with {first:?}"
            );
        }
        Some(script) => {
            assert_eq!(invocation.command, POSIX_SHELL_ON_STDIN);
            assert!(
                script.is_empty() || (script.starts_with("{ ") && script.ends_with("\n}\n")),
                "{script:?}"
            );
        }
    }
});
