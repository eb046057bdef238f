//! Resource use and OOM kills, read from the container's cgroup (v1, as
//! containerd lays it out, or the unified v2 hierarchy).

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// What the cgroup says about a container.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: u64,
    pub memory_limit: Option<u64>,
    pub cpu_nanos: u64,
    pub pids: u64,
}

fn cgroups_path(spec: &serde_json::Value) -> Option<String> {
    spec.get("linux")?
        .get("cgroupsPath")?
        .as_str()
        .map(|path| path.trim_start_matches('/').to_string())
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

fn v1(controller: &str, group: &str, file: &str) -> PathBuf {
    Path::new(ROOT).join(controller).join(group).join(file)
}

/// The container's usage; `None` when its cgroup cannot be read.
pub fn usage(spec: &serde_json::Value) -> Option<Usage> {
    let group = cgroups_path(spec)?;
    if unified() {
        let dir = Path::new(ROOT).join(&group);
        let cpu = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let micros = cpu
            .lines()
            .find_map(|line| line.strip_prefix("usage_usec "))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0);
        return Some(Usage {
            memory_bytes: read_u64(&dir.join("memory.current"))?,
            memory_limit: read_u64(&dir.join("memory.max")),
            cpu_nanos: micros.saturating_mul(1000),
            pids: read_u64(&dir.join("pids.current")).unwrap_or(0),
        });
    }
    // v1 reports "no limit" as a huge number rounded to the page size.
    let limit =
        read_u64(&v1("memory", &group, "memory.limit_in_bytes")).filter(|limit| *limit < (1 << 60));
    Some(Usage {
        memory_bytes: read_u64(&v1("memory", &group, "memory.usage_in_bytes"))?,
        memory_limit: limit,
        cpu_nanos: read_u64(&v1("cpuacct", &group, "cpuacct.usage")).unwrap_or(0),
        pids: read_u64(&v1("pids", &group, "pids.current")).unwrap_or(0),
    })
}

/// Whether the kernel's OOM killer killed a process of the container (read
/// before its task is deleted, which removes the cgroup).
pub fn oom_killed(spec: &serde_json::Value) -> bool {
    let Some(group) = cgroups_path(spec) else {
        return false;
    };
    let events = if unified() {
        Path::new(ROOT).join(&group).join("memory.events")
    } else {
        v1("memory", &group, "memory.oom_control")
    };
    std::fs::read_to_string(events).is_ok_and(|text| {
        text.lines().any(|line| {
            line.strip_prefix("oom_kill ")
                .and_then(|count| count.trim().parse::<u64>().ok())
                .is_some_and(|count| count > 0)
        })
    })
}

/// A cgroup limit file of the container (the tests read the limits back).
#[cfg(test)]
pub fn limit_file(spec: &serde_json::Value, controller: &str, file: &str) -> Option<String> {
    let group = cgroups_path(spec)?;
    let path = if unified() {
        Path::new(ROOT).join(group).join(file)
    } else {
        v1(controller, &group, file)
    };
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}
