//! `cairn:host/commands`: calling another plugin's `on-command`.

use std::time::Duration;

use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::kernel::KernelError;
use crate::policy::NamePattern;
use crate::runtime::bindings::CapError;
use crate::runtime::bindings::cairn::host::commands::{self as wit, CallError};
use crate::runtime::{CallError as RuntimeCallError, InstanceState};

/// How long a plugin waits for another plugin's reply (queue and execution).
const CALL_WAIT: Duration = Duration::from_secs(30);

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
    const INTERFACE: &'static str = "cairn:host/commands";
    type Grant = CommandsGrant;

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |state| state)
    }
}

impl wit::Host for InstanceState {
    async fn call(
        &mut self,
        plugin: String,
        command: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        let Some(grant) = &self.grants.commands else {
            return Err(CallError::Host(super::deny(
                self,
                Commands::NAME,
                "the policy has no [grants.commands]",
            )));
        };
        if !grant
            .call
            .iter()
            .any(|allowed| allowed.matches_call(&plugin, &command))
        {
            let detail = format!("calling `{plugin}/{command}` is outside the grant");
            return Err(CallError::Host(super::deny(self, Commands::NAME, detail)));
        }
        if plugin == self.plugin() {
            return Err(CallError::Host(CapError::Invalid(
                "a plugin may not call itself".into(),
            )));
        }
        let kernel = self.hub.kernel().map_err(CallError::Host)?;
        match kernel.call(&plugin, &command, payload, CALL_WAIT).await {
            Ok(reply) => Ok(reply),
            Err(KernelError::Call(RuntimeCallError::Plugin(message))) => {
                Err(CallError::Plugin(message))
            }
            Err(err) => Err(CallError::Host(err.to_cap_error())),
        }
    }
}
