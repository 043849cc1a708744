//! `salve pause`, `salve pause list` and `salve resume`: write and read the store's
//! pauses directly (like `salve breaker reset`), so a running `salve serve` sees them on
//! its next incident. Each change records who made it (`cli:USER`).

use std::io::Write;
use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use clap::{Args, Subcommand};

use super::{cli_user, safe, with_store};
use crate::config::Config;
use crate::http::api::pauses::{PauseContext, PauseRequest, listing};
use crate::store::Pause;

#[derive(Debug, Subcommand)]
pub enum PauseAction {
    /// The active pauses (with their ids, for `salve resume`) and the maintenance
    /// windows open now.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A new pause: `salve pause [--recipe R] [--host H] --for 2h --reason TEXT`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Only this recipe (exact name); all recipes when omitted.
    #[arg(long, value_name = "RECIPE")]
    recipe: Option<String>,
    /// Only this inventory host (exact name); all hosts when omitted.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// How long, e.g. 30m, 2h, 1d. Required unless --until-resumed.
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// No end: paused until `salve resume`.
    #[arg(long)]
    until_resumed: bool,
    /// Why (shown in `pause list`, journaled on each paused incident, in its page).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Journal paused incidents but page no one.
    #[arg(long)]
    silent: bool,
}

fn context(loaded: &Config) -> PauseContext {
    PauseContext {
        windows: loaded.maintenance.clone(),
        hosts: loaded
            .settings
            .hosts
            .iter()
            .map(|host| host.name.clone())
            .collect(),
        live: None,
    }
}

fn scope(pause: &Pause) -> String {
    format!(
        "recipe {} on host {}",
        pause.recipe.as_deref().map_or("*".into(), safe),
        pause.host.as_deref().map_or("*".into(), safe),
    )
}

fn until(pause: &Pause) -> String {
    pause.until.map_or_else(
        || "until resumed".to_owned(),
        |until| format!("until {}", until.to_rfc3339_opts(SecondsFormat::Secs, true)),
    )
}

pub(super) fn pause(
    loaded: &Config,
    action: Option<PauseAction>,
    args: PauseArgs,
) -> anyhow::Result<ExitCode> {
    let context = context(loaded);
    with_store(loaded, async |store| {
        let mut out = std::io::stdout().lock();
        match action {
            Some(PauseAction::List { json }) => {
                let listing = listing(store, &context, Utc::now()).await?;
                if json {
                    serde_json::to_writer_pretty(&mut out, &listing)?;
                    writeln!(out)?;
                    return Ok(ExitCode::SUCCESS);
                }
                if listing.pauses.is_empty() && listing.maintenance.is_empty() {
                    writeln!(out, "nothing is paused")?;
                }
                for pause in &listing.pauses {
                    writeln!(
                        out,
                        "#{:<4} {}  {}  by {} at {}{}: {}",
                        pause.id,
                        scope(pause),
                        until(pause),
                        safe(&pause.created_by),
                        pause.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        if pause.silent { " (silent)" } else { "" },
                        safe(&pause.reason)
                    )?;
                }
                for window in &listing.maintenance {
                    let names = |list: &[String]| {
                        if list.is_empty() {
                            "*".to_owned()
                        } else {
                            safe(&list.join(",")).into_owned()
                        }
                    };
                    writeln!(
                        out,
                        "maintenance {}  recipe {} on host {}  {}{} (config)",
                        safe(&window.name),
                        names(&window.recipes),
                        names(&window.hosts),
                        window.schedule,
                        if window.silent { " (silent)" } else { "" },
                    )?;
                }
            }
            None => {
                let request = PauseRequest {
                    recipe: args.recipe,
                    host: args.host,
                    for_: args.for_,
                    until_resumed: args.until_resumed,
                    reason: args.reason.unwrap_or_default(),
                    silent: args.silent,
                };
                let by = cli_user();
                let new = request
                    .to_new_pause(&context, &by, Utc::now())
                    .map_err(anyhow::Error::msg)?;
                let pause = store.create_pause(new).await?;
                writeln!(
                    out,
                    "pause #{}: {} paused {} (by {by}); resume with `salve resume {}`",
                    pause.id,
                    scope(&pause),
                    until(&pause),
                    pause.id
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn resume(loaded: &Config, id: Option<i64>, all: bool) -> anyhow::Result<ExitCode> {
    if id.is_none() && !all {
        anyhow::bail!("name the pause to resume (salve pause list shows ids), or --all");
    }
    with_store(loaded, async |store| {
        let mut out = std::io::stdout().lock();
        let by = cli_user();
        let resumed = store.resume_pauses(id, &by).await?;
        if resumed.is_empty() {
            match id {
                Some(id) => anyhow::bail!("no active pause #{id} (salve pause list)"),
                None => writeln!(out, "nothing was paused")?,
            }
        }
        for pause in resumed {
            writeln!(
                out,
                "resumed pause #{}: {} (by {by})",
                pause.id,
                scope(&pause)
            )?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
