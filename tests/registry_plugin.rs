//! The `registry` plugin runs a real `docker-registry` itself: HTTPS with a
//! certificate from the device CA it makes, htpasswd users it generates, a
//! smoke check (push, pull by digest, delete), credential rotation, a restart
//! after the registry dies, and adoption across a daemon restart. Secrets
//! never reach the log or a process's arguments.

mod harness;

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{Daemon, plugin_wasm};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The health plugin, allowed to probe the registry's port.
fn health_policy(port: u16) -> String {
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
[grants.sockets]
tcp-connect = ["127.0.0.1:{port}"]
resolve = false
[grants.http-client]
allow = ["http://127.0.0.1:1"]
[grants.process]
[[grants.process.allow]]
exe = "/bin/true"
args = []
"#
    )
}

fn policy(state: &Path, storage: &Path, port: u16) -> String {
    let state = state.display();
    format!(
        r#"[plugin]
name = "registry"
signers = ["dev"]

[limits]
call-timeout = "30s"

[config]
state = "{state}"
storage = "{storage}"
listen = "127.0.0.1:{port}"
hostname = "localhost"
tls = "device-ca"
keep = 2

[grants.log]
[grants.kv]
[grants.commands]
call = ["health/add"]
[grants.metrics]
[grants.timer]
max-timers = 2
[grants.files]
private = ["{state}"]
[grants.process]
max-processes = 1
[[grants.process.allow]]
exe = "/usr/bin/docker-registry"
args = ["serve", "{state}/config.yml"]
[grants.http-client]
allow = ["https://localhost:{port}"]
allow-private = ["127.0.0.0/8"]
ca-file = "{state}/tls/ca.pem"
timeout = "10s"
"#,
        storage = storage.display()
    )
}

/// `curl` against the registry trusting only the device CA, the login (if
/// any) passed on stdin; the HTTP status.
fn curl_status(ca: &Path, url: &str, login: Option<(&str, &str)>) -> u16 {
    let mut child = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-K", "-", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let config = login
        .map(|(user, password)| format!("user = \"{user}:{password}\"\n"))
        .unwrap_or_default();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// `curl` with the login on stdin and `body` from a file; (status, headers).
fn curl(ca: &Path, login: (&str, &str), args: &[&str], body: &[u8]) -> (u16, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let mut child = Command::new("curl")
        .args(["-s", "-D", "-", "-o"])
        .arg(file.path().with_extension("out"))
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-K", "-", "--data-binary"])
        .arg(format!("@{}", file.path().display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let config = format!("user = \"{}:{}\"\n", login.0, login.1);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let mut out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    let body = std::fs::read_to_string(file.path().with_extension("out")).unwrap_or_default();
    let _ = std::fs::remove_file(file.path().with_extension("out"));
    out.insert_str(0, &format!("{body}\n"));
    let status = out[out.len().saturating_sub(3)..].parse().unwrap_or(0);
    (status, out)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes a one-layer image as `repository:tag` with the `build` login;
/// its manifest digest.
fn push_image(ca: &Path, base: &str, build: &str, repository: &str, tag: &str) -> String {
    let login = ("build", build);
    let config = format!("{{\"image\":\"{repository}:{tag}\"}}").into_bytes();
    let layer = format!("layer of {repository}:{tag}\n").into_bytes();
    for blob in [&config, &layer] {
        let (status, headers) = curl(
            ca,
            login,
            &[
                "-X",
                "POST",
                &format!("{base}/v2/{repository}/blobs/uploads/"),
            ],
            b"",
        );
        assert_eq!(status, 202, "{headers}");
        let location = headers
            .lines()
            .find_map(|line| {
                line.strip_prefix("Location: ")
                    .or(line.strip_prefix("location: "))
            })
            .unwrap()
            .trim()
            .to_string();
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", sha256(blob));
        let (status, headers) = curl(
            ca,
            login,
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                &url,
            ],
            blob,
        );
        assert_eq!(status, 201, "{headers}");
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let (status, headers) = curl(
        ca,
        login,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            &format!("{base}/v2/{repository}/manifests/{tag}"),
        ],
        &manifest,
    );
    assert_eq!(status, 201, "{headers}");
    sha256(&manifest)
}

fn status(daemon: &Daemon) -> Value {
    daemon.call("registry", "status", "null").unwrap()
}

fn wait_ready(daemon: &Daemon) -> Value {
    let mut last = Value::Null;
    let ready = daemon.eventually(WAIT, || {
        last = status(daemon);
        last["ready"] == true
    });
    assert!(
        ready,
        "the registry never became ready: {last}\n{}",
        daemon.daemon_log()
    );
    last
}

fn passwords(state: &Path) -> (String, String) {
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(state.join("credentials.json")).unwrap()).unwrap();
    (
        credentials["build"].as_str().unwrap().to_string(),
        credentials["runtime"].as_str().unwrap().to_string(),
    )
}

fn cmdline(pid: u64) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ")
}

/// Stops the registry the plugin started when the test ends, however it ends:
/// the daemon's processes outlive a daemon killed by the harness.
struct StopRegistry(String);

impl Drop for StopRegistry {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-f", &format!("serve {}", self.0)])
            .status();
    }
}

#[test]
fn the_registry_is_provisioned_served_over_tls_smoke_checked_and_supervised() {
    let mut daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let storage = dir.path().join("storage");
    let port = free_port();
    let _stop = StopRegistry(state.join("config.yml").display().to_string());
    daemon.write_policy("health", &health_policy(port));
    daemon.install(&plugin_wasm("health")).unwrap();
    daemon.write_policy("registry", &policy(&state, &storage, port));
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
