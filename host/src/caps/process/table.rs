//! Who owns which process, the state file that outlives a daemon crash, exit
//! detection, and stopping.
//!
//! Processes belong to a plugin by name, not to an instance. Each running one
//! is recorded in `<state>/process/table.json` (pid, its start time from
//! /proc/PID/stat, plugin, name), rewritten atomically on every change. A
//! daemon starting after a crash re-adopts every recorded process that still
//! runs (same pid and same start time): it is listed for its plugin again, its
//! exit is detected by polling /proc (the exit status is then unknown) and its
//! output, which goes to files, is followed again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::output::{self, Output};
use super::spawn;
use crate::contract::HostLink;
use crate::contract::bindings::{CapError, Event};

mod recover;

/// Topic of the event a plugin receives when one of its processes exits.
pub const EXITED: &str = "cairn/process/exited";
/// Exited processes kept per plugin for `info` and `list`.
const KEEP_EXITED: usize = 64;
/// How long an exit event waits for room in the plugin's queue.
const NOTIFY_WAIT: Duration = Duration::from_secs(30);
/// How often a re-adopted process is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);
/// How long to wait for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a process ended; both `None` when unknown (re-adopted process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// One process of a plugin.
pub struct Proc {
    pub id: u64,
    pub plugin: String,
    pub name: String,
    pub exe: String,
    pub args: Vec<String>,
    pub pid: u32,
    start_ticks: u64,
    pub started_at_ms: u64,
    pub adopted: bool,
    pub limits_note: Option<String>,
    cgroup: Option<PathBuf>,
    status: watch::Sender<Option<Exit>>,
    pub output: Arc<Output>,
}

impl Proc {
    pub fn exit(&self) -> Option<Exit> {
        *self.status.borrow()
    }

    /// Signals the process (`group`: its whole process group) if it still runs.
    fn kill(&self, signal: libc::c_int, group: bool) -> bool {
        if self.exit().is_some() || spawn::start_time(self.pid) != Some(self.start_ticks) {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        let target = if group { -pid } else { pid };
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(target, signal) == 0 }
    }

    /// Waits until it exits or `limit` passes; whether it exited.
    async fn wait(&self, limit: Duration) -> bool {
        let mut status = self.status.subscribe();
        tokio::time::timeout(limit, status.wait_for(Option::is_some))
            .await
            .is_ok_and(|changed| changed.is_ok())
    }
}

/// What is known of a new child, for [`Supervisor::insert`].
pub struct Spawned {
    pub plugin: String,
    pub name: String,
    pub exe: String,
    pub args: Vec<String>,
    pub child: tokio::process::Child,
    pub limits_note: Option<String>,
    pub cgroup: Option<PathBuf>,
}

/// Every plugin's processes (host-wide).
pub struct Supervisor {
    dir: PathBuf,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    procs: BTreeMap<u64, Arc<Proc>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn internal(err: impl std::fmt::Display) -> CapError {
    CapError::Internal(err.to_string())
}

impl Supervisor {
    /// The supervisor keeping its files in `dir` (`<state>/process`).
    pub fn new(dir: PathBuf) -> Supervisor {
        Supervisor {
            dir,
            table: Mutex::new(Table {
                next_id: 1,
                procs: BTreeMap::new(),
            }),
        }
    }

    /// The directory for output files; created on first use.
    pub fn dir(&self) -> Result<&std::path::Path, CapError> {
        crate::state::atomic::create_private_dir(&self.dir).map_err(internal)?;
        Ok(&self.dir)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Table>, CapError> {
        self.table
            .lock()
            .map_err(|_| CapError::Internal("the process table is poisoned".into()))
    }

    /// Checks the plugin's quota and the name, and reserves an id.
    pub fn reserve(&self, plugin: &str, name: &str, max: usize) -> Result<u64, CapError> {
        let mut table = self.lock()?;
        let running = table
            .procs
            .values()
            .filter(|p| p.plugin == plugin && p.exit().is_none());
        let mut count = 0;
        for proc in running {
            if proc.name == name {
                return Err(CapError::Invalid(format!(
                    "a process named `{name}` is already running (id {})",
                    proc.id
                )));
            }
            count += 1;
        }
        if count >= max {
            return Err(CapError::QuotaExceeded(format!(
                "at most {max} processes may run at once"
            )));
        }
        let id = table.next_id;
        table.next_id += 1;
        Ok(id)
    }

    /// Takes a new child into the table and starts watching it; its exit is
    /// reported to its plugin through `host`.
    pub fn insert(
        self: &Arc<Self>,
        id: u64,
        spawned: Spawned,
        host: HostLink,
    ) -> Result<(), CapError> {
        let pid = spawned
            .child
            .id()
            .ok_or_else(|| CapError::Internal("the process exited at once".into()))?;
        let start_ticks = spawn::start_time(pid).unwrap_or(0);
        let (status, _) = watch::channel(None);
        let proc = Arc::new(Proc {
            id,
            plugin: spawned.plugin,
            name: spawned.name,
            exe: spawned.exe,
            args: spawned.args,
            pid,
            start_ticks,
            started_at_ms: now_ms(),
            adopted: false,
            limits_note: spawned.limits_note,
            cgroup: spawned.cgroup,
            status,
            output: Arc::default(),
        });
        {
            let mut table = self.lock()?;
            let plugin = proc.plugin.clone();
            let name = proc.name.clone();
            table
                .procs
                .retain(|_, old| !(old.plugin == plugin && old.name == name));
            table.procs.insert(id, proc.clone());
            self.save(&table);
        }
        self.follow(&proc, false);
        let supervisor = self.clone();
        let mut child = spawned.child;
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    Exit {
                        code: status.code(),
                        signal: status.signal(),
                    }
                }
                Err(err) => {
                    tracing::error!(plugin = %proc.plugin, process = %proc.name, "waiting for the process failed: {err}");
                    Exit {
                        code: None,
                        signal: None,
                    }
                }
            };
            supervisor.exited(&proc, exit, true, &host);
        });
        Ok(())
    }

    fn follow(&self, proc: &Arc<Proc>, resume: bool) {
        tokio::spawn(output::tail(
            proc.output.clone(),
            output::paths(&self.dir, proc.id),
            resume,
            proc.plugin.clone(),
            proc.name.clone(),
            proc.status.subscribe(),
            Option::is_some,
        ));
    }

    /// Records an exit: kills what is left of the process group (`kill_group`;
    /// false when the pid may belong to another process by now),
    /// updates the state file and tells the plugin.
    fn exited(&self, proc: &Arc<Proc>, exit: Exit, kill_group: bool, host: &HostLink) {
        if kill_group && let Ok(pgid) = libc::pid_t::try_from(proc.pid) {
            // SAFETY: kill has no memory-safety preconditions. The group id
            // cannot be reused while members remain.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        proc.status.send_replace(Some(exit));
        if let Some(cgroup) = &proc.cgroup {
            super::cgroup::remove(cgroup);
        }
        let how = match (exit.code, exit.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => spawn::signal_name(signal),
            (None, None) => "unknown status".into(),
        };
        tracing::info!(plugin = %proc.plugin, process = %proc.name, pid = proc.pid, "process exited ({how})");
        if let Ok(mut table) = self.lock() {
            let mut exited: Vec<u64> = table
                .procs
                .values()
                .filter(|p| p.plugin == proc.plugin && p.exit().is_some())
                .map(|p| p.id)
                .collect();
            exited.sort_unstable();
            let excess = exited.len().saturating_sub(KEEP_EXITED);
            for id in &exited[..excess] {
                table.procs.remove(id);
            }
            self.save(&table);
        }
        let payload = serde_json::json!({
            "id": proc.id,
            "name": proc.name,
            "pid": proc.pid,
            "code": exit.code,
            "signal": exit.signal.map(spawn::signal_name),
        });
        let event = Event {
            topic: EXITED.into(),
            payload: payload.to_string().into_bytes(),
            source: "host".into(),
        };
        let Some(host) = host.upgrade() else {
            return;
        };
        let plugin = proc.plugin.clone();
        tokio::spawn(async move {
            if !host.notify(&plugin, event, NOTIFY_WAIT).await {
                tracing::debug!(plugin = %plugin, "a process exit could not be reported: the plugin is not running");
            }
        });
    }

    /// The plugin's process `id`.
    pub fn get(&self, plugin: &str, id: u64) -> Result<Arc<Proc>, CapError> {
        self.lock()?
            .procs
            .get(&id)
            .filter(|proc| proc.plugin == plugin)
            .cloned()
            .ok_or_else(|| CapError::NotFound(format!("this plugin has no process {id}")))
    }

    /// The plugin's processes, by id.
    pub fn of(&self, plugin: &str) -> Result<Vec<Arc<Proc>>, CapError> {
        Ok(self
            .lock()?
            .procs
            .values()
            .filter(|proc| proc.plugin == plugin)
            .cloned()
            .collect())
    }

    /// Drops an exited process's record; false if it still runs.
    pub fn forget(&self, plugin: &str, id: u64) -> Result<bool, CapError> {
        let proc = self.get(plugin, id)?;
        if proc.exit().is_none() {
            return Ok(false);
        }
        self.lock()?.procs.remove(&id);
        Ok(true)
    }

    /// Sends `signal` to the process alone.
    pub fn signal(&self, proc: &Proc, signal: libc::c_int) -> Result<(), CapError> {
        if proc.kill(signal, false) {
            Ok(())
        } else {
            Err(CapError::NotFound(format!(
                "process {} is no longer running",
                proc.id
            )))
        }
    }

    /// SIGTERM to the group, SIGKILL after `grace`; waits for the exit.
    pub async fn stop(&self, proc: &Proc, grace: Duration) {
        if proc.exit().is_some() {
            return;
        }
        proc.kill(libc::SIGTERM, true);
        if proc.wait(grace).await {
            return;
        }
        tracing::info!(plugin = %proc.plugin, process = %proc.name, "still running {grace:?} after SIGTERM: killing it");
        proc.kill(libc::SIGKILL, true);
        if !proc.wait(KILL_WAIT).await {
            tracing::error!(plugin = %proc.plugin, process = %proc.name, pid = proc.pid, "did not exit after SIGKILL");
        }
    }

    /// Stops every process of `plugin` (all of them when `None`) at once, then
    /// drops their records.
    pub async fn stop_all(&self, plugin: Option<&str>, grace: Duration) {
        let procs: Vec<Arc<Proc>> = match self.lock() {
            Ok(table) => table
                .procs
                .values()
                .filter(|proc| plugin.is_none_or(|name| proc.plugin == name))
                .cloned()
                .collect(),
            Err(_) => return,
        };
        let stops = procs.iter().map(|proc| self.stop(proc, grace));
        futures_util::future::join_all(stops).await;
        if let Ok(mut table) = self.lock() {
            for proc in &procs {
                table.procs.remove(&proc.id);
            }
            self.save(&table);
        }
    }
}
