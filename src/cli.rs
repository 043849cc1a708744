//! The command line (clap): serve, check, simulate, test, history. Thin: each command
//! loads what it needs through the library and prints; none of them runs a remediation
//! except `serve`'s engine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::alert::Source;
use crate::config::{self, Config, LogFormat};
use crate::incident::{Incident, state_for};
use crate::intake;
use crate::plan::Plan;
use crate::recipe::{self, PlanContext};
use crate::store::{ApprovalDecision, ApprovalOutcome, BreakerResetOutcome, Store};

// Every piece of journal or alert text printed as text goes through this.
use crate::terminal::escape_controls as safe;

mod generate;
mod pause;

/// `salve --version`: the crate version and the git commit it was built from (build.rs;
/// "unknown" outside a git checkout unless GIT_COMMIT was set).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SALVE_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "salve",
    version = VERSION,
    about = "Self-healing alert receiver: alerts in, bounded remediations out, humans paged only when needed",
    long_about = "salve receives alerts from Alertmanager, Grafana or any JSON webhook, maps each to a \
                  recipe (a pre-written, bounded remediation), journals the plan, and (in enforce mode) \
                  runs it on the target over SSH."
)]
pub struct Cli {
    /// Config file. Default: ./salve.toml when present, else the embedded default
    /// (SQLite ./salve.db, 127.0.0.1:9095, ./recipes, dry-run).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook receiver and the engine until SIGTERM/SIGINT.
    Serve {
        /// Plan and journal every alert, run nothing, whatever config and recipes say.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate config, inventory and every recipe; print each problem as file:line: message.
    Check,
    /// Print the plan salve would make for a webhook body (any supported source). Runs nothing.
    Simulate {
        /// A webhook body as Alertmanager, Grafana or the generic hook would POST it;
        /// `-` reads it from stdin.
        alert: PathBuf,
        /// The body's source; detected from its shape when omitted.
        #[arg(long, value_parser = ["alertmanager", "grafana", "generic"], conflicts_with = "case")]
        source: Option<String>,
        /// ALERT is a fixture file (recipes/tests/*.toml) and this the name of the case
        /// to plan, with the file's hosts and mode when it sets them (as `salve test` does).
        #[arg(long, value_name = "NAME")]
        case: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run recipe fixtures (DIR/tests/*.toml: alert in, expected plan out), like `promtool test rules`.
    Test {
        /// Recipe directory; default: the config's recipes.dir.
        dir: Option<PathBuf>,
    },
    /// Circuit breakers: runs per (recipe, breaker key) in each recipe's window; the key is
    /// the target's inventory name unless the recipe sets `[breaker] key`.
    Breaker {
        #[command(subcommand)]
        action: BreakerAction,
    },
    /// The alerts salve could not handle (no recipe, or escalated), most frequent first:
    /// the recipes to write next.
    Gaps {
        /// How many alertnames.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Approve the plan of an incident awaiting approval (a recipe with
    /// `mode = "approve"`): it goes through the usual gates (breaker, rate limit, host
    /// order) and runs. Journaled as approved by cli:USER.
    Approve {
        /// The incident id (`salve history`).
        id: i64,
    },
    /// Deny the plan of an incident awaiting approval: nothing runs, it is escalated once.
    Deny {
        id: i64,
        /// Why, for the journal and the page.
        #[arg(long)]
        reason: String,
    },
    /// Show journaled incidents, newest first.
    History {
        /// How many incidents.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Full records (plan and journal events) as JSON, streamed a few incidents at a
        /// time (never the whole journal in memory).
        #[arg(long)]
        json: bool,
        /// Only incidents with an id below this (the next page after the last one shown).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        /// One incident in detail: its plan, each step (command, exit status, output,
        /// duration), each check poll, and the final state and why.
        #[arg(long, value_name = "ID")]
        id: Option<i64>,
    },
    /// Pause remediation: `salve pause [--recipe R] [--host H] --for 2h --reason TEXT`.
    /// Matching incidents are journaled `paused`, not run, and escalated unless
    /// --silent. `salve pause list` shows what is paused.
    #[command(args_conflicts_with_subcommands = true)]
    Pause {
        #[command(subcommand)]
        action: Option<pause::PauseAction>,
        #[command(flatten)]
        args: pause::PauseArgs,
    },
    /// End a pause now (`salve pause list` shows ids); --all ends every active pause,
    /// the error budget's included.
    Resume {
        /// The pause's id.
        #[arg(required_unless_present = "all")]
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell), e.g.
    /// `salve completions bash > /etc/bash_completion.d/salve`. Reads no config.
    Completions {
        #[arg(value_enum)]
        shell: generate::Shell,
    },
    /// Print the salve(1) man page (roff), e.g. `salve man | man -l -`. Reads no config.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum BreakerAction {
    /// Every (recipe, key) with runs in its window; OPEN ones stop remediation.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Forget the runs of RECIPE under KEY so far: the next incident runs again. Exits
    /// non-zero when that breaker never counted a run.
    Reset {
        /// Recipe name, e.g. service-restart.
        recipe: String,
        /// The breaker key as `breaker list` shows it: the inventory host name (e.g. web1)
        /// unless the recipe sets `[breaker] key` (e.g. web1/nginx).
        key: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Generated from the CLI definition alone: they work without (or with a broken) config.
    match cli.command {
        Command::Completions { shell } => return generate::completions(shell),
        Command::Man => return generate::man(),
        _ => {}
    }
    let config_path = config::resolve_path(cli.config.as_deref());
    let loaded = match config::load(config_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    // One-shot commands print their result; only warnings belong on stderr for them.
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(loaded.settings.server.log_format, default_level);
    match cli.command {
        Command::Serve { dry_run } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let options = crate::serve::BuildOptions {
                force_dry_run: dry_run,
            };
            runtime.block_on(crate::serve::run(loaded, options))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(&loaded),
        Command::Simulate {
            alert,
            source,
            case,
            json,
        } => simulate(&loaded, &alert, source.as_deref(), case, Output::of(json)),
        Command::Test { dir } => test(&loaded, dir),
        Command::History {
            limit,
            json,
            before,
            id,
        } => history(&loaded, limit, Output::of(json), before, id),
        Command::Breaker { action } => breaker(&loaded, action),
        Command::Gaps { limit, json } => gaps(&loaded, limit, Output::of(json)),
        Command::Approve { id } => decide(&loaded, id, ApprovalDecision::Approve),
        Command::Deny { id, reason } => decide(
            &loaded,
            id,
            ApprovalDecision::deny(Some(&reason), "denied by CLI (no reason given)"),
        ),
        Command::Pause { action, args } => pause::pause(&loaded, action, args),
        Command::Resume { id, all } => pause::resume(&loaded, id, all),
        Command::Completions { .. } | Command::Man => unreachable!("answered before the config"),
    }
}

/// How a read-only command prints: text for a person, or JSON for a program (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

impl Output {
    fn of(json_flag: bool) -> Output {
        if json_flag {
            Output::Json
        } else {
            Output::Text
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    // Colours only for a terminal: in a file or the journal an escape sequence is noise,
    // and with none of salve's own there, any ESC in the log would stand out as injected.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        // tracing-subscriber escapes only ESC/BEL/BS/FF/DEL, and only in the message: every
        // field value is alert-derived text that could forge lines (CR/LF) or carry OSC.
        LogFormat::Human => builder.fmt_fields(human_log_fields()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The human log's field formatter: `name=value` (the message bare), with every value's
/// control characters escaped.
fn human_log_fields() -> impl for<'writer> tracing_subscriber::fmt::FormatFields<'writer> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        match field.name() {
            "message" => write!(writer, "{}", safe(&text)),
            name => write!(
                writer,
                "{}={}",
                name.strip_prefix("r#").unwrap_or(name),
                safe(&text)
            ),
        }
    })
    .delimited(" ")
}

fn load_recipes(
    loaded: &Config,
    dir: &Path,
) -> anyhow::Result<Result<recipe::RecipeSet, ExitCode>> {
    match crate::reload::load_recipes(dir, &loaded.channel_names()) {
        Ok((recipes, no_recipes)) => {
            if let Some(warning) = no_recipes {
                eprintln!("{}: warning: {warning}", loaded.origin);
            }
            Ok(Ok(recipes))
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            Ok(Err(ExitCode::FAILURE))
        }
    }
}

fn check(loaded: &Config) -> anyhow::Result<ExitCode> {
    let dir = &loaded.settings.recipes.dir;
    let recipes = match load_recipes(loaded, dir)? {
        Ok(recipes) => recipes,
        Err(code) => return Ok(code),
    };
    // Warnings do not fail the check: the recipe works, but may allow more than meant.
    let mut warnings = 0;
    let config_text = std::fs::read_to_string(&loaded.origin).unwrap_or_default();
    for (index, label, message) in recipes.inventory_warnings(&loaded.inventory()) {
        warnings += 1;
        let path = ["hosts", &index.to_string(), "labels", &label];
        match crate::tomlspan::line_of_path(&config_text, &path) {
            Some(line) => eprintln!("{}:{line}: warning: {message}", loaded.origin),
            None => eprintln!("{}: warning: {message}", loaded.origin),
        }
    }
    let (route_problems, route_warnings) = config::route_findings(loaded, &config_text);
    for warning in &route_warnings {
        warnings += 1;
        match warning.line {
            Some(line) => eprintln!("{}:{line}: warning: {}", warning.file, warning.message),
            None => eprintln!("{}: warning: {}", warning.file, warning.message),
        }
    }
    for problem in &route_problems {
        eprintln!("{problem}");
    }
    for warning in recipes.warnings() {
        warnings += 1;
        match warning.line {
            0 => eprintln!("{}: warning: {}", warning.file.display(), warning.message),
            line => eprintln!(
                "{}:{line}: warning: {}",
                warning.file.display(),
                warning.message
            ),
        }
    }
    let approve_mode: Vec<&str> = recipes
        .iter()
        .filter(|r| r.approval)
        .map(|r| r.name.as_str())
        .collect();
    let approval_unsigned = !approve_mode.is_empty() && loaded.approval_key.is_none();
    if approval_unsigned {
        eprintln!(
            "{}: recipe(s) {} say mode = \"approve\" but [approval] key_file (or key) is not set: no approve link could be signed",
            loaded.origin,
            approve_mode.join(", ")
        );
    } else if !approve_mode.is_empty() && loaded.settings.approval.base_url.is_none() {
        warnings += 1;
        eprintln!(
            "{}: warning: [approval] base_url is not set: approve links point at http://{}",
            loaded.origin, loaded.settings.server.listen
        );
    }
    let probe_problems = crate::config_probes::problems(loaded, &recipes);
    for problem in &probe_problems {
        eprintln!("{problem}");
    }
    if !route_problems.is_empty() || approval_unsigned || !probe_problems.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    let notify_only = recipes.iter().filter(|r| r.is_notify_only()).count();
    println!(
        "ok: config {}, {} host(s), {} recipe(s) in {}{}{}",
        loaded.origin,
        loaded.settings.hosts.len(),
        recipes.len(),
        dir.display(),
        if notify_only == 0 {
            String::new()
        } else {
            format!(" ({notify_only} notify-only)")
        },
        if warnings == 0 {
            String::new()
        } else {
            format!(", {warnings} warning(s)")
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn simulate(
    loaded: &Config,
    path: &Path,
    source: Option<&str>,
    case: Option<String>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let recipes = match load_recipes(loaded, &loaded.settings.recipes.dir)? {
        Ok(recipes) => recipes,
        Err(code) => return Ok(code),
    };
    let (alerts, case_inventory, mode) = match case {
        Some(name) => match recipe::fixture_case(path, &name) {
            Ok(case) => (vec![case.alert], case.inventory, case.mode),
            Err(problems) => {
                for problem in &problems {
                    eprintln!("{problem}");
                }
                return Ok(ExitCode::FAILURE);
            }
        },
        None => (
            read_webhook_alerts(loaded, path, source)?,
            None,
            loaded.settings.engine.mode,
        ),
    };
    let inventory = case_inventory.unwrap_or_else(|| loaded.inventory());
    let routes = loaded.settings.escalation.routes();
    let results: Vec<(crate::alert::Alert, Plan)> = alerts
        .into_iter()
        .map(|alert| {
            let context = PlanContext {
                inventory: &inventory,
                global_mode: mode,
                default_escalation: routes.channels_for(&alert.labels),
            };
            let plan = recipes.plan(&alert, &context);
            (alert, plan)
        })
        .collect();
    write_simulation(&results, output)
}

/// The alerts of a webhook body in the file at `path` (`-`: stdin).
fn read_webhook_alerts(
    loaded: &Config,
    path: &Path,
    source: Option<&str>,
) -> anyhow::Result<Vec<crate::alert::Alert>> {
    let body = if path == Path::new("-") {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut body)
            .context("reading the webhook body from stdin")?;
        body
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    let limits = &loaded.settings.intake.limits;
    let parsed = match source.and_then(Source::parse) {
        Some(source) => intake::parse(source, &body, limits),
        None => intake::detect_and_parse(&body, limits),
    };
    let notification = parsed.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(notification.alerts)
}

fn write_simulation(
    results: &[(crate::alert::Alert, Plan)],
    output: Output,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if output == Output::Json {
        let value: Vec<_> = results
            .iter()
            .map(|(alert, plan)| serde_json::json!({ "alert": alert, "state": state_for(plan), "plan": plan }))
            .collect();
        crate::terminal::write_json(&mut out, &serde_json::json!({ "alerts": value }))?;
        writeln!(out)?;
    } else {
        for (alert, plan) in results {
            write_plan(
                &mut out,
                alert.alertname().unwrap_or("<no alertname>"),
                plan,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_plan(out: &mut impl Write, alertname: &str, plan: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "alert {}: {} ({})",
        safe(alertname),
        state_for(plan),
        plan.outcome.as_str()
    )?;
    if let Some(recipe) = &plan.recipe {
        if plan.outcome == crate::plan::PlanOutcome::NotifyOnly {
            writeln!(
                out,
                "  recipe:   {} (notify-only: pages with its diagnostics, runs no fix)",
                safe(recipe)
            )?;
        } else {
            writeln!(
                out,
                "  recipe:   {} (mode {})",
                safe(recipe),
                plan.mode.as_str()
            )?;
        }
    }
    if let Some(reason) = &plan.reason {
        writeln!(out, "  reason:   {}", safe(reason))?;
    }
    if let Some(target) = &plan.target {
        writeln!(
            out,
            "  target:   {} ({}:{})",
            safe(&target.name),
            safe(&target.address),
            target.port
        )?;
    }
    for command in &plan.commands {
        writeln!(
            out,
            "  run:      {}{}",
            if plan.sudo { "[sudo] " } else { "" },
            safe(command)
        )?;
    }
    if let Some(verify) = &plan.verify {
        writeln!(
            out,
            "  verify:   within {}, every {}",
            humantime::format_duration(verify.within),
            humantime::format_duration(verify.interval)
        )?;
        for check in &verify.checks {
            writeln!(out, "    - {}", check_in_words(check))?;
        }
    }
    if let Some(breaker) = &plan.breaker {
        writeln!(
            out,
            "  breaker:  {} runs in {}, key {}",
            breaker.max_runs,
            humantime::format_duration(breaker.window),
            safe(plan.breaker_key().unwrap_or_default())
        )?;
    }
    writeln!(out, "  escalate: {}", safe(&plan.escalate.join(", ")))?;
    for attach in &plan.attach {
        writeln!(out, "  attach:   {}", safe(attach))?;
    }
    if let Some(runbook) = &plan.runbook {
        writeln!(out, "  runbook:  {}", safe(runbook))?;
    }
    Ok(())
}

fn test(loaded: &Config, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| loaded.settings.recipes.dir.clone());
    let recipes = match load_recipes(loaded, &dir)? {
        Ok(recipes) => recipes,
        Err(code) => return Ok(code),
    };
    let inventory = loaded.inventory();
    let context = PlanContext {
        inventory: &inventory,
        global_mode: loaded.settings.engine.mode,
        default_escalation: &loaded.settings.escalation.default,
    };
    let routes = loaded.settings.escalation.routes();
    let report = match recipe::run_fixtures_routed(&dir.join("tests"), &recipes, &context, &routes)
    {
        Ok(report) => report,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    print!("{report}");
    Ok(if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Commands that only read the journal never create one (opening creates it): a wrong
/// `store.url` or working directory must not answer "no incidents" from a new empty file.
fn journal_must_exist(loaded: &Config) -> anyhow::Result<()> {
    if loaded.settings.store.is_postgres() {
        // A database is not created by connecting to it.
        return Ok(());
    }
    let path = crate::store::sqlite::path_of_url(&loaded.settings.store.url)?;
    if !path.exists() {
        anyhow::bail!(
            "no journal at {} (store.url in {}; `salve serve` creates it)",
            path.display(),
            loaded.origin
        );
    }
    Ok(())
}

/// Open the configured store and run `work` on it in a small runtime.
fn with_store<T>(
    loaded: &Config,
    work: impl AsyncFnOnce(&dyn Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let url = &loaded.settings.store.url;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = crate::store::open(&loaded.settings.store, loaded.store_password.clone())
            .await
            .with_context(|| format!("opening store {url}"))?;
        work(store.as_ref()).await
    })
}

fn breaker(loaded: &Config, action: BreakerAction) -> anyhow::Result<ExitCode> {
    journal_must_exist(loaded)?;
    with_store(loaded, async |store| {
        let mut out = std::io::stdout().lock();
        match action {
            BreakerAction::List { json } => {
                let breakers = store.breakers().await?;
                if json {
                    serde_json::to_writer_pretty(&mut out, &breakers)?;
                    writeln!(out)?;
                } else if breakers.is_empty() {
                    writeln!(out, "no runs in any breaker window")?;
                } else {
                    writeln!(
                        out,
                        "{:<6}  {:<24}  {:<24}  {:<16}  {:>9}  {:>8}  last run",
                        "state", "recipe", "key", "target", "runs/max", "window"
                    )?;
                    for b in breakers {
                        writeln!(
                            out,
                            "{:<6}  {:<24}  {:<24}  {:<16}  {:>9}  {:>8}  {}",
                            if b.open { "OPEN" } else { "closed" },
                            truncate(&b.recipe, 24),
                            // The whole key: it is what `breaker reset` takes.
                            safe(&b.key),
                            truncate(&b.target, 16),
                            format!(
                                "{}/{}",
                                b.runs_in_window,
                                b.max_runs
                                    .map(|m| m.to_string())
                                    .unwrap_or_else(|| "-".into())
                            ),
                            humantime::format_duration(std::time::Duration::from_secs(
                                b.window_seconds.max(0) as u64
                            ))
                            .to_string(),
                            b.last_run.format("%Y-%m-%d %H:%M:%S"),
                        )?;
                    }
                }
            }
            BreakerAction::Reset { recipe, key } => {
                let by = cli_user();
                let outcome = store.reset_breaker(&recipe, &key, &by).await?;
                let (recipe, key) = (safe(&recipe), safe(&key));
                let reset = match outcome {
                    BreakerResetOutcome::Reset(reset) => reset,
                    BreakerResetOutcome::UnknownRecipe => anyhow::bail!(
                        "no breaker of recipe {recipe}: it never ran (is the name right?); nothing to reset"
                    ),
                    BreakerResetOutcome::UnknownKey { known_keys } => anyhow::bail!(
                        "recipe {recipe} never ran under breaker key {key:?}; nothing to reset (keys it ran under: {})",
                        safe(&known_keys.join(", "))
                    ),
                };
                writeln!(
                    out,
                    "breaker reset: {recipe} key {key} ({} run(s) forgotten, journaled on incident {} by {by}); the next incident runs",
                    reset.runs_forgotten, reset.incident.0
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `salve approve ID` / `salve deny ID --reason`: decides in the store directly, as
/// cli:USER; a running `serve` picks the incident up on its next pass.
fn decide(loaded: &Config, id: i64, decision: ApprovalDecision) -> anyhow::Result<ExitCode> {
    with_store(loaded, async |store| {
        let by = cli_user();
        let word = match decision {
            ApprovalDecision::Approve => "approved",
            ApprovalDecision::Deny { .. } => "denied",
        };
        match store
            .decide_approval(crate::incident::IncidentId(id), decision, &by, None)
            .await?
        {
            ApprovalOutcome::Decided { plan_digest } => {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "incident {id} {word} by {by} (plan {})",
                    &plan_digest[..plan_digest.len().min(12)]
                )?;
                Ok(ExitCode::SUCCESS)
            }
            ApprovalOutcome::Refused(why) => anyhow::bail!("{}", safe(&why.to_string())),
        }
    })
}

fn gaps(loaded: &Config, limit: usize, output: Output) -> anyhow::Result<ExitCode> {
    journal_must_exist(loaded)?;
    with_store(loaded, async |store| {
        let gaps = store.gaps(limit).await?;
        let mut out = std::io::stdout().lock();
        if output == Output::Json {
            crate::terminal::write_json(&mut out, &gaps)?;
            writeln!(out)?;
        } else if gaps.is_empty() {
            writeln!(
                out,
                "no gaps: every alert so far was handled without a human"
            )?;
        } else {
            writeln!(
                out,
                "{:>9}  {:>9}  {:>9}  {:<28}  last reason",
                "incidents", "unmatched", "escalated", "alertname"
            )?;
            for gap in gaps {
                writeln!(
                    out,
                    "{:>9}  {:>9}  {:>9}  {:<28}  {}",
                    gap.incidents,
                    gap.unmatched,
                    gap.escalated,
                    truncate(&safe(&gap.alertname), 28),
                    safe(gap.last_reason.as_deref().unwrap_or(""))
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Who the journal says did a CLI change: `cli:` and the Unix user running it.
fn cli_user() -> String {
    use std::os::unix::fs::MetadataExt;
    // Our own /proc entry is owned by our real UID; /etc/passwd names it.
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |meta| meta.uid());
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        });
    format!("cli:{}", name.unwrap_or_else(|| format!("uid {uid}")))
}

/// Incidents per page of `history --json`: their journals can be large.
const HISTORY_PAGE: usize = 16;

fn history(
    loaded: &Config,
    limit: usize,
    output: Output,
    before: Option<i64>,
    id: Option<i64>,
) -> anyhow::Result<ExitCode> {
    journal_must_exist(loaded)?;
    with_store(loaded, async |store| {
        if let Some(id) = id {
            let Some(detail) = store.incident(crate::incident::IncidentId(id)).await? else {
                anyhow::bail!("no incident {id}");
            };
            let mut out = std::io::stdout().lock();
            if output == Output::Json {
                crate::terminal::write_json(&mut out, &detail)?;
                writeln!(out)?;
            } else {
                write_incident(&mut out, &detail)?;
            }
            return anyhow::Ok(());
        }
        let before = before.map(crate::incident::IncidentId);
        let mut out = std::io::stdout().lock();
        if output == Output::Json {
            // A JSON array written page by page: memory holds one page, not the journal.
            write!(out, "[")?;
            let (mut written, mut cursor) = (0, before);
            while written < limit {
                let page = store
                    .incident_details(cursor, HISTORY_PAGE.min(limit - written))
                    .await?;
                for detail in &page {
                    writeln!(out, "{}", if written == 0 { "" } else { "," })?;
                    crate::terminal::write_json(&mut out, detail)?;
                    written += 1;
                }
                match page.last() {
                    Some(last) => cursor = Some(last.incident.id),
                    None => break,
                }
            }
            writeln!(out, "{}]", if written == 0 { "" } else { "\n" })?;
            return anyhow::Ok(());
        }
        let incidents = store.list_incidents(before, limit).await?;
        write_history(&mut out, &incidents)?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The incident list for a human: one block per incident, its first line a fixed layout
/// (id, last seen with its zone, state, alert status) then the full alertname; below it
/// the labels and what salve did, in words.
fn write_history(out: &mut impl Write, incidents: &[Incident]) -> anyhow::Result<()> {
    if incidents.is_empty() {
        writeln!(out, "no incidents")?;
        return Ok(());
    }
    for incident in incidents {
        let plan = incident.plan.as_ref();
        writeln!(
            out,
            "{:>6}  {}  {:<12}  {:<8}  {}",
            incident.id.0,
            human_time(&incident.last_seen),
            incident.state.as_str(),
            incident.alert_status.as_str(),
            safe(incident.alertname.as_deref().unwrap_or("<no alertname>")),
        )?;
        writeln!(out, "        labels: {}", labels_in_words(&incident.labels))?;
        let recipe = plan.and_then(|p| p.recipe.as_deref());
        let target = plan
            .and_then(|p| p.target.as_ref())
            .map(|t| t.name.as_str());
        match (recipe, target) {
            (Some(recipe), Some(target)) => {
                writeln!(out, "        recipe: {} on {}", safe(recipe), safe(target))?
            }
            (Some(recipe), None) => writeln!(out, "        recipe: {}", safe(recipe))?,
            (None, _) => writeln!(out, "        recipe: none")?,
        }
        if let Some(reason) = incident.reason.as_deref().filter(|r| !r.is_empty()) {
            writeln!(out, "        why:    {}", safe(reason))?;
        }
    }
    Ok(())
}

/// A time as people read it, with its zone: salve keeps and shows UTC.
fn human_time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `name=value, name=value` in label order, every part escaped for the terminal.
fn labels_in_words(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "none".to_owned();
    }
    labels
        .iter()
        .map(|(name, value)| format!("{}={}", safe(name), safe(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A planned check in words: what salve runs or fetches and what counts as passing.
fn check_in_words(check: &crate::plan::PlannedCheck) -> String {
    use crate::plan::PlannedCheck;
    match check {
        PlannedCheck::Command {
            command,
            below,
            above,
        } => {
            let mut words = format!("run `{}` on the target: passes", safe(command));
            match (below, above) {
                (None, None) => words.push_str(" when it exits 0"),
                (below, above) => {
                    words.push_str(" when the first number it prints is");
                    if let Some(below) = below {
                        words.push_str(&format!(" below {below}"));
                    }
                    if below.is_some() && above.is_some() {
                        words.push_str(" and");
                    }
                    if let Some(above) = above {
                        words.push_str(&format!(" above {above}"));
                    }
                }
            }
            words
        }
        PlannedCheck::Http {
            url,
            status,
            body_contains,
            timeout,
            tls_verify,
        } => {
            let mut words = format!("GET {} from salve: passes on status {status}", safe(url));
            if let Some(text) = body_contains {
                words.push_str(&format!(" with a body containing \"{}\"", safe(text)));
            }
            words.push_str(&format!(" within {}", humantime::format_duration(*timeout)));
            if !tls_verify {
                words.push_str(", TLS certificate not verified");
            }
            words
        }
    }
}

/// A journal event's fields in words, `name value` pairs in the order stored, nested
/// values flattened: what `history --json` shows as an object, without the braces.
fn fields_in_words(detail: &serde_json::Value) -> String {
    fn word(value: &serde_json::Value) -> String {
        use serde_json::Value;
        match value {
            Value::Null => "none".to_owned(),
            Value::Bool(true) => "yes".to_owned(),
            Value::Bool(false) => "no".to_owned(),
            Value::Number(number) => number.to_string(),
            Value::String(text) => safe(text).into_owned(),
            Value::Array(items) if items.is_empty() => "none".to_owned(),
            Value::Array(items) => items.iter().map(word).collect::<Vec<_>>().join("; "),
            Value::Object(_) => format!("({})", fields_in_words(value)),
        }
    }
    match detail.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(name, value)| format!("{} {}", safe(&name.replace('_', " ")), word(value)))
            .collect::<Vec<_>>()
            .join(", "),
        None => word(detail),
    }
}

/// One incident for a human: what it is, what was planned, and the journal in order.
fn write_incident(
    out: &mut impl Write,
    detail: &crate::store::IncidentDetail,
) -> anyhow::Result<()> {
    let incident = &detail.incident;
    writeln!(
        out,
        "incident {}: {} ({}) — {}",
        incident.id.0,
        safe(incident.alertname.as_deref().unwrap_or("<no alertname>")),
        incident.alert_status.as_str(),
        incident.state.as_str()
    )?;
    if let Some(reason) = &incident.reason {
        writeln!(out, "  why:      {}", safe(reason))?;
    }
    writeln!(
        out,
        "  source:   {} fingerprint {} started {}",
        incident.source,
        safe(incident.fingerprint.as_str()),
        human_time(&incident.starts_at)
    )?;
    writeln!(out, "  labels:   {}", labels_in_words(&incident.labels))?;
    if let Some(plan) = &incident.plan {
        write_plan(out, incident.alertname.as_deref().unwrap_or("-"), plan)?;
    }
    writeln!(out, "  journal:")?;
    for entry in &detail.events {
        write_event(out, entry)?;
    }
    Ok(())
}

/// One journal line (a step's output and a poll's checks below it, behind a gutter).
fn write_event(out: &mut impl Write, entry: &crate::incident::JournalEntry) -> anyhow::Result<()> {
    use crate::incident::Event;
    let at = entry.at.format("%Y-%m-%d %H:%M:%S%.3f UTC");
    match &entry.event {
        Event::StepStarted { step, command, .. } => {
            writeln!(out, "    {at} step {step} started: {}", safe(command))?
        }
        Event::StepFinished { step, end, .. } => {
            let record = end.record();
            let or_null = |value: Option<String>| value.unwrap_or_else(|| "null".to_owned());
            writeln!(
                out,
                "    {at} step {step} {}: exit {} in {} ms",
                end.outcome().as_str(),
                or_null(record.and_then(|r| r.exit_status).map(|c| c.to_string())),
                or_null(record.map(|r| r.duration.as_millis().to_string())),
            )?;
            let streams = [
                (
                    "stdout",
                    record.map(|r| (r.stdout.as_str(), r.stdout_truncated)),
                ),
                (
                    "stderr",
                    record.map(|r| (r.stderr.as_str(), r.stderr_truncated)),
                ),
                ("error", end.error().map(|error| (error, false))),
            ];
            for (stream, text) in streams {
                if let Some((text, truncated)) = text.filter(|(t, _)| !t.trim().is_empty()) {
                    let marker = if truncated { " (truncated)" } else { "" };
                    writeln!(out, "      {stream}{marker}:")?;
                    // Behind a gutter: an output line cannot pass for a journal line.
                    for line in text.lines().take(20) {
                        writeln!(out, "        | {}", safe(line))?;
                    }
                }
            }
        }
        Event::CheckPoll {
            poll,
            passed,
            results,
        } => {
            let verdict = if *passed { "all passed" } else { "not yet" };
            writeln!(out, "    {at} check poll {poll}: {verdict}")?;
            for result in results {
                writeln!(
                    out,
                    "      [{}] {} — {}",
                    if result.passed { "ok" } else { "!!" },
                    safe(&result.check),
                    safe(&result.detail)
                )?;
            }
        }
        event => {
            let (kind, detail) = event.to_row();
            let detail = if detail.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                // Every string in it is escaped for the terminal (C0, DEL, C1, bidi).
                format!(": {}", fields_in_words(&detail))
            };
            let unreadable = match event {
                Event::Unreadable { error, .. } => {
                    format!(" (not readable by this salve: {})", safe(error))
                }
                _ => String::new(),
            };
            writeln!(
                out,
                "    {at} {}{detail}{unreadable}",
                safe(&kind.replace('_', " "))
            )?
        }
    }
    Ok(())
}

/// Cut for a table column on a character boundary, marking the cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}
