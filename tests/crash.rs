//! Crash consistency: SIGKILL at every step of an install or swap, and at random
//! moments, always boots into the old or the new set, fully working, offline.

mod harness;

use std::time::Duration;

use harness::{Daemon, plugin_wasm, variant};

const POINTS: &[(&str, &str)] = &[
    ("install:after-blob", "0.1.0"),
    ("install:after-compile", "0.1.0"),
    ("swap:after-start", "0.1.0"),
    ("swap:after-handover", "0.1.0"),
    ("swap:after-switch", "0.1.0"),
    ("swap:after-journal", "0.2.0"),
];

fn assert_consistent(daemon: &Daemon, expected_count: u64) -> String {
    let plugins = daemon.plugins();
    assert_eq!(plugins.len(), 2, "{plugins:?}");
    let (name, version, state) = plugins[0].clone();
    assert_eq!(
        (name.as_str(), state.as_str()),
        ("counter", "running"),
        "{plugins:?}"
    );
    assert!(version == "0.1.0" || version == "0.2.0", "{version}");
    assert_eq!(
        daemon.call("counter", "version", "null").unwrap()["version"],
        version.as_str()
    );
    assert_eq!(
        daemon.call("counter", "get", "null").unwrap()["count"],
        expected_count
    );
    assert_eq!(daemon.call("echo", "echo", "7").unwrap(), 7);
    version
}

#[test]
fn sigkill_at_every_step_boots_the_old_or_new_set() {
    let v2 = variant("counter", "0.2.0", "ok");
    for (point, expected) in POINTS {
        let mut daemon = Daemon::start();
        daemon.install(&plugin_wasm("counter")).unwrap();
        daemon.install(&plugin_wasm("echo")).unwrap();
        daemon.call("counter", "increment", r#"{"by": 3}"#).unwrap();
        daemon.restart_with_env(vec![("CAIRN_FAILPOINT".into(), point.to_string())]);
        let result = daemon.install(&v2);
        assert!(
            result.is_err(),
            "{point}: install should die with the daemon"
        );
        assert!(
            daemon.wait_exit(Duration::from_secs(10)),
            "{point}: daemon did not die"
        );
        daemon.restart_with_env(Vec::new());
        let version = assert_consistent(&daemon, 3);
        assert_eq!(&version, expected, "after a kill at {point}");
    }
}

#[test]
fn sigkill_at_random_moments_during_swaps() {
    let v2 = variant("counter", "0.2.0", "ok");
    let v1 = plugin_wasm("counter");
    let mut daemon = Daemon::start();
    daemon.install(&v1).unwrap();
    daemon.install(&plugin_wasm("echo")).unwrap();
    daemon.call("counter", "increment", r#"{"by": 4}"#).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..16u64 {
        let next = if round % 2 == 0 {
            v2.clone()
        } else {
            v1.clone()
        };
        let signed = daemon.signed_copy(&next, "dev");
        let socket = daemon.socket();
        let installer = std::thread::spawn(move || {
            std::process::Command::new(harness::cairn_bin())
                .arg("--socket")
                .arg(socket)
                .args(["plugin", "install", "--force"])
                .arg(signed)
                .output()
        });
        // Spread the kills over the whole install: 0 to ~150 ms in.
        std::thread::sleep(Duration::from_millis((round * 37) % 150));
        daemon.kill9();
        let _ = installer.join();
        daemon.restart();
        seen.insert(assert_consistent(&daemon, 4));
    }
    assert!(!seen.is_empty());
}
