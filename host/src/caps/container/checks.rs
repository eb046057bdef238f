//! What `create` checks and resolves before anything is set up: the spec
//! against the grant (names, network, ports, capabilities, labels, mounts,
//! limits), the port mappings, and the user.

use std::path::Path;

use super::{Container, engine, image, network, spec};
use crate::caps::CapView;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::{
    ContainerSpec, MountKind, NetworkMode, Protocol,
};

/// The spec's ports as portmap takes them.
pub(super) fn port_mappings(spec: &ContainerSpec) -> Result<Vec<network::PortMapping>, CapError> {
    spec.ports
        .iter()
        .map(|port| {
            let host_ip = match &port.host_ip {
                None => String::new(),
                Some(address) => address
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| {
                        CapError::Invalid(format!("host-ip `{address}` is not an IP address"))
                    })?
                    .to_string(),
            };
            Ok(network::PortMapping {
                host_port: port.host_port,
                container_port: port.container_port,
                protocol: match port.protocol {
                    Protocol::Tcp => "tcp".into(),
                    Protocol::Udp => "udp".into(),
                },
                host_ip,
            })
        })
        .collect()
}

/// `user[:group]` as `uid:gid`: names are looked up in the image's
/// /etc/passwd and /etc/group.
pub(super) async fn resolve_user(
    engine: &engine::Containerd,
    image: &str,
    user: &str,
) -> Result<String, CapError> {
    if spec::numeric_user(user).is_ok() {
        return Ok(user.to_string());
    }
    let (name, group) = match user.split_once(':') {
        Some((name, group)) => (name, Some(group)),
        None => (user, None),
    };
    let lookup = |table: &[u8], wanted: &str| {
        String::from_utf8_lossy(table).lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[0] == wanted)
                .then(|| (fields[2].parse::<u32>().ok(), fields[3].parse::<u32>().ok()))
        })
    };
    let (uid, primary) = match name.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let passwd = image::file_of(engine, image, "etc/passwd")
                .await?
                .unwrap_or_default();
            match lookup(&passwd, name) {
                Some((Some(uid), Some(gid))) => (uid, gid),
                _ => {
                    return Err(CapError::Invalid(format!(
                        "user `{name}` is not in the image's /etc/passwd"
                    )));
                }
            }
        }
    };
    let gid = match group {
        None => primary,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = image::file_of(engine, image, "etc/group")
                    .await?
                    .unwrap_or_default();
                match lookup(&groups, group) {
                    Some((Some(gid), _)) => gid,
                    _ => {
                        return Err(CapError::Invalid(format!(
                            "group `{group}` is not in the image's /etc/group"
                        )));
                    }
                }
            }
        },
    };
    Ok(format!("{uid}:{gid}"))
}

impl CapView<'_, Container> {
    /// The image `reference` names, on the device and allowed by the grant
    /// (its repository, then its digest against pins): its name and digest.
    /// Refused before the device is looked at when the repository is not
    /// granted, so a refusal tells nothing of what the device holds.
    pub(super) async fn granted_image(
        &self,
        reference: &str,
    ) -> Result<(String, String), CapError> {
        let grant = self.ready().await?;
        let parsed = super::parse_reference(reference)?;
        if let Some(why) = grant.image_refusal(&parsed, None) {
            return Err(self.deny(why));
        }
        let name = image::image_name(&parsed);
        let found = image::find(&self.shared.containers.engine, &name)
            .await?
            .ok_or_else(|| CapError::NotFound(format!("image {name} is not on this device")))?;
        let digest = image::record(&found).digest;
        if let Some(why) = grant.image_refusal(&parsed, Some(&digest)) {
            return Err(self.deny(why));
        }
        Ok((name, digest))
    }

    /// Resolves the spec's limits against the grant's maxima.
    pub(super) fn limits(&self, spec: &ContainerSpec) -> Result<spec::Limits, CapError> {
        let grant = self.grant()?;
        let resources = &spec.resources;
        if let (Some(max), Some(asked)) = (grant.max_memory, resources.memory_bytes)
            && asked > max
        {
            return Err(self.deny(format!(
                "a memory limit of {asked} bytes is above the grant's {max}"
            )));
        }
        let period = resources.cpu_period.unwrap_or(100_000);
        if !(1_000..=1_000_000).contains(&period) {
            return Err(CapError::Invalid(
                "cpu-period must be 1000 to 1000000 microseconds".into(),
            ));
        }
        let max_quota = grant.max_cpus.map(|cpus| (cpus * period as f64) as u64);
        if let (Some(max), Some(asked)) = (max_quota, resources.cpu_quota)
            && asked > max
        {
            return Err(self.deny(format!(
                "a CPU quota of {asked}µs per {period}µs is above the grant's {} CPUs",
                grant.max_cpus.unwrap_or_default()
            )));
        }
        if let (Some(max), Some(asked)) = (grant.max_pids, resources.pids_limit)
            && asked > max
        {
            return Err(self.deny(format!(
                "a pids limit of {asked} is above the grant's {max}"
            )));
        }
        if let Some(shares) = resources.cpu_shares
            && !(2..=262_144).contains(&shares)
        {
            return Err(CapError::Invalid("cpu-shares must be 2 to 262144".into()));
        }
        let memory = resources.memory_bytes.or(grant.max_memory);
        if let (Some(memory), Some(swap)) = (memory, resources.memory_swap_bytes)
            && swap < memory
        {
            return Err(CapError::Invalid(
                "memory-swap-bytes must be at least memory-bytes".into(),
            ));
        }
        Ok(spec::Limits {
            memory,
            memory_swap: resources.memory_swap_bytes,
            cpu_shares: resources.cpu_shares,
            cpu_quota: resources.cpu_quota.or(max_quota),
            cpu_period: resources.cpu_period.or(max_quota.map(|_| period)),
            pids: resources.pids_limit.or(grant.max_pids),
        })
    }

    /// Checks mounts against the grant.
    pub(super) fn mounts(&self, spec: &ContainerSpec) -> Result<Vec<spec::SpecMount>, CapError> {
        let grant = self.grant()?;
        let mut mounts = Vec::new();
        for mount in &spec.mounts {
            let target = Path::new(&mount.target);
            if !target.is_absolute() || mount.target.contains('\0') {
                return Err(CapError::Invalid(format!(
                    "mount target `{}` is not an absolute path",
                    mount.target
                )));
            }
            let tmpfs = matches!(mount.kind, MountKind::Tmpfs);
            if !tmpfs {
                let source = Path::new(&mount.source);
                if !source.is_absolute()
                    || source
                        .components()
                        .any(|part| matches!(part, std::path::Component::ParentDir))
                {
                    return Err(CapError::Invalid(format!(
                        "mount source `{}` is not a plain absolute path",
                        mount.source
                    )));
                }
                // Symbolic links are resolved first, so a link cannot lead outside the grant.
                let resolved = std::fs::canonicalize(source).map_err(|err| {
                    CapError::NotFound(format!("mount source `{}`: {err}", mount.source))
                })?;
                let resolved = resolved.display().to_string();
                if let Some(why) = grant
                    .mount_refusal(&mount.source, mount.read_only)
                    .or_else(|| grant.mount_refusal(&resolved, mount.read_only))
                {
                    return Err(self.deny(why));
                }
                mounts.push(spec::SpecMount {
                    tmpfs,
                    source: resolved,
                    target: mount.target.clone(),
                    read_only: mount.read_only,
                });
            } else {
                mounts.push(spec::SpecMount {
                    tmpfs,
                    source: String::new(),
                    target: mount.target.clone(),
                    read_only: mount.read_only,
                });
            }
        }
        Ok(mounts)
    }

    /// Checks everything in `spec` the grant decides.
    pub(super) fn vet(&self, spec: &ContainerSpec) -> Result<(), CapError> {
        let grant = self.grant()?;
        if !valid_name(&spec.name) {
            return Err(CapError::Invalid(format!(
                "container name `{}` must be 1 to 64 letters, digits, `-` or `_`",
                spec.name
            )));
        }
        if spec.privileged && !grant.privileged {
            return Err(self.deny("privileged containers are outside the grant"));
        }
        match spec.network {
            NetworkMode::Host if !grant.host_network => {
                return Err(self.deny("the host network is outside the grant"));
            }
            NetworkMode::Bridge => {}
            _ if !spec.ports.is_empty() => {
                return Err(CapError::Invalid(
                    "port mappings need the bridge network".into(),
                ));
            }
            _ => {}
        }
        for port in &spec.ports {
            if port.host_port == 0 || port.container_port == 0 {
                return Err(CapError::Invalid("ports must be 1 to 65535".into()));
            }
            if !grant.port_allowed(port.host_port) {
                return Err(self.deny(format!("host port {} is outside the grant", port.host_port)));
            }
        }
        for cap in &spec.capabilities {
            if !grant.capability_allowed(cap) {
                return Err(self.deny(format!("keeping capability `{cap}` is outside the grant")));
            }
        }
        for (key, _) in &spec.labels {
            if key.starts_with("cairn.") || key.starts_with("containerd.") || key.is_empty() {
                return Err(CapError::Invalid(format!("label `{key}` is reserved")));
            }
        }
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(CapError::Invalid(format!(
                    "bad environment variable `{key}`"
                )));
            }
        }
        Ok(())
    }
}

/// Container names become containerd ids and CNI ids, so no dots or slashes.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}
