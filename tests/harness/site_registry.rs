//! The site registry plugin under test: its policy, `curl` against the
//! registry it serves (trusting only its device CA, logins on stdin), images
//! pushed by hand, and its status.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Daemon, plugin_wasm};

pub const WAIT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The health plugin, allowed to probe the registry's port.
pub fn health_policy(port: u16) -> String {
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

/// The registry plugin's policy (keep = 2); `extra` adds `[config]` lines.
pub fn policy(state: &Path, storage: &Path, port: u16, extra: &str) -> String {
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
{extra}

[grants.log]
[grants.kv]
[grants.commands]
call = ["health/add"]
[grants.metrics]
[grants.plugins]
read = true
[grants.timer]
max-timers = 4
[grants.files]
private = ["{state}", "{storage}"]
[grants.process]
max-processes = 2
[[grants.process.allow]]
exe = "/usr/bin/docker-registry"
args = ["serve", "{state}/config.yml"]
[[grants.process.allow]]
exe = "/usr/bin/docker-registry"
args = ["serve", "{state}/config-readonly.yml"]
[[grants.process.allow]]
exe = "/usr/bin/docker-registry"
args = ["garbage-collect", "{state}/config.yml"]
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
pub fn curl_status(ca: &Path, url: &str, login: Option<(&str, &str)>) -> u16 {
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
pub fn curl(ca: &Path, login: (&str, &str), args: &[&str], body: &[u8]) -> (u16, String) {
    let config = format!("user = \"{}:{}\"\n", login.0, login.1);
    curl_configured(ca, &config, args, body)
}

/// `curl` with `Authorization: Bearer <token>` on stdin; (status, headers).
pub fn curl_bearer(ca: &Path, token: &str, args: &[&str], body: &[u8]) -> (u16, String) {
    let config = format!("header = \"Authorization: Bearer {token}\"\n");
    curl_configured(ca, &config, args, body)
}

/// `curl` reading `config` (a login, say) from stdin; (status, headers).
fn curl_configured(ca: &Path, config: &str, args: &[&str], body: &[u8]) -> (u16, String) {
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

/// Uploads `blob` to `repository` (a POST for an upload, a PUT of the
/// bytes); the status and headers of the PUT.
pub fn upload_blob(
    ca: &Path,
    base: &str,
    login: (&str, &str),
    repository: &str,
    blob: &[u8],
) -> (u16, String) {
    let start = format!("{base}/v2/{repository}/blobs/uploads/");
    let (status, headers) = curl(ca, login, &["-X", "POST", &start], b"");
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
    let content_type = "Content-Type: application/octet-stream";
    curl(ca, login, &["-X", "PUT", "-H", content_type, &url], blob)
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes a one-layer image as `repository:tag` with the `build` login;
/// its manifest digest.
pub fn push_image(ca: &Path, base: &str, build: &str, repository: &str, tag: &str) -> String {
    let login = ("build", build);
    let config = format!("{{\"image\":\"{repository}:{tag}\"}}").into_bytes();
    let layer = format!("layer of {repository}:{tag}\n").into_bytes();
    for blob in [&config, &layer] {
        let (status, headers) = upload_blob(ca, base, login, repository, blob);
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

pub fn status(daemon: &Daemon) -> Value {
    daemon.call("registry", "status", "null").unwrap()
}

pub fn wait_ready(daemon: &Daemon) -> Value {
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

pub fn passwords(state: &Path) -> (String, String) {
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(state.join("credentials.json")).unwrap()).unwrap();
    (
        credentials["build"].as_str().unwrap().to_string(),
        credentials["runtime"].as_str().unwrap().to_string(),
    )
}

pub fn cmdline(pid: u64) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ")
}

/// Stops the registry (and a garbage collector) the plugin started from the
/// state directory given when the test ends, however it ends:
/// the daemon's processes outlive a daemon killed by the harness.
pub struct StopRegistry(pub String);

impl Drop for StopRegistry {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-f", &format!("docker-registry .* {}/config", self.0)])
            .status();
    }
}

/// `GET` (or `HEAD`) as `login`; (status, body).
pub fn curl_get(ca: &Path, login: (&str, &str), method: &str, url: &str) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("curl")
        .args(["-s", "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .args(["-K", "-", "-X", method])
        .args(if method == "HEAD" { &["-I"][..] } else { &[][..] })
        .args([
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            url,
        ])
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
    let out = child.wait_with_output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (status, std::fs::read(body.path()).unwrap_or_default())
}

/// Pulls `repository@digest` as `login`: the manifest and every blob it
/// names, each checked against its digest. `Err` says what is missing.
pub fn pull(
    ca: &Path,
    base: &str,
    login: (&str, &str),
    repository: &str,
    digest: &str,
) -> Result<(), String> {
    let url = format!("{base}/v2/{repository}/manifests/{digest}");
    let (status, manifest) = curl_get(ca, login, "GET", &url);
    if status != 200 {
        return Err(format!("{repository}@{digest}: {status}"));
    }
    if sha256(&manifest) != digest {
        return Err(format!(
            "{repository}@{digest}: the manifest does not match"
        ));
    }
    let document: Value = serde_json::from_slice(&manifest).map_err(|err| err.to_string())?;
    let blobs = std::iter::once(&document["config"])
        .chain(document["layers"].as_array().into_iter().flatten())
        .filter_map(|blob| blob["digest"].as_str());
    for blob in blobs {
        let (status, bytes) = curl_get(
            ca,
            login,
            "GET",
            &format!("{base}/v2/{repository}/blobs/{blob}"),
        );
        if status != 200 || sha256(&bytes) != blob {
            return Err(format!("{repository}@{digest}: blob {blob}: {status}"));
        }
    }
    Ok(())
}

/// A gateway running the registry plugin, and what a test needs to reach it.
pub struct Gateway {
    pub daemon: Daemon,
    _dir: tempfile::TempDir,
    _stop: StopRegistry,
    pub ca: std::path::PathBuf,
    pub base: String,
    pub port: u16,
    pub state: std::path::PathBuf,
    pub build: String,
    pub runtime: String,
}

impl Gateway {
    pub fn start(extra: &str) -> Gateway {
        Gateway::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// A gateway whose state and storage are `dir/state` and `dir/storage`
    /// (the caller may have prepared them, e.g. mounted a small file system).
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Gateway {
        Gateway::start_on(Daemon::start(), dir, extra, "")
    }

    /// A gateway with token auth: the daemon's HTTP listener serves the
    /// plugin's token service at `/registry/token`; its URL is the realm.
    pub fn start_with_tokens(extra: &str) -> (Gateway, String) {
        let daemon = Daemon::start_with(super::Options {
            extra_config: "[listeners.http]\naddress = \"127.0.0.1:0\"\n".into(),
            ..super::Options::default()
        });
        let realm = format!("http://{}/registry/token", daemon.http_address());
        let extra = format!("token-realm = \"{realm}\"\n{extra}");
        let grant = "[grants.http-server]\nroutes = [\"/registry\"]\n";
        let gateway = Gateway::start_on(daemon, tempfile::tempdir().unwrap(), &extra, grant);
        (gateway, realm)
    }

    /// A gateway on `daemon` (its state and storage in `dir`); `grants` adds
    /// policy tables.
    pub fn start_on(daemon: Daemon, dir: tempfile::TempDir, extra: &str, grants: &str) -> Gateway {
        let state = dir.path().join("state");
        let storage = dir.path().join("storage");
        let port = free_port();
        let stop = StopRegistry(state.display().to_string());
        let extra = format!("health-plugin = \"\"\n{extra}");
        let policy = format!("{}{grants}", policy(&state, &storage, port, &extra));
        daemon.write_policy("registry", &policy);
        daemon.install(&plugin_wasm("registry")).unwrap();
        wait_ready(&daemon);
        let (build, runtime) = passwords(&state);
        Gateway {
            daemon,
            ca: state.join("tls/ca.pem"),
            base: format!("https://localhost:{port}"),
            port,
            state: state.clone(),
            build,
            runtime,
            _dir: dir,
            _stop: stop,
        }
    }

    /// `HOST:PORT` of the registry, as devices name it.
    pub fn registry(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// A credentials file (the host's format) with the `runtime` login.
    pub fn runtime_login(&self) -> String {
        format!(
            "[registries.\"{}\"]\nusername = \"runtime\"\npassword = \"{}\"\n",
            self.registry(),
            self.runtime
        )
    }

    /// A device that trusts the gateway's CA and logs in as `runtime`.
    pub fn device(&self) -> Daemon {
        Daemon::start_with(super::Options {
            extra_config: format!("ca-file = {:?}\n", self.ca),
            registry_credentials: Some(self.runtime_login()),
            ..super::Options::default()
        })
    }

    /// Pushes `repository:tag` and publishes it for `environment`; its digest.
    pub fn publish(&self, repository: &str, tag: &str, environment: &str) -> String {
        let digest = push_image(&self.ca, &self.base, &self.build, repository, tag);
        let request = json!({
            "repository": repository, "tag": tag, "environment": environment, "digest": digest,
        });
        self.daemon
            .call("registry", "publish", &request.to_string())
            .unwrap();
        // Publication times order retention; keep them apart.
        std::thread::sleep(Duration::from_millis(3));
        digest
    }

    /// `cairn plugin push` of `wasm` to `repository:tag` on this gateway with
    /// the `build` login, signed with `signer`'s `dev` key; the digest.
    pub fn push_plugin(&self, signer: &Daemon, wasm: &Path, repository_tag: &str) -> String {
        let registry = format!("localhost:{}", self.port);
        let login = signer.root().join("build.toml");
        super::write_owner_only(
            &login,
            &format!(
                "[registries.\"{registry}\"]\nusername = \"build\"\npassword = \"{}\"\n",
                self.build
            ),
        );
        let key = signer.root().join("dev.key");
        let pushed = signer
            .cli_json(&[
                "plugin",
                "push",
                wasm.to_str().unwrap(),
                &format!("{registry}/{repository_tag}"),
                "--key",
                key.to_str().unwrap(),
                "--credentials",
                login.to_str().unwrap(),
                "--ca-file",
                self.ca.to_str().unwrap(),
            ])
            .unwrap();
        pushed["digest"].as_str().unwrap().to_string()
    }

    pub fn pulls(&self, repository: &str, digest: &str) -> Result<(), String> {
        let login = ("runtime", self.runtime.as_str());
        pull(&self.ca, &self.base, login, repository, digest)
    }

    pub fn manifest_status(&self, repository: &str, digest: &str) -> u16 {
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.base);
        curl_get(&self.ca, ("runtime", &self.runtime), "GET", &url).0
    }

    /// Waits for the running prune to end; the last prune's outcome.
    pub fn wait_pruned(&self, started_ms: u64) -> Value {
        let mut last = Value::Null;
        let done = self.daemon.eventually(Duration::from_secs(90), || {
            last = status(&self.daemon);
            last["maintenance"].is_null()
                && last["last-prune"]["started-ms"].as_u64() >= Some(started_ms)
        });
        assert!(
            done,
            "the prune did not finish: {last}\n{}",
            self.daemon.daemon_log()
        );
        last["last-prune"].clone()
    }
}
