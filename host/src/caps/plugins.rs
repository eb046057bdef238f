//! `cairn:host/plugins`: managing installed plugins from a plugin (the
//! control-plane adapters use it to install over the air).

use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::kernel::{InstallSource, Kernel, PluginView};
use crate::policy::NamePattern;
use crate::runtime::InstanceState;
use crate::runtime::bindings::CapError;
use crate::runtime::bindings::cairn::host::plugins::{self as wit, PluginInfo, Source};

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
}

impl wit::Host for InstanceState {
    async fn install(&mut self, source: Source, force: bool) -> Result<PluginInfo, CapError> {
        let grant = self.plugins_grant()?;
        let patterns = grant.manage.clone();
        let source = match source {
            Source::Cached(digest) => InstallSource::Cached(digest),
            Source::Bytes((bytes, signature)) => InstallSource::Bytes {
                identity: None,
                bytes,
                signature: Some(signature).filter(|sig| !sig.is_empty()),
            },
            Source::Oci(reference) => InstallSource::Oci(reference),
        };
        let kernel = self.hub.kernel()?;
        let audit_plugin = self.plugin().to_string();
        let authorize = move |name: &str| {
            if patterns.iter().any(|allowed| allowed.matches_plugin(name)) {
                Ok(())
            } else {
                tracing::warn!(target: "cairn::audit", plugin = %audit_plugin, capability = Plugins::NAME, "denied: installing `{name}` is outside the grant");
                Err(format!("installing plugin `{name}` is outside the grant"))
            }
        };
        kernel
            .install(source, force, &authorize, &crate::progress::ignore)
            .await
            .map(info)
            .map_err(|err| err.to_cap_error())
    }

    async fn list(&mut self) -> Result<Vec<PluginInfo>, CapError> {
        if !self.plugins_grant()?.read {
            return Err(super::deny(
                self,
                Plugins::NAME,
                "listing plugins needs `read = true`",
            ));
        }
        Ok(self.hub.kernel()?.plugins().into_iter().map(info).collect())
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
}
