//! The commands of the `recipes` plugin: `apply`, `components`, `graph`,
//! `restart`, `stop` and `plan ...`. Each is a plugin command sent over the
//! admin socket, as `cairn call recipes ...` would send it; these add reading
//! the plan's recipe files, waiting for an apply, and readable output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::Outcome;
use super::progress::StepView;
use super::recipe_view::{self as view, ActionsReply, ApplyReply, PlanStatus};
use super::remote::{ask, decode};
use super::{failure, io_failure};
use crate::admin::api::{AdminError, ErrorCode, Request};

/// The name the recipes plugin is installed under unless `--plugin` says otherwise.
pub const DEFAULT_PLUGIN: &str = "recipes";

/// How often `cairn apply` asks for the plan's status while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Which plugin runs the recipes.
#[derive(Debug, Clone, Args)]
pub struct RecipesPlugin {
    /// The recipes plugin to talk to (for an install under another name)
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PLUGIN)]
    pub plugin: String,
}

/// Arguments of `cairn apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The deployment plan (TOML); recipe files it names are read relative to it
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// Show the layers and actions without changing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Return once the plugin has accepted the plan, without waiting for it to be applied
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the plan to be applied
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub target: RecipesPlugin,
}

/// Arguments of `cairn graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Print the graph in Graphviz DOT
    #[arg(long)]
    pub dot: bool,
    #[command(flatten)]
    pub target: RecipesPlugin,
}

/// Arguments of `cairn restart`, `cairn stop` and `cairn reload`.
#[derive(Debug, Args)]
pub struct ComponentArgs {
    /// The component
    pub name: String,
    /// Show the actions without changing anything
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub target: RecipesPlugin,
}

/// The `cairn plan` subcommands.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Show the plan's phase and its components
    Status(RecipesPlugin),
    /// Stop every component of the plan
    Stop(RecipesPlugin),
}

/// Calls one command of the recipes plugin.
async fn ask_plugin(
    socket: &Path,
    target: &RecipesPlugin,
    command: &str,
    payload: serde_json::Value,
) -> Result<serde_json::Value, AdminError> {
    let request = Request::Call {
        plugin: target.plugin.clone(),
        command: command.to_string(),
        payload,
    };
    ask(socket, &request).await
}

/// `cairn apply`.
pub(crate) async fn apply(
    socket: &Path,
    args: ApplyArgs,
    quiet: bool,
) -> Result<Outcome, AdminError> {
    // Read before connecting: a missing recipe file should not depend on the daemon running.
    let payload = apply_payload(&args.plan, args.dry_run)?;
    let value = ask_plugin(socket, &args.target, "plan-apply", payload).await?;
    let reply: ApplyReply = decode(&value)?;
    if args.dry_run || reply.dry_run {
        return Ok(Outcome::new(
            value,
            view::render_apply(&reply, view::DRY_RUN_NOTE),
        ));
    }
    if args.no_wait {
        let headline = format!("applying the plan (operation {})", reply.operation);
        return Ok(Outcome::new(value, view::render_apply(&reply, &headline)));
    }
    let mut steps = StepView::new(quiet, &format!("applying operation {}", reply.operation));
    let poll = async || ask_plugin(socket, &args.target, "plan-status", json!({})).await;
    let settled = wait_until_settled(
        reply.operation,
        args.timeout,
        POLL_INTERVAL,
        poll,
        |before, after| {
            for line in view::status_changes(before, after) {
                steps.line(&line);
            }
        },
    )
    .await;
    steps.finish();
    let (status_value, status) = settled?;
    Ok(applied_outcome(&reply, status_value, &status))
}

/// The payload of `plan-apply`: the plan and the text of every recipe file it names.
pub(crate) fn apply_payload(plan: &Path, dry_run: bool) -> Result<serde_json::Value, AdminError> {
    let text = std::fs::read_to_string(plan)
        .map_err(|error| io_failure(format!("cannot read {}", plan.display()), &error))?;
    let recipes = referenced_recipes(plan, &text)?;
    Ok(json!({ "plan": text, "recipes": recipes, "dry-run": dry_run }))
}

/// Whether a plan's recipe reference names a file (the others are names of
/// recipes the plugin already stores).
pub(crate) fn names_a_file(reference: &str) -> bool {
    reference.ends_with(".toml") || reference.contains('/')
}

/// The directory recipe files are relative to: the plan's own (`.` for a bare file name).
pub(crate) fn plan_dir(plan: &Path) -> &Path {
    plan.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The recipe files a plan names, read relative to the plan's directory and
/// keyed by the reference exactly as written, which is how the plugin looks
/// them up. Only `[[components]]` `recipe` strings are read here; the plugin
/// checks everything else about the plan.
pub(crate) fn referenced_recipes(
    plan: &Path,
    text: &str,
) -> Result<BTreeMap<String, String>, AdminError> {
    let table: toml::Table = toml::from_str(text).map_err(|error| {
        failure(
            ErrorCode::Invalid,
            format!("{}: not a valid plan: {error}", plan.display()),
        )
    })?;
    let base = plan_dir(plan);
    let components = table
        .get("components")
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut recipes = BTreeMap::new();
    for component in components {
        let Some(reference) = component.get("recipe").and_then(toml::Value::as_str) else {
            continue;
        };
        if !names_a_file(reference) || recipes.contains_key(reference) {
            continue;
        }
        let path = base.join(reference);
        let recipe = std::fs::read_to_string(&path).map_err(|error| {
            let name = component
                .get("name")
                .and_then(toml::Value::as_str)
                .map(|name| format!("component `{name}`"))
                .unwrap_or_else(|| "a component".to_string());
            io_failure(
                format!(
                    "{}: {name} uses the recipe file {reference}, but {} cannot be read",
                    plan.display(),
                    path.display()
                ),
                &error,
            )
        })?;
        recipes.insert(reference.to_string(), recipe);
    }
    Ok(recipes)
}

/// Polls the plan's status until `operation` settles (applied, failed or
/// stopped), a later operation takes over, or `timeout` passes. `show` sees
/// every status of the operation next to the one before it.
pub(crate) async fn wait_until_settled(
    operation: u64,
    timeout: Duration,
    interval: Duration,
    mut poll: impl AsyncFnMut() -> Result<serde_json::Value, AdminError>,
    mut show: impl FnMut(Option<&PlanStatus>, &PlanStatus),
) -> Result<(serde_json::Value, PlanStatus), AdminError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<PlanStatus> = None;
    loop {
        let Ok(polled) = tokio::time::timeout_at(deadline, poll()).await else {
            return Err(still_running(operation, timeout, last.as_ref()));
        };
        let value = polled?;
        let status: PlanStatus = decode(&value)?;
        match status.operation {
            Some(current) if current > operation => return Ok((value, status)),
            Some(current) if current == operation => {
                show(last.as_ref(), &status);
                if status.is_settled() {
                    return Ok((value, status));
                }
                last = Some(status);
            }
            // Until the plugin reports our operation, what it says is about an earlier one.
            _ => {}
        }
        if tokio::time::Instant::now() + interval > deadline {
            return Err(still_running(operation, timeout, last.as_ref()));
        }
        tokio::time::sleep(interval).await;
    }
}

fn still_running(operation: u64, timeout: Duration, last: Option<&PlanStatus>) -> AdminError {
    let phase = match last {
        Some(status) => match status.layer {
            Some(layer) => format!(" (phase {}, layer {layer})", status.phase),
            None => format!(" (phase {})", status.phase),
        },
        None => " (the plugin never reported it)".to_string(),
    };
    failure(
        ErrorCode::Timeout,
        format!(
            "operation {operation} did not finish within {}{phase}; it goes on in the daemon: \
             `cairn plan status` shows it, `cairn plan stop` stops it",
            humantime::format_duration(timeout)
        ),
    )
}

/// How `cairn apply` ends once its operation settled; `--json` prints the final status.
pub(crate) fn applied_outcome(
    reply: &ApplyReply,
    status_value: serde_json::Value,
    status: &PlanStatus,
) -> Outcome {
    let operation = reply.operation;
    let error = match (status.operation, status.phase.as_str()) {
        (Some(current), _) if current != operation => format!(
            "operation {operation} was superseded by operation {current} before it finished; \
             see `cairn plan status`"
        ),
        (_, "applied") => {
            let headline = format!("applied the plan (operation {operation})");
            return Outcome::new(status_value, view::render_apply(reply, &headline));
        }
        (_, "failed") => format!(
            "operation {operation} failed and was rolled back: {}",
            status.error.as_deref().unwrap_or("no reason given")
        ),
        (_, "stopped") => format!("operation {operation} was stopped before it was applied"),
        (_, phase) => format!("operation {operation} ended in phase {phase}"),
    };
    Outcome {
        success: false,
        human: view::render_components(&status.components),
        human_errors: format!("error: {}", error.trim_end()),
        ..Outcome::new(status_value, "")
    }
}

/// `cairn components`.
pub(crate) async fn components(
    socket: &Path,
    target: RecipesPlugin,
) -> Result<Outcome, AdminError> {
    let value = ask_plugin(socket, &target, "component-list", json!({})).await?;
    let list: view::ComponentList = decode(&value)?;
    Ok(Outcome::new(
        value,
        view::render_components(&list.components),
    ))
}

/// `cairn graph`.
pub(crate) async fn graph(socket: &Path, args: GraphArgs) -> Result<Outcome, AdminError> {
    let value = ask_plugin(socket, &args.target, "plan-graph", json!({})).await?;
    let graph: view::Graph = decode(&value)?;
    let human = if args.dot {
        graph.dot
    } else {
        view::render_graph(&graph)
    };
    Ok(Outcome::new(value, human))
}

/// `cairn restart`, `cairn stop` and `cairn reload`: `command` is the
/// plugin command (`component-restart`…).
pub(crate) async fn component_action(
    socket: &Path,
    args: ComponentArgs,
    command: &str,
) -> Result<Outcome, AdminError> {
    let payload = json!({ "name": args.name, "dry-run": args.dry_run });
    let value = ask_plugin(socket, &args.target, command, payload).await?;
    let mut reply: ActionsReply = decode(&value)?;
    reply.dry_run |= args.dry_run;
    Ok(Outcome::new(value, view::render_component_actions(&reply)))
}

/// `cairn plan status` and `cairn plan stop`.
pub(crate) async fn plan(socket: &Path, command: PlanCommand) -> Result<Outcome, AdminError> {
    match command {
        PlanCommand::Status(target) => {
            let value = ask_plugin(socket, &target, "plan-status", json!({})).await?;
            let status: PlanStatus = decode(&value)?;
            Ok(Outcome::new(value, view::render_status(&status)))
        }
        PlanCommand::Stop(target) => {
            let value = ask_plugin(socket, &target, "plan-stop", json!({})).await?;
            let stopped: view::Stopped = decode(&value)?;
            Ok(Outcome::new(value, view::render_stopped(&stopped)))
        }
    }
}

#[cfg(test)]
mod tests;
