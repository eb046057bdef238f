//! Tests of argument parsing, output formatting, and whole commands against a
//! real admin socket served by an in-memory daemon.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use tokio::sync::oneshot;

use super::output::{self, Rendered};
use super::*;
use crate::admin::api::{LogRecord, PluginSummary};
use crate::admin::fake::{FakeApi, summary};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))
}

/// Runs a command line the way `main` does, capturing what it would print.
fn invoke(args: &[&str]) -> Rendered {
    let cli = parse(args).unwrap();
    let json = cli.json;
    output::render(run(cli), json)
}

/// An admin socket served on its own runtime, so commands under test can
/// build theirs as they do in production.
struct Daemon {
    api: Arc<FakeApi>,
    socket: PathBuf,
    dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
    _runtime: tokio::runtime::Runtime,
}

impl Daemon {
    fn start() -> Daemon {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let api = Arc::new(FakeApi::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (served_api, served_socket) = (Arc::clone(&api), socket.clone());
        runtime.spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            crate::admin::serve(served_api, &served_socket, shutdown).await
        });
        runtime.block_on(async {
            for _ in 0..200 {
                if crate::admin::AdminClient::connect(&socket).await.is_ok() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        Daemon {
            api,
            socket,
            dir,
            _stop: stop,
            _runtime: runtime,
        }
    }

    fn run(&self, args: &[&str]) -> Rendered {
        let socket = self.socket.to_str().unwrap();
        let mut full = vec!["--socket", socket];
        full.extend_from_slice(args);
        invoke(&full)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }
}

#[test]
fn global_flags_go_anywhere() {
    let cli = parse(&[
        "plugin", "install", "c.wasm", "--force", "--json", "--socket", "/s",
    ])
    .unwrap();
    assert!(cli.json);
    assert_eq!(cli.socket.as_deref(), Some(Path::new("/s")));
    let Command::Plugin(plugin::PluginCommand::Install(args)) = cli.command else {
        panic!("parsed as {:?}", cli.command);
    };
    assert!(args.force);
    assert_eq!(args.signature, None);
}

#[test]
fn optional_arguments_take_their_defaults() {
    let Command::Call(call) = parse(&["call", "counter", "get"]).unwrap().command else {
        panic!("not a call");
    };
    assert_eq!(call.payload, None);
    let Command::Logs(logs) = parse(&["logs"]).unwrap().command else {
        panic!("not logs");
    };
    assert_eq!((logs.plugin, logs.lines), (None, remote::DEFAULT_LOG_LINES));
    let Command::Logs(logs) = parse(&["logs", "counter", "-n", "5"]).unwrap().command else {
        panic!("not logs");
    };
    assert_eq!((logs.plugin.as_deref(), logs.lines), (Some("counter"), 5));
}

#[test]
fn usage_errors_exit_with_two() {
    for args in [
        &["plugin", "install"][..],
        &["policy", "check"],
        &["plugin", "sign", "c.wasm"],
        &["logs", "-n", "many"],
        &["reboot"],
    ] {
        assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
    }
}

#[test]
fn the_socket_flag_wins_then_the_config_then_the_default() {
    let flag = discover_socket(Some(PathBuf::from("/flag.sock")), None).unwrap();
    assert_eq!(flag, Path::new("/flag.sock"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "admin-socket = \"/run/cairn/admin.sock\"\n").unwrap();
    let from_config = discover_socket(None, Some(&config)).unwrap();
    assert_eq!(from_config, Path::new("/run/cairn/admin.sock"));
    let default = discover_socket(None, None).unwrap();
    assert_eq!(default, Path::new("/var/lib/cairn/admin.sock"));
}

#[test]
fn tables_align_columns_without_trailing_blanks() {
    let text = output::table(
        &["NAME", "VERSION"],
        &[
            vec!["counter".into(), "0.2.0".into()],
            vec!["é".into(), "10.0.0".into()],
        ],
    );
    assert_eq!(text, "NAME     VERSION\ncounter  0.2.0\né        10.0.0\n");
}

#[test]
fn formats_install_messages_and_log_lines() {
    let plugin = summary("counter", "0.2.0", Some("0.1.0"));
    assert_eq!(
        plugin::render_installed(&plugin),
        "installed counter 0.2.0 (sha256:ab12ab12ab12…) — swapped from 0.1.0"
    );
    let record = |plugin: Option<&str>| LogRecord {
        at_ms: 1_700_000_000_123,
        level: "WARN".into(),
        plugin: plugin.map(str::to_string),
        message: "slow".into(),
    };
    assert_eq!(
        remote::render_logs(&[record(Some("counter")), record(None)]),
        "22:13:20.123 WARN  [counter] slow\n22:13:20.123 WARN  slow\n"
    );
    assert_eq!(output::human_bytes(512), "512 B");
    assert_eq!(output::human_bytes(12 * 1024 * 1024), "12.0 MiB");
    assert_eq!(output::short_digest("sha256:abc"), "sha256:abc");
}

#[test]
fn errors_render_as_text_or_json_on_stderr() {
    let error = AdminError::new(ErrorCode::NotFound, "no plugin named `x`");
    let human = output::render(Err(error.clone()), false);
    assert_eq!(human.stderr, "error: no plugin named `x`\n");
    assert_eq!((human.stdout.as_str(), human.exit_code), ("", 1));
    let json = output::render(Err(error), true);
    let parsed: serde_json::Value = serde_json::from_str(&json.stderr).unwrap();
    assert_eq!(parsed["error"]["code"], "not-found");
    assert_eq!(parsed["error"]["message"], "no plugin named `x`");
}

#[test]
fn explains_a_daemon_that_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let rendered = invoke(&["--socket", socket.to_str().unwrap(), "status"]);
    assert_eq!(rendered.exit_code, 1);
    assert_eq!(
        rendered.stderr,
        format!(
            "error: cannot reach the cairn daemon at {}: is `cairn daemon` running?\n",
            socket.display()
        )
    );
    let rendered = invoke(&["--json", "--socket", socket.to_str().unwrap(), "metrics"]);
    assert!(rendered.stderr.contains("\"code\":\"unavailable\""));
}

#[test]
fn installs_swaps_lists_rolls_back_and_removes() {
    let daemon = Daemon::start();
    let component = daemon.file("counter.wasm", "counter@0.1.0");
    daemon.file("counter.wasm.sig", "SIGNATURE\n");
    let first = daemon.run(&["plugin", "install", &component]);
    assert_eq!(first.exit_code, 0, "{first:?}");
    assert_eq!(
        first.stdout,
        "installed counter 0.1.0 (sha256:ab12ab12ab12…)\n"
    );
    let sent = daemon.api.last_install.lock().unwrap().clone().unwrap();
    assert_eq!(sent.signature.as_deref(), Some("SIGNATURE"));
    assert!(!sent.force);

    let newer = daemon.file("counter-0.2.wasm", "counter@0.2.0");
    let signature = daemon.file("explicit.sig", "OTHER");
    let second = daemon.run(&[
        "plugin",
        "install",
        &newer,
        "--signature",
        &signature,
        "--force",
    ]);
    assert!(
        second.stdout.ends_with("— swapped from 0.1.0\n"),
        "{second:?}"
    );
    assert!(
        daemon
            .api
            .last_install
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .force
    );

    let list = daemon.run(&["plugin", "list"]);
    assert!(
        list.stdout.starts_with("NAME     VERSION  PREVIOUS  STATE"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("counter  0.2.0    0.1.0     running"));
    let json = daemon.run(&["plugin", "list", "--json"]);
    let plugins: Vec<PluginSummary> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plugins[0].version, "0.2.0");

    let rollback = daemon.run(&["plugin", "rollback", "counter"]);
    assert_eq!(
        rollback.stdout,
        "rolled back counter to 0.1.0 (sha256:ab12ab12ab12…)\n"
    );
    assert_eq!(
        daemon.run(&["plugin", "remove", "counter"]).stdout,
        "removed counter\n"
    );
    assert_eq!(
        daemon.run(&["--json", "plugin", "remove", "x"]).exit_code,
        1
    );
    assert_eq!(
        daemon.run(&["plugin", "list"]).stdout,
        "no plugins installed\n"
    );
}

#[test]
fn an_unsigned_install_says_so_and_a_missing_signature_file_is_an_error() {
    let daemon = Daemon::start();
    let component = daemon.file("echo.wasm", "echo@1.0.0");
    let unsigned = daemon.run(&["plugin", "install", &component]);
    assert!(
        unsigned.stdout.contains("without a signature"),
        "{unsigned:?}"
    );
    let missing = daemon.run(&["plugin", "install", &component, "--signature", "/nope.sig"]);
    assert_eq!(missing.exit_code, 1);
    assert!(missing.stderr.contains("/nope.sig"), "{missing:?}");
}

#[test]
fn shows_status_logs_metrics_and_call_replies() {
    let daemon = Daemon::start();
    let status = daemon.run(&["status"]);
    assert!(
        status
            .stdout
            .starts_with("cairn 0.1.0, up 1h 2m 3s (pid 4242)\n"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("memory:     12.0 MiB resident\n"));
    assert!(
        status
            .stdout
            .contains("warning: unsigned plugins are allowed")
    );
    let status_json = daemon.run(&["status", "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&status_json.stdout).unwrap();
    assert_eq!(parsed["allocator"], "pooling");

    let logs = daemon.run(&["logs", "echo"]);
    assert_eq!(logs.stdout, "22:13:22.002 INFO  [echo] record 2\n");
    let none = daemon.run(&["logs", "absent"]);
    assert_eq!(none.stdout, "no log records for absent\n");
    assert!(
        daemon
            .run(&["metrics"])
            .stdout
            .contains("cairn_plugins 1\n")
    );

    let reply = daemon.run(&["call", "echo", "say", r#"{"by": 2}"#]);
    let parsed: serde_json::Value = serde_json::from_str(&reply.stdout).unwrap();
    assert_eq!(parsed["echo"]["by"], 2);
    assert_eq!(
        daemon.run(&["call", "echo", "text"]).stdout,
        "hello from echo\n"
    );
    let bad = daemon.run(&["call", "echo", "say", "hello"]);
    assert_eq!(bad.exit_code, 1);
    assert!(bad.stderr.contains("not valid JSON"), "{bad:?}");
}

#[test]
fn generates_a_key_and_signs_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("dev");
    let generated = invoke(&[
        "--json",
        "key",
        "generate",
        "--out",
        prefix.to_str().unwrap(),
    ]);
    assert_eq!(generated.exit_code, 0, "{generated:?}");
    let keys: serde_json::Value = serde_json::from_str(&generated.stdout).unwrap();
    assert!(!keys["fingerprint"].as_str().unwrap().is_empty());
    let private_key = keys["private_key"].as_str().unwrap();
    assert!(Path::new(keys["public_key"].as_str().unwrap()).exists());

    let component = dir.path().join("c.wasm");
    std::fs::write(&component, b"\0asm component bytes").unwrap();
    let signed = invoke(&[
        "plugin",
        "sign",
        component.to_str().unwrap(),
        "--key",
        private_key,
    ]);
    assert_eq!(signed.exit_code, 0, "{signed:?}");
    assert!(
        signed
            .stdout
            .starts_with(&format!("signed {} → ", component.display()))
    );
    let signature = std::fs::read(dir.path().join("c.wasm.sig")).unwrap();
    assert!(!signature.is_empty());

    let missing_key = invoke(&[
        "plugin",
        "sign",
        component.to_str().unwrap(),
        "--key",
        "/nope.key",
    ]);
    assert_eq!(missing_key.exit_code, 1);
    assert!(missing_key.stderr.contains("/nope.key"), "{missing_key:?}");
}

#[test]
fn policy_checks_report_every_file_and_fail_if_one_fails() {
    let files = [PathBuf::from("good.toml"), PathBuf::from("bad.toml")];
    let check = |path: &Path| {
        if path == Path::new("bad.toml") {
            anyhow::bail!("unknown capability `bogus`")
        }
        Ok("grants log, kv".to_string())
    };
    let outcome = local::check_policies(&files, check);
    assert!(!outcome.success);
    let human = output::render(Ok(outcome.clone()), false);
    assert_eq!(human.exit_code, 1);
    assert_eq!(human.stdout, "good.toml: ok — grants log, kv\n");
    assert_eq!(
        human.stderr,
        "error: bad.toml: unknown capability `bogus`\n"
    );
    let json = output::render(Ok(outcome), true);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed[0]["summary"], "grants log, kv");
    assert_eq!(parsed[1]["ok"], false);

    let missing = invoke(&["policy", "check", "/nonexistent/policy.toml"]);
    assert_eq!(missing.exit_code, 1);
    assert!(
        missing
            .stderr
            .starts_with("error: /nonexistent/policy.toml: ")
    );
}

#[test]
fn the_sdk_comes_from_the_flag_or_the_source_tree() {
    let flag = plugin::sdk_path(Some(PathBuf::from("/opt/cairn/sdk"))).unwrap();
    assert_eq!(flag, Path::new("/opt/cairn/sdk"));
    // Without the flag the answer depends on where this binary was built.
    match plugin::sdk_path(None) {
        Ok(found) => assert!(found.is_dir()),
        Err(error) => assert!(error.message.contains("--sdk")),
    }
}

#[test]
fn recipe_commands_are_calls_of_the_recipes_plugin() {
    let daemon = Daemon::start();
    // The fake daemon echoes each call, which shows what was sent.
    let restart = daemon.run(&["--json", "restart", "api", "--dry-run"]);
    let sent: serde_json::Value = serde_json::from_str(&restart.stdout).unwrap();
    assert_eq!(sent["plugin"], recipes::DEFAULT_PLUGIN);
    assert_eq!(sent["command"], "component-restart");
    assert_eq!(
        sent["echo"],
        serde_json::json!({ "name": "api", "dry-run": true })
    );
    let stop = daemon.run(&["plan", "stop", "--plugin", "keystone", "--json"]);
    let sent: serde_json::Value = serde_json::from_str(&stop.stdout).unwrap();
    assert_eq!(
        (&sent["plugin"], &sent["command"]),
        (&"keystone".into(), &"plan-stop".into())
    );
    assert_eq!(
        daemon.run(&["restart", "api", "--dry-run"]).stdout,
        "dry run: nothing was changed\nnothing to do\n"
    );
    assert_eq!(daemon.run(&["graph"]).stdout, "no plan applied\n");

    let plan = daemon.file(
        "plan.toml",
        "[[components]]\nname = \"db\"\nrecipe = \"db.toml\"\n",
    );
    let missing = daemon.run(&["apply", &plan]);
    assert_eq!(missing.exit_code, 1);
    assert!(
        missing
            .stderr
            .contains("component `db` uses the recipe file db.toml"),
        "{missing:?}"
    );
}
