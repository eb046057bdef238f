//! What the kernel, the runtime and the capabilities share, and nothing more:
//! the WIT bindings, the [`PluginHost`] trait through which capabilities act on
//! plugins, the [`EventQueue`] through which they reach one instance, and the
//! [`HttpHandler`] a plugin serving HTTP is reached through.
//!
//! The dependency graph is `contract ← caps ← runtime ← kernel`: capabilities
//! never name the kernel or the runtime, only these traits, which the runtime
//! and kernel implement.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub mod audit;
pub mod bindings;
#[cfg(test)]
pub mod testing;

pub use audit::Audit;
use bindings::cairn::host::commands::CallError;
use bindings::cairn::host::plugins::{HealthSummary, PluginInfo};
use bindings::{CapError, Event};

/// A boxed future, for the traits below (which are used as trait objects).
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kernel as capabilities see it: every operation a capability may ask of
/// it on a plugin's behalf, in the plugin-facing (WIT) types. Grants are
/// checked by the capability before it calls here.
pub trait PluginHost: Send + Sync {
    /// Calls `command` on `plugin`'s serving release, waiting for the reply
    /// as long as that plugin's policy says (`[limits] reply-wait`).
    fn call<'a>(
        &'a self,
        plugin: &'a str,
        command: &'a str,
        payload: Vec<u8>,
    ) -> HostFuture<'a, Result<Vec<u8>, CallError>>;

    /// Queues `event` for `plugin`'s serving release, waiting up to `wait` for
    /// room; false if it is not running or stayed busy.
    fn notify<'a>(&'a self, plugin: &'a str, event: Event, wait: Duration) -> HostFuture<'a, bool>;

    /// Installs (or swaps to) a plugin; `request.authorize` is asked about the
    /// plugin's name before anything changes.
    fn install(&self, request: InstallRequest) -> HostFuture<'_, Result<PluginInfo, CapError>>;

    /// Rolls `plugin` back to its previous release.
    fn rollback<'a>(
        &'a self,
        plugin: &'a str,
        reason: &'a str,
    ) -> HostFuture<'a, Result<PluginInfo, CapError>>;

    /// Removes `plugin` and everything capabilities keep for it.
    fn remove<'a>(&'a self, plugin: &'a str) -> HostFuture<'a, Result<(), CapError>>;

    /// Every installed plugin.
    fn list(&self) -> Vec<PluginInfo>;

    /// The daemon's health; `asking` is not asked about its own (it is busy asking).
    fn health<'a>(&'a self, asking: &'a str) -> HostFuture<'a, HealthSummary>;

    /// Host and plugin metrics in the Prometheus text format.
    fn metrics(&self) -> String;
}

/// How capabilities hold the kernel: weakly, so an instance never keeps it alive.
pub type HostLink = Weak<dyn PluginHost>;

/// The kernel behind `link`, or `unavailable` while the daemon shuts down.
pub fn host(link: &HostLink) -> Result<Arc<dyn PluginHost>, CapError> {
    link.upgrade()
        .ok_or_else(|| CapError::Unavailable("the host is shutting down".into()))
}

/// Where an install's component comes from.
#[derive(Debug, Clone)]
pub enum InstallSource {
    /// Bytes supplied by the caller, with their detached signature, and the name
    /// and version to install them as when the component does not carry its own
    /// (a standard `wasi:http` component, say).
    Bytes {
        bytes: Vec<u8>,
        signature: Option<String>,
        identity: Option<(String, semver::Version)>,
    },
    /// A component already in the blob store, by `sha256:` digest.
    Cached(String),
    /// An OCI reference, `oci://HOST/REPO:TAG` or `…@sha256:<hex>`.
    Oci(String),
}

/// Decides whether the caller may install the plugin named in the component.
pub type Authorize = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// An install asked for by a plugin.
pub struct InstallRequest {
    pub source: InstallSource,
    /// Reinstall even when the same release is installed.
    pub force: bool,
    pub authorize: Authorize,
}

/// One plugin instance's event queue, as capabilities that deliver events
/// (events, timers, MQTT) hold it.
pub trait EventQueue: Send + Sync {
    /// Queues an event without waiting; false if the instance is gone or busy.
    fn deliver(&self, event: Event) -> bool;
    /// Queues an event, waiting up to `wait` for room.
    fn deliver_waiting(&self, event: Event, wait: Duration) -> HostFuture<'_, bool>;
    /// Whether the instance belongs to the release serving its plugin.
    fn is_active(&self) -> bool;
    /// Whether the instance has stopped.
    fn is_gone(&self) -> bool;
}

/// A shared handle on an instance's event queue.
pub type InstanceLink = Arc<dyn EventQueue>;

/// Why an HTTP request got no response from the plugin.
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    /// No instance could be had (the pool is exhausted or instantiation failed).
    #[error("the plugin cannot take requests now: {0}")]
    Unavailable(String),
    /// The handler trapped, ran out of time or memory.
    #[error("the plugin failed: {0}")]
    Fault(String),
    /// The handler answered with a `wasi:http` error code instead of a response.
    #[error("the plugin answered with an error: {0:?}")]
    Guest(wasmtime_wasi_http::p2::bindings::http::types::ErrorCode),
    /// The handler returned without setting a response.
    #[error("the plugin returned without a response")]
    NoResponse,
}

/// The body of a response a plugin streams.
pub type HttpBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A plugin release that serves `wasi:http/incoming-handler`.
pub trait HttpHandler: Send + Sync {
    /// Runs the handler on `request`; the response body streams as the plugin writes it.
    fn handle(
        self: Arc<Self>,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
        https: bool,
    ) -> HostFuture<'static, Result<http::Response<HttpBody>, HttpFailure>>;
}
