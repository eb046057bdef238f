//! `cairn:host/plugins`: managing installed plugins from a plugin (the
//! control-plane adapters use it to install over the air).

use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::kernel::{InstallSource, Kernel, PluginView};
use crate::policy::NamePattern;
use crate::runtime::InstanceState;
use crate::runtime::bindings::CapError;
use crate::runtime::bindings::Event;
use crate::runtime::bindings::cairn::host::plugins::{
    self as wit, HealthSummary, PluginHealth, PluginInfo, Source,
};

/// The topic of the event that reports how a `start-install` ended.
pub const INSTALL_FINISHED: &str = "cairn/plugins/install-finished";
/// How long a finished install waits for room in the caller's event queue.
const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Plugins;

/// `[grants.plugins]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginsGrant {
    /// May list installed plugins.
    #[serde(default)]
    pub read: bool,
    /// Plugins it may install, roll back or remove.
    #[serde(default)]
    pub manage: Vec<NamePattern>,
}

impl Capability for Plugins {
    const NAME: &'static str = "plugins";
    const INTERFACE: &'static str = "cairn:host/plugins";
    type Grant = PluginsGrant;

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |state| state)
    }
}

fn info(view: PluginView) -> PluginInfo {
    PluginInfo {
        name: view.name,
        version: view.version,
        digest: view.digest,
        state: view.state,
        previous_version: view.previous_version,
        restarts: view.restarts,
    }
}

/// `plugin-info` as the JSON of an install-finished event (the keys of `cairn --json plugin list`).
fn info_json(info: &PluginInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "version": info.version,
        "digest": info.digest,
        "state": info.state,
        "previous_version": info.previous_version,
        "restarts": info.restarts,
    })
}

fn install_finished(tag: &str, outcome: Result<PluginInfo, CapError>) -> Event {
    let payload = match outcome {
        Ok(info) => serde_json::json!({"tag": tag, "ok": true, "plugin": info_json(&info)}),
        Err(err) => serde_json::json!({
            "tag": tag,
            "ok": false,
            "error": {"code": super::error_code(&err), "message": super::error_message(&err)},
        }),
    };
    Event {
        topic: INSTALL_FINISHED.into(),
        payload: payload.to_string().into_bytes(),
        source: "host".into(),
    }
}

impl InstanceState {
    fn plugins_grant(&self) -> Result<&PluginsGrant, CapError> {
        self.grants
            .plugins
            .as_ref()
            .ok_or_else(|| super::deny(self, Plugins::NAME, "the policy has no [grants.plugins]"))
    }

    /// The kernel, if this plugin may manage `name`.
    fn manage(&self, name: &str) -> Result<std::sync::Arc<Kernel>, CapError> {
        let grant = self.plugins_grant()?;
        if !grant
            .manage
            .iter()
            .any(|allowed| allowed.matches_plugin(name))
        {
            return Err(super::deny(
                self,
                Plugins::NAME,
                format!("managing plugin `{name}` is outside the grant"),
            ));
        }
        self.hub.kernel()
    }

    /// The kernel, if this plugin may read (`read = true`); `what` names the refused call.
    fn reader(&self, what: &str) -> Result<std::sync::Arc<Kernel>, CapError> {
        if !self.plugins_grant()?.read {
            return Err(super::deny(
                self,
                Plugins::NAME,
                format!("{what} needs `read = true`"),
            ));
        }
        self.hub.kernel()
    }

    fn install_job(
        &self,
        source: Source,
        force: bool,
    ) -> Result<(std::sync::Arc<Kernel>, InstallJob), CapError> {
        let patterns = self.plugins_grant()?.manage.clone();
        let source = match source {
            Source::Cached(digest) => InstallSource::Cached(digest),
            Source::Bytes((bytes, signature)) => InstallSource::Bytes {
                identity: None,
                bytes,
                signature: Some(signature).filter(|sig| !sig.is_empty()),
            },
            Source::Oci(reference) => InstallSource::Oci(reference),
        };
        let job = InstallJob {
            source,
            force,
            patterns,
            caller: self.plugin().to_string(),
        };
        Ok((self.hub.kernel()?, job))
    }
}

impl wit::Host for InstanceState {
    async fn install(&mut self, source: Source, force: bool) -> Result<PluginInfo, CapError> {
        let (kernel, job) = self.install_job(source, force)?;
        job.run(&kernel).await
    }

    async fn start_install(
        &mut self,
        source: Source,
        force: bool,
        tag: String,
    ) -> Result<(), CapError> {
        let (kernel, job) = self.install_job(source, force)?;
        let caller = self.plugin().to_string();
        tokio::spawn(async move {
            let event = install_finished(&tag, job.run(&kernel).await);
            if !kernel.notify(&caller, event, NOTIFY_WAIT).await {
                tracing::warn!(plugin = %caller, "an install it started finished, but the plugin could not be told (not running, or its queue stayed full)");
            }
        });
        Ok(())
    }

    async fn list(&mut self) -> Result<Vec<PluginInfo>, CapError> {
        let kernel = self.reader("listing plugins")?;
        Ok(kernel.plugins().into_iter().map(info).collect())
    }

    async fn rollback(&mut self, name: String) -> Result<PluginInfo, CapError> {
        let kernel = self.manage(&name)?;
        kernel
            .rollback(&name, "requested by plugin")
            .await
            .map(info)
            .map_err(|err| err.to_cap_error())
    }

    async fn remove(&mut self, name: String) -> Result<(), CapError> {
        let kernel = self.manage(&name)?;
        kernel.remove(&name).await.map_err(|err| err.to_cap_error())
    }

    async fn health(&mut self) -> Result<HealthSummary, CapError> {
        let asking = self.plugin().to_string();
        let summary = self.reader("reading health")?.health(Some(&asking)).await;
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

    async fn metrics(&mut self) -> Result<String, CapError> {
        Ok(self.reader("reading metrics")?.render_metrics())
    }
}

/// An install checked against the caller's grant, ready to run.
struct InstallJob {
    source: InstallSource,
    force: bool,
    patterns: Vec<NamePattern>,
    caller: String,
}

impl InstallJob {
    async fn run(self, kernel: &Kernel) -> Result<PluginInfo, CapError> {
        let InstallJob {
            source,
            force,
            patterns,
            caller,
        } = self;
        let authorize = move |name: &str| {
            if patterns.iter().any(|allowed| allowed.matches_plugin(name)) {
                Ok(())
            } else {
                tracing::warn!(target: "cairn::audit", plugin = %caller, capability = Plugins::NAME, "denied: installing `{name}` is outside the grant");
                Err(format!("installing plugin `{name}` is outside the grant"))
            }
        };
        kernel
            .install(source, force, &authorize, &crate::progress::ignore)
            .await
            .map(info)
            .map_err(|err| err.to_cap_error())
    }
}
