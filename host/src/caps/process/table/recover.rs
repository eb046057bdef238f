//! The state file of running processes, and recovery after a daemon crash.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{ADOPTED_POLL, Exit, Proc, Supervisor, Table, spawn};
use crate::contract::HostLink;

/// A running process as written in the state file (`<state>/process/table.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: u64,
    plugin: String,
    name: String,
    exe: String,
    args: Vec<String>,
    pid: u32,
    start_ticks: u64,
    started_at_ms: u64,
    cgroup: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    next_id: u64,
    running: Vec<Record>,
}

impl Proc {
    fn record(&self) -> Record {
        Record {
            id: self.id,
            plugin: self.plugin.clone(),
            name: self.name.clone(),
            exe: self.exe.clone(),
            args: self.args.clone(),
            pid: self.pid,
            start_ticks: self.start_ticks,
            started_at_ms: self.started_at_ms,
            cgroup: self.cgroup.clone(),
        }
    }
}

impl Supervisor {
    fn state_path(&self) -> PathBuf {
        self.dir.join("table.json")
    }

    /// Rewrites the state file from `table` (caller holds the lock).
    pub(super) fn save(&self, table: &Table) {
        let file = StateFile {
            next_id: table.next_id,
            running: table
                .procs
                .values()
                .filter(|proc| proc.exit().is_none())
                .map(|proc| proc.record())
                .collect(),
        };
        let written = serde_json::to_vec_pretty(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                crate::state::atomic::create_private_dir(&self.dir)?;
                crate::state::atomic::write_atomic(&self.state_path(), &bytes)
            });
        if let Err(err) = written {
            tracing::error!("recording the running processes failed: {err}");
        }
    }

    /// After a daemon start: re-adopts every recorded process that still runs
    /// and reports the others as exited (status unknown).
    pub fn recover(self: &Arc<Self>, host: &HostLink) {
        let path = self.state_path();
        let state: StateFile = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(state) => state,
                Err(err) => {
                    tracing::error!(
                        "{} is unreadable ({err}); processes it recorded are unknown",
                        path.display()
                    );
                    return;
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                tracing::error!("reading {}: {err}", path.display());
                return;
            }
        };
        let mut adopted = Vec::new();
        let mut gone = Vec::new();
        if let Ok(mut table) = self.lock() {
            table.next_id = state.next_id.max(1);
            for record in state.running {
                let alive = spawn::start_time(record.pid) == Some(record.start_ticks);
                let (status, _) = watch::channel(None);
                let proc = Arc::new(Proc {
                    id: record.id,
                    plugin: record.plugin,
                    name: record.name,
                    exe: record.exe,
                    args: record.args,
                    pid: record.pid,
                    start_ticks: record.start_ticks,
                    started_at_ms: record.started_at_ms,
                    adopted: true,
                    limits_note: None,
                    cgroup: record.cgroup,
                    status,
                    output: Arc::default(),
                });
                table.next_id = table.next_id.max(proc.id + 1);
                table.procs.insert(proc.id, proc.clone());
                if alive {
                    adopted.push(proc);
                } else {
                    gone.push(proc);
                }
            }
            self.save(&table);
        }
        for proc in gone {
            tracing::info!(plugin = %proc.plugin, process = %proc.name, pid = proc.pid, "a recorded process ended while the daemon was down");
            self.follow(&proc, true);
            // What is left of its group holds the pid as group id, so while no
            // other process has that pid (none, or its own unreaped zombie),
            // the group can only be ours: kill it.
            let orphaned_group = match spawn::stat(proc.pid) {
                None => true,
                Some((_, start)) => start == proc.start_ticks,
            };
            self.exited(
                &proc,
                Exit {
                    code: None,
                    signal: None,
                },
                orphaned_group,
                host,
            );
        }
        for proc in adopted {
            tracing::info!(plugin = %proc.plugin, process = %proc.name, pid = proc.pid, "re-adopted a process still running from before the restart");
            self.follow(&proc, true);
            let supervisor = self.clone();
            let host = host.clone();
            tokio::spawn(async move {
                while spawn::start_time(proc.pid) == Some(proc.start_ticks) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                supervisor.exited(
                    &proc,
                    Exit {
                        code: None,
                        signal: None,
                    },
                    true,
                    &host,
                );
            });
        }
    }

    /// Plugins owning processes, for stopping those of plugins no longer installed.
    pub fn owners(&self) -> Vec<String> {
        let mut owners: Vec<String> = self
            .lock()
            .map(|table| table.procs.values().map(|p| p.plugin.clone()).collect())
            .unwrap_or_default();
        owners.sort_unstable();
        owners.dedup();
        owners
    }
}
