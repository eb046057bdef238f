//! `cairn:host/process` through the bench: spawning granted executables,
//! following them, stopping them, and every way a spawn is refused.

use std::time::Duration;

use crate::caps::bench::{Bench, PLUGIN, assert_denied, grants_of};
use crate::caps::process::{EXITED, Process};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::process::{
    CgroupLimits, Host as _, ProcessState, Rlimits, SpawnSpec,
};
use crate::contract::testing::HostCall;

const GRANT: &str = r#"
[grants.process]
max-processes = 4

[[grants.process.allow]]
exe = "/bin/true"
args = []

[[grants.process.allow]]
exe = "/bin/sleep"
args = ["*"]

[[grants.process.allow]]
exe = "/bin/echo"
args = ["hello", "**"]
"#;

fn spec(name: &str, exe: &str, args: &[&str]) -> SpawnSpec {
    SpawnSpec {
        name: name.into(),
        exe: exe.into(),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        env: Vec::new(),
        cwd: None,
        user: None,
        group: None,
        no_new_privs: true,
        capabilities: Vec::new(),
        rlimits: Rlimits {
            open_files: None,
            memory_bytes: None,
            cpu_seconds: None,
            processes: None,
        },
        cgroup: CgroupLimits {
            memory_max: None,
            cpu_max: None,
            pids_max: None,
            best_effort: false,
        },
    }
}

/// Stops whatever the test left running.
async fn stop_everything(bench: &Bench) {
    bench
        .shared
        .process
        .stop_all(None, Duration::from_millis(500))
        .await;
}

/// Waits until the kernel was asked to deliver `count` exit events to the plugin.
async fn exit_events(bench: &Bench, count: usize) {
    let exited = HostCall::Notify {
        plugin: PLUGIN.into(),
        topic: EXITED.into(),
    };
    for _ in 0..100 {
        let seen = bench
            .host
            .recorded()
            .iter()
            .filter(|c| **c == exited)
            .count();
        if seen >= count {
            assert_eq!(seen, count, "{:?}", bench.host.recorded());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no exit event: {:?}", bench.host.recorded());
}

#[tokio::test]
async fn a_granted_process_runs_and_its_exit_is_reported() {
    let mut bench = Bench::new(GRANT);
    let mut process = bench.view::<Process>();
    let id = process.spawn(spec("once", "/bin/true", &[])).await.unwrap();
    exit_events(&bench, 1).await;
    let event = tokio::time::timeout(Duration::from_secs(5), bench.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.topic.as_str(), event.source.as_str()),
        (EXITED, "host")
    );
    let payload: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(
        (&payload["id"], &payload["name"], &payload["code"]),
        (
            &serde_json::json!(id),
            &serde_json::json!("once"),
            &serde_json::json!(0)
        )
    );

    let mut process = bench.view::<Process>();
    let info = process.info(id).await.unwrap();
    assert_eq!(info.name, "once");
    assert_eq!(info.exe, "/bin/true");
    assert_eq!(info.state, ProcessState::Exited);
    assert_eq!(info.exit_code, Some(0));
    assert_eq!(info.exit_signal, None);
    assert!(!info.adopted);
    let found = process.find("once".into()).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert!(process.find("other".into()).await.unwrap().is_none());
    assert!(process.forget(id).await.unwrap());
    assert!(matches!(process.info(id).await, Err(CapError::NotFound(_))));
    assert!(process.list().await.unwrap().is_empty());
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn a_running_process_is_listed_stopped_and_then_forgotten() {
    let mut bench = Bench::new(GRANT);
    let mut process = bench.view::<Process>();
    let id = process
        .spawn(spec("nap", "/bin/sleep", &["30"]))
        .await
        .unwrap();
    let listed = process.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].args, ["30"]);
    assert_eq!(listed[0].state, ProcessState::Running);
    assert!(listed[0].pid > 0);
    // Running processes are not forgotten.
    assert!(!process.forget(id).await.unwrap());
    // The name is taken while it runs.
    let again = process.spawn(spec("nap", "/bin/sleep", &["1"])).await;
    assert!(
        matches!(&again, Err(CapError::Invalid(msg)) if msg.contains("already running")),
        "{again:?}"
    );

    let stopped = process.stop(id, 2000).await.unwrap();
    assert_eq!(stopped.state, ProcessState::Exited);
    assert_eq!(stopped.exit_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(stopped.exit_code, None);
    assert!(matches!(
        process.signal(id, "TERM".into()).await,
        Err(CapError::NotFound(_))
    ));
    assert!(process.forget(id).await.unwrap());
    exit_events(&bench, 1).await;
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn output_is_followed() {
    let mut bench = Bench::new(GRANT);
    let mut process = bench.view::<Process>();
    let id = process
        .spawn(spec("greet", "/bin/echo", &["hello", "world"]))
        .await
        .unwrap();
    let mut tail = None;
    for _ in 0..100 {
        let output = process.output(id, 1024).await.unwrap();
        if output.stdout == b"hello world\n" {
            tail = Some(output);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tail = tail.expect("the output of echo");
    assert!(tail.stderr.is_empty());
    assert_eq!(tail.total_bytes, 12);
    let last = process.output(id, 6).await.unwrap();
    assert_eq!(last.stdout, b"world\n");
    stop_everything(&bench).await;
}

#[tokio::test]
async fn without_the_grant_every_call_is_denied_audited_and_counted() {
    let mut bench = Bench::new("");
    let mut process = bench.view::<Process>();
    let needle = "the policy has no [grants.process]";
    assert_denied(process.spawn(spec("x", "/bin/true", &[])).await, needle);
    assert_denied(process.signal(1, "TERM".into()).await, needle);
    assert_denied(process.stop(1, 0).await, needle);
    assert_denied(process.terminate(1, 0).await, needle);
    assert_denied(process.info(1).await, needle);
    assert_denied(process.find("x".into()).await, needle);
    assert_denied(process.list().await, needle);
    assert_denied(process.output(1, 10).await, needle);
    assert_denied(process.forget(1).await, needle);
    assert_eq!(bench.denials(), 9);
    let audit = bench.shared.audit.recent();
    assert_eq!(audit.len(), 9);
    assert_eq!(
        audit[0],
        "plugin=bench capability=process denied: the policy has no [grants.process]"
    );
}

#[tokio::test]
async fn spawns_outside_the_grant_are_denied() {
    let mut bench = Bench::new(GRANT);
    let mut process = bench.view::<Process>();
    assert_denied(
        process.spawn(spec("x", "/bin/false", &[])).await,
        "running `/bin/false` is outside the grant",
    );
    assert_denied(
        process.spawn(spec("x", "/bin/true", &["extra"])).await,
        "running `/bin/true` with arguments [\"extra\"] is outside the grant",
    );
    assert_denied(
        process.spawn(spec("x", "/bin/echo", &["bye"])).await,
        "outside the grant",
    );
    let mut as_user = spec("x", "/bin/true", &[]);
    as_user.user = Some("nobody".into());
    assert_denied(
        process.spawn(as_user).await,
        "running `/bin/true` as user `nobody` is outside the grant",
    );
    let mut as_group = spec("x", "/bin/true", &[]);
    as_group.group = Some("root".into());
    assert_denied(
        process.spawn(as_group).await,
        "running `/bin/true` as group `root` is outside the grant",
    );
    let mut preload = spec("x", "/bin/true", &[]);
    preload.env = vec![("LD_PRELOAD".into(), "/tmp/evil.so".into())];
    assert_denied(
        process.spawn(preload).await,
        "environment variable `LD_PRELOAD` could change what the executable loads",
    );
    let mut keep = spec("x", "/bin/true", &[]);
    keep.capabilities = vec!["CAP_NET_ADMIN".into()];
    assert_denied(
        process.spawn(keep).await,
        "keeping capability `CAP_NET_ADMIN` is outside the grant",
    );
    assert!(process.list().await.unwrap().is_empty());
    assert_eq!(bench.denials(), 7);
    let audit = bench.shared.audit.recent();
    assert_eq!(audit.len(), 7);
    assert!(
        audit
            .iter()
            .all(|line| line.starts_with("plugin=bench capability=process denied: ")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_shell_behind_another_name_needs_allow_shell() {
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("runner");
    std::os::unix::fs::symlink("/bin/sh", &runner).unwrap();
    let runner = runner.to_str().unwrap();
    let grant = format!("[grants.process]\n[[grants.process.allow]]\nexe = \"{runner}\"\n");
    let mut bench = Bench::new(&grant);
    let refused = bench
        .view::<Process>()
        .spawn(spec("x", runner, &["-c", "true"]))
        .await;
    assert_denied(
        refused,
        &format!("`{runner}` is a shell; the grant does not set allow-shell"),
    );
    assert_eq!(bench.denials(), 1);
}

#[tokio::test]
async fn malformed_specs_are_invalid_not_denied() {
    let mut bench = Bench::new(GRANT);
    let mut process = bench.view::<Process>();
    let invalid = |result: Result<u64, CapError>, needle: &str| match result {
        Err(CapError::Invalid(msg)) => assert!(msg.contains(needle), "{msg}"),
        other => panic!("expected invalid ({needle}), got {other:?}"),
    };
    invalid(
        process.spawn(spec("x", "true", &[])).await,
        "exe `true` is not an absolute path",
    );
    invalid(
        process.spawn(spec("bad name", "/bin/true", &[])).await,
        "process name `bad name` must be 1 to 64",
    );
    invalid(
        process.spawn(spec("", "/bin/true", &[])).await,
        "must be 1 to 64",
    );
    invalid(
        process.spawn(spec("x", "/bin/sleep", &["1\0"])).await,
        "may not contain NUL",
    );
    invalid(
        process.spawn(spec("x", "/bin/tr\0ue", &[])).await,
        "may not contain NUL",
    );
    let mut env = spec("x", "/bin/true", &[]);
    env.env = vec![("A=B".into(), "c".into())];
    invalid(process.spawn(env).await, "bad environment variable `A=B`");
    let mut cwd = spec("x", "/bin/true", &[]);
    cwd.cwd = Some("relative".into());
    invalid(
        process.spawn(cwd).await,
        "cwd `relative` is not an absolute path",
    );
    let mut signal = spec("x", "/bin/true", &[]);
    signal.capabilities = vec!["CAP_NOPE".into()];
    invalid(process.spawn(signal).await, "unknown capability `CAP_NOPE`");
    assert!(matches!(
        process.signal(1, "NOPE".into()).await,
        Err(CapError::Invalid(_))
    ));
    assert_eq!(bench.denials(), 0);
    assert!(bench.shared.audit.recent().is_empty());
}

#[tokio::test]
async fn max_processes_bounds_what_runs_at_once() {
    let grant =
        "[grants.process]\nmax-processes = 1\n[[grants.process.allow]]\nexe = \"/bin/sleep\"\n";
    let mut bench = Bench::new(grant);
    let mut process = bench.view::<Process>();
    let first = process
        .spawn(spec("a", "/bin/sleep", &["30"]))
        .await
        .unwrap();
    let second = process.spawn(spec("b", "/bin/sleep", &["30"])).await;
    assert!(
        matches!(&second, Err(CapError::QuotaExceeded(msg)) if msg == "at most 1 processes may run at once"),
        "{second:?}"
    );
    // Once the first has exited, there is room again.
    process.stop(first, 1000).await.unwrap();
    let third = process
        .spawn(spec("b", "/bin/sleep", &["30"]))
        .await
        .unwrap();
    assert_ne!(third, first);
    assert_eq!(bench.denials(), 0);
    stop_everything(&bench).await;
}

#[test]
fn grants_are_validated_with_the_table_named() {
    let err = |text: &str| grants_of(text).err().unwrap_or_default();
    assert!(grants_of(GRANT).is_ok());
    let shell = err("[grants.process]\n[[grants.process.allow]]\nexe = \"/bin/sh\"");
    assert!(
        shell.contains("[grants.process]: exe `/bin/sh` is a shell"),
        "{shell}"
    );
    assert!(
        grants_of(
            "[grants.process]\nallow-shell = true\n[[grants.process.allow]]\nexe = \"/bin/sh\""
        )
        .is_ok()
    );
    let relative = err("[grants.process]\n[[grants.process.allow]]\nexe = \"bin/true\"");
    assert!(
        relative.contains("exe `bin/true` is not an absolute path"),
        "{relative}"
    );
    let empty = err("[grants.process]\nallow = []");
    assert!(empty.contains("allows nothing"), "{empty}");
    let quota = err(
        "[grants.process]\nmax-processes = 2000\n[[grants.process.allow]]\nexe = \"/bin/true\"",
    );
    assert!(quota.contains("max-processes must be 1 to 1024"), "{quota}");
    let user =
        err("[grants.process]\n[[grants.process.allow]]\nexe = \"/bin/true\"\nusers = [\"a:b\"]");
    assert!(user.contains("`a:b` is not a user or group name"), "{user}");
}
