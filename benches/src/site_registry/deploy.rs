//! Deploying a plugin by digest through the gateway as a device's mirror,
//! against fetching the same manifest and layer with `curl`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use super::{DEPLOYS, Gateway, UPSTREAM, curl, sha256};
use crate::daemon::{cli, prepare_root, start};
use crate::stats::median_p99;

/// A device using the gateway as its mirror installs a signed plugin by
/// digest (resolve, signatures, download, verify, compile, start), against
/// fetching the same manifest and layer by digest with `curl`.
pub(super) fn deploy_by_digest(
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
