//! `cairn:host/plugins`: managing installed plugins from a plugin (the
//! control-plane adapters use it to install over the air).

use std::sync::Arc;

use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf};
use crate::contract::bindings::cairn::host::plugins::{
    self as wit, HealthSummary, PluginInfo, Source,
};
use crate::contract::bindings::{CapError, Event};
use crate::contract::{InstallRequest, InstallSource, PluginHost};
use crate::policy::NamePattern;

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
    const INTERFACES: &'static [&'static str] = &["cairn:host/plugins"];
    type Grant = PluginsGrant;
    type Shared = ();
    type Local = ();

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Plugins>>(linker, |state| state.caps().view())
    }

    fn build(_: &HostSetup) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare(_: &(), _: Option<&PluginsGrant>, _: &mut InstanceSetup<'_>) {}
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
            "error": super::error_body(&err),
        }),
    };
    Event {
        topic: INSTALL_FINISHED.into(),
        payload: payload.to_string().into_bytes(),
        source: "host".into(),
    }
}

impl CapView<'_, Plugins> {
    /// The kernel, if this plugin may manage `name`.
    fn manage(&self, name: &str) -> Result<Arc<dyn PluginHost>, CapError> {
        let grant = self.grant()?;
        if !grant
            .manage
            .iter()
            .any(|allowed| allowed.matches_plugin(name))
        {
            return Err(self.deny(format!("managing plugin `{name}` is outside the grant")));
        }
        crate::contract::host(&self.ctx.host)
    }

    /// The kernel, if this plugin may read (`read = true`); `what` names the refused call.
    fn reader(&self, what: &str) -> Result<Arc<dyn PluginHost>, CapError> {
        if !self.grant()?.read {
            return Err(self.deny(format!("{what} needs `read = true`")));
        }
        crate::contract::host(&self.ctx.host)
    }

    fn install_job(
        &self,
        source: Source,
        force: bool,
    ) -> Result<(Arc<dyn PluginHost>, InstallRequest), CapError> {
        let patterns = self.grant()?.manage.clone();
        let source = match source {
            Source::Cached(digest) => InstallSource::Cached(digest),
            Source::Bytes((bytes, signature)) => InstallSource::Bytes {
                identity: None,
                bytes,
                signature: Some(signature).filter(|sig| !sig.is_empty()),
            },
            Source::Oci(reference) => InstallSource::Oci(reference),
        };
        let (caller, audit) = (self.ctx.plugin.clone(), self.ctx.audit.clone());
        // The component names the plugin: only then can the grant be checked.
        let authorize = Box::new(move |name: &str| {
            if patterns.iter().any(|allowed| allowed.matches_plugin(name)) {
                Ok(())
            } else {
                let detail = format!("installing plugin `{name}` is outside the grant");
                audit.record(&caller, Plugins::NAME, &detail);
                Err(detail)
            }
        });
        let request = InstallRequest {
            source,
            force,
            authorize,
        };
        Ok((crate::contract::host(&self.ctx.host)?, request))
    }
}

impl wit::Host for CapView<'_, Plugins> {
    async fn install(&mut self, source: Source, force: bool) -> Result<PluginInfo, CapError> {
        let (host, request) = self.install_job(source, force)?;
        host.install(request).await
    }

    async fn start_install(
        &mut self,
        source: Source,
        force: bool,
        tag: String,
    ) -> Result<(), CapError> {
        let (host, request) = self.install_job(source, force)?;
        let caller = self.plugin().to_string();
        tokio::spawn(async move {
            let event = install_finished(&tag, host.install(request).await);
            if !host.notify(&caller, event, NOTIFY_WAIT).await {
                tracing::warn!(plugin = %caller, "an install it started finished, but the plugin could not be told (not running, or its queue stayed full)");
            }
        });
        Ok(())
    }

    async fn list(&mut self) -> Result<Vec<PluginInfo>, CapError> {
        Ok(self.reader("listing plugins")?.list())
    }

    async fn rollback(&mut self, name: String) -> Result<PluginInfo, CapError> {
        let host = self.manage(&name)?;
        host.rollback(&name, "requested by plugin").await
    }

    async fn remove(&mut self, name: String) -> Result<(), CapError> {
        let host = self.manage(&name)?;
        host.remove(&name).await
    }

    async fn health(&mut self) -> Result<HealthSummary, CapError> {
        let host = self.reader("reading health")?;
        Ok(host.health(self.plugin()).await)
    }

    async fn metrics(&mut self) -> Result<String, CapError> {
        Ok(self.reader("reading metrics")?.metrics())
    }
}
