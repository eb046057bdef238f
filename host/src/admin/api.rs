//! The operations the admin socket exposes, independent of transport.
//!
//! The daemon's kernel implements [`AdminApi`]; the socket server decodes
//! [`Request`]s, calls the trait, and encodes [`Response`]s.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::progress::{Progress, Reporter};

/// Machine-readable category of a failed admin operation (stable, used by `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    Denied,
    NotFound,
    Invalid,
    Signature,
    Policy,
    Conflict,
    Unavailable,
    Timeout,
    Internal,
}

/// A failed admin operation: a code for scripts and a message for people.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    pub code: ErrorCode,
    pub message: String,
    /// When a plugin's command failed with a typed error: its code
    /// (`not-found`, `conflict`…), as the REST and MQTT APIs give it.
    #[serde(
        default,
        rename = "plugin-code",
        skip_serializing_if = "Option::is_none"
    )]
    pub plugin_code: Option<String>,
}

impl AdminError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AdminError {
            code,
            message: message.into(),
            plugin_code: None,
        }
    }

    /// A plugin command's error: its typed `{"code", "message"}` reply is
    /// unwrapped into the message and `plugin-code`.
    pub fn from_plugin(reply: &str) -> Self {
        #[derive(Deserialize)]
        struct Typed {
            code: String,
            message: String,
        }
        match serde_json::from_str::<Typed>(reply) {
            Ok(typed) => AdminError {
                code: ErrorCode::Invalid,
                message: typed.message,
                plugin_code: Some(typed.code),
            },
            Err(_) => AdminError::new(ErrorCode::Invalid, reply),
        }
    }
}

pub use cairn_types::{HealthSummary, PluginHealth, PluginSummary};

/// Daemon-wide status, as shown by `cairn status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub uptime_secs: u64,
    pub pid: u32,
    pub state_dir: String,
    pub policy_dir: String,
    /// True when the development switch that allows unsigned plugins is on.
    pub allow_unsigned: bool,
    /// `pooling` or `on-demand`.
    pub allocator: String,
    pub rss_bytes: u64,
    pub plugins: Vec<PluginSummary>,
}

/// One log record kept in the daemon's in-memory ring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `TRACE`..`ERROR`.
    pub level: String,
    /// Plugin name when the record came from (or is about) a plugin.
    pub plugin: Option<String>,
    pub message: String,
}

/// What the CLI sends to install a plugin from a local file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallRequest {
    /// The component bytes, base64 (standard alphabet).
    pub component_b64: String,
    /// Detached signature text (cosign `sign-blob` format: base64 DER), if any.
    pub signature: Option<String>,
    /// Allow a downgrade.
    pub force: bool,
    /// Name and version to install a component as when it does not carry its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A request on the admin socket: one JSON object per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status,
    List,
    Install(InstallRequest),
    /// Install from an OCI reference (`oci://HOST/REPO:TAG` or `@sha256:…`).
    InstallRef {
        reference: String,
        force: bool,
    },
    Rollback {
        name: String,
    },
    Remove {
        name: String,
    },
    /// Delete the plugin store's components nothing keeps.
    PruneStore {
        /// Releases kept per plugin (at least 1).
        keep: usize,
        dry_run: bool,
    },
    Call {
        plugin: String,
        command: String,
        payload: serde_json::Value,
    },
    Logs {
        plugin: Option<String>,
        limit: usize,
    },
    Metrics,
    Health,
}

/// One line of the answer to a request. Long operations first send lines with only
/// `progress`; the final line has exactly one of `ok` or `error`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AdminError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// Where an operation reports its progress; the server streams it to the client.
pub type ProgressSink = Arc<Reporter<'static>>;

/// Operations of the running daemon that the admin socket serves.
pub trait AdminApi: Send + Sync + 'static {
    fn status(&self) -> impl std::future::Future<Output = Result<Status, AdminError>> + Send;
    fn list(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<PluginSummary>, AdminError>> + Send;
    fn install(
        &self,
        req: InstallRequest,
        progress: ProgressSink,
    ) -> impl std::future::Future<Output = Result<PluginSummary, AdminError>> + Send;
    /// Installs from an OCI registry, verifying its cosign signatures.
    fn install_ref(
        &self,
        reference: String,
        force: bool,
        progress: ProgressSink,
    ) -> impl std::future::Future<Output = Result<PluginSummary, AdminError>> + Send;
    fn rollback(
        &self,
        name: String,
    ) -> impl std::future::Future<Output = Result<PluginSummary, AdminError>> + Send;
    fn remove(
        &self,
        name: String,
    ) -> impl std::future::Future<Output = Result<(), AdminError>> + Send;
    /// Calls a plugin command; `payload` is serialised to JSON bytes for the plugin,
    /// and the reply is parsed as JSON when possible (else returned as a string).
    fn call(
        &self,
        plugin: String,
        command: String,
        payload: serde_json::Value,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, AdminError>> + Send;
    fn logs(
        &self,
        plugin: Option<String>,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<LogRecord>, AdminError>> + Send;
    /// Prometheus text exposition of host and plugin metrics.
    fn metrics(&self) -> impl std::future::Future<Output = Result<String, AdminError>> + Send;
    /// Asks every plugin for its health and sums it up.
    fn health(&self)
    -> impl std::future::Future<Output = Result<HealthSummary, AdminError>> + Send;
    /// Deletes (or, dry, lists) the plugin store's components nothing keeps.
    fn prune_store(
        &self,
        keep: usize,
        dry_run: bool,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, AdminError>> + Send;
}
