//! The `health` plugin against real targets started by the test: an HTTP
//! server that answers 200 then 500, a TCP listener that goes away, and
//! `/bin/true` and `/bin/false`. Also: state-change events, `status`, metrics,
//! persistence of run-time checks across a restart, refusals outside the
//! plugin's grants, and the `[grants.sockets]` install check.

mod harness;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use harness::{Daemon, plugin_wasm};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// A local HTTP server answering every request with the status it holds.
fn http_server() -> (u16, Arc<AtomicU16>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let status = Arc::new(AtomicU16::new(200));
    let shared = status.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            harness::http::read_request_head(&mut stream);
            let code = shared.load(Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, status)
}

fn policy(http_port: u16, tcp_port: u16, sockets: bool) -> String {
    let sockets = if sockets {
        format!("[grants.sockets]\ntcp-connect = [\"127.0.0.1:{tcp_port}\"]\n")
    } else {
        String::new()
    };
    format!(
        r#"[plugin]
name = "health"
signers = ["dev"]

[config]
tick-ms = 100

[grants.log]
[grants.kv]
[grants.timer]
max-timers = 1
[grants.events]
publish = ["health/#"]
[grants.metrics]

[grants.http-client]
allow = ["http://127.0.0.1:{http_port}"]
allow-private = ["127.0.0.0/8"]
timeout = "2s"

{sockets}
[grants.process]
[[grants.process.allow]]
exe = "/bin/true"
args = []
[[grants.process.allow]]
exe = "/bin/false"
args = []
"#
    )
}

const ECHO_POLICY: &str = r#"[plugin]
name = "echo"
signers = ["dev"]

[config]
watch = ["health/changed/#"]

[grants.log]
[grants.events]
publish = ["echo/#"]
subscribe = ["echo/in/#", "counter/changed", "health/changed/#"]
[grants.timer]
[grants.commands]
call = ["*"]
[grants.system]
"#;

fn start(http_port: u16, tcp_port: u16, extra_config: &str) -> Daemon {
    let daemon = Daemon::start();
    let policy = policy(http_port, tcp_port, true)
        .replace("tick-ms = 100\n", &format!("tick-ms = 100\n{extra_config}"));
    daemon.write_policy("health", &policy);
    daemon.write_policy("echo", ECHO_POLICY);
    daemon.install(&plugin_wasm("echo")).unwrap();
    daemon.install(&plugin_wasm("health")).unwrap();
    daemon
}

fn add(daemon: &Daemon, name: &str, target: &str, failure_threshold: u32) -> Result<Value, String> {
    daemon.call(
        "health",
        "add",
        &json!({
            "name": name,
            "target": target,
            "interval-ms": 150,
            "timeout-ms": 500,
            "failure-threshold": failure_threshold,
        })
        .to_string(),
    )
}

fn get(daemon: &Daemon, name: &str) -> Value {
    daemon
        .call("health", "get", &json!({ "name": name }).to_string())
        .unwrap()
}

fn wait_state(daemon: &Daemon, name: &str, state: &str) -> Value {
    let mut last = Value::Null;
    let reached = daemon.eventually(WAIT, || {
        last = get(daemon, name);
        last["state"] == state
    });
    assert!(reached, "{name} never became {state}: {last}");
    last
}

/// The `health/changed/<name>` events echo received, as (previous, state).
fn changes(daemon: &Daemon, name: &str) -> Vec<(String, String)> {
    let events = daemon.call("echo", "events", "null").unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["topic"] == format!("health/changed/{name}"))
        .map(|event| {
            let payload = &event["payload"];
            assert_eq!(payload["name"], name, "{event}");
            assert_eq!(event["source"], "health", "{event}");
            (
                payload["previous"].as_str().unwrap().to_string(),
                payload["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(previous: &str, state: &str) -> (String, String) {
    (previous.to_string(), state.to_string())
}

#[test]
fn checks_follow_their_targets_with_events_and_metrics() {
    let (http_port, http_status) = http_server();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let daemon = start(http_port, tcp_port, "");

    let web = format!("http://127.0.0.1:{http_port}/healthz");
    let added = add(&daemon, "web", &web, 3).unwrap();
    assert_eq!(added["state"], "healthy", "{added}");
    assert_eq!(added["source"], "runtime");
    add(&daemon, "db", &format!("tcp://127.0.0.1:{tcp_port}"), 2).unwrap();
    add(&daemon, "ok-cmd", "cmd:/bin/true", 1).unwrap();
    add(&daemon, "bad-cmd", "cmd:/bin/false", 1).unwrap();
    wait_state(&daemon, "db", "healthy");
    wait_state(&daemon, "ok-cmd", "healthy");
    let bad = wait_state(&daemon, "bad-cmd", "unhealthy");
    assert!(
        bad["last-error"]
            .as_str()
            .unwrap()
            .contains("exited with 1"),
        "{bad}"
    );

    let status = daemon.call("health", "status", "null").unwrap();
    let checks = status["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bad-cmd", "db", "ok-cmd", "web"], "{status}");
    for check in checks {
        assert!(check["last-latency-ms"].is_u64(), "{check}");
        assert!(check["last-checked-ms"].is_u64(), "{check}");
    }

    // The server fails: unhealthy only after three failures in a row.
    http_status.store(500, Ordering::SeqCst);
    let mut first_failure = Value::Null;
    assert!(daemon.eventually(WAIT, || {
        first_failure = get(&daemon, "web");
        first_failure["consecutive-failures"].as_u64() >= Some(1)
    }));
    if first_failure["consecutive-failures"].as_u64() < Some(3) {
        assert_eq!(first_failure["state"], "healthy", "{first_failure}");
    }
    let web_down = wait_state(&daemon, "web", "unhealthy");
    assert!(
        web_down["consecutive-failures"].as_u64() >= Some(3),
        "{web_down}"
    );
    assert!(
        web_down["last-error"].as_str().unwrap().contains("500"),
        "{web_down}"
    );

    // The TCP listener goes away.
    drop(tcp);
    let db_down = wait_state(&daemon, "db", "unhealthy");
    assert!(db_down["last-error"].is_string(), "{db_down}");

    // The plugin reports itself degraded, naming its unhealthy checks.
    let health = daemon.cli_json(&["health"]).unwrap_or_else(|e| e.into());
    let text = health.to_string();
    assert!(
        text.contains("unhealthy checks") && text.contains("web"),
        "{text}"
    );

    // The server recovers.
    http_status.store(200, Ordering::SeqCst);
    wait_state(&daemon, "web", "healthy");

    assert!(
        daemon.eventually(WAIT, || changes(&daemon, "web")
            == [
                pair("unknown", "healthy"),
                pair("healthy", "unhealthy"),
                pair("unhealthy", "healthy")
            ]),
        "{:?}",
        changes(&daemon, "web")
    );
    assert_eq!(changes(&daemon, "bad-cmd"), [pair("unknown", "unhealthy")]);
    assert_eq!(
        changes(&daemon, "db"),
        [pair("unknown", "healthy"), pair("healthy", "unhealthy")]
    );

    let metrics = String::from_utf8_lossy(&daemon.cli(&["metrics"]).stdout).to_string();
    let up_bad = metrics
        .lines()
        .find(|l| l.starts_with("cairn_plugin_check_up") && l.contains("\"bad-cmd\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(up_bad.ends_with(" 0"), "{up_bad}");
    let up_ok = metrics
        .lines()
        .find(|l| l.starts_with("cairn_plugin_check_up") && l.contains("\"ok-cmd\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(up_ok.ends_with(" 1"), "{up_ok}");
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("cairn_plugin_check_failures_total") && l.contains("\"web\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    let count: f64 = failures.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{failures}");
}

#[test]
fn targets_outside_the_grants_and_bad_input_are_refused_and_checks_persist() {
    let (http_port, _status) = http_server();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    // One check from the policy's [config].
    let boot =
        "[[config.checks]]\nname = \"boot\"\ntarget = \"cmd:/bin/true\"\ninterval-ms = 200\n";
    let mut daemon = start(http_port, tcp_port, boot);
    let from_config = wait_state(&daemon, "boot", "healthy");
    assert_eq!(from_config["source"], "config", "{from_config}");
    let err = daemon
        .call("health", "remove", r#"{"name": "boot"}"#)
        .unwrap_err();
    assert!(err.contains("defined in the policy's [config]"), "{err}");

    let refused = |target: &str| {
        let err = add(&daemon, "outside", target, 1).unwrap_err();
        assert!(
            err.contains("not allowed by this plugin's policy"),
            "{target}: {err}"
        );
        err
    };
    let err = refused(&format!("http://127.0.0.1:{other_port}/"));
    assert!(err.contains("http-client"), "{err}");
    let err = refused(&format!("tcp://127.0.0.1:{other_port}"));
    assert!(err.contains("grants.sockets"), "{err}");
    let err = refused("cmd:/bin/echo hi");
    assert!(err.contains("grants.process"), "{err}");
    // The sockets refusal is audited.
    assert!(
        daemon.eventually(WAIT, || daemon
            .daemon_log()
            .lines()
            .any(|l| l.contains("cairn::audit")
                && l.contains("sockets")
                && l.contains(&other_port.to_string()))),
        "{}",
        daemon.daemon_log()
    );

    let err = add(&daemon, "ftp", "ftp://example.com", 1).unwrap_err();
    assert!(err.contains("unknown scheme `ftp`"), "{err}");
    let err = daemon.call("health", "add", "{\"name\": 3}").unwrap_err();
    assert!(err.contains("add:"), "{err}");
    let err = daemon.call("health", "add", "[1, 2").unwrap_err();
    assert!(!err.is_empty());
    let err = daemon
        .call("health", "get", r#"{"name": "nope"}"#)
        .unwrap_err();
    assert!(err.contains("unknown check `nope`"), "{err}");
    let err = daemon
        .call("health", "remove", r#"{"name": "nope"}"#)
        .unwrap_err();
    assert!(err.contains("unknown check `nope`"), "{err}");
    let err = daemon.call("health", "frobnicate", "null").unwrap_err();
    assert!(err.contains("unknown command"), "{err}");
    let status = daemon.call("health", "status", "null").unwrap();
    assert_eq!(status["checks"].as_array().unwrap().len(), 1, "{status}");

    // A check added at run time survives a restart of the daemon; a removed one does not.
    add(&daemon, "kept", &format!("tcp://127.0.0.1:{tcp_port}"), 1).unwrap();
    add(&daemon, "dropped", "cmd:/bin/true", 1).unwrap();
    let err = add(&daemon, "kept", "cmd:/bin/true", 1).unwrap_err();
    assert!(err.contains("exists already"), "{err}");
    daemon
        .call("health", "remove", r#"{"name": "dropped"}"#)
        .unwrap();
    daemon.restart();
    let kept = wait_state(&daemon, "kept", "healthy");
    assert_eq!(kept["source"], "runtime", "{kept}");
    let status = daemon.call("health", "status", "null").unwrap();
    let names: Vec<&str> = status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["boot", "kept"], "{status}");
}

#[test]
fn importing_sockets_needs_the_sockets_grant() {
    let daemon = Daemon::start();
    daemon.write_policy("health", &policy(1, 1, false));
    let err = daemon.install(&plugin_wasm("health")).unwrap_err();
    assert!(
        err.contains("wasi:sockets") && err.contains("[grants.sockets]"),
        "{err}"
    );
}

#[test]
fn a_swap_keeps_the_checks_and_their_state() {
    let (http_port, _status) = http_server();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let daemon = start(http_port, tcp_port, "");
    add(&daemon, "db", &format!("tcp://127.0.0.1:{tcp_port}"), 1).unwrap();
    let mut before = Value::Null;
    assert!(daemon.eventually(WAIT, || {
        before = get(&daemon, "db");
        before["consecutive-successes"].as_u64() >= Some(5)
    }));
    daemon
        .install(&harness::variant("health", "0.2.0", "ok"))
        .unwrap();
    assert!(
        daemon
            .plugins()
            .iter()
            .any(|(name, version, _)| name == "health" && version == "0.2.0")
    );
    // The new release knows the check (from kv) and continues its count (from the snapshot).
    let after = get(&daemon, "db");
    assert_eq!(after["state"], "healthy", "{after}");
    assert!(
        after["consecutive-successes"].as_u64() >= before["consecutive-successes"].as_u64(),
        "before {before}, after {after}"
    );
    drop(tcp);
}
