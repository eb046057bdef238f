//! `cairn-bench`: the host's benchmarks, printed as Markdown.
//!
//! Run with `scripts/bench` (which builds the release binary and the plugins
//! first). Every measurement that has a native equivalent runs it in the same
//! process and run, so the ratio is meaningful on a noisy machine.

mod containers;
mod daemon;
mod dockyard;
mod http;
mod inprocess;
mod instantiate;
mod mqtt;
mod recipes;
mod registry;
mod site_registry;
mod stats;

use std::path::PathBuf;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn main() -> anyhow::Result<()> {
    let cairn = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/cairn"));
    println!("{}", stats::machine());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // `CAIRN_BENCH=registry,daemon` runs only the named groups.
    let only = std::env::var("CAIRN_BENCH").unwrap_or_default();
    let wanted = |group: &str| only.is_empty() || only.split(',').any(|g| g.trim() == group);
    if wanted("instantiate") {
        runtime.block_on(instantiate::run())?;
    }
    if wanted("inprocess") {
        runtime.block_on(inprocess::run())?;
    }
    if wanted("registry") {
        runtime.block_on(registry::run())?;
    }
    if wanted("daemon") {
        daemon::run(&cairn)?;
    }
    if wanted("http") {
        http::run(&cairn)?;
    }
    if wanted("mqtt") {
        runtime.block_on(mqtt::run(&cairn))?;
    }
    if wanted("recipes") {
        recipes::run(&cairn)?;
    }
    if wanted("site-registry") {
        site_registry::run(&cairn)?;
    }
    // Need root and containerd; run with `CAIRN_BENCH=containers` or `dockyard`.
    if only.split(',').any(|g| g.trim() == "containers") {
        runtime.block_on(containers::run(&cairn))?;
    }
    if only.split(',').any(|g| g.trim() == "dockyard") {
        dockyard::run(&cairn)?;
    }
    Ok(())
}
