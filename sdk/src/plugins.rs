//! Manages the plugins installed on the device (`cairn:host/plugins`).
//!
//! The same operations as the `cairn plugin` CLI, and the most privileged
//! capability: a plugin holding it can change what runs on the device. Needs
//! `[grants.plugins]` with `manage = [name patterns]` for install, rollback and
//! remove, and `read = true` for [`list`], [`health`] and [`metrics`].

pub use cairn_types::{HealthSummary, PluginHealth};

use crate::Result;
use crate::bindings::cairn::host::plugins as host;

/// What the host knows about one installed plugin. Serializes with the same
/// keys as `cairn --json plugin list` (`previous_version`…).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// The topic of the event that reports how a [`start_install`] ended.
pub const INSTALL_FINISHED: &str = "cairn/plugins/install-finished";

/// Starts an install in the background and returns at once.
///
/// The outcome arrives later through [`Plugin::on_event`](crate::Plugin::on_event)
/// on the topic [`INSTALL_FINISHED`], from source `host`; read it with
/// [`InstallFinished::parse`]. It goes to whichever release of this plugin
/// serves when the install ends, so a plugin that replaces itself hears the
/// outcome in its new version (or in the old one, if the new one did not
/// start). `tag` comes back unchanged, e.g. a request's correlation id.
pub fn start_install(source: Source, force: bool, tag: &str) -> Result<()> {
    Ok(host::start_install(&source.into(), force, tag)?)
}

/// How an install started with [`start_install`] ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct InstallFinished {
    /// The tag given to [`start_install`].
    pub tag: String,
    /// Whether the release now serves.
    pub ok: bool,
    /// The installed plugin (its [`PluginInfo`] fields), when `ok`.
    pub plugin: Option<serde_json::Value>,
    /// Why it failed, when not `ok`.
    pub error: Option<InstallError>,
}

/// Why an install failed: the host's error variant name and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct InstallError {
    /// `denied`, `not-found`, `invalid`, `unavailable`, `timeout`…
    pub code: String,
    /// The host's explanation.
    pub message: String,
}

impl InstallFinished {
    /// Reads an [`INSTALL_FINISHED`] event's payload.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        serde_json::from_slice(payload)
            .map_err(|cause| crate::Error::invalid_json("the install-finished event", cause))
    }
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

/// Asks every running plugin for its health (at most 2 s each, all at once).
pub fn health() -> Result<HealthSummary> {
    let summary = host::health()?;
    Ok(HealthSummary {
        status: summary.status,
        uptime_secs: summary.uptime_secs,
        plugins: summary
            .plugins
            .into_iter()
            .map(|p| PluginHealth {
                name: p.name,
                version: p.version,
                state: p.state,
                health: p.health,
                detail: p.detail,
            })
            .collect(),
    })
}

/// The host's and every plugin's metrics in the Prometheus text format.
pub fn metrics() -> Result<String> {
    Ok(host::metrics()?)
}
