//! The process capability against real processes: output and exit events,
//! stopping with a grace period, grants and refusals, user switch,
//! no_new_privs, capability bounding set and rlimits, cgroup limits, the
//! quota, ownership across a swap, re-adoption after a daemon crash, and
//! stopping on plugin removal and daemon stop.

mod harness;
#[path = "process/support.rs"]
mod support;

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use harness::{Daemon, plugin_wasm, variant};
use serde_json::{Value, json};
use support::{Fixture, PROBE, WAIT, alive, fixture, gone, group_members, status};

#[test]
fn output_is_captured_and_exits_are_reported_with_their_code() {
    let f = fixture();
    let (id, _) = f
        .spawn(
            json!({"name": "greeter", "exe": "/usr/bin/printf", "args": ["hello %s\\n", "world"]}),
        )
        .unwrap();
    let exit = f.exit_event("greeter");
    assert_eq!(exit["code"], 0, "{exit}");
    assert_eq!(exit["id"], id);
    assert!(exit["signal"].is_null());
    let info = f.info(id);
    assert_eq!(info["running"], false);
    assert_eq!(info["exit_code"], 0);
    let mut output = Value::Null;
    assert!(
        f.daemon.eventually(WAIT, || {
            output = f.call("output", json!({ "id": id })).unwrap();
            output["stdout"] == "hello world\n"
        }),
        "{output}"
    );
    assert_eq!(output["total"], 12);

    // A failing process: its code and its stderr.
    let (id, _) = f
        .spawn(json!({"name": "bad-sleep", "exe": "/usr/bin/sleep", "args": ["not-a-number"]}))
        .unwrap();
    assert_eq!(f.exit_event("bad-sleep")["code"], 1);
    assert!(f.daemon.eventually(WAIT, || {
        let output = f.call("output", json!({ "id": id })).unwrap();
        output["stderr"]
            .as_str()
            .unwrap()
            .contains("invalid time interval")
    }));
    // Each line also reaches the host log, with plugin and process name.
    let log = f.daemon.daemon_log();
    let line = log
        .lines()
        .find(|line| line.contains("hello world"))
        .unwrap_or_else(|| panic!("output not logged:\n{log}"));
    assert!(
        line.contains("cairn::process") && line.contains("greeter"),
        "{line}"
    );
}

#[test]
fn stop_terminates_within_the_grace() {
    let f = fixture();
    let (id, pid) = f.sleeper("napper");
    assert!(alive(pid));
    assert_eq!(f.info(id)["running"], true);
    let started = Instant::now();
    let info = f.stop(id, 5000);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop waited for the grace"
    );
    assert_eq!(info["running"], false, "{info}");
    assert_eq!(info["exit_signal"], "SIGTERM");
    assert!(!alive(pid));
    assert_eq!(f.exit_event("napper")["signal"], "SIGTERM");
    // `terminate` returns at once; the exit event follows.
    let (other, other_pid) = f.sleeper("dozer");
    let started = Instant::now();
    f.call("terminate", json!({"id": other, "grace_ms": 5000}))
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(f.exit_event("dozer")["signal"], "SIGTERM");
    assert!(!alive(other_pid));
    // Signalling an exited process is refused.
    let err = f
        .call("signal", json!({"id": id, "signal": "HUP"}))
        .unwrap_err();
    assert!(err.contains("not-found"), "{err}");
}

#[test]
fn a_process_ignoring_sigterm_is_killed_with_its_group_after_the_grace() {
    let f = fixture();
    let (id, pid) = f
        .spawn(json!({"name": "stubborn", "exe": "/bin/sh", "args": ["-c", "trap '' TERM; sleep 100"]}))
        .unwrap();
    // Wait until the shell ignores SIGTERM and its child runs.
    assert!(f.daemon.eventually(WAIT, || {
        u64::from_str_radix(&status(pid, "SigIgn"), 16).unwrap() & (1 << 14) != 0
            && group_members(pid).len() == 2
    }));
    let started = Instant::now();
    let info = f.stop(id, 700);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700), "killed after {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(info["exit_signal"], "SIGKILL", "{info}");
    assert!(gone(&f.daemon, pid));
    assert!(
        f.daemon.eventually(WAIT, || group_members(pid).is_empty()),
        "the group outlived the stop: {:?}",
        group_members(pid)
    );
}

#[test]
fn calls_outside_the_grant_are_denied_and_audited() {
    let f = fixture();
    let refused = [
        json!({"name": "a", "exe": "/usr/bin/true"}),
        json!({"name": "b", "exe": "/usr/bin/sleep", "args": ["1", "2"]}),
        json!({"name": "c", "exe": "/usr/bin/sleep", "args": ["1"], "user": "root"}),
        json!({"name": "d", "exe": "/usr/bin/sleep", "args": ["1"], "env": [["LD_PRELOAD", "/tmp/x.so"]]}),
        json!({"name": "e", "exe": "/usr/bin/sleep", "args": ["1"], "capabilities": ["CAP_SYS_ADMIN"]}),
        json!({"name": "f", "exe": "/bin/sh", "args": ["-c", "rm -rf /tmp/x"]}),
    ];
    for spec in refused {
        let err = f.spawn(spec.clone()).unwrap_err();
        assert!(err.contains("denied"), "{spec}: {err}");
    }
    let err = f
        .spawn(json!({"name": "bad name!", "exe": "/usr/bin/sleep", "args": ["1"]}))
        .unwrap_err();
    assert!(err.contains("invalid"), "{err}");
    let log = f.daemon.daemon_log();
    let audits = log
        .lines()
        .filter(|line| line.contains("cairn::audit") && line.contains("process"))
        .count();
    assert!(audits >= 6, "{audits} audit lines:\n{log}");
    assert!(log.contains("/usr/bin/true"), "{log}");
    assert_eq!(f.call("list", json!(null)).unwrap(), json!([]));
}

#[test]
fn shells_are_refused_without_allow_shell() {
    let daemon = Daemon::start();
    let policy = |exe: &str| {
        format!(
            "[plugin]\nname = \"process-probe\"\nsigners = [\"dev\"]\n[grants.process]\n[[grants.process.allow]]\nexe = \"{exe}\"\n"
        )
    };
    // Naming a shell is refused when the policy is checked.
    daemon.write_policy(PROBE, &policy("/bin/sh"));
    let err = daemon.install(&plugin_wasm("process_probe")).unwrap_err();
    assert!(err.contains("allow-shell"), "{err}");
    // A shell under another name is refused when spawned.
    let disguised = daemon.root().join("runner");
    symlink("/bin/sh", &disguised).unwrap();
    daemon.write_policy(PROBE, &policy(disguised.to_str().unwrap()));
    daemon.install(&plugin_wasm("process_probe")).unwrap();
    let err = daemon
        .call(
            PROBE,
            "spawn",
            &json!({"name": "x", "exe": disguised, "args": ["-c", "true"]}).to_string(),
        )
        .unwrap_err();
    assert!(err.contains("denied") && err.contains("shell"), "{err}");
}

#[test]
fn user_no_new_privs_capabilities_rlimits_and_environment_apply() {
    let f = fixture();
    let (_, pid) = f
        .spawn(json!({
            "name": "confined",
            "exe": "/usr/bin/sleep",
            "args": ["100"],
            "user": "nobody",
            "env": [["GREETING", "hi"]],
            "open_files": 64,
            "memory_bytes": 268435456u64,
        }))
        .unwrap();
    assert!(f.daemon.eventually(WAIT, || status(pid, "Name") == "sleep"));
    assert!(
        status(pid, "Uid").starts_with("65534\t65534"),
        "{}",
        status(pid, "Uid")
    );
    assert!(
        status(pid, "Gid").starts_with("65534\t65534"),
        "{}",
        status(pid, "Gid")
    );
    assert_eq!(status(pid, "NoNewPrivs"), "1");
    assert_eq!(status(pid, "CapBnd"), "0000000000000000");
    assert_eq!(status(pid, "CapEff"), "0000000000000000");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let row = |name: &str| {
        limits
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(row("Max open files").contains("64 64"), "{limits}");
    assert!(
        row("Max address space").contains("268435456 268435456"),
        "{limits}"
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert_eq!(environ, b"GREETING=hi\0");
    // Its own session and process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    assert_eq!(
        (fields[2], fields[3]),
        (pid.to_string().as_str(), pid.to_string().as_str())
    );

    // As the daemon's user (root here), the capabilities are gone all the same.
    let (_, root_pid) = f.sleeper("as-root");
    assert!(
        f.daemon
            .eventually(WAIT, || status(root_pid, "Name") == "sleep")
    );
    assert_eq!(status(root_pid, "CapEff"), "0000000000000000");
    assert_eq!(status(root_pid, "CapBnd"), "0000000000000000");
}

#[test]
fn cgroup_limits_are_refused_clearly_without_cgroup_v2() {
    let v2_memory = [
        "/sys/fs/cgroup/cgroup.controllers",
        "/sys/fs/cgroup/unified/cgroup.controllers",
    ]
    .iter()
    .any(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains("memory")));
    if v2_memory {
        eprintln!("cgroup v2 with the memory controller is available here: nothing to refuse");
        return;
    }
    let f = fixture();
    let spec = json!({"name": "limited", "exe": "/usr/bin/sleep", "args": ["100"], "memory_max": 67108864});
    let err = f.spawn(spec).unwrap_err();
    assert!(
        err.contains("unavailable") && err.contains("cgroup"),
        "{err}"
    );
    let (id, _) = f
        .spawn(json!({"name": "limited", "exe": "/usr/bin/sleep", "args": ["100"], "memory_max": 67108864, "best_effort": true}))
        .unwrap();
    let note = f.info(id)["limits_note"].as_str().unwrap().to_string();
    assert!(note.contains("cgroup limits not applied"), "{note}");
}

#[test]
fn max_processes_and_unique_names_are_enforced() {
    let f = fixture();
    let (first, _) = f.sleeper("s1");
    let err = f
        .spawn(json!({"name": "s1", "exe": "/usr/bin/sleep", "args": ["100"]}))
        .unwrap_err();
    assert!(
        err.contains("invalid") && err.contains("already running"),
        "{err}"
    );
    for name in ["s2", "s3", "s4"] {
        f.sleeper(name);
    }
    let err = f
        .spawn(json!({"name": "s5", "exe": "/usr/bin/sleep", "args": ["100"]}))
        .unwrap_err();
    assert!(err.contains("quota-exceeded"), "{err}");
    f.stop(first, 1000);
    f.sleeper("s5");
    assert_eq!(
        f.call("list", json!(null))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn processes_belong_to_the_plugin_across_a_swap() {
    let f = fixture();
    let (id, pid) = f.sleeper("keeper");
    f.daemon.install(&variant(PROBE, "0.2.0", "")).unwrap();
    assert_eq!(f.call("version", json!(null)).unwrap()["version"], "0.2.0");
    let found = f.call("find", json!({"name": "keeper"})).unwrap();
    assert_eq!(found["id"], id);
    assert_eq!(found["pid"], pid);
    assert_eq!(found["running"], true);
    let info = f.stop(id, 2000);
    assert_eq!(info["exit_signal"], "SIGTERM");
    assert!(!alive(pid));
    // The new release receives the exit event.
    assert_eq!(f.exit_event("keeper")["signal"], "SIGTERM");
}

#[test]
fn after_a_daemon_crash_running_processes_are_re_adopted() {
    let mut f = fixture();
    let (id, pid) = f.sleeper("survivor");
    let (_, victim) = f
        .spawn(
            json!({"name": "victim", "exe": "/bin/sh", "args": ["-c", "trap '' TERM; sleep 100"]}),
        )
        .unwrap();
    assert!(
        f.daemon
            .eventually(WAIT, || group_members(victim).len() == 2)
    );
    // A process writing all the time would die of SIGPIPE at its next write
    // if its output were a pipe to the dead daemon.
    let (ticker_id, ticker) = f
        .spawn(json!({"name": "ticker", "exe": "/bin/sh",
            "args": ["-c", "trap '' TERM; while sleep 0.1; do echo tick; done"]}))
        .unwrap();
    let ticks = |f: &Fixture| {
        let output = f.call("output", json!({ "id": ticker_id })).unwrap();
        output["stdout"].as_str().unwrap().matches("tick").count()
    };
    assert!(f.daemon.eventually(WAIT, || ticks(&f) > 0));
    f.daemon.kill9();
    assert!(alive(pid), "the process died with the daemon");
    // SAFETY: killing a process this test started.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    assert!(gone(&f.daemon, victim));
    assert_eq!(group_members(victim).len(), 1, "the victim's child runs on");
    f.daemon.restart();
    let list = f.call("list", json!(null)).unwrap();
    let entry = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
    };
    let survivor = entry("survivor");
    assert_eq!(
        (survivor["id"].as_u64(), survivor["pid"].as_u64()),
        (Some(id), Some(pid.into()))
    );
    assert_eq!(survivor["running"], true);
    assert_eq!(survivor["adopted"], true);
    let victim_entry = entry("victim");
    assert_eq!(victim_entry["running"], false);
    assert!(victim_entry["exit_code"].is_null() && victim_entry["exit_signal"].is_null());
    // What it left in its process group is not left running unknown.
    assert!(
        f.daemon
            .eventually(WAIT, || group_members(victim).is_empty()),
        "{:?}",
        group_members(victim)
    );
    // The writer survived, and its output is followed again.
    assert!(f.daemon.eventually(WAIT, || ticks(&f) >= 3));
    assert!(alive(ticker), "the writer died while the daemon was away");
    assert_eq!(entry("ticker")["adopted"], true);
    assert_eq!(f.stop(ticker_id, 300)["running"], false);
    assert!(gone(&f.daemon, ticker) && group_members(ticker).is_empty());
    // Still under control: stopping it works, and the exit is reported.
    let info = f.stop(id, 2000);
    assert_eq!(info["running"], false, "{info}");
    assert!(!alive(pid));
    let exit = f.exit_event("survivor");
    assert!(exit["code"].is_null() && exit["signal"].is_null(), "{exit}");
    // New spawns do not reuse the adopted ids.
    let (next, _) = f.sleeper("next");
    assert!(next > id);
}

#[test]
fn removing_the_plugin_stops_its_processes() {
    let f = fixture();
    let (_, pid) = f.sleeper("doomed");
    f.daemon.cli_json(&["plugin", "remove", PROBE]).unwrap();
    assert!(!alive(pid), "still running after the removal");
}

#[test]
fn stopping_the_daemon_stops_every_process() {
    let mut f = fixture();
    let (_, pid) = f.sleeper("one");
    let (_, other) = f.sleeper("two");
    f.daemon.terminate();
    assert!(!alive(pid) && !alive(other));
    // Nothing is re-adopted on the next start.
    f.daemon.restart();
    assert_eq!(f.call("list", json!(null)).unwrap(), json!([]));
}

#[test]
fn a_chatty_process_cannot_flood_the_log_or_the_ring() {
    let f = fixture();
    let lines: Vec<String> = (0..2000)
        .map(|n| format!("chatter-{n:05}-{}", "x".repeat(40)))
        .collect();
    let args = [vec!["%s\\n".to_string()], lines.clone()].concat();
    let (id, _) = f
        .spawn(json!({"name": "chatty", "exe": "/usr/bin/printf", "args": args}))
        .unwrap();
    assert_eq!(f.exit_event("chatty")["code"], 0);
    let written: usize = lines.iter().map(|line| line.len() + 1).sum();
    let mut output = Value::Null;
    assert!(
        f.daemon.eventually(WAIT, || {
            output = f.call("output", json!({ "id": id })).unwrap();
            output["total"] == written
        }),
        "{}",
        output["total"]
    );
    // The ring holds the last 64 KiB, ending with the last line.
    let stdout = output["stdout"].as_str().unwrap();
    assert_eq!(stdout.len(), 64 * 1024);
    assert!(stdout.ends_with(&format!("{}\n", lines[1999])));
    // The log got a bounded share, and says what it left out.
    assert!(f.daemon.eventually(WAIT, || {
        f.daemon.daemon_log().contains("output lines not logged")
    }));
    let logged = f
        .daemon
        .daemon_log()
        .lines()
        .filter(|line| line.contains("chatter-"))
        .count();
    assert!((1..=100).contains(&logged), "{logged} lines logged");
}
