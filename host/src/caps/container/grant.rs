//! `[grants.container]`: which images a plugin may pull and run, what its
//! containers may mount, expose and use.

use std::path::{Component, Path};

use serde::Deserialize;

use crate::caps::process::grant::glob;
use crate::caps::process::spawn::capability_number;
use crate::supply::oci::Reference;

/// `[grants.container]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerGrant {
    /// Image repositories (`HOST[:PORT]/REPO`, `*` matching any run of
    /// characters), each optionally pinned to one manifest (`…@sha256:…`).
    /// Empty: the plugin may import the capability but use no image (a
    /// plugin that runs containers only on some devices).
    pub images: Vec<String>,
    /// Images must carry a cosign signature by one of `signers`.
    #[serde(default)]
    pub require_signatures: bool,
    /// Trusted keys (names from the daemon's `[trust.keys]`) whose image
    /// signatures are accepted.
    #[serde(default)]
    pub signers: Vec<String>,
    /// Host paths that may be bind-mounted (with everything beneath them).
    #[serde(default)]
    pub mounts: Vec<MountGrant>,
    /// Host ports (`"8080"` or `"8000-8999"`) that port mappings may use.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Whether containers may share the host's network.
    #[serde(default)]
    pub host_network: bool,
    /// Whether containers may run privileged.
    #[serde(default)]
    pub privileged: bool,
    /// Linux capabilities a container may keep.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Containers the plugin may have at once (running or not).
    #[serde(default = "default_max_containers")]
    pub max_containers: usize,
    /// Memory limit per container; containers without one get this one.
    #[serde(
        default,
        deserialize_with = "crate::policy::serde_size::deserialize_opt"
    )]
    pub max_memory: Option<u64>,
    /// CPUs per container (`1.5` = one and a half); containers without a
    /// CPU quota get this one.
    #[serde(default)]
    pub max_cpus: Option<f64>,
    /// Processes per container; containers without a limit get this one.
    #[serde(default)]
    pub max_pids: Option<u64>,
}

/// `[[grants.container.mounts]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MountGrant {
    /// Absolute host path.
    pub path: String,
    /// Mounts from under it must be read-only.
    #[serde(default)]
    pub read_only: bool,
}

fn default_max_containers() -> usize {
    8
}

/// One entry of `images`, parsed.
struct ImagePattern<'a> {
    repository: &'a str,
    digest: Option<&'a str>,
}

fn image_pattern(text: &str) -> ImagePattern<'_> {
    let text = text.strip_prefix("oci://").unwrap_or(text);
    match text.split_once('@') {
        Some((repository, digest)) => ImagePattern {
            repository,
            digest: Some(digest),
        },
        None => ImagePattern {
            repository: text,
            digest: None,
        },
    }
}

/// An inclusive range of host ports.
fn port_range(text: &str) -> Result<(u16, u16), String> {
    let number = |part: &str| {
        part.trim()
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| format!("port `{part}` is not a number from 1 to 65535"))
    };
    match text.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (number(low)?, number(high)?);
            if low > high {
                return Err(format!("port range `{text}` is empty"));
            }
            Ok((low, high))
        }
        None => number(text).map(|port| (port, port)),
    }
}

fn check_path(path: &str) -> Result<(), String> {
    let as_path = Path::new(path);
    if !as_path.is_absolute() {
        return Err(format!("mount path `{path}` is not absolute"));
    }
    if as_path
        .components()
        .any(|part| matches!(part, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("mount path `{path}` contains `.` or `..`"));
    }
    if as_path.parent().is_none() {
        return Err("granting `/` would expose the whole host".into());
    }
    Ok(())
}

/// Checks beyond the types (called from `Capability::validate`).
pub fn validate(grant: &ContainerGrant) -> Result<(), String> {
    for image in &grant.images {
        let pattern = image_pattern(image);
        // A colon is fine in HOST:PORT, not as a tag.
        let last = pattern.repository.rsplit('/').next().unwrap_or("");
        if !pattern.repository.contains('/') || last.contains(':') {
            return Err(format!(
                "image `{image}` must be HOST[:PORT]/REPOSITORY (a `*` matches any run of characters), optionally @sha256:DIGEST; tags are not patterns"
            ));
        }
        if let Some(digest) = pattern.digest {
            crate::state::digest::Digest::parse(digest)
                .map_err(|_| format!("image `{image}`: `{digest}` is not a sha256 digest"))?;
        }
    }
    if grant.require_signatures && grant.signers.is_empty() {
        return Err("require-signatures needs `signers`: the trusted keys to accept".into());
    }
    for mount in &grant.mounts {
        check_path(&mount.path)?;
    }
    for ports in &grant.ports {
        port_range(ports)?;
    }
    for cap in &grant.capabilities {
        if capability_number(cap).is_none() {
            return Err(format!("unknown capability `{cap}`"));
        }
    }
    if grant.max_containers == 0 || grant.max_containers > 1024 {
        return Err("max-containers must be 1 to 1024".into());
    }
    if grant.max_memory == Some(0) {
        return Err("max-memory must be more than 0".into());
    }
    if let Some(cpus) = grant.max_cpus
        && !(cpus.is_finite() && (0.01..=1024.0).contains(&cpus))
    {
        return Err("max-cpus must be from 0.01 to 1024".into());
    }
    if grant.max_pids == Some(0) {
        return Err("max-pids must be more than 0".into());
    }
    Ok(())
}

impl ContainerGrant {
    /// Why `reference` (at manifest `digest`, once known) is outside the grant.
    pub fn image_refusal(&self, reference: &Reference, digest: Option<&str>) -> Option<String> {
        let repository = reference.repository_name();
        let mut pinned_elsewhere = false;
        for pattern in self.images.iter().map(|image| image_pattern(image)) {
            if !glob(pattern.repository, &repository) {
                continue;
            }
            match (
                pattern.digest,
                digest.or(reference.digest().map(|d| d.as_str())),
            ) {
                (None, _) => return None,
                (Some(pinned), Some(actual)) if pinned == actual => return None,
                // The digest is checked again once the tag is resolved.
                (Some(_), None) => return None,
                (Some(_), Some(_)) => pinned_elsewhere = true,
            }
        }
        Some(if pinned_elsewhere {
            format!("image `{repository}` is pinned by the grant to another digest")
        } else {
            format!("image repository `{repository}` is outside the grant")
        })
    }

    /// Why mounting host `source` (read-only or not) is outside the grant.
    pub fn mount_refusal(&self, source: &str, read_only: bool) -> Option<String> {
        let path = Path::new(source);
        let granted = self
            .mounts
            .iter()
            .filter(|mount| path.starts_with(&mount.path))
            .max_by_key(|mount| mount.path.len());
        match granted {
            None => Some(format!(
                "mounting host path `{source}` is outside the grant"
            )),
            Some(mount) if mount.read_only && !read_only => Some(format!(
                "host path `{source}` may only be mounted read-only"
            )),
            Some(_) => None,
        }
    }

    /// Whether `port` is inside one of the granted ranges.
    pub fn port_allowed(&self, port: u16) -> bool {
        self.ports
            .iter()
            .any(|text| port_range(text).is_ok_and(|(low, high)| (low..=high).contains(&port)))
    }

    /// Whether the capability `name` may be kept.
    pub fn capability_allowed(&self, name: &str) -> bool {
        let number = capability_number(name);
        number.is_some()
            && self
                .capabilities
                .iter()
                .any(|allowed| capability_number(allowed) == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> Result<ContainerGrant, String> {
        let grant: ContainerGrant = toml::from_str(text).map_err(|err| err.to_string())?;
        validate(&grant).map(|()| grant)
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn grants_are_validated() {
        assert!(grant("images = [\"127.0.0.1:5000/test/*\"]").is_ok());
        assert!(grant("images = []").is_ok());
        for bad in [
            "images = [\"busybox\"]",
            "images = [\"r/busybox:1\"]",
            "images = [\"r/busybox@sha256:12\"]",
            "images = [\"r/x\"]\nrequire-signatures = true",
            "images = [\"r/x\"]\n[[mounts]]\npath = \"data\"",
            "images = [\"r/x\"]\n[[mounts]]\npath = \"/\"",
            "images = [\"r/x\"]\n[[mounts]]\npath = \"/a/../etc\"",
            "images = [\"r/x\"]\nports = [\"9000-8000\"]",
            "images = [\"r/x\"]\nports = [\"0\"]",
            "images = [\"r/x\"]\ncapabilities = [\"CAP_NOPE\"]",
            "images = [\"r/x\"]\nmax-containers = 0",
            "images = [\"r/x\"]\nmax-cpus = 0.0",
            "images = [\"r/x\"]\nmax-memory = \"0\"",
            "images = [\"r/x\"]\nother = 1",
        ] {
            assert!(grant(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn images_match_repository_patterns_and_pins() {
        let grant = grant(&format!(
            "images = [\"127.0.0.1:5000/apps/*\", \"reg.example/db@{DIGEST}\"]"
        ))
        .unwrap();
        let parse = |text: &str| Reference::parse(text).unwrap();
        assert!(
            grant
                .image_refusal(&parse("127.0.0.1:5000/apps/web:1"), None)
                .is_none()
        );
        assert!(
            grant
                .image_refusal(&parse("127.0.0.1:5000/other/web:1"), None)
                .is_some()
        );
        assert!(
            grant
                .image_refusal(&parse("reg.example/db:1"), Some(DIGEST))
                .is_none()
        );
        let other = DIGEST.replace("0123", "4567");
        let refusal = grant.image_refusal(&parse("reg.example/db:1"), Some(&other));
        assert!(refusal.is_some_and(|why| why.contains("pinned")));
    }

    #[test]
    fn mounts_ports_and_capabilities_follow_the_grant() {
        let grant = grant(
            "images = [\"r/x\"]\nports = [\"8000-8099\", \"443\"]\ncapabilities = [\"CAP_NET_BIND_SERVICE\"]\n[[mounts]]\npath = \"/srv/data\"\n[[mounts]]\npath = \"/etc/app\"\nread-only = true",
        )
        .unwrap();
        assert!(grant.mount_refusal("/srv/data/x", false).is_none());
        assert!(grant.mount_refusal("/srv/database", false).is_some());
        assert!(grant.mount_refusal("/etc/app/conf", true).is_none());
        assert!(grant.mount_refusal("/etc/app/conf", false).is_some());
        assert!(grant.port_allowed(8050) && grant.port_allowed(443));
        assert!(!grant.port_allowed(8100) && !grant.port_allowed(80));
        assert!(grant.capability_allowed("CAP_NET_BIND_SERVICE"));
        assert!(!grant.capability_allowed("CAP_SYS_ADMIN"));
    }
}
