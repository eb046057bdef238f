//! `cairn:host/process`: plugins spawning and supervising native processes.
//!
//! A spawn is checked against `[grants.process]` (executable, arguments, user,
//! group, capabilities, shells, quota), then the exact executable runs without
//! a shell in its own session, with an empty environment plus the spec's, its
//! rlimits, capability bounding set, user and no_new_privs applied between fork
//! and exec ([`spawn`]), optionally in a cgroup v2 of its own ([`cgroup`]). The
//! host-wide [`table::Supervisor`] owns the processes for their plugin across
//! swaps, records them for recovery after a crash, reports exits as events and
//! stops them; [`output`] follows what they write.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;

use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf};
use crate::contract::HostLink;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::process::{
    self as wit, OutputTail, ProcessInfo, ProcessState, SpawnSpec,
};

pub mod cgroup;
pub mod grant;
pub mod output;
pub mod spawn;
pub mod table;

pub use grant::ProcessGrant;
pub use table::{EXITED, Supervisor};

/// Grace given to processes when their plugin is removed or the daemon stops.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct Process;

impl Capability for Process {
    const NAME: &'static str = "process";
    const INTERFACES: &'static [&'static str] = &["cairn:host/process"];
    type Grant = ProcessGrant;
    /// Every plugin's processes; they belong to a plugin, not an instance.
    type Shared = Arc<Supervisor>;
    type Local = ();

    fn validate(grant: &ProcessGrant) -> Result<(), String> {
        grant::validate(grant)
    }

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Process>>(linker, |state| state.caps().view())
    }

    fn build(setup: &HostSetup) -> anyhow::Result<Arc<Supervisor>> {
        Ok(Arc::new(Supervisor::new(setup.state_dir.join("process"))))
    }

    /// Before the plugins start, so they find the processes they own.
    fn recover(supervisor: &Arc<Supervisor>, host: &HostLink) {
        supervisor.recover(host);
    }

    fn prepare(_: &Arc<Supervisor>, _: Option<&ProcessGrant>, _: &mut InstanceSetup<'_>) {}

    fn plugin_removed(
        supervisor: &Arc<Supervisor>,
        plugin: &str,
    ) -> impl Future<Output = ()> + Send {
        supervisor.stop_all(Some(plugin), STOP_GRACE)
    }

    /// Stops re-adopted processes whose plugin is no longer installed.
    async fn booted(supervisor: &Arc<Supervisor>, installed: &BTreeSet<String>) {
        for owner in supervisor.owners() {
            if !installed.contains(&owner) {
                tracing::warn!(plugin = %owner, "stopping processes of a plugin that is no longer installed");
                supervisor.stop_all(Some(&owner), STOP_GRACE).await;
            }
        }
    }

    fn shutdown(supervisor: &Arc<Supervisor>) -> impl Future<Output = ()> + Send {
        supervisor.stop_all(None, STOP_GRACE)
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn info(proc: &table::Proc) -> ProcessInfo {
    let exit = proc.exit();
    ProcessInfo {
        id: proc.id,
        name: proc.name.clone(),
        exe: proc.exe.clone(),
        args: proc.args.clone(),
        pid: proc.pid,
        state: if exit.is_some() {
            ProcessState::Exited
        } else {
            ProcessState::Running
        },
        exit_code: exit.and_then(|exit| exit.code),
        exit_signal: exit.and_then(|exit| exit.signal).map(spawn::signal_name),
        started_at_ms: proc.started_at_ms,
        adopted: proc.adopted,
        limits_note: proc.limits_note.clone(),
    }
}

impl CapView<'_, Process> {
    /// Checks `spec` against the grant and resolves it into a plan.
    fn plan(&self, spec: &SpawnSpec) -> Result<spawn::Plan, CapError> {
        let grant = self.grant()?;
        if !valid_name(&spec.name) {
            return Err(CapError::Invalid(format!(
                "process name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                spec.name
            )));
        }
        let exe = Path::new(&spec.exe);
        if !exe.is_absolute() {
            return Err(CapError::Invalid(format!(
                "exe `{}` is not an absolute path",
                spec.exe
            )));
        }
        if spec.exe.contains('\0') || spec.args.iter().any(|arg| arg.contains('\0')) {
            return Err(CapError::Invalid(
                "exe and arguments may not contain NUL".into(),
            ));
        }
        let entry = grant
            .entry_for(&spec.exe, &spec.args)
            .map_err(|msg| self.deny(msg))?;
        let resolved = std::fs::canonicalize(exe).ok();
        if !grant.allow_shell
            && (grant::is_shell(exe) || resolved.as_deref().is_some_and(grant::is_shell))
        {
            return Err(self.deny(format!(
                "`{}` is a shell; the grant does not set allow-shell",
                spec.exe
            )));
        }
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(CapError::Invalid(format!(
                    "bad environment variable `{key}`"
                )));
            }
            if key.starts_with("LD_") {
                return Err(self.deny(format!(
                    "environment variable `{key}` could change what the executable loads"
                )));
            }
        }
        if let Some(cwd) = &spec.cwd
            && (!Path::new(cwd).is_absolute() || cwd.contains('\0'))
        {
            return Err(CapError::Invalid(format!(
                "cwd `{cwd}` is not an absolute path"
            )));
        }
        let lookup = |err: std::io::Error| CapError::Internal(format!("looking up users: {err}"));
        let account = match &spec.user {
            None => None,
            Some(user) if !entry.users.contains(user) => {
                return Err(self.deny(format!(
                    "running `{}` as user `{user}` is outside the grant",
                    spec.exe
                )));
            }
            Some(user) => Some(
                spawn::user(user)
                    .map_err(lookup)?
                    .ok_or_else(|| CapError::Invalid(format!("there is no user `{user}`")))?,
            ),
        };
        let gid = match &spec.group {
            None => account.map(|account| account.gid),
            Some(group) => {
                let gid = spawn::group(group)
                    .map_err(lookup)?
                    .ok_or_else(|| CapError::Invalid(format!("there is no group `{group}`")))?;
                let primary = account.is_some_and(|account| account.gid == gid);
                if !primary && !entry.groups.contains(group) {
                    return Err(self.deny(format!(
                        "running `{}` as group `{group}` is outside the grant",
                        spec.exe
                    )));
                }
                Some(gid)
            }
        };
        let mut keep = Vec::new();
        for cap in &spec.capabilities {
            let number = spawn::capability_number(cap)
                .ok_or_else(|| CapError::Invalid(format!("unknown capability `{cap}`")))?;
            let granted = entry
                .capabilities
                .iter()
                .any(|allowed| spawn::capability_number(allowed) == Some(number));
            if !granted {
                return Err(self.deny(format!("keeping capability `{cap}` is outside the grant")));
            }
            keep.push(number);
        }
        let limits = &spec.rlimits;
        let rlimits = [
            (libc::RLIMIT_NOFILE, limits.open_files),
            (libc::RLIMIT_AS, limits.memory_bytes),
            (libc::RLIMIT_CPU, limits.cpu_seconds),
            (libc::RLIMIT_NPROC, limits.processes),
        ]
        .into_iter()
        .filter_map(|(resource, value)| value.map(|value| (resource, value)))
        .collect();
        Ok(spawn::Plan {
            exe: spec.exe.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            uid: account.map(|account| account.uid),
            gid,
            no_new_privs: spec.no_new_privs,
            keep,
            rlimits,
            cgroup: None,
        })
    }

    fn supervisor(&self) -> Arc<Supervisor> {
        self.shared.clone()
    }
}

/// Creates the process's cgroup if limits are asked for: `Ok((dir, note))`.
fn cgroup_for(
    plugin: &str,
    id: u64,
    spec: &SpawnSpec,
) -> Result<(Option<std::path::PathBuf>, Option<String>), CapError> {
    let limits = cgroup::Limits {
        memory_max: spec.cgroup.memory_max,
        cpu_max: spec.cgroup.cpu_max,
        pids_max: spec.cgroup.pids_max,
    };
    if !limits.any() {
        return Ok((None, None));
    }
    match cgroup::create(&format!("{plugin}-{id}"), &limits) {
        Ok(dir) => Ok((Some(dir), None)),
        Err(why) if spec.cgroup.best_effort => {
            Ok((None, Some(format!("cgroup limits not applied: {why}"))))
        }
        Err(why) => Err(CapError::Unavailable(format!(
            "cgroup limits cannot be applied: {why}"
        ))),
    }
}

impl wit::Host for CapView<'_, Process> {
    async fn spawn(&mut self, spec: SpawnSpec) -> Result<u64, CapError> {
        let mut plan = self.plan(&spec)?;
        let max = self.grant()?.max_processes;
        let supervisor = self.supervisor();
        let plugin = self.plugin().to_string();
        let id = supervisor.reserve(&plugin, &spec.name, max)?;
        let (cgroup, limits_note) = cgroup_for(&plugin, id, &spec)?;
        plan.cgroup = cgroup.clone();
        let (out_path, err_path) = output::paths(supervisor.dir()?, id);
        let create = |path: &Path| {
            // Appending, so the host may release or truncate what it has read.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|file| file.set_len(0).map(|()| file))
                .map_err(|err| CapError::Internal(format!("creating {}: {err}", path.display())))
        };
        let child = spawn::command(&plan, create(&out_path)?, create(&err_path)?)
            .and_then(|mut command| command.spawn());
        let child = match child {
            Ok(child) => child,
            Err(err) => {
                let _ = std::fs::remove_file(&out_path);
                let _ = std::fs::remove_file(&err_path);
                if let Some(dir) = &cgroup {
                    cgroup::remove(dir);
                }
                tracing::warn!(plugin = %plugin, process = %spec.name, "spawning `{}` failed: {err}", spec.exe);
                return Err(match err.kind() {
                    std::io::ErrorKind::NotFound => {
                        CapError::NotFound(format!("`{}`: {err}", spec.exe))
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        CapError::Denied(format!("`{}`: {err}", spec.exe))
                    }
                    _ => CapError::Internal(format!("spawning `{}`: {err}", spec.exe)),
                });
            }
        };
        tracing::info!(plugin = %plugin, process = %spec.name, id, pid = child.id(), exe = %spec.exe, "process started");
        supervisor.insert(
            id,
            table::Spawned {
                plugin,
                name: spec.name,
                exe: spec.exe,
                args: spec.args,
                child,
                limits_note,
                cgroup,
            },
            self.ctx.host.clone(),
        )?;
        Ok(id)
    }

    async fn signal(&mut self, id: u64, signal: String) -> Result<(), CapError> {
        self.grant()?;
        let number = spawn::signal_number(&signal)
            .ok_or_else(|| CapError::Invalid(format!("unknown signal `{signal}`")))?;
        let supervisor = self.supervisor();
        let proc = supervisor.get(self.plugin(), id)?;
        supervisor.signal(&proc, number)
    }

    async fn stop(&mut self, id: u64, grace_ms: u32) -> Result<ProcessInfo, CapError> {
        self.grant()?;
        let supervisor = self.supervisor();
        let proc = supervisor.get(self.plugin(), id)?;
        supervisor
            .stop(&proc, Duration::from_millis(u64::from(grace_ms)))
            .await;
        Ok(info(&proc))
    }

    async fn terminate(&mut self, id: u64, grace_ms: u32) -> Result<(), CapError> {
        self.grant()?;
        let supervisor = self.supervisor();
        let proc = supervisor.get(self.plugin(), id)?;
        tokio::spawn(async move {
            supervisor
                .stop(&proc, Duration::from_millis(u64::from(grace_ms)))
                .await;
        });
        Ok(())
    }

    async fn info(&mut self, id: u64) -> Result<ProcessInfo, CapError> {
        self.grant()?;
        let proc = self.supervisor().get(self.plugin(), id)?;
        Ok(info(&proc))
    }

    async fn find(&mut self, name: String) -> Result<Option<ProcessInfo>, CapError> {
        self.grant()?;
        let procs = self.supervisor().of(self.plugin())?;
        Ok(procs
            .iter()
            .rev()
            .find(|proc| proc.name == name)
            .map(|proc| info(proc)))
    }

    async fn list(&mut self) -> Result<Vec<ProcessInfo>, CapError> {
        self.grant()?;
        let procs = self.supervisor().of(self.plugin())?;
        Ok(procs.iter().map(|proc| info(proc)).collect())
    }

    async fn output(&mut self, id: u64, max_bytes: u32) -> Result<OutputTail, CapError> {
        self.grant()?;
        let proc = self.supervisor().get(self.plugin(), id)?;
        let max = usize::try_from(max_bytes).unwrap_or(output::RING_BYTES);
        let (stdout, stderr, total_bytes) = proc.output.tail(max.min(output::RING_BYTES));
        Ok(OutputTail {
            stdout,
            stderr,
            total_bytes,
        })
    }

    async fn forget(&mut self, id: u64) -> Result<bool, CapError> {
        self.grant()?;
        self.supervisor().forget(self.plugin(), id)
    }
}
