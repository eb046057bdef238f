//! `cairn:host/commands`: calling another plugin's `on-command`.

use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::commands::{self as wit, CallError};
use crate::policy::NamePattern;

pub struct Commands;

/// `[grants.commands]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CommandsGrant {
    /// `plugin`, `plugin/command` or `*` patterns the plugin may call.
    #[serde(default)]
    pub call: Vec<NamePattern>,
}

impl Capability for Commands {
    const NAME: &'static str = "commands";
    const INTERFACES: &'static [&'static str] = &["cairn:host/commands"];
    type Grant = CommandsGrant;
    type Shared = ();
    type Local = ();

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Commands>>(linker, |state| state.caps().view())
    }

    fn build(_: &HostSetup) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare(_: &(), _: Option<&CommandsGrant>, _: &mut InstanceSetup<'_>) {}
}

impl wit::Host for CapView<'_, Commands> {
    async fn call(
        &mut self,
        plugin: String,
        command: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        let grant = self.grant().map_err(CallError::Host)?;
        if !grant
            .call
            .iter()
            .any(|allowed| allowed.matches_call(&plugin, &command))
        {
            let detail = format!("calling `{plugin}/{command}` is outside the grant");
            return Err(CallError::Host(self.deny(detail)));
        }
        if plugin == self.plugin() {
            return Err(CallError::Host(CapError::Invalid(
                "a plugin may not call itself".into(),
            )));
        }
        let host = crate::contract::host(&self.ctx.host).map_err(CallError::Host)?;
        host.call(&plugin, &command, payload).await
    }
}
