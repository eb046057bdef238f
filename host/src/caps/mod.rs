//! Capabilities: the only part of the host that knows what plugins may do.
//!
//! Each capability is one module with the same shape (see [`Capability`]):
//! it names its policy table and WIT interface, parses and validates its slice
//! of a plugin's policy into a typed grant, adds its functions to the linker, and
//! keeps whatever host-wide or per-instance state it needs. Adding a capability
//! means adding a module and listing it in [`Grants`] and [`CAPABILITIES`].

use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use serde::de::DeserializeOwned;
use wasmtime::component::Linker;

use crate::kernel::Kernel;
use crate::policy::{Policy, PolicyError};
use crate::runtime::bindings::CapError;
use crate::runtime::{ActorLink, InstanceState};
use crate::state::kv::KvStore;

pub mod commands;
pub mod events;
pub mod files;
pub mod http;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod mqtt;
pub mod pem;
pub mod plugins;
pub mod process;
pub mod sockets;
pub mod system;
pub mod timer;
mod wasi;

/// The shape every capability module has.
pub trait Capability {
    /// Policy table granting it: `[grants.<NAME>]`.
    const NAME: &'static str;
    /// WIT interface it implements, without version (e.g. `cairn:host/kv`).
    const INTERFACE: &'static str;
    /// The typed policy slice (deserialised with unknown keys refused).
    type Grant: DeserializeOwned + Send + Sync + 'static;

    /// Checks that go beyond the grant's types.
    fn validate(_grant: &Self::Grant) -> Result<(), String> {
        Ok(())
    }

    /// Adds the interface's host functions to the linker.
    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()>;
}

/// Every capability: policy table name and WIT interface.
pub const CAPABILITIES: &[(&str, &str)] = &[
    (log::Log::NAME, log::Log::INTERFACE),
    (kv::Kv::NAME, kv::Kv::INTERFACE),
    (events::Events::NAME, events::Events::INTERFACE),
    (timer::Timer::NAME, timer::Timer::INTERFACE),
    (commands::Commands::NAME, commands::Commands::INTERFACE),
    (plugins::Plugins::NAME, plugins::Plugins::INTERFACE),
    (system::System::NAME, system::System::INTERFACE),
    (metrics::Metrics::NAME, metrics::Metrics::INTERFACE),
    (mqtt::Mqtt::NAME, mqtt::Mqtt::INTERFACE),
    (http::HttpServer::NAME, http::HttpServer::INTERFACE),
    (http::HttpClient::NAME, http::HttpClient::INTERFACE),
    (files::Files::NAME, files::Files::INTERFACE),
    (process::Process::NAME, process::Process::INTERFACE),
    (sockets::Sockets::NAME, sockets::Sockets::INTERFACE),
];

/// A plugin's validated grants; `None` means denied.
#[derive(Default)]
pub struct Grants {
    pub log: Option<log::LogGrant>,
    pub kv: Option<kv::KvGrant>,
    pub events: Option<events::EventsGrant>,
    pub timer: Option<timer::TimerGrant>,
    pub commands: Option<commands::CommandsGrant>,
    pub plugins: Option<plugins::PluginsGrant>,
    pub system: Option<system::SystemGrant>,
    pub metrics: Option<metrics::MetricsGrant>,
    pub mqtt: Option<mqtt::MqttGrant>,
    pub http_server: Option<http::HttpServerGrant>,
    pub http_client: Option<http::HttpClientGrant>,
    pub files: Option<files::FilesGrant>,
    pub process: Option<process::ProcessGrant>,
    pub sockets: Option<sockets::SocketsGrant>,
}

impl Grants {
    /// Parses and validates every `[grants.*]` table; an unknown capability is an error.
    pub fn from_policy(policy: &Policy) -> Result<Grants, PolicyError> {
        if let Some(unknown) = policy
            .grants
            .values()
            .find(|slice| !CAPABILITIES.iter().any(|(name, _)| *name == slice.name))
        {
            let known: Vec<&str> = CAPABILITIES.iter().map(|(name, _)| *name).collect();
            return Err(policy_error(
                policy,
                format!(
                    "[grants.{}] (line {}): unknown capability; known: {}",
                    unknown.name,
                    unknown.line,
                    known.join(", ")
                ),
            ));
        }
        Ok(Grants {
            log: parse::<log::Log>(policy)?,
            kv: parse::<kv::Kv>(policy)?,
            events: parse::<events::Events>(policy)?,
            timer: parse::<timer::Timer>(policy)?,
            commands: parse::<commands::Commands>(policy)?,
            plugins: parse::<plugins::Plugins>(policy)?,
            system: parse::<system::System>(policy)?,
            metrics: parse::<metrics::Metrics>(policy)?,
            mqtt: parse::<mqtt::Mqtt>(policy)?,
            http_server: parse::<http::HttpServer>(policy)?,
            http_client: parse::<http::HttpClient>(policy)?,
            files: parse::<files::Files>(policy)?,
            process: parse::<process::Process>(policy)?,
            sockets: parse::<sockets::Sockets>(policy)?,
        })
    }

    /// Names of the granted capabilities, in declaration order.
    pub fn names(&self) -> Vec<&'static str> {
        let granted = [
            self.log.is_some(),
            self.kv.is_some(),
            self.events.is_some(),
            self.timer.is_some(),
            self.commands.is_some(),
            self.plugins.is_some(),
            self.system.is_some(),
            self.metrics.is_some(),
            self.mqtt.is_some(),
            self.http_server.is_some(),
            self.http_client.is_some(),
            self.files.is_some(),
            self.process.is_some(),
            self.sockets.is_some(),
        ];
        CAPABILITIES
            .iter()
            .zip(granted)
            .filter(|(_, on)| *on)
            .map(|((name, _), _)| *name)
            .collect()
    }

    fn has(&self, capability: &str) -> bool {
        self.names().contains(&capability)
    }
}

fn parse<C: Capability>(policy: &Policy) -> Result<Option<C::Grant>, PolicyError> {
    let Some(slice) = policy.grant(C::NAME) else {
        return Ok(None);
    };
    let grant: C::Grant = slice.parse()?;
    C::validate(&grant).map_err(|msg| {
        policy_error(
            policy,
            format!("[grants.{}] (line {}): {msg}", C::NAME, slice.line),
        )
    })?;
    Ok(Some(grant))
}

fn policy_error(policy: &Policy, message: String) -> PolicyError {
    PolicyError::Invalid {
        file: policy.path.clone(),
        line: None,
        col: None,
        msg: message,
    }
}

/// Refuses a component whose imports exceed its grants, naming the interface.
pub fn check_imports<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
) -> Result<(), String> {
    for import in imports {
        let interface = import.split('@').next().unwrap_or(import);
        if interface == "cairn:host/types" || wasi::is_baseline(interface) {
            continue;
        }
        match owner(interface) {
            Some((name, _)) if grants.has(name) => {}
            Some((name, _)) => {
                return Err(format!(
                    "the plugin imports `{import}` but its policy has no [grants.{name}]"
                ));
            }
            None if interface.starts_with("wasi:") => {
                return Err(format!(
                    "the plugin imports `{import}`, which the host does not grant to plugins"
                ));
            }
            None => {
                return Err(format!(
                    "the plugin imports `{import}`, which the host does not provide"
                ));
            }
        }
    }
    Ok(())
}

/// The capability (name and WIT interface) that grants `interface`; every
/// `wasi:sockets/*` interface belongs to `[grants.sockets]`.
fn owner(interface: &str) -> Option<&'static (&'static str, &'static str)> {
    let interface = if sockets::is_sockets(interface) {
        sockets::Sockets::INTERFACE
    } else {
        interface
    };
    CAPABILITIES.iter().find(|(_, wit)| *wit == interface)
}

/// What a plugin needs granted for one of its imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantNeed {
    /// Nothing: baseline WASI or shared types.
    Baseline,
    /// `[grants.<name>]` in its policy.
    Capability(&'static str),
    /// Nothing can grant it on this host.
    Unavailable,
}

/// The grant an import (e.g. `cairn:host/kv@0.1.0`) requires.
pub fn grant_needed(import: &str) -> GrantNeed {
    let interface = import.split('@').next().unwrap_or(import);
    if interface == "cairn:host/types" || wasi::is_baseline(interface) {
        return GrantNeed::Baseline;
    }
    match owner(interface) {
        Some((name, _)) => GrantNeed::Capability(name),
        None => GrantNeed::Unavailable,
    }
}

/// Validates a policy file, returning a one-line summary of its grants (for `cairn policy check`).
pub fn check_policy_file(path: &Path) -> anyhow::Result<String> {
    let policy = Policy::load(path)?;
    let grants = Grants::from_policy(&policy)?;
    let names = grants.names();
    Ok(format!(
        "plugin {} — signers {} — grants {}",
        policy.plugin.name,
        policy.plugin.signers.join(", "),
        if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// Builds the linker every plugin is instantiated against: baseline WASI plus
/// every capability (grants are enforced at install and at each call).
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker)?;
    log::Log::add_to_linker(&mut linker)?;
    kv::Kv::add_to_linker(&mut linker)?;
    events::Events::add_to_linker(&mut linker)?;
    timer::Timer::add_to_linker(&mut linker)?;
    commands::Commands::add_to_linker(&mut linker)?;
    plugins::Plugins::add_to_linker(&mut linker)?;
    system::System::add_to_linker(&mut linker)?;
    metrics::Metrics::add_to_linker(&mut linker)?;
    mqtt::Mqtt::add_to_linker(&mut linker)?;
    http::HttpServer::add_to_linker(&mut linker)?;
    http::HttpClient::add_to_linker(&mut linker)?;
    files::Files::add_to_linker(&mut linker)?;
    process::Process::add_to_linker(&mut linker)?;
    sockets::Sockets::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Host-wide capability state shared by every instance.
pub struct Hub {
    pub started: Instant,
    pub state_dir: std::path::PathBuf,
    pub kv: Arc<KvStore>,
    pub events: events::Bus,
    pub metrics: metrics::Registry,
    /// This device's id (`{device}` in MQTT grants and settings).
    pub device_id: String,
    /// The daemon's MQTT broker connections.
    pub mqtt: mqtt::Brokers,
    /// Every plugin's native processes.
    pub processes: Arc<process::Supervisor>,
    kernel: OnceLock<Weak<Kernel>>,
}

impl Hub {
    pub fn new(state_dir: &Path, kv: KvStore) -> Hub {
        Hub {
            started: Instant::now(),
            state_dir: state_dir.to_path_buf(),
            kv: Arc::new(kv),
            events: events::Bus::default(),
            metrics: metrics::Registry::default(),
            device_id: "cairn".to_string(),
            mqtt: mqtt::Brokers::default(),
            processes: Arc::new(process::Supervisor::new(state_dir.join("process"))),
            kernel: OnceLock::new(),
        }
    }

    /// Sets the device id and the MQTT connections (none by default).
    pub fn with_mqtt(mut self, device_id: String, mqtt: mqtt::Brokers) -> Hub {
        self.device_id = device_id;
        self.mqtt = mqtt;
        self
    }

    /// Connects the capabilities that act on plugins (commands, plugins) to the kernel.
    pub fn attach_kernel(&self, kernel: Weak<Kernel>) {
        self.processes.attach_kernel(kernel.clone());
        let _ = self.kernel.set(kernel);
    }

    fn kernel(&self) -> Result<Arc<Kernel>, CapError> {
        self.kernel
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| CapError::Unavailable("the host is shutting down".into()))
    }
}

/// Per-instance capability state; dropping it (with its store) ends the
/// instance's subscriptions and timers.
pub struct InstanceLocal {
    id: u64,
    hub: Arc<Hub>,
    link: ActorLink,
    timers: timer::Timers,
    log_denial_reported: bool,
}

impl InstanceLocal {
    pub fn new(hub: Arc<Hub>, link: ActorLink) -> InstanceLocal {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        InstanceLocal {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hub,
            link,
            timers: timer::Timers::default(),
            log_denial_reported: false,
        }
    }
}

impl Drop for InstanceLocal {
    fn drop(&mut self) {
        self.hub.events.drop_instance(self.id);
        self.hub.mqtt.drop_instance(self.id);
        self.timers.cancel_all();
    }
}

/// Refuses a call: writes the audit line, counts it, and returns `denied`.
pub fn deny(state: &InstanceState, capability: &str, detail: impl Into<String>) -> CapError {
    let detail = detail.into();
    tracing::warn!(target: "cairn::audit", plugin = %state.plugin(), capability, "denied: {detail}");
    state.hub.metrics.count_denial(state.plugin());
    CapError::Denied(detail)
}

/// The error's variant name as written in the WIT (`quota-exceeded`…), for JSON replies.
pub fn error_code(err: &CapError) -> &'static str {
    match err {
        CapError::Denied(_) => "denied",
        CapError::NotFound(_) => "not-found",
        CapError::Invalid(_) => "invalid",
        CapError::QuotaExceeded(_) => "quota-exceeded",
        CapError::Unavailable(_) => "unavailable",
        CapError::Timeout(_) => "timeout",
        CapError::Internal(_) => "internal",
        CapError::Conflict(_) => "conflict",
        CapError::Rejected(_) => "rejected",
        CapError::NotReady(_) => "not-ready",
    }
}

/// The explanation an error carries.
pub fn error_message(err: &CapError) -> &str {
    match err {
        CapError::Denied(text)
        | CapError::NotFound(text)
        | CapError::Invalid(text)
        | CapError::QuotaExceeded(text)
        | CapError::Unavailable(text)
        | CapError::Timeout(text)
        | CapError::Internal(text)
        | CapError::Conflict(text)
        | CapError::Rejected(text)
        | CapError::NotReady(text) => text,
    }
}

/// Runs blocking storage work off the async executor.
async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> Result<R, CapError> + Send + 'static,
) -> Result<R, CapError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| CapError::Internal(format!("storage task failed: {err}")))?
}
