//! The `registry` plugin runs a real `docker-registry` itself: HTTPS with a
//! certificate from the device CA it makes, htpasswd users it generates, a
//! smoke check (push, pull by digest, delete), credential rotation, a restart
//! after the registry dies, and adoption across a daemon restart. Secrets
//! never reach the log or a process's arguments.

mod harness;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use harness::site_registry::{
    Gateway, StopRegistry, WAIT, cmdline, curl_status, free_port, health_policy, passwords, policy,
    push_image, status, upload_blob, wait_ready,
};
use harness::{Daemon, Options, plugin_wasm, write_owner_only};

#[test]
fn the_registry_is_provisioned_served_over_tls_smoke_checked_and_supervised() {
    let mut daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let storage = dir.path().join("storage");
    let port = free_port();
    let _stop = StopRegistry(state.display().to_string());
    daemon.write_policy("health", &health_policy(port));
    daemon.install(&plugin_wasm("health")).unwrap();
    daemon.write_policy("registry", &policy(&state, &storage, port, ""));
    daemon.install(&plugin_wasm("registry")).unwrap();
    let ready = wait_ready(&daemon);
    assert_eq!(ready["url"], format!("https://localhost:{port}"));
    let smoke = &ready["smoke"];
    assert_eq!(smoke["ok"], true, "{smoke}");
    let steps: Vec<&str> = smoke["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect();
    for step in [
        "push-config",
        "push-layer",
        "push-manifest",
        "pull-manifest",
        "pull-layer",
        "delete",
    ] {
        assert!(steps.contains(&step), "{steps:?}");
    }

    // The health plugin probes the registry's port.
    let probed = daemon.eventually(WAIT, || {
        daemon
            .call("health", "get", r#"{"name":"registry"}"#)
            .is_ok_and(|check| {
                check["state"] == "healthy" && check["target"] == format!("tcp://127.0.0.1:{port}")
            })
    });
    assert!(
        probed,
        "{:?}",
        daemon.call("health", "get", r#"{"name":"registry"}"#)
    );

    // Secrets: a private state directory, bcrypt hashes only in htpasswd,
    // no password in the log or in the registry's arguments.
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let htpasswd = std::fs::read_to_string(state.join("htpasswd")).unwrap();
    assert!(
        htpasswd.contains("build:$2") && htpasswd.contains("runtime:$2"),
        "{htpasswd}"
    );
    let (build, runtime) = passwords(&state);
    assert!(!htpasswd.contains(&build) && !htpasswd.contains(&runtime));
    let pid = ready["pid"].as_u64().unwrap();
    let args = cmdline(pid);
    assert!(args.contains("serve"), "{args}");
    let config = std::fs::read_to_string(state.join("config.yml")).unwrap();
    assert!(!config.contains("inmemory"), "{config}");
    assert!(!args.contains(&build) && !args.contains(&runtime));

    // Real TLS with the device CA; htpasswd refuses anonymous and wrong logins.
    let ca = state.join("tls/ca.pem");
    let base = format!("https://localhost:{port}/v2/");
    assert_eq!(curl_status(&ca, &base, None), 401);
    assert_eq!(curl_status(&ca, &base, Some(("runtime", "wrong"))), 401);
    assert_eq!(curl_status(&ca, &base, Some(("runtime", &runtime))), 200);
    assert_eq!(curl_status(&ca, &base, Some(("build", &build))), 200);
    let untrusted = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &base])
        .status()
        .unwrap();
    assert!(
        !untrusted.success(),
        "a certificate not from the device CA was accepted"
    );

    // Rotation: a new runtime password, the old one refused, smoke still passes.
    let before = daemon
        .call("registry", "credentials-fingerprint", "null")
        .unwrap();
    let after = daemon
        .call("registry", "rotate", r#"{"user":"runtime"}"#)
        .unwrap();
    assert_ne!(before["runtime"], after["runtime"]);
    assert_eq!(before["build"], after["build"]);
    let (_, rotated) = passwords(&state);
    assert_ne!(rotated, runtime);
    assert!(daemon.eventually(WAIT, || curl_status(
        &ca,
        &base,
        Some(("runtime", &runtime))
    ) == 401));
    assert_eq!(curl_status(&ca, &base, Some(("runtime", &rotated))), 200);
    let smoke = daemon.call("registry", "smoke", "null").unwrap();
    assert_eq!(smoke["ok"], true, "{smoke}");
    let refused = daemon
        .call("registry", "rotate", r#"{"user":"nobody"}"#)
        .unwrap_err();
    assert!(refused.contains("unknown variant"), "{refused}");

    // Artifacts by digest, and what retention would delete (keep = 2).
    let base = format!("https://localhost:{port}");
    let mut digests = Vec::new();
    for n in 1..=4 {
        let digest = push_image(&ca, &base, &build, "apps/web", &format!("prod-{n}"));
        let published = daemon
            .call(
                "registry",
                "publish",
                &serde_json::json!({
                    "repository": "apps/web", "tag": format!("prod-{n}"),
                    "environment": "production", "revision": format!("rev{n}"),
                    "digest": digest,
                })
                .to_string(),
            )
            .unwrap();
        assert_eq!(published["digest"], digest.as_str());
        digests.push(digest);
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = daemon
        .call(
            "registry",
            "publish",
            r#"{"repository":"apps/web","tag":"prod-1","environment":"moon"}"#,
        )
        .unwrap_err();
    assert!(refused.contains("unknown environment `moon`"), "{refused}");
    let missing = daemon
        .call(
            "registry",
            "publish",
            r#"{"repository":"apps/web","tag":"nope","environment":"production"}"#,
        )
        .unwrap_err();
    assert!(missing.contains("push it first"), "{missing}");
    let moved = daemon
        .call(
            "registry",
            "publish",
            &format!(r#"{{"repository":"apps/web","tag":"prod-1","environment":"production","digest":"{}"}}"#, digests[1]),
        )
        .unwrap_err();
    assert!(moved.contains("it moved"), "{moved}");
    assert_eq!(
        daemon
            .call("registry", "artifacts", "null")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // The same through the CLI: publishing again by `repository:tag`, listing.
    let published = daemon
        .cli_json(&[
            "registry",
            "publish",
            "apps/web:prod-4",
            "--environment",
            "production",
        ])
        .unwrap();
    assert_eq!(published["digest"], digests[3].as_str());
    let listed = daemon.cli_json(&["registry", "artifacts"]).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 5);
    let shown = daemon.cli(&["registry", "status"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("ready") && shown.contains("ca.pem"),
        "{shown}"
    );
    daemon
        .call(
            "registry",
            "report-in-use",
            &format!(
                r#"{{"device":"gw-7","digests":{{"{}":["container web"]}}}}"#,
                digests[0]
            ),
        )
        .unwrap();
    let plan = daemon.call("registry", "retention", "null").unwrap();
    let deleted: Vec<&str> = plan["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|gone| gone["digest"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, [digests[1].as_str()], "{plan}");
    let kept = &plan["keep"]["apps/web"];
    assert!(
        kept[&digests[0]][0]
            .as_str()
            .unwrap()
            .contains("in use by container web on gw-7"),
        "{plan}"
    );
    assert!(
        kept[&digests[3]][0]
            .as_str()
            .unwrap()
            .contains("latest 2 of production (#1)"),
        "{plan}"
    );

    let metrics = String::from_utf8_lossy(&daemon.cli(&["metrics"]).stdout).into_owned();
    assert!(metrics.contains("registry_ready"), "{metrics}");
    assert!(metrics.contains("registry_published_total"), "{metrics}");

    // The registry dies: it is restarted and checked again.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(daemon.eventually(WAIT, || {
        let now = status(&daemon);
        now["ready"] == true && now["pid"].as_u64() != Some(pid)
    }));
    let restarted = status(&daemon);
    assert_eq!(restarted["restarts"], 1, "{restarted}");
    assert!(
        restarted["last-exit"].as_str().unwrap().contains("SIGKILL"),
        "{restarted}"
    );

    // A daemon restart adopts the running registry: same process, ready again.
    let pid = restarted["pid"].as_u64().unwrap();
    daemon.restart();
    let adopted = wait_ready(&daemon);
    assert_eq!(adopted["pid"].as_u64(), Some(pid), "{adopted}");

    let log = daemon.daemon_log();
    for secret in [&build, &runtime, &rotated] {
        assert!(!log.contains(secret.as_str()), "a password reached the log");
    }
}

/// A device pointed at the gateway by `device-config` fetches what it asks
/// of the upstream registry from the gateway: over TLS trusting the gateway's
/// CA, with the `runtime` login from the file the plugin wrote, by tag and by
/// digest. The password is in that owner-only file and nowhere in the reply.
#[test]
fn devices_use_the_gateway_as_a_mirror_with_the_files_device_config_writes() {
    const UPSTREAM: &str = "registry.upstream.invalid:5000";
    let gateway = Gateway::start(&format!("mirror-for = [\"{UPSTREAM}\"]"));
    let reply = gateway
        .daemon
        .call("registry", "device-config", "null")
        .unwrap();
    let text = reply.to_string();
    assert!(
        !text.contains(&gateway.runtime) && !text.contains(&gateway.build),
        "a password in the reply: {text}"
    );
    let registry = format!("localhost:{}", gateway.port);
    assert_eq!(reply["registry"], registry.as_str());
    assert_eq!(reply["mirror-for"], serde_json::json!([UPSTREAM]));
    let config = reply["config"].as_str().unwrap();
    assert!(
        config.contains(&format!("\"{UPSTREAM}\" = \"{registry}\"")),
        "{config}"
    );
    let credentials = std::fs::read_to_string(reply["credentials-file"].as_str().unwrap()).unwrap();
    assert!(credentials.contains(&gateway.runtime), "{credentials}");
    assert!(
        !credentials.contains(&gateway.build),
        "the build password went to devices"
    );
    // Under the private state directory, which only the daemon's user enters.
    assert!(
        std::path::Path::new(reply["credentials-file"].as_str().unwrap())
            .starts_with(&gateway.state),
        "{reply}"
    );
    let mode = std::fs::metadata(&gateway.state)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "device files reachable by others: {mode:o}"
    );
    for line in gateway.daemon.daemon_log().lines() {
        assert!(
            !line.contains(&gateway.runtime),
            "a password in the log: {line}"
        );
    }
    let printed = gateway.daemon.cli(&["registry", "device-config"]);
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("[registry.mirrors]"), "{printed}");
    assert!(!printed.contains(&gateway.runtime), "{printed}");

    // The build pushes a signed plugin to the gateway, as its own repository.
    let device = Daemon::start_with(Options {
        extra_config: format!(
            "credentials = {:?}\nca-file = {:?}\n\n[registry.mirrors]\n\"{UPSTREAM}\" = \"{registry}\"\n",
            device_copy(&reply, "credentials-file"),
            device_copy(&reply, "ca-file"),
        ),
        ..Options::default()
    });
    let wasm = plugin_wasm("counter");
    let digest = gateway.push_plugin(&device, &wasm, "plugins/counter:1.0");

    // The device asks for the upstream name; the gateway answers.
    let installed = device
        .cli_json(&[
            "plugin",
            "install",
            &format!("oci://{UPSTREAM}/plugins/counter:1.0"),
        ])
        .unwrap_or_else(|err| panic!("install through the mirror: {err}\n{}", device.daemon_log()));
    assert_eq!(installed["name"], "counter", "{installed}");
    assert_eq!(
        device.call("counter", "increment", "null").unwrap()["count"],
        1
    );
    let plugins = device.cli_json(&["plugin", "list"]).unwrap();
    let counter = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["name"] == "counter")
        .unwrap();
    assert_eq!(
        counter["digest"],
        harness::site_registry::sha256(&std::fs::read(&wasm).unwrap()),
        "not the pushed component: {counter}"
    );
    // By digest, too (a reinstall of the same digest is a no-op reply).
    device
        .cli_json(&[
            "plugin",
            "install",
            &format!("oci://{UPSTREAM}/plugins/counter@{digest}"),
        ])
        .unwrap_or_else(|err| panic!("install by digest through the mirror: {err}"));

    // With a wrong login the gateway refuses the device, which says whose
    // login to check and keeps what it runs.
    let mut device = device;
    let wrong = device.root().join("wrong.toml");
    write_owner_only(
        &wrong,
        &format!("[registries.\"{registry}\"]\nusername = \"runtime\"\npassword = \"wrong\"\n"),
    );
    let config = std::fs::read_to_string(device.root().join("cairn.toml")).unwrap();
    let credentials_line = config
        .lines()
        .find(|line| line.starts_with("credentials = "))
        .unwrap();
    std::fs::write(
        device.root().join("cairn.toml"),
        config.replace(credentials_line, &format!("credentials = {wrong:?}")),
    )
    .unwrap();
    device.restart();
    device.assert_install_refused(
        &format!("oci://{UPSTREAM}/plugins/counter:1.0"),
        &format!("counter:1.0 (through the mirror {registry}): registry {registry} refused access"),
    );
    assert_eq!(device.call("counter", "get", "null").unwrap()["count"], 1);
}

/// Copies a file `device-config` wrote to where a device keeps it (owner-only).
fn device_copy(reply: &serde_json::Value, key: &str) -> std::path::PathBuf {
    let from = std::path::PathBuf::from(reply[key].as_str().unwrap());
    let to = std::env::temp_dir().join(format!(
        "cairn-device-{}-{}",
        std::process::id(),
        from.file_name().unwrap().to_string_lossy()
    ));
    write_owner_only(&to, &std::fs::read_to_string(&from).unwrap());
    to
}

/// Unmounts a file system when dropped (after the registry on it stopped).
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The registry's volume fills up during an upload: the push fails, the
/// registry keeps serving what it has, a publish of what never arrived is a
/// clear error, and once space is freed pushes work again.
#[test]
fn a_full_disk_during_an_upload_fails_the_push_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&storage)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a 4 MiB tmpfs needs root");
    let _unmount = Mounted(storage.clone());
    let gateway = Gateway::start_in(dir, "");
    let kept = gateway.publish("apps/web", "1", "production");

    // 6 MiB into a 4 MiB volume.
    let big = vec![7u8; 6 * 1024 * 1024];
    let login = ("build", gateway.build.as_str());
    let (code, answer) = upload_blob(&gateway.ca, &gateway.base, login, "apps/web", &big);
    assert!(
        code >= 500 || code == 0,
        "a push larger than the disk: {code} {answer}"
    );

    // Nothing lost: the registry still runs and serves what it had.
    let after = status(&gateway.daemon);
    assert_eq!(after["running"], true, "{after}");
    gateway.pulls("apps/web", &kept).unwrap();
    let refused = gateway
        .daemon
        .call(
            "registry",
            "publish",
            r#"{"repository":"apps/web","tag":"2","environment":"production"}"#,
        )
        .unwrap_err();
    assert!(refused.contains("not-found"), "{refused}");
    let artifacts = gateway
        .daemon
        .call("registry", "artifacts", "null")
        .unwrap();
    assert_eq!(artifacts.as_array().unwrap().len(), 1, "{artifacts}");

    // docker-registry keeps a failed upload's bytes under `_uploads` for a
    // week: the disk stays full until a prune removes them (the registry is
    // read-only then, so no upload is in progress).
    let uploads = storage.join("docker/registry/v2/repositories/apps/web/_uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
    let started_ms = status(&gateway.daemon)["last-prune"]["started-ms"]
        .as_u64()
        .unwrap_or(0);
    gateway.daemon.call("registry", "prune", "null").unwrap();
    let outcome = gateway.wait_pruned(started_ms + 1);
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["uploads-freed"]["blobs"], 1, "{outcome}");
    assert!(
        outcome["uploads-freed"]["bytes"].as_u64().unwrap() > 1024 * 1024,
        "{outcome}"
    );
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    gateway.pulls("apps/web", &kept).unwrap();
    gateway.publish("apps/web", "3", "production");
    let smoke = gateway.daemon.call("registry", "smoke", "null").unwrap();
    assert_eq!(smoke["ok"], true, "{smoke}");
}
