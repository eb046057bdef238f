//! Tests of the recipes commands' local parts: reading a plan's recipe files,
//! parsing their arguments, and following an apply through scripted statuses.

use std::cell::RefCell;
use std::collections::VecDeque;

use clap::Parser as _;

use super::*;
use crate::cli::output::{self, Outcome};
use crate::cli::{Cli, Command};

const PLAN: &str = r#"
name = "shop"

[[components]]
name = "db"
recipe = "db.toml"

[[components]]
name = "cache"
recipe = "recipes/cache.toml"

[[components]]
name = "api"
recipe = "api"

[[components]]
name = "db-replica"
recipe = "db.toml"
"#;

fn plan_dir_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let plan = dir.path().join("deploy").join("plan.toml");
    (dir, plan)
}

#[test]
fn recipe_files_are_read_next_to_the_plan_under_their_reference() {
    let (_dir, plan) = plan_dir_with(&[
        ("deploy/plan.toml", PLAN),
        ("deploy/db.toml", "name = \"db\"\n"),
        ("deploy/recipes/cache.toml", "name = \"cache\"\n"),
        // Same names next to the working directory must not be picked up.
        ("db.toml", "wrong"),
    ]);
    let recipes = referenced_recipes(&plan, PLAN).unwrap();
    let expected = BTreeMap::from([
        ("db.toml".to_string(), "name = \"db\"\n".to_string()),
        (
            "recipes/cache.toml".to_string(),
            "name = \"cache\"\n".to_string(),
        ),
    ]);
    assert_eq!(recipes, expected);

    let payload = apply_payload(&plan, true).unwrap();
    assert_eq!(payload["plan"], PLAN);
    assert_eq!(payload["dry-run"], true);
    assert_eq!(payload["recipes"]["db.toml"], "name = \"db\"\n");
    assert!(payload["recipes"].get("api").is_none());
}

#[test]
fn only_toml_files_and_paths_are_files() {
    assert!(names_a_file("db.toml"));
    assert!(names_a_file("./db"));
    assert!(names_a_file("/etc/cairn/recipes/db"));
    assert!(!names_a_file("postgres"));
    assert!(!names_a_file("db.toml.example"));
}

#[test]
fn a_plan_without_a_directory_resolves_against_the_working_directory() {
    assert_eq!(plan_dir(Path::new("plan.toml")), Path::new("."));
    assert_eq!(plan_dir(Path::new("deploy/plan.toml")), Path::new("deploy"));
    assert_eq!(plan_dir(Path::new("/srv/plan.toml")), Path::new("/srv"));
}

#[test]
fn a_missing_recipe_file_names_the_component_and_the_path() {
    let (_dir, plan) = plan_dir_with(&[("deploy/db.toml", "")]);
    let error = referenced_recipes(&plan, PLAN).unwrap_err();
    assert_eq!(error.code, ErrorCode::NotFound);
    let missing = plan.parent().unwrap().join("recipes/cache.toml");
    assert!(
        error.message.starts_with(&format!(
            "{}: component `cache` uses the recipe file recipes/cache.toml, but {} cannot be read: ",
            plan.display(),
            missing.display()
        )),
        "{}",
        error.message
    );

    let missing_plan = apply_payload(&plan, false).unwrap_err();
    assert_eq!(missing_plan.code, ErrorCode::NotFound);
    assert!(missing_plan.message.contains("plan.toml"));
}

#[test]
fn a_plan_that_is_not_toml_is_invalid() {
    let error = referenced_recipes(Path::new("plan.toml"), "[[components]\n").unwrap_err();
    assert_eq!(error.code, ErrorCode::Invalid);
    assert!(error.message.starts_with("plan.toml: not a valid plan: "));
    // Nothing to read: the plugin judges the rest.
    assert!(
        referenced_recipes(Path::new("p.toml"), "x = 1")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_command_line_is_consistent() {
    use clap::CommandFactory as _;
    Cli::command().debug_assert();
}

#[test]
fn the_recipe_commands_parse_with_their_defaults() {
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))
            .unwrap()
            .command
    };
    let Command::Apply(apply) = parse(&["apply", "plan.toml"]) else {
        panic!("not apply");
    };
    assert_eq!(apply.target.plugin, DEFAULT_PLUGIN);
    assert_eq!(apply.timeout, Duration::from_secs(120));
    assert!(!apply.dry_run && !apply.no_wait);
    let Command::Apply(apply) = parse(&[
        "apply",
        "plan.toml",
        "--dry-run",
        "--no-wait",
        "--timeout",
        "1m 30s",
        "--plugin",
        "keystone",
    ]) else {
        panic!("not apply");
    };
    assert_eq!(apply.target.plugin, "keystone");
    assert_eq!(apply.timeout, Duration::from_secs(90));
    assert!(apply.dry_run && apply.no_wait);
    let Command::Plan(PlanCommand::Status(target)) =
        parse(&["plan", "status", "--plugin", "other"])
    else {
        panic!("not plan status");
    };
    assert_eq!(target.plugin, "other");
    let Command::Restart(restart) = parse(&["restart", "api", "--dry-run"]) else {
        panic!("not restart");
    };
    assert_eq!((restart.name.as_str(), restart.dry_run), ("api", true));
    let Command::Graph(graph) = parse(&["graph", "--dot"]) else {
        panic!("not graph");
    };
    assert!(graph.dot);
}

fn status(operation: Option<u64>, phase: &str, error: Option<&str>) -> serde_json::Value {
    json!({
        "phase": phase,
        "operation": operation,
        "layer": 0,
        "error": error,
        "components": [{"name": "db", "recipe": "db.toml", "version": "1", "state": "running",
                        "pid": 10, "restarts": 0, "health": null, "last-error": null, "layer": 0}]
    })
}

/// Follows operation 7 through `statuses`, returning what it ended with and
/// how many polls it took.
fn follow(
    statuses: Vec<serde_json::Value>,
    timeout: Duration,
) -> (Result<(serde_json::Value, PlanStatus), AdminError>, usize) {
    let remaining = RefCell::new(VecDeque::from(statuses));
    let polls = RefCell::new(0);
    let shown = RefCell::new(Vec::new());
    let poll = async || {
        *polls.borrow_mut() += 1;
        let mut remaining = remaining.borrow_mut();
        // The last status repeats, as a stuck plugin's would.
        match remaining.len() {
            0 => Err(failure(ErrorCode::Internal, "no statuses")),
            1 => Ok(remaining[0].clone()),
            _ => Ok(remaining.pop_front().unwrap()),
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ended = runtime.block_on(wait_until_settled(
        7,
        timeout,
        Duration::from_millis(1),
        poll,
        |_, status| shown.borrow_mut().push(status.operation),
    ));
    // Statuses of other operations are not shown as this one's progress.
    assert!(
        shown.into_inner().iter().all(|shown| *shown == Some(7)),
        "showed another operation"
    );
    (ended, polls.into_inner())
}

fn reply() -> ApplyReply {
    serde_json::from_value(json!({
        "operation": 7,
        "layers": [["db"]],
        "actions": [{"component": "db", "action": "start", "reason": "new component"}],
        "warnings": []
    }))
    .unwrap()
}

fn outcome_of(statuses: Vec<serde_json::Value>) -> Outcome {
    let (ended, _) = follow(statuses, Duration::from_secs(10));
    let (value, status) = ended.unwrap();
    applied_outcome(&reply(), value, &status)
}

#[test]
fn apply_waits_for_its_own_operation_to_be_applied() {
    let (ended, polls) = follow(
        vec![
            // The previous operation's result does not count.
            status(Some(6), "applied", None),
            status(Some(7), "applying", None),
            status(Some(7), "applied", None),
        ],
        Duration::from_secs(10),
    );
    assert_eq!(polls, 3);
    let (value, status) = ended.unwrap();
    assert_eq!(status.phase, "applied");
    let outcome = applied_outcome(&reply(), value.clone(), &status);
    assert!(outcome.success);
    assert_eq!(outcome.json, value, "--json prints the final status");
    assert_eq!(
        outcome.human,
        "applied the plan (operation 7)\nlayer 0: db\n\
         COMPONENT  ACTION  REASON\ndb         start   new component\n"
    );
}

#[test]
fn a_failed_apply_exits_with_one_and_the_plugins_error() {
    let outcome = outcome_of(vec![status(
        Some(7),
        "failed",
        Some("recipe db.toml line 7: unknown key lifecycle.run.exec.comand\n"),
    )]);
    assert!(!outcome.success);
    assert_eq!(
        outcome.human_errors,
        "error: operation 7 failed and was rolled back: \
         recipe db.toml line 7: unknown key lifecycle.run.exec.comand"
    );
    let rendered = output::render(Ok(outcome.clone()), false);
    assert_eq!(rendered.exit_code, 1);
    assert!(rendered.stdout.starts_with("NAME  STATE"), "{rendered:?}");
    let json = output::render(Ok(outcome), true);
    assert_eq!(json.exit_code, 1);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["phase"], "failed");
}

#[test]
fn a_stopped_or_superseded_apply_is_not_a_success() {
    let stopped = outcome_of(vec![status(Some(7), "stopped", None)]);
    assert!(!stopped.success);
    assert_eq!(
        stopped.human_errors,
        "error: operation 7 was stopped before it was applied"
    );
    let superseded = outcome_of(vec![
        status(Some(7), "applying", None),
        status(Some(8), "applying", None),
    ]);
    assert!(!superseded.success);
    assert!(
        superseded
            .human_errors
            .starts_with("error: operation 7 was superseded by operation 8"),
        "{}",
        superseded.human_errors
    );
}

#[test]
fn waiting_gives_up_after_the_timeout() {
    let (ended, polls) = follow(
        vec![status(Some(7), "applying", None)],
        Duration::from_millis(50),
    );
    let error = ended.unwrap_err();
    assert_eq!(error.code, ErrorCode::Timeout);
    assert!(
        error
            .message
            .starts_with("operation 7 did not finish within 50ms (phase applying, layer 0)"),
        "{}",
        error.message
    );
    assert!(polls > 1, "polled {polls} times");
    let (ended, _) = follow(vec![status(None, "idle", None)], Duration::from_millis(20));
    assert!(
        ended
            .unwrap_err()
            .message
            .contains("(the plugin never reported it)")
    );
    // A daemon that goes away ends the wait with its error, not a timeout.
    let (ended, _) = follow(Vec::new(), Duration::from_secs(10));
    assert_eq!(ended.unwrap_err().code, ErrorCode::Internal);
}
