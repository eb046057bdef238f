//! The process tests' fixture: a daemon with `process-probe` installed, and
//! what /proc says about processes.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{Daemon, plugin_wasm};

pub const PROBE: &str = "process-probe";
pub const WAIT: Duration = Duration::from_secs(10);

/// A daemon with the probe installed; kills (by process group) every process
/// spawned through it when dropped, so a failing test leaves nothing behind.
pub struct Fixture {
    pub daemon: Daemon,
    pids: std::cell::RefCell<Vec<u32>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for pid in self.pids.borrow().iter() {
            // SAFETY: signalling process groups this test started.
            unsafe { libc::kill(-(*pid as libc::pid_t), libc::SIGKILL) };
        }
    }
}

pub fn fixture() -> Fixture {
    let daemon = Daemon::start();
    daemon.install(&plugin_wasm("process_probe")).unwrap();
    Fixture {
        daemon,
        pids: Default::default(),
    }
}

impl Fixture {
    pub fn call(&self, command: &str, payload: Value) -> Result<Value, String> {
        self.daemon.call(PROBE, command, &payload.to_string())
    }

    /// Spawns; Ok((id, pid)).
    pub fn spawn(&self, spec: Value) -> Result<(u64, u32), String> {
        let id = self.call("spawn", spec)?["id"].as_u64().unwrap();
        let pid = self.info(id)["pid"].as_u64().unwrap() as u32;
        self.pids.borrow_mut().push(pid);
        Ok((id, pid))
    }

    pub fn sleeper(&self, name: &str) -> (u64, u32) {
        self.spawn(json!({"name": name, "exe": "/usr/bin/sleep", "args": ["100"]}))
            .unwrap()
    }

    pub fn info(&self, id: u64) -> Value {
        self.call("info", json!({ "id": id })).unwrap()
    }

    pub fn stop(&self, id: u64, grace_ms: u64) -> Value {
        self.call("stop", json!({"id": id, "grace_ms": grace_ms}))
            .unwrap()
    }

    /// The exit event for `name`, waiting for it.
    pub fn exit_event(&self, name: &str) -> Value {
        let mut found = None;
        self.daemon.eventually(WAIT, || {
            let exits = self.call("exits", json!(null)).unwrap();
            found = exits
                .as_array()
                .unwrap()
                .iter()
                .find(|exit| exit["name"] == name)
                .cloned();
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no exit event for {name}:\n{}", self.daemon.daemon_log()))
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat[stat.rfind(')')? + 1..].to_string();
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z" {
            members.push(pid);
        }
    }
    members
}

/// A field of /proc/PID/status.
pub fn status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

pub fn gone(daemon: &Daemon, pid: u32) -> bool {
    daemon.eventually(WAIT, || !alive(pid))
}
