//! Benchmarks of the real daemon process: idle footprint and cold start.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::median_p99;

/// Clock ticks per second that /proc/PID/stat times are expressed in (Linux's USER_HZ).
const USER_HZ: f64 = 100.0;
use crate::workspace;

pub(crate) struct Daemon {
    pub(crate) child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn cli(cairn: &Path, socket: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cairn)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prepares a daemon root: a `dev` signing key and a `cairn.toml` using
/// `policy_dir`, with `extra` (top-level keys first, then tables such as
/// listeners and brokers) before the trusted keys.
pub(crate) fn prepare_root(
    cairn: &Path,
    root: &Path,
    policy_dir: &Path,
    extra: &str,
) -> anyhow::Result<()> {
    let out = Command::new(cairn)
        .args(["key", "generate", "--out"])
        .arg(root.join("dev"))
        .output()?;
    anyhow::ensure!(out.status.success(), "key generate failed");
    std::fs::write(
        root.join("cairn.toml"),
        format!(
            "state-dir = \"state\"\npolicy-dir = \"{}\"\nadmin-socket = \"admin.sock\"\n{extra}\n[trust.keys]\ndev = \"dev.pub\"\n",
            policy_dir.display()
        ),
    )?;
    Ok(())
}

/// Signs a copy of the release build of `crate_name` (e.g. `mqtt_adapter`)
/// with the root's `dev` key and installs it into the daemon running there.
pub(crate) fn install_signed(cairn: &Path, root: &Path, crate_name: &str) -> anyhow::Result<()> {
    let wasm = root.join(format!("{crate_name}.wasm"));
    std::fs::copy(
        crate::target_dir()
            .join("wasm32-wasip2/release")
            .join(format!("{crate_name}.wasm")),
        &wasm,
    )?;
    let socket = root.join("admin.sock");
    let wasm = wasm.to_string_lossy().to_string();
    let key = root.join("dev.key").to_string_lossy().to_string();
    cli(cairn, &socket, &["plugin", "sign", &wasm, "--key", &key])?;
    cli(cairn, &socket, &["plugin", "install", &wasm])?;
    Ok(())
}

pub(crate) fn start(cairn: &Path, root: &Path) -> anyhow::Result<(Daemon, Duration)> {
    let socket = root.join("admin.sock");
    let _ = std::fs::remove_file(&socket);
    let started = Instant::now();
    let child = Command::new(cairn)
        .args(["daemon", "--config"])
        .arg(root.join("cairn.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let daemon = Daemon { child };
    loop {
        if socket.exists()
            && let Ok(list) = cli(cairn, &socket, &["--json", "plugin", "list"])
        {
            let plugins: serde_json::Value = serde_json::from_str(&list)?;
            // Ready once every installed plugin runs (or, before any install, at once).
            let ready = plugins
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["state"] == "running"));
            if ready {
                return Ok((daemon, started.elapsed()));
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// (resident bytes, user+system clock ticks) of a process.
pub(crate) fn footprint(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = fields
        .get(11)
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
    Ok((rss_kib * 1024, ticks))
}

pub fn run(cairn: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    prepare_root(cairn, root, &workspace().join("policies"), "")?;
    let (daemon, _) = start(cairn, root)?;
    for plugin in ["counter", "echo"] {
        install_signed(cairn, root, plugin)?;
    }
    std::thread::sleep(Duration::from_secs(3));
    let (rss_after_install, _) = footprint(daemon.child.id())?;
    drop(daemon);
    // Steady state: what a device runs after a reboot, from the warm cache.
    let (daemon, _) = start(cairn, root)?;
    std::thread::sleep(Duration::from_secs(3));
    let pid = daemon.child.id();
    let (rss, ticks_before) = footprint(pid)?;
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let (_, ticks_after) = footprint(pid)?;
    let cpu_percent = (ticks_after - ticks_before) as f64 / USER_HZ / window.as_secs_f64() * 100.0;
    drop(daemon);

    let mut cold = Vec::new();
    for _ in 0..10 {
        let (daemon, elapsed) = start(cairn, root)?;
        cold.push(elapsed);
        drop(daemon);
    }
    let (cold_median, cold_p99) = median_p99(&mut cold);
    println!("\n## Daemon footprint with the first-party plugins (counter, echo)\n");
    println!("| metric | value |\n|---|---:|");
    println!(
        "| idle RSS, started from the warm cache | {:.1} MB |",
        rss as f64 / 1e6
    );
    println!(
        "| idle RSS right after installing both (compiler pages still resident) | {:.1} MB |",
        rss_after_install as f64 / 1e6
    );
    println!(
        "| idle CPU over {}s | {cpu_percent:.2} % |",
        window.as_secs()
    );
    println!(
        "| cold start to all plugins running (warm cache), median of 10 | {:.1} ms |",
        cold_median / 1000.0
    );
    println!("| cold start, worst of 10 | {:.1} ms |", cold_p99 / 1000.0);
    Ok(())
}
