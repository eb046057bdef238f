//! The baseline: the same prune done by hand with `curl` and
//! `docker-registry garbage-collect` on a copy of the store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Gateway, REGISTRY, curl, free_port};

pub(super) fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
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

pub(super) struct ManualPrune {
    pub(super) total: Duration,
    pub(super) read_only: Duration,
    pub(super) blobs_freed: u64,
    pub(super) bytes_freed: u64,
}

/// The prune an operator would do by hand on a copy of the store: the same
/// TLS, logins and manifests to delete, on a second port.
pub(super) fn prune_by_hand(
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
