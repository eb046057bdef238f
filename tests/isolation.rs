//! A plugin that traps, loops or eats memory is stopped, reported and restarted;
//! the others keep serving. Calls outside a grant are denied and audited.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use harness::{Daemon, plugin_wasm, workspace};

fn with_counter(daemon: &Daemon) {
    daemon.install(&plugin_wasm("counter")).unwrap();
    daemon.call("counter", "increment", "null").unwrap();
}

#[test]
fn trap_is_contained_and_restarted_with_backoff() {
    let daemon = Daemon::start();
    with_counter(&daemon);
    daemon.install(&plugin_wasm("trap")).unwrap();
    let err = daemon.call("trap", "trap", "null").unwrap_err();
    assert!(err.contains("trapped"), "{err}");
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 1);
    let unavailable = daemon.call("trap", "ok", "null");
    assert!(
        unavailable.is_err_and(|err| err.contains("restarting")),
        "calls during backoff are refused clearly"
    );
    assert!(
        daemon.eventually(Duration::from_secs(10), || daemon
            .call("trap", "ok", "null")
            .is_ok()),
        "trap plugin was not restarted"
    );
    let list = daemon.cli_json(&["plugin", "list"]).unwrap();
    let trap = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "trap")
        .unwrap()
        .clone();
    assert_eq!(trap["restarts"], 1, "{trap}");
    assert!(
        trap["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("trapped"),
        "{trap}"
    );
    let logs = daemon.cli_json(&["logs", "trap"]).unwrap().to_string();
    assert!(logs.contains("fault"), "{logs}");
}

#[test]
fn infinite_loop_is_cut_off_while_others_keep_serving() {
    let daemon = Arc::new(Daemon::start());
    with_counter(&daemon);
    daemon.install(&plugin_wasm("spin")).unwrap();
    let spinning = Arc::new(AtomicBool::new(true));
    let spinner = {
        let (daemon, spinning) = (daemon.clone(), spinning.clone());
        std::thread::spawn(move || {
            let result = daemon.call("spin", "spin", "null");
            spinning.store(false, Ordering::SeqCst);
            result
        })
    };
    let served = AtomicU32::new(0);
    while spinning.load(Ordering::SeqCst) {
        daemon
            .call("counter", "get", "null")
            .expect("counter keeps serving while spin loops");
        served.fetch_add(1, Ordering::Relaxed);
    }
    let err = spinner.join().unwrap().unwrap_err();
    assert!(err.contains("CPU time limit"), "{err}");
    assert!(
        served.load(Ordering::Relaxed) > 0,
        "no counter call overlapped the spinning call"
    );
}

#[test]
fn memory_bomb_is_stopped_at_its_limit() {
    let daemon = Daemon::start();
    with_counter(&daemon);
    daemon.install(&plugin_wasm("membomb")).unwrap();
    let graceful = daemon.call("membomb", "bomb-gracefully", "null").unwrap();
    assert!(
        graceful["allocated_mib"].as_u64().unwrap() < 16,
        "the 16MiB policy limit did not hold: {graceful}"
    );
    let err = daemon.call("membomb", "bomb", "null").unwrap_err();
    assert!(err.contains("out of memory"), "{err}");
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 1);
    assert!(daemon.eventually(Duration::from_secs(10), || {
        daemon.call("membomb", "ok", "null").is_ok()
    }));
}

#[test]
fn calls_outside_the_grant_are_denied_and_audited() {
    let daemon = Daemon::start();
    with_counter(&daemon);
    let granted =
        std::fs::read_to_string(workspace().join("tests/plugins/escape/policy-granted.toml"))
            .unwrap();
    daemon.write_policy("escape", &granted);
    daemon
        .install(&plugin_wasm("escape"))
        .expect("escape installs under the wider policy");
    let counter_digest = daemon.cli_json(&["plugin", "list"]).unwrap()[0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let install_cached = format!(r#"{{"digest": "{counter_digest}"}}"#);
    for (command, payload, kind) in [
        ("publish-outside", "null", "denied"),
        ("subscribe-outside", "null", "denied"),
        ("call-counter", "null", "denied"),
        ("install", install_cached.as_str(), "denied"),
        ("kv-quota", "null", "quota-exceeded"),
    ] {
        let reply = daemon.call("escape", command, payload).unwrap();
        assert_eq!(reply["error"], kind, "{command}: {reply}");
    }
    let logs = daemon.cli_json(&["logs", "escape"]).unwrap().to_string();
    assert!(logs.contains("denied"), "no audit lines: {logs}");
    let metrics = daemon.cli(&["metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("cairn_plugin_denials_total{plugin=\"escape\"}"),
        "{metrics}"
    );
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 1);
}
