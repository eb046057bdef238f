//! Spawns and supervises native processes (`cairn:host/process`).
//!
//! A process runs the exact executable given, never through a shell, in its
//! own session and process group, with only the environment the [`Spec`] lists.
//! It belongs to the plugin, not to the running instance: a new release finds
//! its predecessor's processes with [`list`] or [`find`] and can [`signal`] or
//! [`stop`] them. When one exits, [`Plugin::on_event`](crate::Plugin::on_event)
//! receives an event on [`EXITED_TOPIC`] (source `host`); parse it with
//! [`Exited::from_event`].
//!
//! Needs `[grants.process]` with `[[grants.process.allow]]` entries naming the
//! executables, argument patterns and users the plugin may use.
//!
//! ```no_run
//! use std::time::Duration;
//! use cairn_sdk::process::{self, Spec};
//!
//! # fn run() -> cairn_sdk::Result<()> {
//! let id = process::spawn(
//!     &Spec::new("ticker", "/usr/bin/sleep")
//!         .arg("30")
//!         .user("nobody")
//!         .open_files(64),
//! )?;
//! let info = process::stop(id, Duration::from_secs(2))?;
//! assert!(!info.running());
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::bindings::cairn::host::process as host;
use crate::{Event, Result};

/// Topic of the event sent when one of the plugin's processes exits.
pub const EXITED_TOPIC: &str = "cairn/process/exited";

/// Host-wide handle of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u64);

/// What to run and how; build it with [`Spec::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Spec {
    inner: host::SpawnSpec,
}

impl Spec {
    /// Runs `exe` (an absolute path) under the label `name`, without arguments
    /// or environment, as the daemon's user, with no_new_privs set and every
    /// capability dropped.
    pub fn new(name: &str, exe: &str) -> Spec {
        Spec {
            inner: host::SpawnSpec {
                name: name.to_string(),
                exe: exe.to_string(),
                args: Vec::new(),
                env: Vec::new(),
                cwd: None,
                user: None,
                group: None,
                no_new_privs: true,
                capabilities: Vec::new(),
                rlimits: host::Rlimits {
                    open_files: None,
                    memory_bytes: None,
                    cpu_seconds: None,
                    processes: None,
                },
                cgroup: host::CgroupLimits {
                    memory_max: None,
                    cpu_max: None,
                    pids_max: None,
                    best_effort: false,
                },
            },
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: &str) -> Spec {
        self.inner.args.push(arg.to_string());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Spec {
        self.inner
            .args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_string()));
        self
    }

    /// Adds an environment variable (names starting with `LD_` are refused).
    pub fn env(mut self, key: &str, value: &str) -> Spec {
        self.inner.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the working directory (absolute; `/` by default).
    pub fn cwd(mut self, dir: &str) -> Spec {
        self.inner.cwd = Some(dir.to_string());
        self
    }

    /// Runs as this user (which the grant must list).
    pub fn user(mut self, user: &str) -> Spec {
        self.inner.user = Some(user.to_string());
        self
    }

    /// Runs as this group (the user's primary group, or one the grant lists).
    pub fn group(mut self, group: &str) -> Spec {
        self.inner.group = Some(group.to_string());
        self
    }

    /// Whether to set no_new_privs (on by default).
    pub fn no_new_privs(mut self, on: bool) -> Spec {
        self.inner.no_new_privs = on;
        self
    }

    /// Keeps a Linux capability (e.g. `CAP_NET_BIND_SERVICE`) in the bounding set.
    pub fn keep_capability(mut self, name: &str) -> Spec {
        self.inner.capabilities.push(name.to_string());
        self
    }

    /// Limits open file descriptors (RLIMIT_NOFILE).
    pub fn open_files(mut self, limit: u64) -> Spec {
        self.inner.rlimits.open_files = Some(limit);
        self
    }

    /// Limits the address space in bytes (RLIMIT_AS).
    pub fn memory_bytes(mut self, limit: u64) -> Spec {
        self.inner.rlimits.memory_bytes = Some(limit);
        self
    }

    /// Limits CPU time (RLIMIT_CPU, whole seconds).
    pub fn cpu_seconds(mut self, limit: u64) -> Spec {
        self.inner.rlimits.cpu_seconds = Some(limit);
        self
    }

    /// Limits the processes of the process's user (RLIMIT_NPROC).
    pub fn max_processes(mut self, limit: u64) -> Spec {
        self.inner.rlimits.processes = Some(limit);
        self
    }

    /// cgroup v2 `memory.max` in bytes.
    pub fn memory_max(mut self, bytes: u64) -> Spec {
        self.inner.cgroup.memory_max = Some(bytes);
        self
    }

    /// cgroup v2 `cpu.max` in thousandths of one CPU.
    pub fn cpu_max(mut self, milli_cpus: u32) -> Spec {
        self.inner.cgroup.cpu_max = Some(milli_cpus);
        self
    }

    /// cgroup v2 `pids.max`.
    pub fn pids_max(mut self, pids: u64) -> Spec {
        self.inner.cgroup.pids_max = Some(pids);
        self
    }

    /// Spawns even when the cgroup limits cannot be applied (then
    /// [`ProcessInfo::limits_note`] says why) instead of failing with
    /// [`Error::Unavailable`](crate::Error::Unavailable).
    pub fn cgroup_best_effort(mut self, on: bool) -> Spec {
        self.inner.cgroup.best_effort = on;
        self
    }
}

/// What the host knows about one process of the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its handle.
    pub id: ProcessId,
    /// The plugin's label for it.
    pub name: String,
    /// Executable path.
    pub exe: String,
    /// Arguments after argv\[0\].
    pub args: Vec<String>,
    /// Operating-system process id (also its process group and session).
    pub pid: u32,
    /// Exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended it (`SIGKILL`…), if one did.
    pub exit_signal: Option<String>,
    /// Whether it exited.
    pub exited: bool,
    /// Spawn time, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Whether the daemon re-adopted it after a crash (its exit status is then unknown).
    pub adopted: bool,
    /// Why requested limits were not applied, if so.
    pub limits_note: Option<String>,
}

impl ProcessInfo {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        !self.exited
    }
}

impl From<host::ProcessInfo> for ProcessInfo {
    fn from(info: host::ProcessInfo) -> Self {
        ProcessInfo {
            id: ProcessId(info.id),
            name: info.name,
            exe: info.exe,
            args: info.args,
            pid: info.pid,
            exit_code: info.exit_code,
            exit_signal: info.exit_signal,
            exited: matches!(info.state, host::ProcessState::Exited),
            started_at_ms: info.started_at_ms,
            adopted: info.adopted,
            limits_note: info.limits_note,
        }
    }
}

/// The latest output of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The last bytes of stdout.
    pub stdout: Vec<u8>,
    /// The last bytes of stderr.
    pub stderr: Vec<u8>,
    /// Bytes written in total to both, including those no longer held.
    pub total_bytes: u64,
}

/// The payload of an [`EXITED_TOPIC`] event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Exited {
    /// The process's handle.
    pub id: u64,
    /// Its label.
    pub name: String,
    /// Its operating-system process id.
    pub pid: u32,
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Signal that ended it, if one did; both `None` when unknown.
    pub signal: Option<String>,
}

impl Exited {
    /// Parses an event; `None` if it is not a process exit from the host.
    pub fn from_event(event: &Event) -> Option<Exited> {
        if event.topic != EXITED_TOPIC || event.source != "host" {
            return None;
        }
        event.json().ok()
    }
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Starts a process; see [`Spec`].
///
/// Fails with [`Error::Denied`](crate::Error::Denied) outside the grant, [`Error::QuotaExceeded`](crate::Error::QuotaExceeded)
/// beyond `max-processes`, [`Error::Invalid`](crate::Error::Invalid) for a bad spec or a name already
/// running, [`Error::Unavailable`](crate::Error::Unavailable) when cgroup limits cannot be applied.
pub fn spawn(spec: &Spec) -> Result<ProcessId> {
    Ok(ProcessId(host::spawn(&spec.inner)?))
}

/// Sends a signal (`TERM`, `SIGHUP`, `KILL`…) to the process itself.
pub fn signal(id: ProcessId, signal: &str) -> Result<()> {
    Ok(host::signal(id.0, signal)?)
}

/// SIGTERM to its process group, SIGKILL after `grace`; returns the final info.
pub fn stop(id: ProcessId, grace: Duration) -> Result<ProcessInfo> {
    Ok(host::stop(id.0, millis(grace))?.into())
}

/// Starts stopping it like [`stop`] but returns at once; the end arrives as
/// an [`EXITED_TOPIC`] event.
pub fn terminate(id: ProcessId, grace: Duration) -> Result<()> {
    Ok(host::terminate(id.0, millis(grace))?)
}

/// One process of the plugin.
pub fn info(id: ProcessId) -> Result<ProcessInfo> {
    Ok(host::info(id.0)?.into())
}

/// The plugin's process with this label, if any.
pub fn find(name: &str) -> Result<Option<ProcessInfo>> {
    Ok(host::find(name)?.map(Into::into))
}

/// Every process of the plugin, running or exited (until forgotten).
pub fn list() -> Result<Vec<ProcessInfo>> {
    Ok(host::list()?.into_iter().map(Into::into).collect())
}

/// The last `max_bytes` (at most 64 KiB) of its stdout and stderr.
pub fn output(id: ProcessId, max_bytes: u32) -> Result<Output> {
    let tail = host::output(id.0, max_bytes)?;
    Ok(Output {
        stdout: tail.stdout,
        stderr: tail.stderr,
        total_bytes: tail.total_bytes,
    })
}

/// Drops the record of an exited process; false if it still runs.
pub fn forget(id: ProcessId) -> Result<bool> {
    Ok(host::forget(id.0)?)
}
