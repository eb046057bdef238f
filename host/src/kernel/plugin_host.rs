//! The kernel as capabilities reach it: [`PluginHost`], in the plugin-facing types.

use std::time::Duration;

use super::{Kernel, KernelError, PluginView};
use crate::contract::bindings::cairn::host::commands::CallError;
use crate::contract::bindings::cairn::host::plugins::{HealthSummary, PluginHealth, PluginInfo};
use crate::contract::bindings::{CapError, Event};
use crate::contract::{HostFuture, InstallRequest, PluginHost};
use crate::runtime::CallError as RuntimeCallError;

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

fn cap_error(err: KernelError) -> CapError {
    err.to_cap_error()
}

impl PluginHost for Kernel {
    fn call<'a>(
        &'a self,
        plugin: &'a str,
        command: &'a str,
        payload: Vec<u8>,
    ) -> HostFuture<'a, Result<Vec<u8>, CallError>> {
        Box::pin(async move {
            match Kernel::call(self, plugin, command, payload).await {
                Ok(reply) => Ok(reply),
                Err(KernelError::Call(RuntimeCallError::Plugin(message))) => {
                    Err(CallError::Plugin(message))
                }
                Err(err) => Err(CallError::Host(err.to_cap_error())),
            }
        })
    }

    fn notify<'a>(&'a self, plugin: &'a str, event: Event, wait: Duration) -> HostFuture<'a, bool> {
        Box::pin(Kernel::notify(self, plugin, event, wait))
    }

    fn install(&self, request: InstallRequest) -> HostFuture<'_, Result<PluginInfo, CapError>> {
        Box::pin(async move {
            let InstallRequest {
                source,
                force,
                authorize,
            } = request;
            Kernel::install(self, source, force, &*authorize, &crate::progress::ignore)
                .await
                .map(info)
                .map_err(cap_error)
        })
    }

    fn rollback<'a>(
        &'a self,
        plugin: &'a str,
        reason: &'a str,
    ) -> HostFuture<'a, Result<PluginInfo, CapError>> {
        Box::pin(async move {
            Kernel::rollback(self, plugin, reason)
                .await
                .map(info)
                .map_err(cap_error)
        })
    }

    fn remove<'a>(&'a self, plugin: &'a str) -> HostFuture<'a, Result<(), CapError>> {
        Box::pin(async move { Kernel::remove(self, plugin).await.map_err(cap_error) })
    }

    fn list(&self) -> Vec<PluginInfo> {
        self.plugins().into_iter().map(info).collect()
    }

    fn health<'a>(&'a self, asking: &'a str) -> HostFuture<'a, HealthSummary> {
        Box::pin(async move {
            let summary = Kernel::health(self, Some(asking)).await;
            HealthSummary {
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
            }
        })
    }

    fn metrics(&self) -> String {
        self.render_metrics()
    }
}
