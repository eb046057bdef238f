//! Capabilities seen from plugins: events between plugins, timers, device
//! facts, plugin-published metrics, kv persistence.

mod harness;

use std::time::Duration;

use harness::{Daemon, plugin_wasm};
use serde_json::Value;

fn events(daemon: &Daemon) -> Vec<Value> {
    daemon
        .call("echo", "events", "null")
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn events_flow_between_plugins() {
    let daemon = Daemon::start();
    daemon.install(&plugin_wasm("counter")).unwrap();
    daemon.install(&plugin_wasm("echo")).unwrap();
    daemon.call("counter", "increment", r#"{"by": 3}"#).unwrap();
    let received = daemon.eventually(Duration::from_secs(5), || {
        events(&daemon).iter().any(|e| {
            e["topic"] == "counter/changed"
                && e["source"] == "counter"
                && e["payload"]["count"] == 3
        })
    });
    assert!(
        received,
        "echo never saw counter/changed: {:?}",
        events(&daemon)
    );

    daemon
        .call(
            "echo",
            "publish",
            r#"{"topic": "echo/in/kitchen/temp", "payload": 21.5}"#,
        )
        .unwrap();
    let looped = daemon.eventually(Duration::from_secs(5), || {
        events(&daemon)
            .iter()
            .any(|e| e["topic"] == "echo/in/kitchen/temp" && e["payload"] == 21.5)
    });
    assert!(looped, "{:?}", events(&daemon));

    let outside = daemon
        .call(
            "echo",
            "publish",
            r#"{"topic": "counter/changed", "payload": 0}"#,
        )
        .unwrap_err();
    assert!(outside.contains("denied"), "{outside}");
    let malformed = daemon
        .call("echo", "publish", r#"{"topic": "echo/in/+", "payload": 0}"#)
        .unwrap_err();
    assert!(malformed.contains("invalid"), "{malformed}");
}

#[test]
fn timers_deliver_private_events() {
    let daemon = Daemon::start();
    daemon.install(&plugin_wasm("echo")).unwrap();
    let reply = daemon
        .call("echo", "timer", r#"{"after_ms": 50, "topic": "wake-up"}"#)
        .unwrap();
    assert!(reply["timer"].as_u64().is_some(), "{reply}");
    let fired = daemon.eventually(Duration::from_secs(5), || {
        events(&daemon)
            .iter()
            .any(|e| e["topic"] == "wake-up" && e["source"] == "timer")
    });
    assert!(fired, "{:?}", events(&daemon));
    for _ in 0..4 {
        let _ = daemon.call("echo", "timer", r#"{"after_ms": 60000, "topic": "later"}"#);
    }
    let over = daemon
        .call("echo", "timer", r#"{"after_ms": 60000, "topic": "later"}"#)
        .unwrap_err();
    assert!(over.contains("quota"), "{over}");
}

#[test]
fn facts_and_metrics_reach_the_operator() {
    let daemon = Daemon::start();
    daemon.install(&plugin_wasm("counter")).unwrap();
    daemon.install(&plugin_wasm("echo")).unwrap();
    let facts = daemon.call("echo", "facts", "null").unwrap();
    assert_eq!(facts["os"], std::env::consts::OS);
    assert_eq!(facts["arch"], std::env::consts::ARCH);
    assert!(facts["memory_total"].as_u64().unwrap() > 0, "{facts}");
    assert!(facts["disk_total"].as_u64().unwrap() > 0, "{facts}");

    daemon
        .call("counter", "increment", r#"{"by": 41}"#)
        .unwrap();
    let metrics = String::from_utf8_lossy(&daemon.cli(&["metrics"]).stdout).to_string();
    assert!(
        metrics.contains("cairn_plugin_count{plugin=\"counter\"} 41"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_plugin_calls_total{plugin=\"counter\"}"),
        "{metrics}"
    );
    // Latency of the one command, the instance's memory, and the installs' journal writes.
    assert!(
        metrics.contains("cairn_plugin_call_duration_seconds_count{plugin=\"counter\"} 1"),
        "{metrics}"
    );
    let memory = metric(&metrics, "cairn_plugin_memory_bytes{plugin=\"counter\"}");
    assert!(memory >= 65536.0, "{metrics}");
    assert!(
        metric(&metrics, "cairn_journal_writes_total") >= 2.0,
        "{metrics}"
    );

    let health = daemon.cli_json(&["health"]).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    let names: Vec<&str> = health["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counter", "echo"]);
    assert!(
        health["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["health"] == "ok")
    );
}

/// The value of the sample named exactly `series`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in {text}"))
}

#[test]
fn kv_is_private_to_each_plugin_and_durable() {
    let mut daemon = Daemon::start();
    daemon.install(&plugin_wasm("counter")).unwrap();
    daemon.install(&plugin_wasm("versioned")).unwrap();
    daemon.call("counter", "increment", r#"{"by": 5}"#).unwrap();
    daemon.call("versioned", "increment", "null").unwrap();
    daemon.kill9();
    daemon.restart();
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 5);
    assert_eq!(daemon.call("versioned", "get", "null").unwrap()["count"], 1);
}

#[test]
fn device_placeholder_in_event_grants_means_this_device() {
    let daemon = Daemon::start_with(harness::Options {
        device_id: Some("pump-7".into()),
        ..harness::Options::default()
    });
    let policy = std::fs::read_to_string(harness::workspace().join("policies/echo.toml"))
        .unwrap()
        .replace(
            "publish = [\"echo/#\"]",
            "publish = [\"echo/#\", \"devices/{device}/status\"]",
        );
    assert!(policy.contains("devices/{device}/status"));
    daemon.write_policy("echo", &policy);
    daemon.install(&plugin_wasm("echo")).unwrap();
    let publish = |topic: &str| {
        daemon.call(
            "echo",
            "publish",
            &format!(r#"{{"topic":"{topic}","payload":1}}"#),
        )
    };
    publish("devices/pump-7/status").expect("this device's topic is granted");
    let err = publish("devices/pump-8/status").unwrap_err();
    assert!(err.contains("outside the grant"), "{err}");
}
