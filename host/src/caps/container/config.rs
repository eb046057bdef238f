//! `[containers]` in the daemon config: which containerd to use and how.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// containerd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The containerd namespace Cairn's images and containers live in, apart from
/// anything else the device runs.
pub const DEFAULT_NAMESPACE: &str = "cairn";
/// Where Debian installs the CNI plugins.
pub const DEFAULT_CNI_DIR: &str = "/usr/lib/cni";

/// `[containers]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainersConfig {
    /// containerd's gRPC socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The containerd namespace to use.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The snapshotter images are unpacked with.
    #[serde(default = "default_snapshotter")]
    pub snapshotter: String,
    /// Directory of the CNI plugins (`bridge`, `host-local`, `portmap`…).
    #[serde(default = "default_cni_dir")]
    pub cni_dir: PathBuf,
    /// The bridge containers on the `bridge` network attach to.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// The bridge network's address range.
    #[serde(default = "default_subnet")]
    pub subnet: String,
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_namespace() -> String {
    DEFAULT_NAMESPACE.into()
}
fn default_snapshotter() -> String {
    "overlayfs".into()
}
fn default_cni_dir() -> PathBuf {
    PathBuf::from(DEFAULT_CNI_DIR)
}
fn default_bridge() -> String {
    "cairn0".into()
}
fn default_subnet() -> String {
    "10.88.0.0/16".into()
}

impl Default for ContainersConfig {
    fn default() -> Self {
        ContainersConfig {
            socket: default_socket(),
            namespace: default_namespace(),
            snapshotter: default_snapshotter(),
            cni_dir: default_cni_dir(),
            bridge: default_bridge(),
            subnet: default_subnet(),
        }
    }
}

impl ContainersConfig {
    /// Checks the values and resolves relative paths against `base`.
    pub fn resolve(mut self, base: &Path) -> Result<Self, String> {
        self.socket = base.join(&self.socket);
        self.cni_dir = base.join(&self.cni_dir);
        let name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !name_ok(&self.namespace) {
            return Err(format!(
                "[containers] namespace `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                self.namespace
            ));
        }
        if !name_ok(&self.snapshotter) {
            return Err(format!(
                "[containers] snapshotter `{}` is not a snapshotter name",
                self.snapshotter
            ));
        }
        // Linux interface names are at most 15 bytes.
        if !name_ok(&self.bridge) || self.bridge.len() > 15 {
            return Err(format!(
                "[containers] bridge `{}` must be 1 to 15 letters, digits, `-` or `_`",
                self.bridge
            ));
        }
        let valid_subnet = self.subnet.split_once('/').is_some_and(|(address, bits)| {
            address.parse::<std::net::Ipv4Addr>().is_ok()
                && bits
                    .parse::<u8>()
                    .is_ok_and(|bits| (8..=30).contains(&bits))
        });
        if !valid_subnet {
            return Err(format!(
                "[containers] subnet `{}` is not an IPv4 range such as 10.88.0.0/16",
                self.subnet
            ));
        }
        Ok(self)
    }
}
