//! `salve completions SHELL` and `salve man`: shell completions and the man page, generated
//! from the clap definitions so they cannot drift from the real flags. Reads no config.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;

/// The shells `salve completions` writes for.
pub type Shell = clap_complete::Shell;

/// Write the completion script for `shell` to stdout.
pub fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "salve", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Write salve(1), roff, to stdout: the top-level page with every subcommand (and its
/// options) in its own section, so one `man salve` shows the whole CLI and no page it
/// names is missing.
pub fn man() -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    let mut page = Vec::new();
    let top = clap_mangen::Man::new(command.clone());
    top.render_title(&mut page)?;
    top.render_name_section(&mut page)?;
    top.render_synopsis_section(&mut page)?;
    top.render_description_section(&mut page)?;
    top.render_options_section(&mut page)?;
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_subcommand_section(&mut page, "salve", sub)?;
    }
    top.render_version_section(&mut page)?;
    top.render_authors_section(&mut page)?;
    std::io::stdout().lock().write_all(&page)?;
    Ok(ExitCode::SUCCESS)
}

/// One `.SH "SALVE SUB"` section: synopsis line, about, and the options as `.TP` items.
fn write_subcommand_section(
    page: &mut Vec<u8>,
    parent: &str,
    sub: &clap::Command,
) -> std::io::Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    writeln!(page, ".SH \"{}\"", roff_escape(&name.to_uppercase()))?;
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        writeln!(page, "{}", roff_escape(&about.to_string()))?;
    }
    for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
        if arg.is_global_set() || matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        let mut head = Vec::new();
        if let Some(long) = arg.get_long() {
            head.push(format!("\\-\\-{long}"));
        }
        if let Some(short) = arg.get_short() {
            head.push(format!("\\-{short}"));
        }
        let value = arg
            .get_value_names()
            .map(|names| {
                names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
        let head = match (head.is_empty(), takes_value) {
            (true, _) => format!("\\fI{}\\fR", roff_escape(&value)),
            (false, true) => format!(
                "\\fB{}\\fR \\fI{}\\fR",
                head.join(", "),
                roff_escape(&value)
            ),
            (false, false) => format!("\\fB{}\\fR", head.join(", ")),
        };
        writeln!(page, ".TP\n{head}")?;
        if let Some(help) = arg.get_long_help().or(arg.get_help()) {
            writeln!(page, "{}", roff_escape(&help.to_string()))?;
        }
    }
    for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        if nested.get_name() != "help" {
            write_subcommand_section(page, &name, nested)?;
        }
    }
    Ok(())
}

/// Text for a roff body line: backslashes doubled, a leading `.` or `'` (a request) guarded.
fn roff_escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\\\").replace('-', "\\-");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
