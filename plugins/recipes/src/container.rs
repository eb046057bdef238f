//! `[lifecycle.run.container]`: a component that runs as a container. Every
//! field of Keystone's container recipe (image, pull policy, network, ports,
//! mounts, environment, user, hostname, privileged, labels, resources) plus
//! the command, arguments and working directory, all of them enforced by the
//! host's `container` capability.

use std::collections::BTreeMap;

use cairn_sdk::container::{Network, PullPolicy, Spec};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ContainerRun {
    /// `HOST[:PORT]/REPOSITORY:TAG` or `…@sha256:…`.
    pub image: String,
    /// `always`, `never` or `if-not-present` (default).
    pub pull_policy: Option<String>,
    /// `bridge` (default), `host` or `none`.
    pub network_mode: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `uid[:gid]`, or `user[:group]` names from the image.
    pub user: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: ContainerResources,
    /// Replaces the image's entrypoint.
    pub command: Option<Vec<String>>,
    /// Replaces the image's command.
    pub args: Option<Vec<String>>,
    pub working_dir: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PortSpec {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` (default) or `udp`.
    pub protocol: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MountSpec {
    /// Host path (`bind`), volume name (`volume`), unused for `tmpfs`.
    pub source: Option<String>,
    pub target: String,
    /// `bind` (default), `volume` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ContainerResources {
    pub memory_mb: Option<u64>,
    /// Memory plus swap, in MiB.
    pub memory_swap: Option<u64>,
    pub cpu_shares: Option<u64>,
    /// Microseconds of CPU per `cpu_period`.
    pub cpu_quota: Option<u64>,
    /// Microseconds (default 100000).
    pub cpu_period: Option<u64>,
    pub pids_limit: Option<u64>,
}

fn check_name(value: &str, key: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "lifecycle.run.container.{key} `{value}`: expected {}",
            allowed.join(", ")
        ))
    }
}

impl ContainerRun {
    pub fn validate(&self) -> Result<(), String> {
        if self.image.trim().is_empty() {
            return Err("lifecycle.run.container.image is empty".into());
        }
        if let Some(policy) = &self.pull_policy {
            check_name(
                policy,
                "pull_policy",
                &["always", "never", "if-not-present"],
            )?;
        }
        if let Some(mode) = &self.network_mode {
            check_name(mode, "network_mode", &["bridge", "host", "none"])?;
            if mode != "bridge" && !self.ports.is_empty() {
                return Err(format!(
                    "lifecycle.run.container.ports need network_mode = \"bridge\", not `{mode}`"
                ));
            }
        }
        for port in &self.ports {
            if port.host_port == 0 || port.container_port == 0 {
                return Err("lifecycle.run.container.ports: ports are 1 to 65535".into());
            }
            if let Some(protocol) = &port.protocol {
                check_name(protocol, "ports.protocol", &["tcp", "udp"])?;
            }
        }
        for mount in &self.mounts {
            let kind = mount.kind.as_deref().unwrap_or("bind");
            check_name(kind, "mounts.type", &["bind", "volume", "tmpfs"])?;
            if !mount.target.starts_with('/') {
                return Err(format!(
                    "lifecycle.run.container.mounts: target `{}` is not an absolute path",
                    mount.target
                ));
            }
            match (kind, mount.source.as_deref()) {
                ("bind", Some(source)) if source.starts_with('/') => {}
                ("bind", _) => {
                    return Err(format!(
                        "lifecycle.run.container.mounts: the bind mount at `{}` needs an absolute source",
                        mount.target
                    ));
                }
                ("volume", Some(name))
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        && !name.starts_with('.') => {}
                ("volume", _) => {
                    return Err(format!(
                        "lifecycle.run.container.mounts: the volume at `{}` needs a name (letters, digits, `-`, `_`, `.`)",
                        mount.target
                    ));
                }
                _ => {}
            }
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            return Err("lifecycle.run.container.command is empty".into());
        }
        let resources = &self.resources;
        if resources.memory_mb == Some(0) {
            return Err("lifecycle.run.container.resources.memory_mb must be at least 1".into());
        }
        if let (Some(memory), Some(swap)) = (resources.memory_mb, resources.memory_swap)
            && swap < memory
        {
            return Err(
                "lifecycle.run.container.resources.memory_swap must be at least memory_mb".into(),
            );
        }
        Ok(())
    }

    pub fn pull_policy(&self) -> PullPolicy {
        match self.pull_policy.as_deref() {
            Some("always") => PullPolicy::Always,
            Some("never") => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        }
    }

    /// The container spec; `volumes` is the directory named volumes live in.
    pub fn spec(&self, name: &str, image: &str, volumes: &str) -> Spec {
        let mut spec = Spec::new(name, image).network(match self.network_mode.as_deref() {
            Some("host") => Network::Host,
            Some("none") => Network::None,
            _ => Network::Bridge,
        });
        if let Some(command) = &self.command {
            spec = spec.command(command);
        }
        if let Some(args) = &self.args {
            spec = spec.args(args);
        }
        if let Some(dir) = &self.working_dir {
            spec = spec.working_dir(dir);
        }
        if let Some(user) = &self.user {
            spec = spec.user(user);
        }
        spec = spec.hostname(self.hostname.as_deref().unwrap_or(name));
        for (key, value) in &self.env {
            spec = spec.env(key, value);
        }
        for port in &self.ports {
            spec = spec.port_on(
                port.host_ip
                    .as_deref()
                    .filter(|ip| *ip != "0.0.0.0" && !ip.is_empty()),
                port.host_port,
                port.container_port,
                port.protocol.as_deref() == Some("udp"),
            );
        }
        for mount in &self.mounts {
            let source = mount.source.as_deref().unwrap_or_default();
            spec = match mount.kind.as_deref().unwrap_or("bind") {
                "tmpfs" => spec.tmpfs(&mount.target),
                "volume" => spec.bind(
                    &format!("{volumes}/{source}"),
                    &mount.target,
                    mount.read_only,
                ),
                _ => spec.bind(source, &mount.target, mount.read_only),
            };
        }
        let resources = &self.resources;
        const MIB: u64 = 1024 * 1024;
        if let Some(memory) = resources.memory_mb {
            spec = spec.memory_bytes(memory.saturating_mul(MIB));
        }
        if let Some(swap) = resources.memory_swap {
            spec = spec.memory_swap_bytes(swap.saturating_mul(MIB));
        }
        if let Some(shares) = resources.cpu_shares {
            spec = spec.cpu_shares(shares);
        }
        if let Some(quota) = resources.cpu_quota {
            spec = spec.cpu_quota(quota, resources.cpu_period.unwrap_or(100_000));
        }
        if let Some(pids) = resources.pids_limit {
            spec = spec.pids_limit(pids);
        }
        spec = spec.privileged(self.privileged);
        for (key, value) in &self.labels {
            spec = spec.label(key, value);
        }
        spec
    }

    /// The named volumes, which the runner creates before the start.
    pub fn volumes(&self) -> impl Iterator<Item = &str> {
        self.mounts
            .iter()
            .filter(|mount| mount.kind.as_deref() == Some("volume"))
            .filter_map(|mount| mount.source.as_deref())
    }
}
