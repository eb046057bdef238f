//! Pulls OCI images and runs containers (`cairn:host/container`).
//!
//! Images are fetched by the host by digest (every blob checked, signatures
//! too when the grant requires them) and run by the device's containerd. A
//! container belongs to the plugin, not to the running instance: a new release
//! finds its predecessor's containers by name with [`info`] or [`list`], and
//! containers keep running while the daemon restarts. When a container's main
//! process exits, [`Plugin::on_event`](crate::Plugin::on_event) receives an
//! event on [`EXITED_TOPIC`] (source `host`); parse it with
//! [`Exited::from_event`].
//!
//! Needs `[grants.container]` naming the image repositories (and the mounts,
//! ports and limits the containers may use).
//!
//! ```no_run
//! use std::time::Duration;
//! use cairn_sdk::container::{self, Network, PullPolicy, Spec};
//!
//! # fn run() -> cairn_sdk::Result<()> {
//! let image = container::pull("registry.local:5000/apps/web:1.4", PullPolicy::IfNotPresent)?;
//! container::run(
//!     &Spec::new("web", &image.reference)
//!         .env("MODE", "production")
//!         .network(Network::Bridge)
//!         .port(8080, 80)
//!         .memory_bytes(128 << 20)
//!         .cpus(0.5),
//! )?;
//! let probe = container::exec("web", &["/bin/true"], Duration::from_secs(5))?;
//! assert_eq!(probe.exit_code, 0);
//! container::stop("web", Duration::from_secs(10))?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::bindings::cairn::host::container as host;
use crate::{Event, Result};

pub use host::{ImageConfig, ImageInfo, ImagePrune, PrunedImage, PullPolicy};

/// Topic of the event sent when one of the plugin's containers exits.
pub const EXITED_TOPIC: &str = "cairn/container/exited";

/// Which network a container sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Only loopback (the default).
    None,
    /// Its own address on the host's container bridge, with port mappings.
    Bridge,
    /// The host's network (needs `host-network = true` in the grant).
    Host,
}

/// What to run and how; build it with [`Spec::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Spec {
    inner: host::ContainerSpec,
}

impl Spec {
    /// Runs the image `image` (already pulled) under the label `name`, with
    /// the image's own command, no network but loopback, no capabilities.
    pub fn new(name: &str, image: &str) -> Spec {
        Spec {
            inner: host::ContainerSpec {
                name: name.to_string(),
                image: image.to_string(),
                command: None,
                args: None,
                env: Vec::new(),
                working_dir: None,
                user: None,
                hostname: None,
                read_only_rootfs: false,
                mounts: Vec::new(),
                ports: Vec::new(),
                network: host::NetworkMode::None,
                resources: host::Resources {
                    memory_bytes: None,
                    memory_swap_bytes: None,
                    cpu_shares: None,
                    cpu_quota: None,
                    cpu_period: None,
                    pids_limit: None,
                },
                capabilities: Vec::new(),
                privileged: false,
                labels: Vec::new(),
            },
        }
    }

    /// Replaces the image's entrypoint (and drops its command).
    pub fn command<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, command: I) -> Spec {
        self.inner.command = Some(strings(command));
        self
    }

    /// Replaces the image's command (the entrypoint's arguments).
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Spec {
        self.inner.args = Some(strings(args));
        self
    }

    /// Sets an environment variable (over the image's).
    pub fn env(mut self, key: &str, value: &str) -> Spec {
        self.inner.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Replaces the image's working directory.
    pub fn working_dir(mut self, dir: &str) -> Spec {
        self.inner.working_dir = Some(dir.to_string());
        self
    }

    /// Runs as `uid`, `uid:gid`, or `user[:group]` names from the image's
    /// /etc/passwd and /etc/group.
    pub fn user(mut self, user: &str) -> Spec {
        self.inner.user = Some(user.to_string());
        self
    }

    /// The host name inside the container (default: its name).
    pub fn hostname(mut self, name: &str) -> Spec {
        self.inner.hostname = Some(name.to_string());
        self
    }

    /// Mounts the image's file system read-only.
    pub fn read_only_rootfs(mut self, on: bool) -> Spec {
        self.inner.read_only_rootfs = on;
        self
    }

    /// Binds the host path `source` (inside the grant's mounts) at `target`.
    pub fn bind(mut self, source: &str, target: &str, read_only: bool) -> Spec {
        self.inner.mounts.push(host::Mount {
            kind: host::MountKind::Bind,
            source: source.to_string(),
            target: target.to_string(),
            read_only,
        });
        self
    }

    /// Mounts an empty in-memory file system at `target`.
    pub fn tmpfs(mut self, target: &str) -> Spec {
        self.inner.mounts.push(host::Mount {
            kind: host::MountKind::Tmpfs,
            source: String::new(),
            target: target.to_string(),
            read_only: false,
        });
        self
    }

    /// Chooses the network.
    pub fn network(mut self, network: Network) -> Spec {
        self.inner.network = match network {
            Network::None => host::NetworkMode::None,
            Network::Bridge => host::NetworkMode::Bridge,
            Network::Host => host::NetworkMode::Host,
        };
        self
    }

    /// Forwards TCP `host_port` on every host address to `container_port`
    /// (bridge network only).
    pub fn port(self, host_port: u16, container_port: u16) -> Spec {
        self.port_on(None, host_port, container_port, false)
    }

    /// Forwards `host_port` on `host_ip` (every address when `None`) to
    /// `container_port`, over UDP when `udp`.
    pub fn port_on(
        mut self,
        host_ip: Option<&str>,
        host_port: u16,
        container_port: u16,
        udp: bool,
    ) -> Spec {
        self.inner.ports.push(host::Port {
            host_ip: host_ip.map(str::to_string),
            host_port,
            container_port,
            protocol: if udp {
                host::Protocol::Udp
            } else {
                host::Protocol::Tcp
            },
        });
        self
    }

    /// Memory limit in bytes.
    pub fn memory_bytes(mut self, bytes: u64) -> Spec {
        self.inner.resources.memory_bytes = Some(bytes);
        self
    }

    /// Memory plus swap limit in bytes.
    pub fn memory_swap_bytes(mut self, bytes: u64) -> Spec {
        self.inner.resources.memory_swap_bytes = Some(bytes);
        self
    }

    /// Relative CPU weight (2 to 262144).
    pub fn cpu_shares(mut self, shares: u64) -> Spec {
        self.inner.resources.cpu_shares = Some(shares);
        self
    }

    /// CPU quota in microseconds per `period` microseconds.
    pub fn cpu_quota(mut self, quota: u64, period: u64) -> Spec {
        self.inner.resources.cpu_quota = Some(quota);
        self.inner.resources.cpu_period = Some(period);
        self
    }

    /// At most `cpus` CPUs (0.5 = half of one).
    pub fn cpus(self, cpus: f64) -> Spec {
        let quota = (cpus * 100_000.0).round().max(1_000.0) as u64;
        self.cpu_quota(quota, 100_000)
    }

    /// At most `pids` processes and threads.
    pub fn pids_limit(mut self, pids: u64) -> Spec {
        self.inner.resources.pids_limit = Some(pids);
        self
    }

    /// Keeps the Linux capability `name` (e.g. `CAP_NET_BIND_SERVICE`).
    pub fn keep_capability(mut self, name: &str) -> Spec {
        self.inner.capabilities.push(name.to_string());
        self
    }

    /// Runs privileged (needs `privileged = true` in the grant).
    pub fn privileged(mut self, on: bool) -> Spec {
        self.inner.privileged = on;
        self
    }

    /// Records a label on the container.
    pub fn label(mut self, key: &str, value: &str) -> Spec {
        self.inner.labels.push((key.to_string(), value.to_string()));
        self
    }
}

fn strings<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Vec<String> {
    items
        .into_iter()
        .map(|item| item.as_ref().to_string())
        .collect()
}

/// What the host knows about one of the plugin's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The plugin's label for it.
    pub name: String,
    /// Its id in containerd.
    pub id: String,
    /// The image reference it was created from.
    pub image: String,
    /// The image's manifest digest.
    pub image_digest: String,
    /// Whether its main process runs now.
    pub running: bool,
    /// Whether it was started at least once and its main process exited.
    pub exited: bool,
    /// Host process id of its main process, while it runs.
    pub pid: Option<u32>,
    /// Exit status of its main process, once exited and known.
    pub exit_code: Option<u32>,
    /// Whether the kernel killed a process of it for lack of memory.
    pub oom_killed: bool,
    /// Its address on the bridge network.
    pub ip: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// True when the daemon found it at start rather than creating it.
    pub adopted: bool,
}

impl From<host::ContainerInfo> for ContainerInfo {
    fn from(info: host::ContainerInfo) -> Self {
        ContainerInfo {
            running: matches!(info.state, host::ContainerState::Running),
            exited: matches!(info.state, host::ContainerState::Exited),
            name: info.name,
            id: info.id,
            image: info.image,
            image_digest: info.image_digest,
            pid: info.pid,
            exit_code: info.exit_code,
            oom_killed: info.oom_killed,
            ip: info.ip,
            created_at_ms: info.created_at_ms,
            adopted: info.adopted,
        }
    }
}

/// How a command run with [`exec`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Its exit status (137 when killed on timeout).
    pub exit_code: u32,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Its standard output (at most 1 MiB).
    pub stdout: Vec<u8>,
    /// Its standard error (at most 1 MiB).
    pub stderr: Vec<u8>,
}

/// The latest output of a container's main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// The last bytes written to stdout.
    pub stdout: Vec<u8>,
    /// The last bytes written to stderr.
    pub stderr: Vec<u8>,
    /// Bytes written in total, including those no longer held.
    pub total_bytes: u64,
}

/// The payload of an [`EXITED_TOPIC`] event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Exited {
    /// The container's name.
    pub name: String,
    /// Exit status, when known.
    pub code: Option<u32>,
    /// Whether the OOM killer struck.
    pub oom: bool,
    /// The pid of the run that ended: a container replaced under the same
    /// name reports its old run's exit after the new one started.
    #[serde(default)]
    pub pid: Option<u32>,
}

impl Exited {
    /// The exit this event reports, if it is a container exit from the host.
    pub fn from_event(event: &Event) -> Option<Exited> {
        if event.topic != EXITED_TOPIC || event.source != "host" {
            return None;
        }
        event.json().ok()
    }
}

/// Makes the image available on the device per `policy`.
pub fn pull(reference: &str, policy: PullPolicy) -> Result<ImageInfo> {
    Ok(host::pull(reference, policy)?)
}

/// The config of an image already on the device (see [`pull`]): its labels,
/// entrypoint, command, environment, working directory, user and exposed
/// ports, read from the digest-checked config blob.
pub fn inspect_image(reference: &str) -> Result<ImageConfig> {
    Ok(host::inspect_image(reference)?)
}

/// The images on the device the plugin's grant allows.
pub fn images() -> Result<Vec<ImageInfo>> {
    Ok(host::images()?)
}

/// Deletes the images the grant allows that no container uses, that
/// `also_keep` does not name (references or digests) and that are not among
/// the `keep` latest pulled of their repository; with `dry_run`, only says so.
pub fn prune_images(keep: u32, also_keep: &[String], dry_run: bool) -> Result<ImagePrune> {
    Ok(host::prune_images(keep, also_keep, dry_run)?)
}

/// Removes an image no container uses.
pub fn remove_image(reference: &str) -> Result<()> {
    Ok(host::remove_image(reference)?)
}

/// Creates the container (network set up, not started).
pub fn create(spec: &Spec) -> Result<ContainerInfo> {
    Ok(host::create(&spec.inner)?.into())
}

/// Starts a created (or exited) container.
pub fn start(name: &str) -> Result<ContainerInfo> {
    Ok(host::start(name)?.into())
}

/// Creates and starts the container.
pub fn run(spec: &Spec) -> Result<ContainerInfo> {
    create(spec)?;
    start(&spec.inner.name)
}

/// SIGTERM, then SIGKILL after `grace`; returns the final info.
pub fn stop(name: &str, grace: Duration) -> Result<ContainerInfo> {
    Ok(host::stop(name, millis(grace))?.into())
}

/// Sends a signal (`TERM`, `HUP`, `KILL`…) to its main process.
pub fn kill(name: &str, signal: &str) -> Result<()> {
    Ok(host::kill(name, signal)?)
}

/// Stops it if it runs, then deletes it with its file system changes.
pub fn remove(name: &str) -> Result<()> {
    Ok(host::remove(name)?)
}

/// Runs `args` inside the running container and waits up to `timeout`.
pub fn exec(name: &str, args: &[&str], timeout: Duration) -> Result<ExecResult> {
    exec_with_input(name, args, &[], timeout)
}

/// Like [`exec`], writing `stdin` to the command's standard input.
pub fn exec_with_input(
    name: &str,
    args: &[&str],
    stdin: &[u8],
    timeout: Duration,
) -> Result<ExecResult> {
    Exec::new(args, timeout).stdin(stdin).run(name)
}

/// A command to run inside a running container, for more than [`exec`]
/// says: its input, environment and working directory.
///
/// ```ignore
/// let result = container::Exec::new(&["/bin/sh", "-c", "id"], Duration::from_secs(5))
///     .clear_env()
///     .env("MODE", "check")
///     .run("web")?;
/// ```
#[derive(Debug, Clone)]
pub struct Exec {
    spec: host::ExecSpec,
}

impl Exec {
    /// `args` (the program first; no shell unless you name one), killed
    /// after `timeout` (at most ten minutes).
    pub fn new(args: &[&str], timeout: Duration) -> Exec {
        Exec {
            spec: host::ExecSpec {
                args: strings(args),
                env: Vec::new(),
                clear_env: false,
                working_dir: None,
                stdin: Vec::new(),
                timeout_ms: millis(timeout),
            },
        }
    }

    /// Bytes written to its standard input, which is then closed.
    pub fn stdin(mut self, bytes: &[u8]) -> Exec {
        self.spec.stdin = bytes.to_vec();
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Exec {
        self.spec.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts from an empty environment instead of the container's: the
    /// command sees only a standard `PATH` and what [`Exec::env`] sets.
    pub fn clear_env(mut self) -> Exec {
        self.spec.clear_env = true;
        self
    }

    /// Runs it in `dir` instead of the container's working directory.
    pub fn working_dir(mut self, dir: &str) -> Exec {
        self.spec.working_dir = Some(dir.to_string());
        self
    }

    /// Runs it in the running container `name` and waits for it.
    pub fn run(&self, name: &str) -> Result<ExecResult> {
        let result = host::exec(name, &self.spec)?;
        Ok(ExecResult {
            exit_code: result.exit_code,
            timed_out: result.timed_out,
            stdout: result.stdout,
            stderr: result.stderr,
        })
    }
}

/// The last `max_bytes` (at most 64 KiB) of its main process's output.
pub fn logs(name: &str, max_bytes: u32) -> Result<Logs> {
    let tail = host::logs(name, max_bytes)?;
    Ok(Logs {
        stdout: tail.stdout,
        stderr: tail.stderr,
        total_bytes: tail.total_bytes,
    })
}

/// Memory, CPU and process counts of a running container.
pub fn stats(name: &str) -> Result<host::ResourceUsage> {
    Ok(host::stats(name)?)
}

/// One of the plugin's containers.
pub fn info(name: &str) -> Result<ContainerInfo> {
    Ok(host::info(name)?.into())
}

/// Every container of the plugin.
pub fn list() -> Result<Vec<ContainerInfo>> {
    Ok(host::list()?.into_iter().map(Into::into).collect())
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
