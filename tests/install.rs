//! Installing, listing, calling and removing plugins through the real CLI, and
//! every kind of bad input refused with a clear error and no change.

mod harness;

use std::fs;

use harness::{Daemon, Options, plugin_wasm, variant};

#[test]
fn installs_lists_calls_and_removes() {
    let daemon = Daemon::start();
    let installed = daemon
        .install(&plugin_wasm("counter"))
        .expect("install counter");
    assert_eq!(installed["name"], "counter");
    assert_eq!(installed["state"], "running");
    daemon.install(&plugin_wasm("echo")).expect("install echo");

    let names: Vec<String> = daemon
        .plugins()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(names, ["counter", "echo"]);

    assert_eq!(
        daemon.call("counter", "increment", r#"{"by": 2}"#).unwrap()["count"],
        2
    );
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 2);
    let echoed = daemon
        .call("echo", "echo", r#"{"hello": ["world", 1]}"#)
        .unwrap();
    assert_eq!(echoed, serde_json::json!({"hello": ["world", 1]}));
    let relayed = daemon
        .call(
            "echo",
            "relay",
            r#"{"plugin": "counter", "command": "get", "payload": null}"#,
        )
        .unwrap();
    assert_eq!(relayed["count"], 2);

    daemon
        .cli_json(&["plugin", "remove", "echo"])
        .expect("remove echo");
    let names: Vec<String> = daemon
        .plugins()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(names, ["counter"]);
    let err = daemon.call("echo", "echo", "1").unwrap_err();
    assert!(err.contains("no plugin named `echo`"), "{err}");

    let unknown = daemon.call("counter", "fly", "null").unwrap_err();
    assert!(unknown.contains("fly"), "{unknown}");
}

#[test]
fn refuses_bad_input_and_changes_nothing() {
    let daemon = Daemon::start();
    daemon.install(&plugin_wasm("counter")).unwrap();
    daemon.call("counter", "increment", r#"{"by": 7}"#).unwrap();
    let before = daemon.plugins();
    let refused = |what: &str, result: Result<serde_json::Value, String>, needle: &str| {
        let err = result.expect_err(what);
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: expected `{needle}` in: {err}"
        );
        assert_eq!(daemon.plugins(), before, "{what} changed the installed set");
        assert_eq!(
            daemon.call("counter", "get", "null").unwrap()["count"],
            7,
            "{what} disturbed counter"
        );
    };

    let unsigned = daemon.root().join("unsigned.wasm");
    fs::copy(plugin_wasm("echo"), &unsigned).unwrap();
    refused(
        "unsigned",
        daemon.cli_json(&["plugin", "install", unsigned.to_str().unwrap()]),
        "signature",
    );

    let wrong_key = daemon.signed_copy(&plugin_wasm("echo"), "other");
    refused(
        "untrusted key",
        daemon.cli_json(&["plugin", "install", wrong_key.to_str().unwrap()]),
        "signature",
    );

    // Still a valid component, but not the one that was signed.
    let tampered = daemon.signed_copy(&plugin_wasm("echo"), "dev");
    let bytes = fs::read(&tampered).unwrap();
    let (from, to) = (br#""version":"0.1.0""#, br#""version":"9.1.0""#);
    let at = bytes
        .windows(from.len())
        .position(|window| window == from)
        .expect("metadata section");
    let mut edited = bytes.clone();
    edited[at..at + to.len()].copy_from_slice(to);
    fs::write(&tampered, &edited).unwrap();
    let install_tampered = || daemon.cli_json(&["plugin", "install", tampered.to_str().unwrap()]);
    refused("tampered", install_tampered(), "signature");

    let mut corrupted = bytes;
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    fs::write(&tampered, corrupted).unwrap();
    refused("corrupted", install_tampered(), "invalid");

    let garbage = daemon.root().join("garbage.wasm");
    fs::write(&garbage, b"this is not wasm at all").unwrap();
    refused(
        "garbage",
        daemon.install(&garbage),
        "not a WebAssembly file",
    );

    let core = daemon.root().join("core.wasm");
    fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    refused(
        "core module",
        daemon.install(&core),
        "core WebAssembly module",
    );

    let truncated = daemon.root().join("truncated.wasm");
    let whole = fs::read(plugin_wasm("echo")).unwrap();
    fs::write(&truncated, &whole[..whole.len() / 3]).unwrap();
    refused("truncated", daemon.install(&truncated), "");

    refused(
        "imports beyond grants",
        daemon.install(&plugin_wasm("escape")),
        "cairn:host/commands",
    );

    fs::remove_file(daemon.root().join("policies/spin.toml")).unwrap();
    refused("no policy", daemon.install(&plugin_wasm("spin")), "policy");

    daemon.write_policy("trap", "[plugin\nname = \"trap\"\n");
    refused(
        "broken policy",
        daemon.install(&plugin_wasm("trap")),
        "trap.toml:1",
    );

    daemon.write_policy(
        "trap",
        "[plugin]\nname = \"trap\"\nsigners = [\"dev\"]\nsurprise = 1\n[grants.log]\n",
    );
    refused(
        "unknown policy key",
        daemon.install(&plugin_wasm("trap")),
        "surprise",
    );
}

#[test]
fn downgrade_needs_force() {
    let daemon = Daemon::start();
    daemon
        .install(&variant("versioned", "0.2.0", "ok"))
        .unwrap();
    let err = daemon
        .install(&variant("versioned", "0.1.0", "ok"))
        .unwrap_err();
    assert!(err.contains("downgrade"), "{err}");
    assert_eq!(
        daemon.call("versioned", "version", "null").unwrap()["version"],
        "0.2.0"
    );
    daemon
        .install_forced(&variant("versioned", "0.1.0", "ok"))
        .expect("forced downgrade");
    assert_eq!(
        daemon.call("versioned", "version", "null").unwrap()["version"],
        "0.1.0"
    );
}

#[test]
fn state_survives_restart_without_network() {
    let mut daemon = Daemon::start();
    daemon.install(&plugin_wasm("counter")).unwrap();
    for _ in 0..3 {
        daemon.call("counter", "increment", "null").unwrap();
    }
    let before = daemon.plugins();
    daemon.restart();
    assert_eq!(daemon.plugins(), before);
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 3);
}

#[test]
fn development_switch_allows_unsigned_and_says_so() {
    let daemon = Daemon::start_with(Options {
        allow_unsigned: true,
        ..Options::default()
    });
    let unsigned = daemon.root().join("unsigned.wasm");
    fs::copy(plugin_wasm("echo"), &unsigned).unwrap();
    daemon
        .cli_json(&["plugin", "install", unsigned.to_str().unwrap()])
        .expect("unsigned install in development mode");
    assert!(
        daemon.daemon_log().contains("DEVELOPMENT MODE"),
        "{}",
        daemon.daemon_log()
    );
    assert_eq!(
        daemon.cli_json(&["status"]).unwrap()["allow_unsigned"],
        true
    );
}

/// `cairn plugin prune` deletes the stored releases no plugin runs or rolls
/// back to, beyond the latest KEEP of each plugin, with their compiled code;
/// the dry run changes nothing and says why each release stays or goes.
#[test]
fn pruning_the_plugin_store_keeps_what_runs_and_what_a_rollback_needs() {
    let daemon = Daemon::start();
    let versions = ["0.1.0", "0.2.0", "1.0.0", "2.0.0"];
    let mut digests = Vec::new();
    for version in versions {
        let installed = daemon
            .install(&variant("versioned", version, "ok"))
            .unwrap();
        digests.push(installed["digest"].as_str().unwrap().to_string());
    }
    daemon.install(&plugin_wasm("counter")).unwrap();
    let store = daemon.root().join("state/blobs/sha256");
    let compiled = daemon.root().join("state/compiled");
    let count = |dir: &std::path::Path| fs::read_dir(dir).unwrap().count();
    let (blobs_before, compiled_before) = (count(&store), count(&compiled));
    assert_eq!(blobs_before, 5);

    let plan = daemon
        .cli_json(&["plugin", "prune", "--keep", "1", "--dry-run"])
        .unwrap();
    let listed = |which: &str| -> Vec<String> {
        plan[which]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let mut doomed = listed("delete");
    doomed.sort();
    let mut expected = vec![digests[0].clone(), digests[1].clone()];
    expected.sort();
    assert_eq!(doomed, expected, "{plan}");
    let kept = plan["keep"].to_string();
    assert!(kept.contains("runs as versioned 2.0.0"), "{kept}");
    assert!(kept.contains("rollback target of versioned"), "{kept}");
    assert!(kept.contains("runs as counter"), "{kept}");
    assert_eq!(
        (count(&store), count(&compiled)),
        (blobs_before, compiled_before)
    );

    let err = daemon
        .cli_json(&["plugin", "prune", "--keep", "0"])
        .unwrap_err();
    assert!(err.contains("at least 1"), "{err}");

    let pruned = daemon
        .cli_json(&["plugin", "prune", "--keep", "1"])
        .unwrap();
    assert_eq!(pruned["delete"].as_array().unwrap().len(), 2, "{pruned}");
    assert!(pruned["bytes-freed"].as_u64().unwrap() > 0, "{pruned}");
    assert_eq!(count(&store), 3);
    assert!(count(&compiled) < compiled_before);
    for gone in &digests[..2] {
        assert!(!store.join(gone.trim_start_matches("sha256:")).exists());
    }

    // What was kept still serves a rollback; a pruned release installs again.
    daemon
        .cli_json(&["plugin", "rollback", "versioned"])
        .unwrap();
    let running = daemon.plugins();
    assert!(
        running
            .iter()
            .any(|(name, version, _)| name == "versioned" && version == "1.0.0")
    );
    daemon
        .install_forced(&variant("versioned", "0.1.0", "ok"))
        .unwrap();
    let running = daemon.plugins();
    assert!(
        running
            .iter()
            .any(|(name, version, _)| name == "versioned" && version == "0.1.0")
    );
}
