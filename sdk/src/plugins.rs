//! Manages the plugins installed on the device (`cairn:host/plugins`).
//!
//! The same operations as the `cairn plugin` CLI, and the most privileged
//! capability: a plugin holding it can change what runs on the device. Needs
//! `[grants.plugins]` with `manage = [name patterns]` for install, rollback and
//! remove, and `read = true` for [`list`].

use crate::Result;
use crate::bindings::cairn::host::plugins as host;

/// What the host knows about one installed plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Plugin name, as in its policy file.
    pub name: String,
    /// Semantic version of the active release.
    pub version: String,
    /// `sha256:<hex>` digest of the active component.
    pub digest: String,
    /// `running`, `starting`, `restarting`, `failed` or `stopped`.
    pub state: String,
    /// Version kept for rollback, if any.
    pub previous_version: Option<String>,
    /// How many times the running release was restarted after a fault.
    pub restarts: u32,
}

impl From<host::PluginInfo> for PluginInfo {
    fn from(info: host::PluginInfo) -> Self {
        PluginInfo {
            name: info.name,
            version: info.version,
            digest: info.digest,
            state: info.state,
            previous_version: info.previous_version,
            restarts: info.restarts,
        }
    }
}

/// Where a release to install comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A component already in the host's content-addressed cache, by `sha256:<hex>` digest.
    Cached(String),
    /// A component's bytes and its detached signature.
    Bytes {
        /// The component (`.wasm`) bytes.
        component: Vec<u8>,
        /// Base64 signature in cosign `sign-blob` format; empty for unsigned
        /// installs in development mode.
        signature: String,
    },
    /// An OCI reference, `oci://HOST/REPO:TAG` or `oci://HOST/REPO@sha256:<hex>`,
    /// verified against the keys the plugin's policy names. Hosts without
    /// registry support answer [`Error::Unavailable`](crate::Error::Unavailable).
    Oci(String),
}

impl From<Source> for host::Source {
    fn from(source: Source) -> Self {
        match source {
            Source::Cached(digest) => host::Source::Cached(digest),
            Source::Bytes {
                component,
                signature,
            } => host::Source::Bytes((component, signature)),
            Source::Oci(reference) => host::Source::Oci(reference),
        }
    }
}

/// Installs or upgrades (hot-swapping) a plugin release.
///
/// A version lower than the installed one is refused unless `force` is set.
pub fn install(source: Source, force: bool) -> Result<PluginInfo> {
    Ok(host::install(&source.into(), force)?.into())
}

/// Lists every installed plugin.
pub fn list() -> Result<Vec<PluginInfo>> {
    Ok(host::list()?.into_iter().map(PluginInfo::from).collect())
}

/// Switches `name` back to its previous release.
pub fn rollback(name: &str) -> Result<PluginInfo> {
    Ok(host::rollback(name)?.into())
}

/// Stops and uninstalls `name`. Its kv data is kept.
pub fn remove(name: &str) -> Result<()> {
    Ok(host::remove(name)?)
}
