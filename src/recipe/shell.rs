//! Shell text, pure: one value as one POSIX shell word (`shell_quote`), whether a command is
//! one program with literal arguments (`is_simple_command`), the POSIX line salve sends for a
//! command (`remote_line`, with the target's `timeout` backstop), and how that line reaches a
//! target whose login shell may not be POSIX (`for_login_shell`). Values in, text out: nothing
//! here runs, connects or reads a file, and nothing here splices unquoted alert text.

use std::time::Duration;

/// A value that cannot be one shell word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellQuoteError {
    /// A NUL byte cannot be passed through any POSIX shell word (C strings end there).
    #[error("value contains a NUL byte, which no shell word can carry")]
    Nul,
}

/// Quotes `value` as exactly one POSIX shell word: `'` + value with each `'` replaced by
/// `'\''` + `'`. Inside single quotes the shell interprets nothing (`$`, backticks, `\`,
/// `;`, newlines are literal), so this is safe for any text except NUL, which is refused.
/// The empty string becomes `''` (an empty argument, not a missing one).
pub fn shell_quote(value: &str) -> Result<String, ShellQuoteError> {
    if value.contains('\0') {
        return Err(ShellQuoteError::Nul);
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    Ok(quoted)
}

/// Shell builtins and reserved words of dash and bash, including the builtins that also
/// exist as programs but behave differently there (`echo` interprets `\n` in dash, not in
/// coreutils). A command starting with one of these needs a shell.
const SHELL_WORDS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "case",
    "cd",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "coproc",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "echo",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "help",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "then",
    "time",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
];

/// Whether `command` is one external program with literal arguments, which any POSIX shell
/// (`sh -c` or the remote login shell) splits into the same words: outside single quotes only
/// `A-Z a-z 0-9 _ . / : = , + @ % -` (`=` not first in a word), spaces and backslash
/// escapes (the `'\''` of [`shell_quote`]); no operator, redirection, expansion, glob,
/// comment or newline; and a first word that is a plain program name or path, not a
/// builtin, reserved word or assignment. A wrapper (`timeout`) can then exec it directly,
/// without `sh -c`.
pub fn is_simple_command(command: &str) -> bool {
    let rules = WordRules {
        quoted: |_| true,
        backslash_escapes: true,
        // A word starting with `=` is a path lookup in zsh (`=cmd`): only inside a word.
        refused_start: |word_so_far, c| c == '=' && word_so_far.is_none(),
    };
    let Some(words) = split_words(command, &rules) else {
        return false;
    };
    let Some(program) = words.first() else {
        return false;
    };
    let plain_name = program
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./+-".contains(c));
    plain_name && !program.starts_with('-') && !SHELL_WORDS.contains(&program.as_str())
}

/// How long after salve gave up on a command the target's own `timeout` kills it.
const REMOTE_BACKSTOP: Duration = Duration::from_secs(5);

/// How long after its TERM the target's `timeout` sends KILL (`timeout -k`).
const REMOTE_KILL_AFTER: Duration = Duration::from_secs(5);

/// The longest a command sent with `remote_line(_, _, timeout)` can run on the target,
/// whatever happens to salve or the connection: TERM at the timeout plus the backstop,
/// KILL `REMOTE_KILL_AFTER` later.
pub fn remote_lifetime(timeout: Duration) -> Duration {
    Duration::from_secs(timeout.as_secs().max(1)) + REMOTE_BACKSTOP + REMOTE_KILL_AFTER
}

/// Whom a remote line runs as: the SSH user, or root through `sudo -n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    User,
    Sudo,
}

impl RunAs {
    /// A recipe's `sudo = true|false`.
    pub fn sudo_if(sudo: bool) -> RunAs {
        if sudo { RunAs::Sudo } else { RunAs::User }
    }
}

/// The POSIX line the target runs for `command`. Closing an SSH channel does not kill a
/// process that has no terminal, so the target's coreutils `timeout` is a backstop: it
/// sends TERM shortly after salve stopped waiting, and KILL 5 s later. With `sudo`, the
/// whole thing runs under `sudo -n` (which never prompts: where a password would be needed
/// it fails at once), so the backstop can stop root processes too. A simple command (one
/// program with literal arguments, see [`is_simple_command`]) follows `timeout` as it is:
/// `sh` splits it into exactly the words `sh -c` would, and the target saves an exec.
/// Anything else is one quoted word for `sh -c`, so its own quoting holds. The line is POSIX
/// shell text; [`for_login_shell`] says how it reaches the target whatever its login shell.
pub fn remote_line(command: &str, run_as: RunAs, timeout: Duration) -> String {
    let seconds = timeout.as_secs().max(1) + REMOTE_BACKSTOP.as_secs();
    let kill_after = REMOTE_KILL_AFTER.as_secs();
    let bounded = if is_simple_command(command) {
        format!("timeout -k {kill_after} {seconds} {command}")
    } else {
        let Ok(quoted) = shell_quote(command) else {
            // Rendered commands never contain NUL (the planner refuses it); keep the
            // impossible case safe rather than panic: it fails on the target.
            return "false".to_owned();
        };
        format!("timeout -k {kill_after} {seconds} sh -c {quoted}")
    };
    if run_as == RunAs::Sudo {
        format!("sudo -n -- {bounded}")
    } else {
        bounded
    }
}

/// What the SSH layer sends for one POSIX line: the command line sshd hands to the target
/// user's login shell (`$SHELL -c COMMAND`), and what to write to the command's stdin before
/// closing it (`None`: nothing, stdin is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: String,
    pub stdin: Option<String>,
}

/// The command line of the stdin path: two plain words and a path, which sh, bash, dash, zsh,
/// ksh, mksh, fish, tcsh and csh all parse alike (`exec` is a builtin of each of them); the
/// login shell is replaced by `/bin/sh` reading the POSIX line from stdin.
pub const POSIX_SHELL_ON_STDIN: &str = "exec /bin/sh -s";

/// The programs a direct line may start with: the two `remote_line` starts with. Neither is
/// a builtin, keyword or function of any shell above, so every login shell execs the program.
const DIRECT_PROGRAMS: &[&str] = &["sudo", "timeout"];

/// Longest line sent directly. Real direct lines are far shorter; the bound keeps them clear
/// of any shell's word or line length limits.
const DIRECT_LINE_MAX_BYTES: usize = 1024;

/// Characters a direct line's words are made of, bare or between single quotes: each is an
/// ordinary character to every shell above, anywhere in a word except as noted in
/// [`is_direct_line`]. Nothing here is a quote, escape, expansion, glob, history (`!`),
/// brace, operator, comment or separator in any of them, and it is all ASCII.
fn is_inert(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./:=,+@%-".contains(c)
}

/// What a word of [`split_words`] may hold beyond [`is_inert`] characters: the one place
/// [`is_simple_command`] (POSIX sh) and [`is_direct_line`] (every login shell) differ.
struct WordRules {
    /// Characters allowed between single quotes.
    quoted: fn(char) -> bool,
    /// Whether `\c` outside quotes stands for `c` (any character but a newline).
    backslash_escapes: bool,
    /// Whether `c` may not come next, given the word so far (`None`: no word started).
    refused_start: fn(Option<&str>, char) -> bool,
}

/// The words `line` splits into at spaces, with `'…'` groups and (by `rules`) backslash
/// escapes resolved; `None` when it holds anything else: an operator, expansion, glob,
/// newline, unclosed quote, or a character `rules` refuse.
fn split_words(line: &str, rules: &WordRules) -> Option<Vec<String>> {
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => words.extend(word.take()),
            '\'' => {
                let word = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) if (rules.quoted)(c) => word.push(c),
                        _ => return None,
                    }
                }
            }
            '\\' if rules.backslash_escapes => match chars.next() {
                Some(c) if c != '\n' => word.get_or_insert_with(String::new).push(c),
                _ => return None,
            },
            c if (rules.refused_start)(word.as_deref(), c) => return None,
            c if is_inert(c) => word.get_or_insert_with(String::new).push(c),
            _ => return None,
        }
    }
    words.extend(word);
    Some(words)
}

/// Whether every login shell salve may meet (sh, bash, dash, zsh, ksh93, mksh, fish, tcsh,
/// csh) parses `line` into the same words as POSIX sh does: words of [`is_inert`] characters
/// and `'…'` groups of inert characters and spaces, separated by spaces; no word whose value
/// starts with a bare `=` (zsh's path lookup, even after `''`) or `%` (a job, fish's
/// `%self`); a first word from `DIRECT_PROGRAMS`; at most `DIRECT_LINE_MAX_BYTES`.
/// Inside single quotes fish reads
/// `\'` and `\\` as escapes and tcsh expands `!` and ends the command at a newline, so no
/// backslash, `!`, newline or quote character may appear there, or anywhere.
pub fn is_direct_line(line: &str) -> bool {
    if line.len() > DIRECT_LINE_MAX_BYTES {
        return false;
    }
    let rules = WordRules {
        quoted: |c| c == ' ' || is_inert(c),
        backslash_escapes: false,
        // zsh expands `''=ls` as it does `=ls`: empty quotes do not make a start.
        refused_start: |word_so_far, c| {
            matches!(c, '=' | '%') && word_so_far.is_none_or(str::is_empty)
        },
    };
    split_words(line, &rules)
        .unwrap_or_default()
        .first()
        .is_some_and(|program| DIRECT_PROGRAMS.contains(&program.as_str()))
}

/// How to send the POSIX `line` so that it means what it means to `sh` whatever the target
/// user's login shell is. A line [`is_direct_line`] accepts is the command line itself (the
/// common case: one program with plain quoted values, no extra process on the target).
/// Anything else is written to the stdin of [`POSIX_SHELL_ON_STDIN`], so only `/bin/sh`
/// parses it: fish, tcsh or csh never see a quote of it. The line is wrapped in `{ … }`: sh
/// runs nothing before the closing brace arrives, so a script cut short (salve killed
/// mid-write, a dropped connection) is a syntax error, never a shorter command. NUL cannot
/// travel in a shell line and is refused.
pub fn for_login_shell(line: &str) -> Result<Invocation, ShellQuoteError> {
    if line.contains('\0') {
        return Err(ShellQuoteError::Nul);
    }
    if is_direct_line(line) {
        return Ok(Invocation {
            command: line.to_owned(),
            stdin: None,
        });
    }
    // `{ }` with nothing inside is a syntax error; an empty script does nothing, as `sh -c ''`.
    let script = if line.trim_matches([' ', '\t', '\n']).is_empty() {
        String::new()
    } else {
        format!("{{ {line}\n}}\n")
    };
    Ok(Invocation {
        command: POSIX_SHELL_ON_STDIN.to_owned(),
        stdin: Some(script),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn remote_lines_quote_the_command_as_one_word_under_a_backstop() {
        assert_eq!(
            remote_line(
                "systemctl restart 'nginx'",
                RunAs::Sudo,
                Duration::from_secs(60)
            ),
            "sudo -n -- timeout -k 5 65 systemctl restart 'nginx'"
        );
        assert_eq!(
            remote_line(r"echo 'it'\''s'", RunAs::Sudo, Duration::from_secs(60)),
            r"sudo -n -- timeout -k 5 65 sh -c 'echo '\''it'\''\'\'''\''s'\'''"
        );
        assert_eq!(
            remote_line(
                "df --output=pcent / | tail -n 1",
                RunAs::User,
                Duration::from_millis(1500)
            ),
            "timeout -k 5 6 sh -c 'df --output=pcent / | tail -n 1'"
        );
    }

    /// Every ASCII character and a few others, alone inside an argument: `is_simple_command`
    /// accepts exactly its documented alphabet, plus the space (a word break) and the
    /// backslash (an escape of the next character).
    #[test]
    fn is_simple_command_accepts_exactly_its_alphabet() {
        let others = ['\u{80}', '\u{a0}', 'é', '✓', '\u{2028}', '\u{feff}'];
        for c in (1..=0x7f_u8).map(char::from).chain(others) {
            let allowed = c.is_ascii_alphanumeric() || "_./:=,+@%- \\".contains(c);
            let command = format!("/usr/bin/env a{c}b");
            assert_eq!(is_simple_command(&command), allowed, "{command:?}");
        }
        // The tail of a quoted value, an option or `=` lookup as the program, a builtin.
        for refused in ["env 'a", "env a\\", "-env a", "=env a", "echo a", "x=1 env"] {
            assert!(!is_simple_command(refused), "{refused:?}");
        }
    }

    #[test]
    fn only_plain_lines_starting_with_sudo_or_timeout_go_as_they_are() {
        for direct in [
            "sudo -n -- timeout -k 5 65 systemctl restart 'nginx'",
            "timeout -k 5 35 systemctl is-active --quiet 'shop-api'",
            "sudo -n -- timeout -k 5 125 find /tmp /var/tmp -xdev -type f -mtime +1 -delete",
            "sudo -n -- timeout -k 5 125 journalctl --vacuum-time=7d",
            "timeout -k 5 15 date +%s.%N",
            "timeout -k 5 15 /usr/bin/printf x%s/ 'two words' '' 'a'b'c' x'=y' '%1' '=z'",
            "timeout -k 5 15 touch /tmp/storm-'web-1'",
        ] {
            assert!(is_direct_line(direct), "{direct:?}");
            assert_eq!(
                for_login_shell(direct).unwrap(),
                Invocation {
                    command: direct.to_owned(),
                    stdin: None
                }
            );
        }
        for through_sh in [
            "",
            "systemctl restart 'nginx'",
            "echo x",
            "sh -c 'id'",
            "timeout -k 5 15 printf %s 'x'",
            "timeout -k 5 15 printf x =y",
            "timeout -k 5 15 printf x ''=ls",
            "timeout -k 5 15 printf x %1",
            "timeout -k 5 15 printf x ~",
            "timeout -k 5 15 printf 'a!b'",
            "timeout -k 5 15 printf 'it'\\''s'",
            "timeout -k 5 15 printf 'a\\'",
            "timeout -k 5 15 printf 'a\nb'",
            "timeout -k 5 15 printf 'a\rb'",
            "timeout -k 5 15 printf 'a\tb'",
            "timeout -k 5 15 printf 'ü'",
            "timeout -k 5 15 printf '$HOME'",
            "timeout -k 5 15 printf '`id`'",
            "timeout -k 5 15 printf '\"'",
            "timeout -k 5 15 printf '{a,b}'",
            "timeout -k 5 15 printf '*'",
            "timeout -k 5 15 printf '#'",
            "timeout -k 5 15 printf x;id",
            "timeout -k 5 15 printf 'unterminated",
            "timeout\t15 date",
            "sudo -n -- timeout -k 5 65 sh -c 'df / | tail -n 1'",
        ] {
            assert!(!is_direct_line(through_sh), "{through_sh:?}");
            let invocation = for_login_shell(through_sh).unwrap();
            assert_eq!(invocation.command, "exec /bin/sh -s", "{through_sh:?}");
        }
        let long = format!("timeout -k 5 15 printf x '{}'", "a".repeat(1024));
        assert!(!is_direct_line(&long));
    }

    #[test]
    fn the_sh_path_writes_the_whole_line_in_braces_and_refuses_nul() {
        assert_eq!(
            for_login_shell("echo 'a!b'").unwrap(),
            Invocation {
                command: "exec /bin/sh -s".to_owned(),
                stdin: Some("{ echo 'a!b'\n}\n".to_owned()),
            }
        );
        assert_eq!(
            for_login_shell(" \t").unwrap().stdin.as_deref(),
            Some(""),
            "a blank line is an empty script, not `{{ }}`"
        );
        assert_eq!(for_login_shell("echo 'a\0b'"), Err(ShellQuoteError::Nul));
    }

    #[test]
    fn a_script_cut_short_runs_nothing() {
        let script = for_login_shell("touch ran-1; touch 'ran 2'")
            .unwrap()
            .stdin
            .unwrap();
        let complete = script.trim_end_matches('\n').len();
        for cut in 0..complete {
            let dir = tempfile::tempdir().unwrap();
            let mut sh = Command::new("/bin/sh")
                .arg("-s")
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            sh.stdin
                .take()
                .unwrap()
                .write_all(&script.as_bytes()[..cut])
                .unwrap();
            sh.wait().unwrap();
            assert!(
                std::fs::read_dir(dir.path()).unwrap().next().is_none(),
                "{:?} ran something",
                &script[..cut]
            );
        }
    }

    /// The login shells salve may meet; each must be installed (scripts/test installs them).
    const LOGIN_SHELLS: &[&str] = &[
        "/bin/sh",
        "/bin/bash",
        "/bin/dash",
        "/usr/bin/zsh",
        "/usr/bin/ksh93",
        "/usr/bin/mksh",
        "/usr/bin/fish",
        "/usr/bin/tcsh",
        "/usr/bin/csh",
    ];

    /// Runs `invocation` as sshd would: `shell -c COMMAND`, its stdin text then end of input,
    /// in `dir` with a clean environment (HOME in a fresh directory, so no one's rc files take
    /// part; fish writes its config there).
    fn run_as_login_shell(shell: &str, invocation: &Invocation, dir: &std::path::Path) -> Vec<u8> {
        assert!(
            std::path::Path::new(shell).is_file(),
            "test bed missing: {shell} (run scripts/test, which installs zsh fish tcsh ksh mksh)"
        );
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(shell)
            .arg("-c")
            .arg(&invocation.command)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("SHELL", shell)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("start {shell}: {error}"));
        let mut stdin = child.stdin.take().unwrap();
        // A shell that exits early closes the pipe; its status tells.
        let _ = stdin.write_all(invocation.stdin.as_deref().unwrap_or("").as_bytes());
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{shell} -c {:?} with stdin {:?}: {output:?}",
            invocation.command,
            invocation.stdin
        );
        output.stdout
    }

    /// Values with every metacharacter of every shell above; each one creates `PWNED` in the
    /// working directory if any part of it runs as code.
    const HOSTILE: &[&str] = &[
        "plain",
        "",
        "\\",
        "\\'",
        "\\'; touch PWNED; echo \\'",
        "'; touch PWNED; '",
        "a!b",
        "!!",
        "!touch PWNED",
        "\n!touch PWNED",
        "x\ntouch PWNED\n",
        "trailing newline\n",
        "cr\rtouch PWNED",
        "tab\there",
        "\"; touch PWNED; \"",
        "$(touch PWNED)",
        "${PATH} $HOME $$",
        "`touch PWNED`",
        "a; touch PWNED",
        "a | touch PWNED",
        "a & touch PWNED",
        "a && touch PWNED",
        "{touch,PWNED}",
        "~ ~root",
        "%1 %self",
        "# comment",
        "*?[]",
        "<PWNED >PWNED",
        "=ls",
        "(touch PWNED)",
        "^PWNED",
        "ünïcødé ✓ 日本",
    ];

    #[test]
    fn every_login_shell_passes_hostile_values_as_data_on_both_paths() {
        for value in HOSTILE {
            let command = format!("/usr/bin/printf x%s/ {}", shell_quote(value).unwrap());
            let line = remote_line(&command, RunAs::User, Duration::from_secs(10));
            let invocation = for_login_shell(&line).unwrap();
            let expected = format!("x{value}/").into_bytes();
            for shell in LOGIN_SHELLS {
                let dir = tempfile::tempdir().unwrap();
                let printed = run_as_login_shell(shell, &invocation, dir.path());
                assert_eq!(
                    String::from_utf8_lossy(&printed),
                    String::from_utf8_lossy(&expected),
                    "{shell}: {invocation:?}"
                );
                assert!(
                    std::fs::read_dir(dir.path()).unwrap().next().is_none(),
                    "{shell} created a file for {invocation:?}"
                );
            }
        }
    }

    /// One piece of a direct line: inert characters, or a single-quoted group of them and
    /// spaces, or a separating space.
    fn direct_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_./:=,+@%-]{1,4}",
            "[a-zA-Z0-9_./:=,+@% -]{0,4}".prop_map(|inside| format!("'{inside}'")),
            Just(" ".to_owned()),
        ]
    }

    proptest! {
        // Each case starts every shell above (nine processes): few cases.
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        /// What `is_direct_line` accepts, every login shell splits into exactly the words sh
        /// does: `printf` ends each argument with `/`, so word boundaries show in the output.
        #[test]
        fn a_direct_line_means_the_same_to_every_login_shell(pieces in prop::collection::vec(direct_piece(), 0..10)) {
            let line = format!("timeout 10 /usr/bin/printf x%s/ {}", pieces.concat());
            prop_assume!(is_direct_line(&line));
            let invocation = for_login_shell(&line).unwrap();
            prop_assert!(invocation.stdin.is_none());
            let dir = tempfile::tempdir().unwrap();
            let by_sh = run_as_login_shell("/bin/sh", &invocation, dir.path());
            for shell in LOGIN_SHELLS {
                let printed = run_as_login_shell(shell, &invocation, dir.path());
                prop_assert_eq!(&printed, &by_sh, "{} read {:?} differently", shell, line);
            }
        }

        /// `remote_line` on a command of plain and quoted words, sent as `for_login_shell`
        /// says (directly when `is_direct_line` accepts the line, on `/bin/sh`'s stdin
        /// otherwise), prints in every login shell exactly what `sh -c COMMAND` prints:
        /// `printf` ends each argument with `/`, so word boundaries show in the output.
        #[test]
        fn a_remote_line_means_the_same_to_every_login_shell(pieces in prop::collection::vec(direct_piece(), 0..10)) {
            let command = format!("/usr/bin/printf x%s/ {}", pieces.concat());
            let line = remote_line(&command, RunAs::User, Duration::from_secs(10));
            let invocation = for_login_shell(&line).unwrap();
            prop_assert_eq!(invocation.stdin.is_none(), is_direct_line(&line), "{:?}", line);
            let dir = tempfile::tempdir().unwrap();
            let unwrapped = Invocation { command: command.clone(), stdin: None };
            let intended = run_as_login_shell("/bin/sh", &unwrapped, dir.path());
            for shell in LOGIN_SHELLS {
                let printed = run_as_login_shell(shell, &invocation, dir.path());
                prop_assert_eq!(&printed, &intended, "{} read {:?} differently", shell, line);
            }
        }
    }
}
