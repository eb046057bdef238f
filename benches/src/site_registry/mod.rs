//! The `registry` plugin as a site gateway: pruning a store of 3
//! repositories × 40 artifacts (time, bytes freed, time the registry refuses
//! pushes), publishing an artifact, and deploying a plugin by digest through
//! the gateway as a device's mirror. The same operations are done by hand in
//! the same run — `curl` against a second `docker-registry` on a copy of the
//! same store, stopped, restarted read-only, `docker-registry garbage-collect`
//! and restarted — as the baseline.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, cli, install_signed, prepare_root, start};
use crate::stats::median_p99;

mod by_hand;
mod deploy;

const REPOSITORIES: usize = 3;
const ARTIFACTS: usize = 40;
const LAYER_BYTES: usize = 256 * 1024;
const KEEP: usize = 3;
const DEPLOYS: usize = 5;
const UPSTREAM: &str = "registry.upstream.invalid:5000";
const REGISTRY: &str = "/usr/bin/docker-registry";

pub fn run(cairn: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gateway = Gateway::start(cairn, dir.path())?;
    let ca = gateway.state.join("tls/ca.pem");
    let build = ("build", gateway.password("build")?);
    let runtime = ("runtime", gateway.password("runtime")?);

    // Fill the store; time each publish and its by-hand equivalent (finding
    // the digest a tag points at, which is what recording it needs).
    let mut publish = Vec::new();
    let mut by_hand = Vec::new();
    for n in 0..ARTIFACTS {
        for r in 0..REPOSITORIES {
            let repository = format!("apps/app{r}");
            let tag = format!("build-{n}");
            let digest = push_image(&ca, &gateway.base, &build, &repository, &tag, n * 7 + r)?;
            let started = Instant::now();
            gateway.cli(&[
                "registry",
                "publish",
                &format!("{repository}:{tag}"),
                "--environment",
                &format!("env{r}"),
                "--digest",
                &digest,
            ])?;
            publish.push(started.elapsed());
            let started = Instant::now();
            let url = format!("{}/v2/{repository}/manifests/{tag}", gateway.base);
            let (status, headers) = curl(&ca, &runtime, &["-I", "-H", OCI_ACCEPT, &url], &[])?;
            anyhow::ensure!(
                status == 200 && headers.contains(&digest),
                "HEAD {url}: {status}"
            );
            by_hand.push(started.elapsed());
        }
    }

    let plan: Value = serde_json::from_str(&gateway.cli(&["--json", "registry", "retention"])?)?;
    let deletions: Vec<(String, String)> = plan["delete"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|gone| {
            (
                gone["repository"].as_str().unwrap_or("").to_string(),
                gone["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let manual_storage = dir.path().join("storage-by-hand");
    by_hand::copy_tree(&gateway.storage, &manual_storage)?;

    let started = Instant::now();
    let outcome: Value =
        serde_json::from_str(&gateway.cli(&["--json", "registry", "prune", "--wait"])?)?;
    let cairn_prune = started.elapsed();
    anyhow::ensure!(outcome["ok"] == true, "prune failed: {outcome}");
    let manual = by_hand::prune_by_hand(&gateway, &manual_storage, &deletions, &build)?;

    println!(
        "\n### Site registry: prune of {REPOSITORIES} repositories × {ARTIFACTS} artifacts (keep {KEEP} per environment, {} KiB layers)\n",
        LAYER_BYTES / 1024
    );
    println!(
        "| | manifests deleted | total time | pushes refused for | blobs freed | bytes freed |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| **`cairn registry prune --wait`** | {} | {:.2} s | {:.2} s | {} | {:.1} MiB |",
        outcome["manifests-deleted"],
        cairn_prune.as_secs_f64(),
        outcome["read-only-ms"].as_f64().unwrap_or(0.0) / 1000.0,
        outcome["blobs-freed"],
        outcome["bytes-freed"].as_f64().unwrap_or(0.0) / 1048576.0,
    );
    println!(
        "| by hand: `curl -X DELETE` each, restart read-only, `garbage-collect`, restart | {} | {:.2} s | {:.2} s | {} | {:.1} MiB |",
        deletions.len(),
        manual.total.as_secs_f64(),
        manual.read_only.as_secs_f64(),
        manual.blobs_freed,
        manual.bytes_freed as f64 / 1048576.0,
    );
    println!(
        "\nratio (total): {:.2}×; cairn's prune alone (its own clock): {:.2} s\n",
        cairn_prune.as_secs_f64() / manual.total.as_secs_f64(),
        outcome["duration-ms"].as_f64().unwrap_or(0.0) / 1000.0
    );

    let (publish_median, publish_p99) = median_p99(&mut publish);
    let (hand_median, hand_p99) = median_p99(&mut by_hand);
    println!(
        "| publish ({} artifacts) | median | p99 | ratio (median) |",
        publish.len()
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| `cairn registry publish` (resolve the tag, check the digest, record it) | {:.1} ms | {:.1} ms | {:.1}× |",
        publish_median / 1000.0,
        publish_p99 / 1000.0,
        publish_median / hand_median
    );
    println!(
        "| by hand: `curl -I` the tag for its digest | {:.1} ms | {:.1} ms | 1× |",
        hand_median / 1000.0,
        hand_p99 / 1000.0
    );

    deploy::deploy_by_digest(cairn, dir.path(), &gateway, &ca, &runtime)?;
    Ok(())
}

const OCI_ACCEPT: &str = "Accept: application/vnd.oci.image.manifest.v1+json";

/// A daemon running the registry plugin on a fresh store.
struct Gateway {
    _daemon: Daemon,
    root: PathBuf,
    state: PathBuf,
    storage: PathBuf,
    port: u16,
    base: String,
    cairn: PathBuf,
}

impl Gateway {
    fn start(cairn: &Path, dir: &Path) -> anyhow::Result<Gateway> {
        let root = dir.join("gateway");
        let policies = root.join("policies");
        std::fs::create_dir_all(&policies)?;
        let state = dir.join("state");
        let storage = dir.join("storage");
        let port = free_port()?;
        std::fs::write(
            policies.join("registry.toml"),
            policy(&state, &storage, port),
        )?;
        prepare_root(cairn, &root, &policies, "")?;
        let (daemon, _) = start(cairn, &root)?;
        install_signed(cairn, &root, "registry")?;
        let gateway = Gateway {
            _daemon: daemon,
            root,
            state,
            storage,
            port,
            base: format!("https://localhost:{port}"),
            cairn: cairn.to_path_buf(),
        };
        let started = Instant::now();
        loop {
            let status: Value =
                serde_json::from_str(&gateway.cli(&["--json", "registry", "status"])?)?;
            if status["ready"] == true {
                return Ok(gateway);
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the registry did not become ready: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        cli(&self.cairn, &self.root.join("admin.sock"), args)
    }

    fn password(&self, user: &str) -> anyhow::Result<String> {
        let credentials: Value =
            serde_json::from_slice(&std::fs::read(self.state.join("credentials.json"))?)?;
        credentials[user]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no {user} credential"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // The daemon's kill leaves the registry it supervised running.
        let _ = Command::new("pkill")
            .args(["-f", &format!("docker-registry .*{}", self.state.display())])
            .status();
    }
}

fn policy(state: &Path, storage: &Path, port: u16) -> String {
    let (state, storage) = (state.display(), storage.display());
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
environments = ["env0", "env1", "env2"]
keep = {KEEP}
health-plugin = ""
mirror-for = ["{UPSTREAM}"]
[grants.log]
level = "warn"
[grants.kv]
quota = "8MiB"
[grants.commands]
call = []
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
exe = "{REGISTRY}"
args = ["serve", "{state}/config.yml"]
[[grants.process.allow]]
exe = "{REGISTRY}"
args = ["serve", "{state}/config-readonly.yml"]
[[grants.process.allow]]
exe = "{REGISTRY}"
args = ["garbage-collect", "{state}/config.yml"]
[grants.http-client]
allow = ["https://localhost:{port}"]
allow-private = ["127.0.0.0/8"]
ca-file = "{state}/tls/ca.pem"
timeout = "10s"
"#
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `curl` trusting `ca`, the login on stdin, `body` (if any) from a file;
/// (status, headers and body).
fn curl(
    ca: &Path,
    login: &(&str, String),
    args: &[&str],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let file = tempfile::NamedTempFile::new()?;
    let mut command = Command::new("curl");
    command
        .args(["-s", "-D", "-", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg("--cacert")
        .arg(ca)
        .args(["-K", "-"]);
    if !body.is_empty() {
        std::fs::write(file.path(), body)?;
        command
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()));
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("user = \"{}:{}\"\n", login.0, login.1).as_bytes())?;
    }
    let out = String::from_utf8_lossy(&child.wait_with_output()?.stdout).into_owned();
    let status = out[out.len().saturating_sub(3)..].parse().unwrap_or(0);
    Ok((status, out))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes a one-layer image whose layer is `LAYER_BYTES` of bytes unique to
/// `seed`; its manifest digest.
fn push_image(
    ca: &Path,
    base: &str,
    login: &(&str, String),
    repository: &str,
    tag: &str,
    seed: usize,
) -> anyhow::Result<String> {
    let config = format!("{{\"image\":\"{repository}:{tag}\"}}").into_bytes();
    let mut state = seed as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
    let layer: Vec<u8> = (0..LAYER_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for blob in [&config, &layer] {
        let url = format!("{base}/v2/{repository}/blobs/uploads/");
        let (status, out) = curl(ca, login, &["-X", "POST", &url], &[])?;
        anyhow::ensure!(status == 202, "upload to {url}: {out}");
        let location = out
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_string())
            })
            .ok_or_else(|| anyhow::anyhow!("no upload location: {out}"))?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", sha256(blob));
        let content_type = "Content-Type: application/octet-stream";
        let (status, out) = curl(ca, login, &["-X", "PUT", "-H", content_type, &url], blob)?;
        anyhow::ensure!(status == 201, "upload to {url}: {out}");
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let url = format!("{base}/v2/{repository}/manifests/{tag}");
    let content_type = "Content-Type: application/vnd.oci.image.manifest.v1+json";
    let (status, out) = curl(
        ca,
        login,
        &["-X", "PUT", "-H", content_type, &url],
        &manifest,
    )?;
    anyhow::ensure!(status == 201, "manifest {url}: {out}");
    Ok(sha256(&manifest))
}
