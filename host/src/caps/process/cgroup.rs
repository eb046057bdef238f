//! cgroup v2 limits: one cgroup per process under `cairn/` in the daemon's own
//! cgroup. Where the unified hierarchy or its controllers are not available to
//! the daemon (cgroup v1 and hybrid systems), [`create`] says why.

use std::fs;
use std::path::{Path, PathBuf};

/// What a spawn asks of cgroups.
#[derive(Debug, Default, Clone, Copy)]
pub struct Limits {
    pub memory_max: Option<u64>,
    /// Thousandths of one CPU.
    pub cpu_max: Option<u32>,
    pub pids_max: Option<u64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.memory_max.is_some() || self.cpu_max.is_some() || self.pids_max.is_some()
    }

    fn controllers(&self) -> Vec<&'static str> {
        let mut needed = Vec::new();
        if self.memory_max.is_some() {
            needed.push("memory");
        }
        if self.cpu_max.is_some() {
            needed.push("cpu");
        }
        if self.pids_max.is_some() {
            needed.push("pids");
        }
        needed
    }
}

/// CPU period written to `cpu.max`, in microseconds.
const CPU_PERIOD: u64 = 100_000;

/// The daemon's cgroup directory in the unified (v2) hierarchy.
fn own_cgroup() -> Result<PathBuf, String> {
    let membership = fs::read_to_string("/proc/self/cgroup")
        .map_err(|err| format!("cannot read /proc/self/cgroup: {err}"))?;
    let relative = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("this system does not use cgroup v2 (no unified hierarchy in /proc/self/cgroup)")?;
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("cannot read /proc/self/mountinfo: {err}"))?;
    let mount = mounts
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            right
                .starts_with("cgroup2 ")
                .then(|| left.split(' ').nth(4).map(str::to_string))?
        })
        .ok_or("no cgroup2 filesystem is mounted")?;
    Ok(Path::new(&mount).join(relative.trim_start_matches('/')))
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|err| format!("writing `{value}` to {}: {err}", path.display()))
}

/// Creates the cgroup `cairn/<name>` with `limits` and returns its directory.
pub fn create(name: &str, limits: &Limits) -> Result<PathBuf, String> {
    let base = own_cgroup()?;
    let offered = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    let offered: Vec<&str> = offered.split_whitespace().collect();
    let needed = limits.controllers();
    if let Some(missing) = needed.iter().find(|c| !offered.contains(c)) {
        return Err(format!(
            "cgroup v2 does not offer the `{missing}` controller to the daemon's cgroup {} (on cgroup v1 or hybrid systems the controllers stay with v1)",
            base.display()
        ));
    }
    let enable: String = needed.iter().map(|c| format!("+{c} ")).collect();
    let enable = enable.trim_end();
    let parent = base.join("cairn");
    if !parent.is_dir() {
        fs::create_dir(&parent)
            .map_err(|err| format!("creating cgroup {}: {err}", parent.display()))?;
    }
    // Controllers must be enabled for the children of both levels; the first
    // fails if the daemon's own cgroup holds processes and is not the root
    // (delegate a cgroup to the daemon and run it in a leaf below it).
    write(&base.join("cgroup.subtree_control"), enable)?;
    write(&parent.join("cgroup.subtree_control"), enable)?;
    let dir = parent.join(name);
    if !dir.is_dir() {
        fs::create_dir(&dir).map_err(|err| format!("creating cgroup {}: {err}", dir.display()))?;
    }
    let applied = (|| {
        if let Some(bytes) = limits.memory_max {
            write(&dir.join("memory.max"), &bytes.to_string())?;
        }
        if let Some(milli) = limits.cpu_max {
            let quota = (u64::from(milli) * CPU_PERIOD / 1000).max(1000);
            write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD}"))?;
        }
        if let Some(pids) = limits.pids_max {
            write(&dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    })();
    if let Err(err) = applied {
        remove(&dir);
        return Err(err);
    }
    Ok(dir)
}

/// Removes a process's cgroup once it is empty (best effort).
pub fn remove(dir: &Path) {
    if let Err(err) = fs::remove_dir(dir) {
        tracing::debug!("removing cgroup {}: {err}", dir.display());
    }
}
