//! Operator and author workflows through the CLI: scaffold → build → sign →
//! install, policy checks, status output, and the allocator fallback.

mod harness;

use std::process::Command;

use harness::{Daemon, Options, cairn_bin, plugin_wasm, target_dir, workspace};

#[test]
fn scaffolded_plugin_builds_and_loads_unchanged() {
    let daemon = Daemon::start();
    let out = Command::new(cairn_bin())
        .args(["plugin", "new", "hello-world", "--dir"])
        .arg(daemon.root())
        .arg("--sdk")
        .arg(workspace().join("sdk"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = daemon.root().join("hello-world");
    let build = Command::new("cargo")
        .current_dir(&crate_dir)
        .args(["build", "--quiet", "--target", "wasm32-wasip2", "--release"])
        .env("CARGO_TARGET_DIR", target_dir().join("scaffold"))
        .status()
        .unwrap();
    assert!(build.success(), "the scaffolded plugin does not build");
    std::fs::copy(
        crate_dir.join("policy.toml"),
        daemon.root().join("policies/hello-world.toml"),
    )
    .unwrap();
    let wasm = target_dir().join("scaffold/wasm32-wasip2/release/hello_world.wasm");
    daemon
        .install(&wasm)
        .expect("the scaffolded plugin installs unchanged");
    let reply = daemon.cli(&["call", "hello-world", "hello", r#"{"name": "cairn"}"#]);
    assert!(
        reply.status.success(),
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(!reply.stdout.is_empty());
}

#[test]
fn policy_check_reports_errors_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let good = workspace().join("policies/counter.toml");
    let out = Command::new(cairn_bin())
        .args(["policy", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kv"));

    let cases = [
        (
            "typo.toml",
            "[plugin]\nname = \"typo\"\nsigners = [\"dev\"]\n[grants.kv]\nqouta = \"1KiB\"\n",
            "qouta",
        ),
        (
            "pattern.toml",
            "[plugin]\nname = \"pattern\"\nsigners = [\"dev\"]\n[grants.events]\npublish = [\"a/#/b\"]\n",
            "#",
        ),
        (
            "unknown.toml",
            "[plugin]\nname = \"unknown\"\nsigners = [\"dev\"]\n[grants.teleport]\n",
            "teleport",
        ),
        ("syntax.toml", "[plugin\n", "syntax.toml:1"),
    ];
    for (file, text, needle) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(cairn_bin())
            .args(["policy", "check"])
            .arg(&path)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{file} passed: {all}");
        assert!(all.contains(needle), "{file}: expected `{needle}` in {all}");
    }
    for policy in std::fs::read_dir(workspace().join("policies")).unwrap() {
        let path = policy.unwrap().path();
        let out = Command::new(cairn_bin())
            .args(["policy", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn cli_errors_are_clear_and_non_zero() {
    let daemon = Daemon::start();
    let missing = daemon.cli(&["call", "ghost", "boo"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ghost"));
    let nowhere = Command::new(cairn_bin())
        .args(["--socket", "/nonexistent/cairn.sock", "status"])
        .output()
        .unwrap();
    assert!(!nowhere.status.success());
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("is `cairn daemon` running"));
    let human = daemon.cli(&["status"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("allocator"));
    let socket_mode = std::fs::metadata(daemon.socket())
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(socket_mode, 0o600);
}

#[test]
fn falls_back_to_on_demand_allocation_when_address_space_is_short() {
    // 6 GiB of address space: too little for the pool's reservations, plenty to run.
    let options = Options {
        address_space_limit: Some(6 << 30),
        ..Options::default()
    };
    let daemon = Daemon::start_with(options);
    let status = daemon.cli_json(&["status"]).unwrap();
    assert_eq!(status["allocator"], "on-demand", "{}", daemon.daemon_log());
    daemon.install(&plugin_wasm("counter")).unwrap();
    assert_eq!(
        daemon.call("counter", "increment", "null").unwrap()["count"],
        1
    );
}
