//! The `recipes` plugin with real processes: plans applied layer by layer
//! along their dependencies, readiness through the `health` plugin, rollback
//! to the previous plan, restarts with backoff, hard-dependency cascades,
//! operator commands, policy refusals, a daemon killed mid-apply and a swap
//! of the plugin itself. Artifacts are covered in `recipes_artifacts.rs`.

mod harness;
#[path = "recipes/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::{Fixture, Service, alive, fixture, parent, plan, service};

/// Applies `db` and `api` (hard-depending on it); their pids once both are ready.
fn db_and_api(fx: &Fixture) -> (Service, Service, u32, u32) {
    let db = service("db");
    let api = service("api").depends("db", "hard");
    fx.apply(plan(&[&db, &api])).unwrap();
    fx.wait_phase("applied");
    let (db_pid, api_pid) = (fx.pid("db"), fx.pid("api"));
    (db, api, db_pid, api_pid)
}

#[test]
fn layers_start_in_dependency_order_and_in_parallel() {
    let fx = fixture();
    let db = service("db").ready_after(0.3);
    let left = service("cache-a").ready_after(0.6).depends("db", "hard");
    let right = service("cache-b").ready_after(0.6).depends("db", "hard");
    let api = service("api")
        .depends("cache-a", "hard")
        .depends("cache-b", "soft");
    let reply = fx.apply(plan(&[&api, &left, &right, &db])).unwrap();
    assert_eq!(
        reply["layers"],
        json!([["db"], ["cache-a", "cache-b"], ["api"]])
    );
    let actions: Vec<&str> = reply["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["start"; 4]);

    let status = fx.wait_phase("applied");
    for component in status["components"].as_array().unwrap() {
        assert_eq!(component["state"], "ready", "{component}");
        assert!(
            alive(component["pid"].as_u64().unwrap() as u32),
            "{component}"
        );
    }
    let first = |name: &str| fx.starts(name)[0];
    let ready_at = |name: &str| {
        std::fs::metadata(fx.dir(name).join("ready"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    };
    // Each layer starts after the previous one is ready...
    assert!(first("cache-a") >= ready_at("db") && first("cache-b") >= ready_at("db"));
    assert!(first("api") >= ready_at("cache-a") && first("api") >= ready_at("cache-b"));
    // ...and the two caches started together, not one after the other.
    let apart = first("cache-a").abs_diff(first("cache-b"));
    assert!(apart < 400_000_000, "caches started {apart} ns apart");
    assert!(first("cache-b") < ready_at("cache-a") && first("cache-a") < ready_at("cache-b"));
}

#[test]
fn a_component_failing_its_health_rolls_back_to_the_previous_plan() {
    let fx = fixture();
    let (db, _, db_pid, api_pid) = db_and_api(&fx);

    // v2 of the api never creates its ready file.
    let mut broken = service("api")
        .version("2.0.0")
        .depends("db", "hard")
        .ready_after(100.0);
    broken.start_timeout = "1s".into();
    let reply = fx.apply(plan(&[&db, &broken])).unwrap();
    let actions = reply["actions"].to_string();
    assert!(
        actions.contains(r#"{"action":"keep","component":"db""#),
        "{actions}"
    );
    assert!(
        actions.contains(r#"{"action":"restart","component":"api","reason":"recipe changed"}"#),
        "{actions}"
    );

    let status = fx.wait_phase("failed");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("api: health check cmd:/usr/bin/test"),
        "{error}"
    );
    assert!(error.contains("did not pass within 1s"), "{error}");
    assert!(
        error.ends_with("rolled back to the previous plan"),
        "{error}"
    );
    // db was never touched; the api runs v1 again, in a new process.
    assert_eq!(fx.pid("db"), db_pid);
    let api = fx.wait_component("api", |c| c["state"] == "ready", "came back");
    assert_eq!(api["version"], "1.0.0");
    assert_ne!(fx.pid("api"), api_pid);
    assert!(!alive(api_pid));
    // Only v1's processes remain: one shell and its sleep per component.
    assert_eq!(
        fx.processes_in_root().len(),
        4,
        "{:?}",
        fx.processes_in_root()
    );
}

#[test]
fn a_first_plan_that_fails_stops_what_it_started() {
    let fx = fixture();
    let db = service("db");
    let mut api = service("api").depends("db", "hard").then("exit 7");
    api.health = false;
    api.ready_after = 0.0;
    fx.apply(plan(&[&db, &api])).unwrap();
    let status = fx.wait_phase("failed");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("api failed: exited with code 7 before it was ready"),
        "{error}"
    );
    assert!(error.contains("no previous plan"), "{error}");
    assert!(
        fx.daemon
            .eventually(Duration::from_secs(5), || fx.processes_in_root().is_empty())
    );
}

#[test]
fn a_crashing_component_restarts_with_growing_backoff_then_gives_up() {
    let fx = fixture();
    let mut flaky = service("flaky").then("sleep 1.5; exit 3");
    flaky.max_retries = 3;
    fx.apply(plan(&[&flaky])).unwrap();
    fx.wait_phase("applied");
    let failed = fx.wait_component("flaky", |c| c["state"] == "failed", "gave up");
    assert!(
        failed["last-error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 restarts: exited with code 3"),
        "{failed}"
    );
    assert_eq!(failed["restarts"], 3);
    let starts = fx.starts("flaky");
    assert_eq!(starts.len(), 4, "{starts:?}");
    // Each run lasts ~1.5 s; the pause after it doubles (300, 600, 1200 ms ± 20 %).
    let gaps: Vec<u128> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    assert!(gaps[0] < gaps[1] && gaps[1] < gaps[2], "gaps {gaps:?} ms");
    assert!(gaps[2] >= 1_500 + 960, "gaps {gaps:?} ms");
    let health = fx.daemon.cli_json(&["health"]).unwrap().to_string();
    assert!(health.contains("flaky failed"), "{health}");
}

#[test]
fn a_dependency_crash_cascades_to_hard_dependents() {
    let fx = fixture();
    let db = service("db");
    let api = service("api").depends("db", "hard");
    let worker = service("worker").depends("db", "soft");
    fx.apply(plan(&[&db, &api, &worker])).unwrap();
    fx.wait_phase("applied");
    let (db_pid, api_pid, worker_pid) = (fx.pid("db"), fx.pid("api"), fx.pid("worker"));

    // SAFETY: killing the test's own component process.
    unsafe { libc::kill(db_pid as libc::pid_t, libc::SIGKILL) };
    let api_now = fx.wait_component(
        "api",
        |c| c["pid"].as_u64().is_some_and(|p| p as u32 != api_pid) && c["state"] == "ready",
        "restarted",
    );
    let db_now = fx.component("db");
    assert_eq!(db_now["state"], "ready");
    assert_eq!(db_now["restarts"], 1);
    assert!(!alive(db_pid) && !alive(api_pid));
    assert_eq!(
        api_now["restarts"], 0,
        "a cascade is not the dependent's failure"
    );
    // The soft dependent kept running throughout.
    assert_eq!(fx.pid("worker"), worker_pid);
    let log = fx.daemon.daemon_log();
    assert!(log.contains("db was killed by SIGKILL"), "{log}");
}

#[test]
fn operators_stop_restart_and_reconcile_components() {
    let fx = fixture();
    let (_, _, db_pid, api_pid) = db_and_api(&fx);

    let dry = fx
        .call("component-restart", json!({"name": "db", "dry-run": true}))
        .unwrap();
    assert_eq!(
        dry["actions"],
        json!([
            {"component": "api", "action": "stop", "reason": "hard dependency db restarts"},
            {"component": "db", "action": "restart", "reason": "requested"},
            {"component": "api", "action": "start", "reason": "once db is ready"},
        ])
    );
    assert_eq!(fx.pid("db"), db_pid, "a dry run changes nothing");

    fx.call("component-restart", json!({"name": "db"})).unwrap();
    fx.wait_component(
        "api",
        |c| c["state"] == "ready" && c["pid"].as_u64() != Some(api_pid as u64),
        "restarted",
    );
    assert_ne!(fx.pid("db"), db_pid);
    assert!(!alive(db_pid) && !alive(api_pid));

    let stopped = fx.call("component-stop", json!({"name": "db"})).unwrap();
    assert_eq!(stopped["actions"][0]["component"], "api");
    assert_eq!(fx.component("db")["state"], "stopped");
    assert_eq!(fx.component("api")["state"], "stopped");
    assert!(fx.processes_in_root().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fx.component("db")["state"],
        "stopped",
        "supervision leaves stopped components alone"
    );

    let reconciled = fx.call("plan-reconcile", json!({})).unwrap();
    assert_eq!(
        reconciled["actions"].as_array().unwrap().len(),
        2,
        "{reconciled}"
    );
    fx.wait_component("api", |c| c["state"] == "ready", "came back");

    let stopped = fx.call("plan-stop", json!({})).unwrap();
    assert_eq!(stopped["stopped"], json!(["api", "db"]));
    assert_eq!(fx.status()["phase"], "stopped");
    assert!(fx.processes_in_root().is_empty());
    let unknown = fx
        .call("component-stop", json!({"name": "nope"}))
        .unwrap_err();
    assert!(unknown.contains("unknown component `nope`"), "{unknown}");
}

#[test]
fn bad_plans_are_refused_with_clear_errors_and_change_nothing() {
    let fx = fixture();
    let typo = service("db").extra("[resources]\nopen_file = 64\n");
    let err = fx.call("plan-apply-dry", plan(&[&typo])).unwrap_err();
    assert!(err.contains("recipe db.toml line "), "{err}");
    assert!(err.contains("unknown key `resources.open_file`"), "{err}");

    let a = service("a").depends("b", "hard");
    let b = service("b").depends("a", "hard");
    let err = fx.apply(plan(&[&a, &b])).unwrap_err();
    assert!(err.contains("dependency cycle: a → b → a"), "{err}");

    let container = service("box").extra("");
    let mut text = plan(&[&container]);
    let recipe = text["recipes"]["box.toml"].as_str().unwrap().replace(
        "[lifecycle.run]\n",
        "[lifecycle.run]\ntype = \"container\"\n",
    );
    text["recipes"]["box.toml"] = json!(recipe);
    let err = fx.apply(text).unwrap_err();
    assert!(
        err.contains("container") && err.contains("needs [lifecycle.run.container]"),
        "{err}"
    );

    let dry = fx
        .call(
            "plan-apply-dry",
            plan(&[&service("db"), &service("api").depends("db", "hard")]),
        )
        .unwrap();
    assert_eq!(dry["dry-run"], true);
    assert_eq!(dry["layers"], json!([["db"], ["api"]]));
    assert_eq!(fx.status()["phase"], "idle");
    assert!(fx.status()["components"].as_array().unwrap().is_empty());
    assert!(fx.processes_in_root().is_empty());
}

#[test]
fn a_process_the_policy_does_not_grant_is_denied() {
    let fx = fixture();
    let text = service("rogue")
        .toml()
        .replace("command = \"/bin/sh\"", "command = \"/bin/sleep\"")
        .replace("args = [\"-c\"", "args = [\"600\"] # [\"-c\"");
    let payload = json!({
        "plan": "[[components]]\nname = \"rogue\"\nrecipe = \"rogue.toml\"\n",
        "recipes": {"rogue.toml": text},
    });
    fx.apply(payload).unwrap();
    let status = fx.wait_phase("failed");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("rogue may not run: the policy's [grants.process] does not allow it"),
        "{error}"
    );
    assert!(fx.processes_in_root().is_empty());
    let log = fx.daemon.daemon_log();
    assert!(
        log.contains("denied") && log.contains("/bin/sleep"),
        "no audit line: {log}"
    );
}

#[test]
fn resource_limits_are_enforced_or_refused() {
    let fx = fixture();
    let limited =
        service("limited").extra("[resources]\nopen_files = 64\nmemory_limit = \"512MiB\"\n");
    fx.apply(plan(&[&limited])).unwrap();
    fx.wait_phase("applied");
    let pid = fx.pid("limited");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(line("Max open files").contains(" 64 "), "{limits}");
    let component = fx.component("limited");
    if let Some(note) = component["limits-note"].as_str() {
        // No cgroup v2 here: the memory limit is the address-space limit.
        assert!(note.contains("RLIMIT_AS"), "{note}");
        assert!(
            line("Max address space").contains(&(512u64 << 20).to_string()),
            "{limits}"
        );
    }

    let cpu = service("cpu").extra("[resources]\ncpu_quota = 0.5\n");
    fx.apply(plan(&[&limited, &cpu])).unwrap();
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let status = fx.daemon.eventually(support::WAIT, || {
        let phase = fx.status()["phase"].clone();
        phase == "applied" || phase == "failed"
    });
    assert!(status);
    let status = fx.status();
    if status["phase"] == "failed" {
        let error = status["error"].as_str().unwrap();
        assert!(
            error.contains("cpu_quota cannot be enforced on this device"),
            "{error}"
        );
        assert_eq!(
            fx.pid("limited"),
            pid,
            "the rollback kept the running component"
        );
    } else {
        assert!(
            cgroup_v2,
            "a CPU quota was accepted without cgroup v2: {status}"
        );
    }
}

#[test]
fn a_daemon_killed_mid_apply_resumes_without_orphans() {
    let mut fx = fixture();
    let db = service("db");
    let slow = service("slow").ready_after(3.0).depends("db", "hard");
    let top = service("top").depends("slow", "hard");
    fx.apply(plan(&[&db, &slow, &top])).unwrap();
    fx.wait_component("slow", |c| c["state"] == "starting", "started");
    let db_pid = fx.pid("db");
    let slow_pid = fx.pid("slow");
    fx.daemon.kill9();
    fx.daemon.restart();

    let status = fx.wait_phase("applied");
    assert_eq!(fx.pid("db"), db_pid, "db was not restarted");
    assert_eq!(
        fx.pid("slow"),
        slow_pid,
        "slow was re-adopted, not restarted"
    );
    assert_eq!(fx.starts("slow").len(), 1);
    assert_eq!(fx.starts("top").len(), 1);
    let pids: BTreeSet<u32> = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pid"].as_u64().unwrap() as u32)
        .collect();
    for pid in fx.processes_in_root() {
        assert!(
            pids.contains(&pid) || parent(pid).is_some_and(|p| pids.contains(&p)),
            "process {pid} belongs to no component ({pids:?})"
        );
    }
    assert_eq!(fx.processes_in_root().len(), 6);
}

#[test]
fn a_new_release_of_the_plugin_carries_on_without_restarts() {
    let fx = fixture();
    let (_, _, db_pid, api_pid) = db_and_api(&fx);
    let before = (db_pid, api_pid);
    let v2 = harness::variant("recipes", "0.2.0", "");
    fx.daemon.install(&v2).unwrap();
    let plugins = fx.daemon.plugins();
    assert!(
        plugins
            .iter()
            .any(|(name, version, _)| name == "recipes" && version == "0.2.0"),
        "{plugins:?}"
    );
    assert_eq!(fx.status()["phase"], "applied");
    assert_eq!((fx.pid("db"), fx.pid("api")), before);
    // The new release supervises them: a crash is still repaired.
    // SAFETY: killing the test's own component process.
    unsafe { libc::kill(before.1 as libc::pid_t, libc::SIGKILL) };
    fx.wait_component(
        "api",
        |c| c["state"] == "ready" && c["pid"].as_u64() != Some(before.1 as u64),
        "restarted",
    );
}

#[test]
fn the_cli_applies_plan_files_and_shows_components_and_graph() {
    let fx = fixture();
    let dir = fx.daemon.root().join("plan");
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    let db = service("db");
    let api = service("api").depends("db", "hard");
    std::fs::write(dir.join("recipes/db.toml"), db.toml()).unwrap();
    std::fs::write(dir.join("recipes/api.toml"), api.toml()).unwrap();
    std::fs::write(
        dir.join("plan.toml"),
        "[[components]]\nname = \"db\"\nrecipe = \"recipes/db.toml\"\n\n[[components]]\nname = \"api\"\nrecipe = \"recipes/api.toml\"\n",
    )
    .unwrap();
    let plan_path = dir.join("plan.toml");
    let plan_path = plan_path.to_str().unwrap();

    let dry = fx.daemon.cli(&["apply", plan_path, "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("layer 1: api"),
        "{dry:?}"
    );
    assert!(
        fx.processes_in_root().is_empty(),
        "a dry run starts nothing"
    );

    let applied = fx.daemon.cli(&["apply", plan_path, "--timeout", "30s"]);
    assert!(applied.status.success(), "{applied:?}");
    let components = fx.daemon.cli_json(&["components"]).unwrap();
    let states: Vec<(&str, &str)> = components["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("db", "ready"), ("api", "ready")]);
    let graph = fx.daemon.cli(&["graph", "--dot"]);
    let dot = String::from_utf8_lossy(&graph.stdout);
    assert!(
        dot.contains("\"api\" -> \"db\" [style=solid, label=\"hard\"]"),
        "{dot}"
    );

    // A broken recipe file: the CLI exits 1 with the file's line, nothing changes.
    std::fs::write(
        dir.join("recipes/api.toml"),
        api.toml().replace("grace =", "grac ="),
    )
    .unwrap();
    let refused = fx.daemon.cli(&["apply", plan_path]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("recipes/api.toml line ")
            && stderr.contains("unknown key `lifecycle.run.grac`"),
        "{stderr}"
    );
    assert_eq!(fx.status()["phase"], "applied");
}

#[test]
fn a_reload_signals_the_running_process() {
    let fx = fixture();
    let reloadable = service("web")
        .then("trap 'date +%s%N >> reloads' HUP; while :; do sleep 0.1; done")
        .extra("[lifecycle.reload]\nsignal = \"HUP\"\n");
    fx.apply(plan(&[&reloadable])).unwrap();
    fx.wait_phase("applied");
    let pid = fx.pid("web");
    let dry = fx
        .call("component-reload", json!({"name": "web", "dry-run": true}))
        .unwrap();
    assert_eq!(dry["actions"][0]["reason"], "signal HUP");
    assert!(
        !fx.dir("web").join("reloads").exists(),
        "a dry run sends nothing"
    );
    let reloaded = fx.daemon.cli(&["reload", "web"]);
    assert!(reloaded.status.success(), "{reloaded:?}");
    assert!(
        fx.daemon
            .eventually(support::WAIT, || fx.dir("web").join("reloads").exists())
    );
    assert_eq!(fx.pid("web"), pid, "reloaded in place");
    assert_eq!(fx.component("web")["state"], "ready");
    let plain = service("plain");
    fx.apply(plan(&[&reloadable, &plain])).unwrap();
    fx.wait_phase("applied");
    let err = fx
        .call("component-reload", json!({"name": "plain"}))
        .unwrap_err();
    assert!(err.contains("plain has no [lifecycle.reload]"), "{err}");
}
