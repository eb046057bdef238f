//! Who owns which container, and their lives: start, exit detection (also
//! across containerd restarts), stop, removal, and re-adoption after the
//! daemon restarts.
//!
//! containerd's own records are the state: each container carries labels
//! naming its plugin and its name, so a daemon that starts (after a clean stop,
//! a crash or SIGKILL) lists the namespace and takes back every container it
//! finds, running or not, following the output files of those still running.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::snapshots::RemoveSnapshotRequest;
use containerd_client::services::v1::{
    CreateTaskRequest, DeleteContainerRequest, DeleteTaskRequest, GetRequest, KillRequest,
    ListContainersRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status as TaskStatus;
use tokio::sync::watch;

use super::engine::{Containerd, is_not_found, status_error};
use super::network;
use crate::caps::process::output::{self, Output};
use crate::contract::HostLink;
use crate::contract::bindings::{CapError, Event};

/// Topic of the event a plugin receives when one of its containers exits.
pub const EXITED: &str = "cairn/container/exited";
/// Label naming the owning plugin.
pub const PLUGIN_LABEL: &str = "cairn.plugin";
/// Label holding the plugin's name for the container.
pub const NAME_LABEL: &str = "cairn.name";
/// Label holding the image's manifest digest.
pub const DIGEST_LABEL: &str = "cairn.image-digest";
/// Label holding the creation time (ms since the epoch).
pub const CREATED_LABEL: &str = "cairn.created-ms";
/// Label holding the container's bridge address, if it has one.
pub const IP_LABEL: &str = "cairn.ip";
/// How long an exit event waits for room in the plugin's queue.
const NOTIFY_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Pause before asking containerd again after losing it.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// How long an exit report waits for the last output to be read.
const TAIL_DRAIN: Duration = Duration::from_secs(2);

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Created,
    Running,
    Exited,
}

/// What is known of a container's main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    pub pid: Option<u32>,
    pub exit_code: Option<u32>,
    pub oom: bool,
    /// Bumped on each start, so a watcher of an old run knows it is stale.
    pub run: u64,
}

/// One container of a plugin.
pub struct Entry {
    pub id: String,
    pub plugin: String,
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub created_at_ms: u64,
    pub adopted: bool,
    pub ip: Option<String>,
    /// The runtime spec it was created with (execs start from its process).
    pub spec: serde_json::Value,
    pub status: watch::Sender<Status>,
    pub output: Arc<Output>,
    /// The task copying the current run's output: an exit is reported once
    /// it has read the last bytes, so logs read on the exit are whole.
    pub tailer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Entry {
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    async fn wait_exit(&self, limit: Duration) -> bool {
        let mut status = self.status.subscribe();
        tokio::time::timeout(limit, status.wait_for(|s| s.phase != Phase::Running))
            .await
            .is_ok_and(|changed| changed.is_ok())
    }
}

/// Every plugin's containers (host-wide).
pub struct Containers {
    pub engine: Containerd,
    dir: PathBuf,
    table: Mutex<BTreeMap<String, Arc<Entry>>>,
    host: OnceLock<HostLink>,
    /// Set once the containers containerd already had are taken back.
    adopted: tokio::sync::OnceCell<()>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn poisoned() -> CapError {
    CapError::Internal("the container table is poisoned".into())
}

/// containerd id of a plugin's container (plugin names have no `.`).
pub fn container_id(plugin: &str, name: &str) -> String {
    format!("{plugin}.{name}")
}

impl Containers {
    pub fn new(engine: Containerd, dir: PathBuf) -> Containers {
        Containers {
            engine,
            dir,
            table: Mutex::new(BTreeMap::new()),
            host: OnceLock::new(),
            adopted: tokio::sync::OnceCell::new(),
        }
    }

    /// The kernel, for exit events.
    pub fn set_host(&self, host: HostLink) {
        let _ = self.host.set(host);
    }

    /// The directory of output files; created on first use.
    pub fn dir(&self) -> Result<&Path, CapError> {
        crate::state::atomic::create_private_dir(&self.dir)
            .map_err(|err| CapError::Internal(err.to_string()))?;
        Ok(&self.dir)
    }

    /// Where the bridge network keeps its records and namespaces.
    pub fn net_dir(&self) -> PathBuf {
        self.dir.join("net")
    }

    fn paths(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{id}.out")),
            self.dir.join(format!("{id}.err")),
        )
    }

    /// Takes back, once, the containers containerd has (after a restart).
    pub async fn adopt(self: &Arc<Self>) -> Result<(), CapError> {
        self.adopted
            .get_or_try_init(|| async { self.adopt_now().await })
            .await
            .map(|_| ())
    }

    async fn adopt_now(self: &Arc<Self>) -> Result<(), CapError> {
        let client = self.engine.client().await?;
        let listed = client
            .containers()
            .list(self.engine.req(ListContainersRequest {
                filters: vec![format!("labels.\"{PLUGIN_LABEL}\"")],
            }))
            .await
            .map_err(|status| status_error("listing containers", status))?
            .into_inner()
            .containers;
        for container in listed {
            let label = |key: &str| container.labels.get(key).cloned();
            let (Some(plugin), Some(name)) = (label(PLUGIN_LABEL), label(NAME_LABEL)) else {
                continue;
            };
            if self.lock()?.contains_key(&container.id) {
                continue;
            }
            let spec = container
                .spec
                .as_ref()
                .and_then(|any| serde_json::from_slice(&any.value).ok())
                .unwrap_or(serde_json::Value::Null);
            let task = client
                .tasks()
                .get(self.engine.req(GetRequest {
                    container_id: container.id.clone(),
                    exec_id: String::new(),
                }))
                .await
                .ok()
                .and_then(|reply| reply.into_inner().process);
            let status = match &task {
                Some(process) if process.status == TaskStatus::Running as i32 => Status {
                    phase: Phase::Running,
                    pid: Some(process.pid),
                    exit_code: None,
                    oom: false,
                    run: 1,
                },
                Some(process) if process.status == TaskStatus::Stopped as i32 => Status {
                    phase: Phase::Exited,
                    pid: None,
                    exit_code: Some(process.exit_status),
                    oom: false,
                    run: 1,
                },
                Some(_) => Status {
                    phase: Phase::Created,
                    pid: None,
                    exit_code: None,
                    oom: false,
                    run: 1,
                },
                None => Status {
                    phase: Phase::Exited,
                    pid: None,
                    exit_code: None,
                    oom: false,
                    run: 1,
                },
            };
            let entry = Arc::new(Entry {
                id: container.id.clone(),
                plugin,
                name,
                image: container.image.clone(),
                image_digest: label(DIGEST_LABEL).unwrap_or_default(),
                created_at_ms: label(CREATED_LABEL)
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0),
                adopted: true,
                ip: label(IP_LABEL),
                spec,
                status: watch::channel(status).0,
                output: Arc::default(),
                tailer: Default::default(),
            });
            tracing::info!(plugin = %entry.plugin, container = %entry.name, state = ?status.phase, "re-adopted container");
            self.lock()?.insert(entry.id.clone(), entry.clone());
            if status.phase == Phase::Running {
                self.follow(&entry, true);
                self.watch(&entry, status.run);
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Arc<Entry>>>, CapError> {
        self.table.lock().map_err(|_| poisoned())
    }

    /// Checks the quota and that the name is free.
    pub fn reserve(&self, plugin: &str, name: &str, max: usize) -> Result<(), CapError> {
        let table = self.lock()?;
        if table.contains_key(&container_id(plugin, name)) {
            return Err(CapError::Conflict(format!(
                "this plugin already has a container named `{name}`"
            )));
        }
        let count = table
            .values()
            .filter(|entry| entry.plugin == plugin)
            .count();
        if count >= max {
            return Err(CapError::QuotaExceeded(format!(
                "at most {max} containers are allowed"
            )));
        }
        Ok(())
    }

    pub fn insert(&self, entry: Arc<Entry>) -> Result<(), CapError> {
        self.lock()?.insert(entry.id.clone(), entry);
        Ok(())
    }

    /// The plugin's container `name`.
    pub fn get(&self, plugin: &str, name: &str) -> Result<Arc<Entry>, CapError> {
        self.lock()?
            .get(&container_id(plugin, name))
            .filter(|entry| entry.plugin == plugin)
            .cloned()
            .ok_or_else(|| CapError::NotFound(format!("this plugin has no container `{name}`")))
    }

    /// The plugin's containers.
    pub fn of(&self, plugin: &str) -> Result<Vec<Arc<Entry>>, CapError> {
        Ok(self
            .lock()?
            .values()
            .filter(|entry| entry.plugin == plugin)
            .cloned()
            .collect())
    }

    /// Every plugin owning a container.
    pub fn owners(&self) -> Vec<String> {
        let Ok(table) = self.lock() else {
            return Vec::new();
        };
        let owners: std::collections::BTreeSet<String> =
            table.values().map(|entry| entry.plugin.clone()).collect();
        owners.into_iter().collect()
    }

    /// Whether any container was created from the image `name`.
    pub fn uses_image(&self, name: &str, digest: &str) -> Result<Option<String>, CapError> {
        Ok(self
            .lock()?
            .values()
            .find(|entry| entry.image == name || entry.image_digest == digest)
            .map(|entry| format!("{} (plugin {})", entry.name, entry.plugin)))
    }

    /// Creates a fresh task (dropping an exited one) and starts it.
    pub async fn start(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<(), CapError> {
        if entry.status().phase == Phase::Running {
            return Ok(());
        }
        let client = self.engine.client().await?;
        let mut tasks = client.tasks();
        let _ = tasks
            .delete(self.engine.req(DeleteTaskRequest {
                container_id: entry.id.clone(),
            }))
            .await;
        let (out, err) = self.paths(&entry.id);
        self.dir()?;
        for path in [&out, &err] {
            std::fs::write(path, b"")
                .map_err(|e| CapError::Internal(format!("creating {}: {e}", path.display())))?;
        }
        let mounts = client
            .snapshots()
            .mounts(
                self.engine
                    .req(containerd_client::services::v1::snapshots::MountsRequest {
                        snapshotter: self.engine.config.snapshotter.clone(),
                        key: entry.id.clone(),
                    }),
            )
            .await
            .map_err(|status| status_error("finding the container's file system", status))?
            .into_inner()
            .mounts;
        tasks
            .create(self.engine.req(CreateTaskRequest {
                container_id: entry.id.clone(),
                rootfs: mounts,
                stdin: String::new(),
                stdout: out.display().to_string(),
                stderr: err.display().to_string(),
                terminal: false,
                checkpoint: None,
                options: None,
                runtime_path: String::new(),
            }))
            .await
            .map_err(|status| status_error("creating the container's task", status))?;
        let started = tasks
            .start(self.engine.req(StartRequest {
                container_id: entry.id.clone(),
                exec_id: String::new(),
            }))
            .await
            .map_err(|status| status_error("starting the container", status))?
            .into_inner();
        let run = entry.status().run + 1;
        entry.status.send_replace(Status {
            phase: Phase::Running,
            pid: Some(started.pid),
            exit_code: None,
            oom: false,
            run,
        });
        tracing::info!(plugin = %entry.plugin, container = %entry.name, pid = started.pid, "container started");
        self.follow(entry, false);
        self.watch(entry, run);
        Ok(())
    }

    fn follow(&self, entry: &Arc<Entry>, resume: bool) {
        let tailer = tokio::spawn(output::tail(
            entry.output.clone(),
            self.paths(&entry.id),
            resume,
            entry.plugin.clone(),
            entry.name.clone(),
            entry.status.subscribe(),
            |status: &Status| status.phase != Phase::Running,
        ));
        if let Ok(mut slot) = entry.tailer.lock() {
            *slot = Some(tailer);
        }
    }

    /// Waits for run `run` of the container to end, through containerd
    /// restarts, then records and reports the exit.
    fn watch(self: &Arc<Self>, entry: &Arc<Entry>, run: u64) {
        let containers = self.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            let code = loop {
                if entry.status().run != run {
                    return;
                }
                match containers.wait_once(&entry.id).await {
                    Ok(code) => break code,
                    Err(WaitFailure::Gone) => break None,
                    Err(WaitFailure::Connection) => tokio::time::sleep(RECONNECT_PAUSE).await,
                }
            };
            if entry.status().run != run {
                return;
            }
            let oom = super::stats::oom_killed(&entry.spec);
            // Names are reused (a component's container is replaced under the
            // same name): the pid tells which run ended.
            let pid = entry.status().pid;
            entry.status.send_replace(Status {
                phase: Phase::Exited,
                pid: None,
                exit_code: code,
                oom,
                run,
            });
            tracing::info!(plugin = %entry.plugin, container = %entry.name, code = ?code, oom, "container exited");
            let tailer = entry.tailer.lock().ok().and_then(|mut slot| slot.take());
            if let Some(tailer) = tailer {
                let _ = tokio::time::timeout(TAIL_DRAIN, tailer).await;
            }
            containers.report_exit(&entry, code, oom, pid);
        });
    }

    async fn wait_once(&self, id: &str) -> Result<Option<u32>, WaitFailure> {
        let client = self
            .engine
            .client()
            .await
            .map_err(|_| WaitFailure::Connection)?;
        let mut tasks = client.tasks();
        let waited = tasks
            .wait(self.engine.req(WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        match waited {
            Ok(reply) => Ok(Some(reply.into_inner().exit_status)),
            Err(status) if is_not_found(&status) => Err(WaitFailure::Gone),
            Err(_) => {
                // containerd went away; a task may have ended meanwhile.
                let got = tasks
                    .get(self.engine.req(GetRequest {
                        container_id: id.to_string(),
                        exec_id: String::new(),
                    }))
                    .await;
                match got {
                    Ok(reply) => match reply.into_inner().process {
                        Some(process) if process.status == TaskStatus::Stopped as i32 => {
                            Ok(Some(process.exit_status))
                        }
                        _ => Err(WaitFailure::Connection),
                    },
                    Err(status) if is_not_found(&status) => Err(WaitFailure::Gone),
                    Err(_) => Err(WaitFailure::Connection),
                }
            }
        }
    }

    fn report_exit(&self, entry: &Entry, code: Option<u32>, oom: bool, pid: Option<u32>) {
        let Some(host) = self.host.get().and_then(|host| host.upgrade()) else {
            return;
        };
        let payload =
            serde_json::json!({ "name": entry.name, "code": code, "oom": oom, "pid": pid });
        let event = Event {
            topic: EXITED.into(),
            payload: payload.to_string().into_bytes(),
            source: "host".into(),
        };
        let plugin = entry.plugin.clone();
        tokio::spawn(async move {
            if !host.notify(&plugin, event, NOTIFY_WAIT).await {
                tracing::debug!(plugin = %plugin, "a container exit could not be reported: the plugin is not running");
            }
        });
    }

    /// Sends `signal` to the main process (`all`: to every process in it).
    pub async fn kill(&self, entry: &Entry, signal: u32, all: bool) -> Result<(), CapError> {
        let client = self.engine.client().await?;
        client
            .tasks()
            .kill(self.engine.req(KillRequest {
                container_id: entry.id.clone(),
                exec_id: String::new(),
                signal,
                all,
            }))
            .await
            .map_err(|status| {
                status_error(&format!("signalling container `{}`", entry.name), status)
            })?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL to everything in it after `grace`; waits.
    pub async fn stop(&self, entry: &Entry, grace: Duration) -> Result<(), CapError> {
        if entry.status().phase != Phase::Running {
            return Ok(());
        }
        let _ = self.kill(entry, libc::SIGTERM as u32, false).await;
        if entry.wait_exit(grace).await {
            return Ok(());
        }
        tracing::info!(plugin = %entry.plugin, container = %entry.name, "still running {grace:?} after SIGTERM: killing it");
        self.kill(entry, libc::SIGKILL as u32, true).await?;
        if entry.wait_exit(KILL_WAIT).await {
            Ok(())
        } else {
            Err(CapError::Timeout(format!(
                "container `{}` did not exit after SIGKILL",
                entry.name
            )))
        }
    }

    /// Stops and deletes the container with its task, snapshot, network and
    /// output files.
    pub async fn remove(&self, entry: &Entry, grace: Duration) -> Result<(), CapError> {
        self.stop(entry, grace).await?;
        let client = self.engine.client().await?;
        let deleted = client
            .tasks()
            .delete(self.engine.req(DeleteTaskRequest {
                container_id: entry.id.clone(),
            }))
            .await;
        unless_gone(deleted, "deleting the container's task")?;
        network::teardown(&self.engine.config, &self.net_dir(), &entry.id).await;
        let deleted = client
            .containers()
            .delete(self.engine.req(DeleteContainerRequest {
                id: entry.id.clone(),
            }))
            .await;
        unless_gone(deleted, "deleting the container")?;
        let _ = client
            .snapshots()
            .remove(self.engine.req(RemoveSnapshotRequest {
                snapshotter: self.engine.config.snapshotter.clone(),
                key: entry.id.clone(),
            }))
            .await;
        let (out, err) = self.paths(&entry.id);
        let _ = std::fs::remove_file(out);
        let _ = std::fs::remove_file(err);
        // The status moves on so that watchers and followers of it end.
        entry.status.send_modify(|status| {
            status.phase = Phase::Exited;
            status.run += 1;
        });
        self.lock()?.remove(&entry.id);
        tracing::info!(plugin = %entry.plugin, container = %entry.name, "container removed");
        Ok(())
    }

    /// Removes every container of `plugin` (all when `None`).
    pub async fn remove_all(&self, plugin: Option<&str>, grace: Duration) {
        let entries: Vec<Arc<Entry>> = match self.lock() {
            Ok(table) => table
                .values()
                .filter(|entry| plugin.is_none_or(|name| entry.plugin == name))
                .cloned()
                .collect(),
            Err(_) => return,
        };
        let removals = entries.iter().map(|entry| async move {
            if let Err(err) = self.remove(entry, grace).await {
                tracing::warn!(plugin = %entry.plugin, container = %entry.name, "removing the container failed: {err}");
            }
        });
        futures_util::future::join_all(removals).await;
    }

    /// Labels recorded on a new container.
    pub fn labels(
        plugin: &str,
        name: &str,
        digest: &str,
        ip: Option<&str>,
        extra: &[(String, String)],
    ) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = extra.iter().cloned().collect();
        labels.insert(PLUGIN_LABEL.into(), plugin.into());
        labels.insert(NAME_LABEL.into(), name.into());
        labels.insert(DIGEST_LABEL.into(), digest.into());
        labels.insert(CREATED_LABEL.into(), now_ms().to_string());
        if let Some(ip) = ip {
            labels.insert(IP_LABEL.into(), ip.into());
        }
        labels
    }
}

/// A containerd answer, where "not found" (already gone) is success.
fn unless_gone<T>(
    answer: Result<T, containerd_client::tonic::Status>,
    what: &str,
) -> Result<(), CapError> {
    match answer {
        Ok(_) => Ok(()),
        Err(status) if is_not_found(&status) => Ok(()),
        Err(status) => Err(status_error(what, status)),
    }
}

enum WaitFailure {
    /// The task or container no longer exists.
    Gone,
    /// containerd could not be asked.
    Connection,
}

/// The creation time recorded in `labels`.
pub fn created_at(labels: &HashMap<String, String>) -> u64 {
    labels
        .get(CREATED_LABEL)
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}
