//! The `registry` plugin as a site gateway: pruning a store of 3
//! repositories × 40 artifacts (time, bytes freed, time the registry refuses
//! pushes), publishing an artifact, and deploying a plugin by digest through
//! the gateway as a device's mirror. The same operations are done by hand in
//! the same run — `curl` against a second `docker-registry` on a copy of the
//! same store, stopped, restarted read-only, `docker-registry garbage-collect`
//! and restarted — as the baseline.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, cli, install_signed, prepare_root, start};
use crate::stats::median_p99;

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
    copy_tree(&gateway.storage, &manual_storage)?;

    let started = Instant::now();
    let outcome: Value =
        serde_json::from_str(&gateway.cli(&["--json", "registry", "prune", "--wait"])?)?;
    let cairn_prune = started.elapsed();
    anyhow::ensure!(outcome["ok"] == true, "prune failed: {outcome}");
    let manual = prune_by_hand(&gateway, &manual_storage, &deletions, &build)?;

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

    deploy_by_digest(cairn, dir.path(), &gateway, &ca, &runtime)?;
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
/// `seed`, each blob in one monolithic POST; its manifest digest.
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

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    anyhow::ensure!(status.success(), "cp -a failed");
    Ok(())
}

/// (blobs, bytes) in a docker-registry filesystem store.
fn blob_usage(storage: &Path) -> (u64, u64) {
    let mut usage = (0, 0);
    let root = storage.join("docker/registry/v2/blobs");
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect()
    };
    for algorithm in dirs(&root) {
        for prefix in dirs(&algorithm) {
            for blob in dirs(&prefix) {
                if let Ok(meta) = std::fs::metadata(blob.join("data")) {
                    usage.0 += 1;
                    usage.1 += meta.len();
                }
            }
        }
    }
    usage
}

struct ManualPrune {
    total: Duration,
    read_only: Duration,
    blobs_freed: u64,
    bytes_freed: u64,
}

/// The prune an operator would do by hand on a copy of the store: the same
/// TLS, logins and manifests to delete, on a second port.
fn prune_by_hand(
    gateway: &Gateway,
    storage: &Path,
    deletions: &[(String, String)],
    login: &(&str, String),
) -> anyhow::Result<ManualPrune> {
    let port = free_port()?;
    let dir = storage.with_extension("config");
    std::fs::create_dir_all(&dir)?;
    let mut configs = Vec::new();
    for name in ["config.yml", "config-readonly.yml"] {
        let text = std::fs::read_to_string(gateway.state.join(name))?
            .replace(
                &format!("\"{}\"", gateway.storage.display()),
                &format!("\"{}\"", storage.display()),
            )
            .replace(
                &format!("127.0.0.1:{}", gateway.port),
                &format!("127.0.0.1:{port}"),
            );
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        configs.push(path);
    }
    let ca = gateway.state.join("tls/ca.pem");
    let base = format!("https://localhost:{port}");
    let (blobs_before, bytes_before) = blob_usage(storage);
    let mut registry = Served::start(&configs[0], &ca, &base)?;

    let started = Instant::now();
    for (repository, digest) in deletions {
        let url = format!("{base}/v2/{repository}/manifests/{digest}");
        let (status, out) = curl(&ca, login, &["-X", "DELETE", &url], &[])?;
        anyhow::ensure!(status == 202, "DELETE {url}: {out}");
    }
    let read_only_from = Instant::now();
    registry.stop();
    registry = Served::start(&configs[1], &ca, &base)?;
    let gc = Command::new(REGISTRY)
        .arg("garbage-collect")
        .arg(&configs[0])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(gc.success(), "garbage-collect failed");
    registry.stop();
    let _registry = Served::start(&configs[0], &ca, &base)?;
    let read_only = read_only_from.elapsed();
    let total = started.elapsed();
    let (blobs_after, bytes_after) = blob_usage(storage);
    Ok(ManualPrune {
        total,
        read_only,
        blobs_freed: blobs_before.saturating_sub(blobs_after),
        bytes_freed: bytes_before.saturating_sub(bytes_after),
    })
}

/// A `docker-registry serve` started by hand, up once `/v2/` answers.
struct Served(Child);

impl Served {
    fn start(config: &Path, ca: &Path, base: &str) -> anyhow::Result<Served> {
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let served = Served(child);
        let started = Instant::now();
        loop {
            let status = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(ca)
                .arg(format!("{base}/v2/"))
                .output()?;
            if String::from_utf8_lossy(&status.stdout) == "401" {
                return Ok(served);
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A device using the gateway as its mirror installs a signed plugin by
/// digest (resolve, signatures, download, verify, compile, start), against
/// fetching the same manifest and layer by digest with `curl`.
fn deploy_by_digest(
    cairn: &Path,
    dir: &Path,
    gateway: &Gateway,
    ca: &Path,
    runtime: &(&str, String),
) -> anyhow::Result<()> {
    let config: Value =
        serde_json::from_str(&gateway.cli(&["--json", "registry", "device-config"])?)?;
    let mut installs = Vec::new();
    let mut fetches = Vec::new();
    let mut digest = String::new();
    let registry = format!("localhost:{}", gateway.port);
    for round in 0..DEPLOYS {
        let root = dir.join(format!("device-{round}"));
        let policies = root.join("policies");
        std::fs::create_dir_all(&policies)?;
        std::fs::copy(
            crate::workspace().join("benches/plugin/policy.toml"),
            policies.join("bench.toml"),
        )?;
        let credentials = root.join("site-credentials.toml");
        std::fs::copy(
            config["credentials-file"].as_str().unwrap_or(""),
            &credentials,
        )?;
        std::fs::set_permissions(
            &credentials,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        let extra = format!(
            "[registry]\ncredentials = {:?}\nca-file = {:?}\n[registry.mirrors]\n\"{UPSTREAM}\" = \"{registry}\"\n",
            credentials.display().to_string(),
            config["ca-file"].as_str().unwrap_or(""),
        );
        prepare_root(cairn, &root, &policies, &extra)?;
        if round > 0 {
            // Every device of the run trusts the key the first one pushed with.
            std::fs::copy(dir.join("first-dev.pub"), root.join("dev.pub"))?;
        }
        let (_daemon, _) = start(cairn, &root)?;
        let socket = root.join("admin.sock");
        if round == 0 {
            digest = push_bench_plugin(cairn, &root, &registry, gateway, ca)?;
            std::fs::copy(root.join("dev.pub"), dir.join("first-dev.pub"))?;
        }
        let started = Instant::now();
        cli(
            cairn,
            &socket,
            &[
                "plugin",
                "install",
                &format!("oci://{UPSTREAM}/plugins/bench@{digest}"),
            ],
        )?;
        installs.push(started.elapsed());
    }
    for _ in 0..DEPLOYS {
        let started = Instant::now();
        let url = format!("https://{registry}/v2/plugins/bench/manifests/{digest}");
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"curl -sf --cacert "$1" -K - -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$2""#)
            .arg("sh")
            .arg(ca)
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(format!("user = \"runtime:{}\"\n", runtime.1).as_bytes())?;
                }
                child.wait_with_output()
            })?;
        anyhow::ensure!(
            sha256(&out.stdout) == digest,
            "manifest by digest did not match"
        );
        let manifest: Value = serde_json::from_slice(&out.stdout)?;
        let layer = manifest["layers"][0]["digest"].as_str().unwrap_or("");
        let url = format!("https://{registry}/v2/plugins/bench/blobs/{layer}");
        let (status, _) = curl(ca, runtime, &["-L", &url], &[])?;
        anyhow::ensure!(status == 200, "layer by digest: {status}");
        fetches.push(started.elapsed());
    }
    let (install_median, install_p99) = median_p99(&mut installs);
    let (fetch_median, fetch_p99) = median_p99(&mut fetches);
    println!(
        "\n| deploy a plugin by digest through the gateway ({DEPLOYS} devices) | median | p99 | ratio (median) |"
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| `cairn plugin install oci://{UPSTREAM}/…@sha256:…` via the mirror (resolve, signatures, download, verify, compile, start) | {:.0} ms | {:.0} ms | {:.1}× |",
        install_median / 1000.0,
        install_p99 / 1000.0,
        install_median / fetch_median
    );
    println!(
        "| by hand: `curl` the manifest and the layer by digest | {:.0} ms | {:.0} ms | 1× |",
        fetch_median / 1000.0,
        fetch_p99 / 1000.0
    );
    Ok(())
}

/// Signs and pushes the `bench` plugin to the gateway with the `build` login
/// and `root`'s key; its manifest digest.
fn push_bench_plugin(
    cairn: &Path,
    root: &Path,
    registry: &str,
    gateway: &Gateway,
    ca: &Path,
) -> anyhow::Result<String> {
    let wasm = crate::target_dir().join("wasm32-wasip2/release/bench.wasm");
    let login = root.join("build.toml");
    std::fs::write(
        &login,
        format!(
            "[registries.\"{registry}\"]\nusername = \"build\"\npassword = \"{}\"\n",
            gateway.password("build")?
        ),
    )?;
    std::fs::set_permissions(&login, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let pushed: Value = serde_json::from_str(&cli(
        cairn,
        &root.join("admin.sock"),
        &[
            "--json",
            "plugin",
            "push",
            &wasm.display().to_string(),
            &format!("{registry}/plugins/bench:1"),
            "--key",
            &root.join("dev.key").display().to_string(),
            "--credentials",
            &login.display().to_string(),
            "--ca-file",
            &ca.display().to_string(),
        ],
    )?)?;
    Ok(pushed["digest"].as_str().unwrap_or("").to_string())
}
