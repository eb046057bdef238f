//! Capabilities: the only part of the host that knows what plugins may do.
//!
//! Each capability is one module implementing [`Capability`]: its grant, its
//! host-wide and per-instance state, its lifecycle hooks, and its WIT
//! implemented on a [`CapView`] of its own state. The set of capabilities is
//! declared once, in the [`capabilities!`] list below; everything else (the
//! grants table, the linker, the states, the lifecycle fan-out, the import
//! check) is generated from it.

use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::contract::{Audit, HostLink, InstanceLink};

mod capability;
mod errors;
mod imports;
#[macro_use]
mod set;
#[cfg(test)]
pub mod bench;
#[cfg(test)]
mod tests;

pub mod commands;
pub mod container;
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

pub use capability::{
    Candidate, CapView, Capability, HostSetup, InstanceCtx, InstanceSetup, Refusal, Select,
    Serving, ServingPlugin, ViewOf,
};
pub use errors::{error_body, error_code, error_message};
pub use imports::{GrantNeed, ImportRefusal, check_imports, grant_needed};

capabilities! {
    log: log::Log,
    kv: kv::Kv,
    events: events::Events,
    timer: timer::Timer,
    commands: commands::Commands,
    plugins: plugins::Plugins,
    system: system::System,
    metrics: metrics::Metrics,
    mqtt: mqtt::Mqtt,
    http_server: http::HttpServer,
    http_client: http::HttpClient,
    files: files::Files,
    process: process::Process,
    sockets: sockets::Sockets,
    container: container::Container,
}

/// The daemon configuration's sections that configure capabilities.
#[derive(Debug, Clone, Default)]
pub struct CapsConfig {
    /// MQTT brokers to keep connections to.
    pub mqtt: mqtt::config::MqttConfig,
    /// The containerd containers run on.
    pub containers: container::ContainersConfig,
    /// How images are fetched from registries (the same as plugins).
    pub registry: crate::supply::oci::RegistryOptions,
    /// Trusted keys by name, for image signatures.
    pub trust_keys: std::collections::BTreeMap<String, std::path::PathBuf>,
}

/// What a store's data must offer the capabilities linked into it.
pub trait CapsData: WasiView + WasiHttpView + Send + 'static {
    /// The instance's capabilities.
    fn caps(&mut self) -> &mut InstanceCaps;
}

/// Builds the linker every plugin is instantiated against: baseline WASI plus
/// every capability (grants are enforced at install and at each call).
pub fn linker<T: CapsData>(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<T>> {
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker)?;
    add_all_to_linker(&mut linker)?;
    Ok(linker)
}

/// Who a new instance is and how it is reached.
pub struct NewInstance<'a> {
    pub plugin: Arc<str>,
    pub link: InstanceLink,
    pub host: HostLink,
    /// The plugin's `[config]` as JSON, readable from its environment.
    pub config_json: &'a str,
}

/// The environment variable holding the plugin's `[config]` as JSON, for
/// instances that have no `init` to receive it (HTTP handlers).
pub const CONFIG_VARIABLE: &str = "CAIRN_CONFIG";

/// An instance's capabilities: the WASI context they shaped, its resource
/// table, and each capability's per-instance state.
pub struct InstanceCaps {
    ctx: InstanceCtx,
    grants: Arc<Grants>,
    shared: Arc<SharedCaps>,
    locals: Locals,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl InstanceCaps {
    /// Prepares every capability for a new instance. Deny by default: the WASI
    /// context has no directories, no environment but the plugin's own config
    /// and no network but what the grants add; `output` receives stdout and stderr.
    pub fn new(
        shared: Arc<SharedCaps>,
        grants: Arc<Grants>,
        instance: NewInstance<'_>,
        output: impl wasmtime_wasi::cli::StdoutStream + Clone + 'static,
    ) -> InstanceCaps {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let ctx = InstanceCtx {
            plugin: instance.plugin,
            instance: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            link: instance.link,
            host: instance.host,
            audit: shared.audit.clone(),
            device_id: shared.device_id.clone(),
        };
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.clone())
            .stderr(output)
            .env(CONFIG_VARIABLE, instance.config_json);
        let locals = Locals::prepare(&shared, &grants, &ctx, &mut wasi);
        InstanceCaps {
            ctx,
            grants,
            shared,
            locals,
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        }
    }

    /// One capability's view of the instance, on which its WIT is implemented.
    pub fn view<C: Capability>(&mut self) -> CapView<'_, C>
    where
        Self: Select<C>,
    {
        Select::<C>::view(self)
    }

    /// The instance's identity and links.
    pub fn ctx(&self) -> &InstanceCtx {
        &self.ctx
    }

    /// The `wasi:cli`/`wasi:filesystem`/`wasi:sockets` view of the instance.
    pub fn wasi(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Drop for InstanceCaps {
    fn drop(&mut self) {
        self.locals.end(&self.shared, &self.ctx);
    }
}

/// Validates a policy file, returning a one-line summary of its grants (for `cairn policy check`).
pub fn check_policy_file(path: &std::path::Path) -> anyhow::Result<String> {
    let policy = crate::policy::Policy::load(path)?;
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

/// Runs blocking storage work off the async executor.
async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> Result<R, crate::contract::bindings::CapError> + Send + 'static,
) -> Result<R, crate::contract::bindings::CapError> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        crate::contract::bindings::CapError::Internal(format!("storage task failed: {err}"))
    })?
}
