//! Load-time refusal of a `{{ … }}` that would end up as (part of) a script for a second
//! shell or interpreter: `sh -c '… {{ x }}'`, `su -c`, `ssh host …`, `eval`, `watch`,
//! `find -exec sh -c`, `sudo sh -c`, `echo {{ x }} | sh`, here-documents, `python -c`.
//! There the value, quoted once for the first shell, is parsed again as code. Pure text
//! analysis of the template source: it never renders, and it errs on the side of refusing
//! only what reaches such a position, so ordinary commands (`systemctl restart {{ x }}`)
//! pass.

use super::template::template_text_with_placeholders;

/// Stands for one `{{ … }}` in the template text (a private-use character no recipe needs).
pub(super) const PLACEHOLDER: char = '\u{E000}';

/// One shell word (quotes removed) and whether a placeholder is part of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Word {
    text: String,
    placeholder: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Word),
    /// A control operator that ends a simple command (`;`, `&`, `&&`, `||`, `(`, `)`,
    /// newline, `$(`, a backquote): `|` is kept apart because it feeds the next command.
    End,
    Pipe,
    /// A redirection operator; the next word is its operand.
    Redirect(String),
}

/// Every nested-script problem of a command template, as messages.
pub(super) fn nested_script_problems(source: &str) -> Vec<String> {
    let text = template_text_with_placeholders(source);
    let (tokens, mut problems) = lex(&text);
    let mut stdin_has_placeholder = false;
    let mut argv: Vec<Word> = Vec::new();
    let mut pending_redirect: Option<String> = None;
    let mut here_string = false;
    let finish = |argv: &mut Vec<Word>, stdin: bool, problems: &mut Vec<String>| {
        if !argv.is_empty() {
            analyze(argv, stdin, problems);
        }
        argv.clear();
    };
    for token in tokens {
        match token {
            Token::Word(word) => {
                if let Some(op) = pending_redirect.take() {
                    if op == "<<<" && word.placeholder {
                        here_string = true;
                    }
                    continue;
                }
                argv.push(word);
            }
            Token::Redirect(op) => pending_redirect = Some(op),
            Token::Pipe => {
                pending_redirect = None;
                let feeds = argv.iter().any(|w| w.placeholder) || here_string;
                finish(
                    &mut argv,
                    stdin_has_placeholder || here_string,
                    &mut problems,
                );
                stdin_has_placeholder = feeds;
                here_string = false;
            }
            Token::End => {
                pending_redirect = None;
                finish(
                    &mut argv,
                    stdin_has_placeholder || here_string,
                    &mut problems,
                );
                stdin_has_placeholder = false;
                here_string = false;
            }
        }
    }
    finish(
        &mut argv,
        stdin_has_placeholder || here_string,
        &mut problems,
    );
    problems.sort();
    problems.dedup();
    problems
}

/// Splits shell text into words and operators (POSIX quoting, backslashes, `$'…'`).
/// Here-document bodies are skipped; a placeholder in one is a problem of its own.
fn lex(text: &str) -> (Vec<Token>, Vec<String>) {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut problems = Vec::new();
    let mut word: Option<Word> = None;
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut expect_heredoc_word: Option<bool> = None;
    let mut i = 0;
    let push_char = |word: &mut Option<Word>, c: char| {
        let word = word.get_or_insert_default();
        if c == PLACEHOLDER {
            word.placeholder = true;
        }
        word.text.push(c);
    };
    macro_rules! end_word {
        () => {
            if let Some(done) = word.take() {
                if let Some(strip_tabs) = expect_heredoc_word.take() {
                    heredocs.push((done.text.clone(), strip_tabs));
                }
                tokens.push(Token::Word(done));
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                if let Some(&next) = chars.get(i + 1)
                    && next != '\n'
                {
                    push_char(&mut word, next);
                }
                i += 2;
                continue;
            }
            '\'' => {
                word.get_or_insert_default();
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    push_char(&mut word, chars[i]);
                    i += 1;
                }
            }
            '"' => {
                word.get_or_insert_default();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    push_char(&mut word, chars[i]);
                    i += 1;
                }
            }
            ' ' | '\t' => end_word!(),
            '\n' => {
                end_word!();
                tokens.push(Token::End);
                // Here-document bodies follow the line that opened them.
                for (delimiter, strip_tabs) in std::mem::take(&mut heredocs) {
                    let mut line_start = i + 1;
                    loop {
                        if line_start >= chars.len() {
                            i = chars.len();
                            break;
                        }
                        let line_end = chars[line_start..]
                            .iter()
                            .position(|&c| c == '\n')
                            .map_or(chars.len(), |p| line_start + p);
                        let line: String = chars[line_start..line_end].iter().collect();
                        let line = if strip_tabs {
                            line.trim_start_matches('\t')
                        } else {
                            line.as_str()
                        };
                        if line == delimiter {
                            i = line_end;
                            break;
                        }
                        if line.contains(PLACEHOLDER) {
                            problems.push(
                                "a `{{ … }}` is inside a here-document, where its quotes are \
                                 not shell quotes (and `$(…)` still runs): pass the value as an \
                                 argument instead"
                                    .to_owned(),
                            );
                        }
                        line_start = line_end + 1;
                    }
                }
            }
            ';' | '&' | '(' | ')' | '`' => {
                end_word!();
                tokens.push(Token::End);
                if matches!(chars.get(i + 1), Some(&next) if next == c && c != '`') {
                    i += 1;
                }
            }
            '|' => {
                end_word!();
                if chars.get(i + 1) == Some(&'|') {
                    tokens.push(Token::End);
                    i += 1;
                } else {
                    tokens.push(Token::Pipe);
                    if chars.get(i + 1) == Some(&'&') {
                        i += 1;
                    }
                }
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                // A command substitution: its commands are analyzed as commands.
                end_word!();
                tokens.push(Token::End);
                i += 1;
            }
            '$' if chars.get(i + 1) == Some(&'\'') => {
                i += 2;
                word.get_or_insert_default();
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    if let Some(&c) = chars.get(i) {
                        push_char(&mut word, c);
                    }
                    i += 1;
                }
            }
            '<' | '>' => {
                // An all-digit word right before is the redirection's fd, not an argument.
                if word.as_ref().is_some_and(|w| {
                    !w.text.is_empty() && w.text.bytes().all(|b| b.is_ascii_digit())
                }) {
                    word = None;
                }
                end_word!();
                let mut op = c.to_string();
                while let Some(&next) = chars.get(i + 1)
                    && (next == '<' || next == '>' || next == '&' || next == '|' || next == '-')
                    && op.len() < 3
                {
                    op.push(next);
                    i += 1;
                }
                if op == "<<" || op == "<<-" {
                    expect_heredoc_word = Some(op == "<<-");
                }
                tokens.push(Token::Redirect(op));
            }
            c => push_char(&mut word, c),
        }
        i += 1;
    }
    end_word!();
    (tokens, problems)
}

/// Programs that run their `-c` argument (or stdin, or a script file) as shell code.
const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "ksh93",
    "mksh",
    "pdksh",
    "oksh",
    "ash",
    "yash",
    "posh",
    "rbash",
    "fish",
    "csh",
    "tcsh",
    "busybox-sh",
];

/// Interpreters whose program text is given with one of these options.
const INTERPRETERS: &[(&str, &[&str])] = &[
    ("python", &["-c"]),
    ("python2", &["-c"]),
    ("python3", &["-c"]),
    ("perl", &["-e", "-E"]),
    ("ruby", &["-e"]),
    ("node", &["-e", "-p", "--eval", "--print"]),
    ("nodejs", &["-e", "-p", "--eval", "--print"]),
    ("php", &["-r"]),
    ("lua", &["-e"]),
    ("tclsh", &[]),
    ("expect", &["-c"]),
];

/// Programs that hand their arguments, joined, to a shell (here or on another host).
const JOINS_INTO_A_SHELL: &[&str] = &[
    "ssh", "slogin", "rsh", "autossh", "mosh", "dbclient", "parallel", "sg", "pdsh",
];

/// Wrappers that exec the command after their options and `operands` leading operands;
/// `with_argument` lists the options whose value is the next word.
struct Wrapper {
    name: &'static str,
    with_argument: &'static [&'static str],
    operands: usize,
}

/// One row of `WRAPPERS`: its name, its leading operands, its options with a value.
const fn wrapper(
    name: &'static str,
    operands: usize,
    with_argument: &'static [&'static str],
) -> Wrapper {
    Wrapper {
        name,
        with_argument,
        operands,
    }
}

const WRAPPERS: &[Wrapper] = &[
    wrapper(
        "sudo",
        0,
        &[
            "-u",
            "-g",
            "-h",
            "-p",
            "-C",
            "-D",
            "-r",
            "-t",
            "-T",
            "-U",
            "-R",
            "--user",
            "--group",
            "--host",
            "--prompt",
            "--close-from",
            "--chdir",
            "--role",
            "--type",
            "--command-timeout",
            "--other-user",
            "--chroot",
        ],
    ),
    wrapper("doas", 0, &["-u", "-C"]),
    wrapper("env", 0, &["-u", "-C", "--unset", "--chdir"]),
    wrapper("timeout", 1, &["-k", "-s", "--kill-after", "--signal"]),
    wrapper("nice", 0, &["-n", "--adjustment"]),
    wrapper("nohup", 0, &[]),
    wrapper("setsid", 0, &[]),
    wrapper("stdbuf", 0, &["-i", "-o", "-e"]),
    wrapper("ionice", 0, &["-c", "-n", "--class", "--classdata"]),
    wrapper("chrt", 1, &["-T", "-P", "-D"]),
    wrapper("taskset", 1, &[]),
    wrapper("chroot", 1, &["--userspec", "--groups"]),
    wrapper(
        "unshare",
        0,
        &[
            "-S", "-G", "-R", "-w", "--setuid", "--setgid", "--root", "--wd",
        ],
    ),
    wrapper(
        "nsenter",
        0,
        &["-t", "-S", "-G", "--target", "--setuid", "--setgid"],
    ),
    wrapper(
        "systemd-run",
        0,
        &[
            "-p",
            "-E",
            "-u",
            "-M",
            "-H",
            "--unit",
            "--property",
            "--setenv",
            "--machine",
            "--host",
            "--description",
            "--slice",
            "--uid",
            "--gid",
            "--working-directory",
        ],
    ),
    wrapper(
        "runuser",
        0,
        &["-u", "-g", "-G", "--user", "--group", "--supp-group"],
    ),
    wrapper(
        "xargs",
        0,
        &[
            "-a",
            "-d",
            "-E",
            "-I",
            "-L",
            "-n",
            "-P",
            "-s",
            "--arg-file",
            "--delimiter",
            "--max-lines",
            "--max-args",
            "--max-procs",
            "--max-chars",
            "--process-slot-var",
        ],
    ),
    wrapper("exec", 0, &["-a"]),
    wrapper("command", 0, &[]),
    wrapper("builtin", 0, &[]),
    wrapper("time", 0, &["-f", "-o", "--format", "--output"]),
    wrapper(
        "flock",
        1,
        &["-w", "-E", "--timeout", "--conflict-exit-code"],
    ),
    wrapper("watch", 0, &["-n", "-d", "--interval", "--differences"]),
    wrapper("busybox", 0, &[]),
    wrapper("strace", 0, &["-e", "-o", "-p", "-s", "-u"]),
    wrapper("setpriv", 0, &["--reuid", "--regid", "--groups"]),
];

/// Reserved words that may start a command before the real command word.
const PREFIX_WORDS: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "do", "while", "until", "fi", "done",
];

const NESTED: &str = "would be parsed again as code there, so its quoting no longer holds";

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

fn is_assignment(word: &Word) -> bool {
    let name: String = word
        .text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && word.text[name.len()..].starts_with('=')
}

/// One simple command's words (redirections removed); `stdin` says whether a placeholder
/// flows into its standard input (`echo {{ x }} | …`, `<<< {{ x }}`).
fn analyze(argv: &[Word], stdin: bool, problems: &mut Vec<String>) {
    let mut rest = argv;
    while let Some(first) = rest.first() {
        if PREFIX_WORDS.contains(&first.text.as_str()) || is_assignment(first) {
            rest = &rest[1..];
        } else {
            break;
        }
    }
    let Some(command) = rest.first() else {
        return;
    };
    if command.placeholder {
        problems.push(
            "a `{{ … }}` names the program to run: the alert would choose the command".to_owned(),
        );
        return;
    }
    let args = &rest[1..];
    let name = basename(&command.text);
    let any_placeholder = args.iter().any(|w| w.placeholder);

    if SHELLS.contains(&name) {
        shell(name, args, stdin, problems);
        return;
    }
    if JOINS_INTO_A_SHELL.contains(&name) {
        if any_placeholder {
            problems.push(format!(
                "a `{{{{ … }}}}` is an argument of `{name}`, which joins its arguments into a command \
                 line for a shell: the value {NESTED}"
            ));
        }
        return;
    }
    if let Some((_, options)) = INTERPRETERS.iter().find(|(n, _)| {
        name == *n
            || name.starts_with(&format!("{n}."))
            || (n.starts_with("python") && name.starts_with("python"))
    }) {
        interpreter(name, options, args, stdin, problems);
        return;
    }
    match name {
        "eval" | "trap" | "alias" => {
            if any_placeholder {
                problems.push(format!(
                    "a `{{{{ … }}}}` is an argument of `{name}`, which runs it as shell code: the value {NESTED}"
                ));
            }
            return;
        }
        "." | "source" => {
            if args.first().is_some_and(|w| w.placeholder) {
                problems.push(format!(
                    "a `{{{{ … }}}}` names the script `{name}` runs: the alert would choose the code"
                ));
            }
            return;
        }
        "su" => {
            su_like(name, args, problems);
            return;
        }
        "script" => {
            su_like(name, args, problems);
            return;
        }
        "awk" | "gawk" | "mawk" | "nawk" | "busybox-awk" => {
            program_operand(
                name,
                args,
                &["-F", "-v", "-f", "-i", "-l", "-E"],
                &["-f", "-e", "--source", "-E"],
                problems,
            );
            return;
        }
        "sed" => {
            program_operand(
                name,
                args,
                &["-l", "-f", "-e"],
                &["-e", "-f", "--expression", "--file"],
                problems,
            );
            return;
        }
        "find" => {
            let mut index = 0;
            while index < args.len() {
                if matches!(
                    args[index].text.as_str(),
                    "-exec" | "-execdir" | "-ok" | "-okdir"
                ) {
                    let start = index + 1;
                    let end = args[start..]
                        .iter()
                        .position(|w| w.text == ";" || w.text == "+")
                        .map_or(args.len(), |p| start + p);
                    analyze(&args[start..end], false, problems);
                    index = end;
                }
                index += 1;
            }
            return;
        }
        "rsync" | "scp" => {
            for (index, word) in args.iter().enumerate() {
                let remote_path = word.text.find(':').is_some_and(|colon| {
                    word.text[..colon]
                        .find(PLACEHOLDER)
                        .is_none_or(|p| p > colon)
                        && word.text[colon..].contains(PLACEHOLDER)
                        && !word.text.starts_with('-')
                });
                let remote_shell = index > 0
                    && matches!(args[index - 1].text.as_str(), "-e" | "--rsh" | "-S")
                    || word.text.starts_with("--rsh=");
                if word.placeholder && (remote_path || remote_shell) {
                    problems.push(format!(
                        "a `{{{{ … }}}}` is in a remote path or remote shell of `{name}`, which the \
                         remote shell parses: the value {NESTED}"
                    ));
                }
            }
            return;
        }
        _ => {}
    }
    if let Some(wrapper) = WRAPPERS.iter().find(|w| w.name == name) {
        wrapped(wrapper, args, stdin, problems);
        return;
    }
    // Any other program that runs a shell it names (`docker exec c sh -c …`, `kubectl exec
    // pod -- bash -c …`, `chpst -u x sh -c …`): a shell's name followed by a `-c` option.
    for (index, word) in args.iter().enumerate() {
        let runs_a_script = args.get(index + 1).is_some_and(|next| {
            let option = next.text.as_str();
            option.starts_with('-') && !option.starts_with("--") && option[1..].contains('c')
        });
        if SHELLS.contains(&basename(&word.text)) && runs_a_script && !word.placeholder {
            shell(basename(&word.text), &args[index + 1..], false, problems);
            return;
        }
    }
}

/// A shell: its `-c` script (or the script file, or stdin when it reads one) must hold no
/// placeholder; positional arguments after the script may.
fn shell(name: &str, args: &[Word], stdin: bool, problems: &mut Vec<String>) {
    let mut command_mode = false;
    let mut index = 0;
    while index < args.len() {
        let word = &args[index];
        let text = word.text.as_str();
        if text == "--" || text == "-" {
            index += 1;
            break;
        }
        if matches!(text, "-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file") {
            index += 2;
            continue;
        }
        if text == "--command" {
            command_mode = true;
        } else if (text.starts_with('-') || text.starts_with('+')) && !text.starts_with("--") {
            if text[1..].contains('c') {
                command_mode = true;
            }
        } else if !text.starts_with("--") {
            break;
        }
        if word.placeholder {
            problems.push(format!("a `{{{{ … }}}}` is an option of `{name}`: the alert would choose how the shell runs"));
        }
        index += 1;
    }
    match args.get(index) {
        Some(script) if script.placeholder => problems.push(if command_mode {
            format!("a `{{{{ … }}}}` is inside the script `{name} -c` runs: the value {NESTED}")
        } else {
            format!("a `{{{{ … }}}}` names the script file `{name}` runs: the alert would choose the code")
        }),
        None if !command_mode && stdin => problems.push(format!(
            "a `{{{{ … }}}}` flows into the standard input of `{name}`, which reads it as a script: \
             the value {NESTED}"
        )),
        _ => {}
    }
}

/// An interpreter (`python -c`, `perl -e`, …): its program text must hold no placeholder.
fn interpreter(
    name: &str,
    options: &[&str],
    args: &[Word],
    stdin: bool,
    problems: &mut Vec<String>,
) {
    for (index, word) in args.iter().enumerate() {
        let text = word.text.as_str();
        let attached = options
            .iter()
            .any(|o| text.starts_with(o) && text.len() > o.len() && !o.starts_with("--"));
        if (attached && word.placeholder)
            || (options.contains(&text) && args.get(index + 1).is_some_and(|w| w.placeholder))
        {
            problems.push(format!(
                "a `{{{{ … }}}}` is inside the program `{name}` runs: the value {NESTED}"
            ));
            return;
        }
        if !text.starts_with('-') {
            if word.placeholder && index == 0 {
                problems.push(format!("a `{{{{ … }}}}` names the program file `{name}` runs: the alert would choose the code"));
            }
            return;
        }
    }
    if stdin {
        problems.push(format!(
            "a `{{{{ … }}}}` flows into the standard input of `{name}`, which reads it as a program: \
             the value {NESTED}"
        ));
    }
}

/// `awk`/`sed`: the program is the first operand unless given by an option.
fn program_operand(
    name: &str,
    args: &[Word],
    with_argument: &[&str],
    program_options: &[&str],
    problems: &mut Vec<String>,
) {
    let mut index = 0;
    let mut program_given = false;
    while index < args.len() {
        let text = args[index].text.as_str();
        if text == "--" {
            index += 1;
            break;
        }
        if !text.starts_with('-') || text == "-" {
            break;
        }
        let (option, attached) = match text.find('=') {
            Some(eq) if text.starts_with("--") => (&text[..eq], true),
            _ if !text.starts_with("--") && text.len() > 2 && text.is_char_boundary(2) => {
                (&text[..2], true)
            }
            _ => (text, false),
        };
        if program_options.contains(&option) {
            program_given = true;
            let program = if attached {
                args.get(index)
            } else {
                args.get(index + 1)
            };
            if program.is_some_and(|w| w.placeholder) {
                problems.push(format!(
                    "a `{{{{ … }}}}` is inside the program `{name}` runs: the value {NESTED}"
                ));
            }
        }
        index += if !attached && with_argument.contains(&option) {
            2
        } else {
            1
        };
    }
    if !program_given && args.get(index).is_some_and(|w| w.placeholder) {
        problems.push(format!(
            "a `{{{{ … }}}}` is the program `{name}` runs: the value {NESTED}"
        ));
    }
}

/// `su -c CMD`, `script -c CMD`: the command is run by a shell.
fn su_like(name: &str, args: &[Word], problems: &mut Vec<String>) {
    for (index, word) in args.iter().enumerate() {
        let text = word.text.as_str();
        let script = if matches!(
            text,
            "-c" | "--command" | "--session-command" | "-s" | "--shell"
        ) {
            args.get(index + 1)
        } else if text.starts_with("--command=")
            || text.starts_with("--session-command=")
            || (text.starts_with("-c") && text.len() > 2)
        {
            Some(word)
        } else {
            None
        };
        if script.is_some_and(|w| w.placeholder) {
            problems.push(format!("a `{{{{ … }}}}` is inside the command `{name} -c` hands to a shell: the value {NESTED}"));
            return;
        }
    }
}

/// A wrapper: skip its options and operands, then analyze the command it runs.
fn wrapped(wrapper: &Wrapper, args: &[Word], stdin: bool, problems: &mut Vec<String>) {
    let name = wrapper.name;
    let mut index = 0;
    let mut operands = wrapper.operands;
    while index < args.len() {
        let word = &args[index];
        let text = word.text.as_str();
        if text == "--" {
            index += 1;
            break;
        }
        if text.starts_with('-') && text != "-" {
            let option = text.split('=').next().unwrap_or(text);
            // Options that run the command through a shell, or split a string into words.
            let through_a_shell = (name == "sudo"
                && matches!(option, "-s" | "-i" | "--shell" | "--login"))
                || (name == "env" && matches!(option, "-S" | "--split-string"))
                || (name == "flock" && matches!(option, "-c" | "--command"))
                || (name == "runuser"
                    && matches!(option, "-c" | "--command" | "--session-command"));
            if through_a_shell {
                if args[index..].iter().any(|w| w.placeholder) {
                    problems.push(format!(
                        "a `{{{{ … }}}}` follows `{name} {option}`, which hands the command to a shell: \
                         the value {NESTED}"
                    ));
                }
                return;
            }
            if name == "watch" && matches!(option, "-x" | "--exec") {
                index += 1;
                continue;
            }
            let takes_argument = wrapper.with_argument.contains(&option) && !text.contains('=');
            let attached_short = !text.starts_with("--")
                && text.len() > 2
                && text
                    .get(..2)
                    .is_some_and(|short| wrapper.with_argument.contains(&short));
            index += if takes_argument && !attached_short {
                2
            } else {
                1
            };
            continue;
        }
        if name == "env" && is_assignment(word) {
            index += 1;
            continue;
        }
        if operands > 0 {
            operands -= 1;
            index += 1;
            continue;
        }
        break;
    }
    if name == "watch" && !args.iter().any(|w| w.text == "-x" || w.text == "--exec") {
        if args[index.min(args.len())..].iter().any(|w| w.placeholder) {
            problems.push(format!(
                "a `{{{{ … }}}}` is an argument of `watch`, which joins its arguments into a command \
                 line for `sh -c`: the value {NESTED}"
            ));
        }
        return;
    }
    if index < args.len() {
        analyze(&args[index..], stdin, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(source: &str) {
        assert!(
            !nested_script_problems(source).is_empty(),
            "{source:?} should be refused"
        );
    }

    fn allowed(source: &str) {
        let problems = nested_script_problems(source);
        assert!(problems.is_empty(), "{source:?}: {problems:?}");
    }

    #[test]
    fn placeholders_in_scripts_for_a_second_shell_are_refused() {
        for source in [
            "sh -c {{ x }}",
            "sh -c 'echo '{{ x }}",
            "bash -c \"echo \"{{ x }}",
            "bash -ec {{ x }}",
            "bash --norc -o pipefail -c {{ x }}",
            "/bin/sh -xc {{ x }}",
            "zsh -c {{ x }}",
            "fish -c {{ x }}",
            "su -c {{ x }}",
            "su - root -c {{ x }}",
            "su --command={{ x }}",
            "runuser -u salve -c {{ x }}",
            "ssh web2 {{ x }}",
            "ssh -p 22 web2 systemctl restart {{ x }}",
            "ssh {{ x }}",
            "eval {{ x }}",
            "eval \"systemctl restart \"{{ x }}",
            "trap {{ x }} EXIT",
            ". {{ x }}",
            "source {{ x }}",
            "xargs sh -c {{ x }}",
            "xargs -n 1 -I % bash -c {{ x }}",
            "env FOO=1 sh -c {{ x }}",
            "env -i PATH=/bin sh -c {{ x }}",
            "env -S {{ x }}",
            "sudo sh -c {{ x }}",
            "sudo -u root -- bash -c {{ x }}",
            "sudo -s systemctl restart {{ x }}",
            "timeout 5 sh -c {{ x }}",
            "nice -n 5 nohup setsid sh -c {{ x }}",
            "find /var/log -name '*.gz' -exec sh -c {{ x }} \\;",
            "find / -execdir bash -c {{ x }} +",
            "watch systemctl status {{ x }}",
            "flock /tmp/l -c {{ x }}",
            "echo {{ x }} | sh",
            "printf %s {{ x }} | sudo bash",
            "sh <<< {{ x }}",
            "sh {{ x }}",
            "python3 -c {{ x }}",
            "perl -e {{ x }}",
            "awk {{ x }} /etc/passwd",
            "sed -e {{ x }} /etc/hosts",
            "sed {{ x }} /etc/hosts",
            "{{ x }} --help",
            "FOO=1 {{ x }}",
            "sudo {{ x }}",
            "true; sh -c {{ x }}",
            "date && bash -c {{ x }}",
            "echo $(sh -c {{ x }})",
            "cat <<EOF\n{{ x }}\nEOF",
            "sh <<-'EOF'\n\t{{ x }}\n\tEOF",
            "parallel echo ::: {{ x }}",
            "sg adm {{ x }}",
            "script -q -c {{ x }} /dev/null",
            "rsync -e {{ x }} /a web2:/srv/",
            "scp /tmp/a web2:/srv/{{ x }}",
            "busybox sh -c {{ x }}",
            "docker exec web sh -c {{ x }}",
            "kubectl exec pod -- /bin/bash -lc {{ x }}",
        ] {
            refused(source);
        }
    }

    #[test]
    fn ordinary_commands_pass() {
        for source in [
            "systemctl restart {{ x }}",
            "systemctl is-active --quiet {{ x }}",
            "journalctl -u {{ x }} -n 50 --no-pager",
            "df --output=pcent {{ x }} | tail -n 1",
            "du -xh --max-depth=2 {{ x }} 2>/dev/null | sort -rh | head -n 25",
            "find /tmp /var/tmp -xdev -type f -mtime +1 -delete",
            "find {{ x }} -xdev -maxdepth 2 -type f -name '*.gz' -delete",
            "sh -c 'systemctl restart \"$1\"' sh {{ x }}",
            "bash -c 'echo \"$@\"' _ {{ x }} {{ y }}",
            "sudo -u {{ x }} systemctl restart nginx",
            "timeout 5 systemctl restart {{ x }}",
            "env FOO={{ x }} systemctl restart nginx",
            "logger -t salve {{ x }} {{ target_name }}",
            "echo {{ x }} | logger",
            "echo {{ x }} > /tmp/file",
            "printf '%s\\n' {{ x }} | tee -a /var/log/x",
            "cat <<EOF\nliteral only\nEOF\necho {{ x }}",
            "xargs -0 rm -f -- {{ x }}",
            "ssh-keygen -R {{ x }}",
            "sed -n 1p {{ x }}",
            "awk '{print $1}' {{ x }}",
            "python3 /usr/local/bin/fix.py {{ x }}",
            "curl -fsS http://localhost/{{ x }}",
            "kill -HUP {{ x }}",
            "rsync -a {{ x }} web2:/srv/",
            "docker exec web sh -c 'kill -HUP 1' {{ x }}",
            "grep -c sh {{ x }}",
        ] {
            allowed(source);
        }
    }
}
