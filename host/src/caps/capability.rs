//! The shape of every capability: one unit with a lifecycle, in the spirit of
//! Spin's factors.
//!
//! | when                         | hook                | what it gets                         |
//! |------------------------------|---------------------|--------------------------------------|
//! | the linker is built (once)   | [`Capability::add_to_linker`] | its WIT interfaces        |
//! | a policy is installed        | `Grant` + [`Capability::validate`] | its `[grants.NAME]` table |
//! | the daemon starts (once)     | [`Capability::build`] | the host-wide [`HostSetup`]        |
//! | before plugins start         | [`Capability::recover`] | the kernel, to re-adopt state    |
//! | an instance is created       | [`Capability::prepare`] | its grant and [`InstanceSetup`]  |
//! | an instance ends             | [`Capability::instance_ended`] | its per-instance state    |
//! | a plugin is removed          | [`Capability::plugin_removed`] |                           |
//! | every plugin has booted      | [`Capability::booted`] | the installed plugins' names      |
//! | the daemon stops             | [`Capability::shutdown`] |                                 |
//!
//! Host functions are implemented on [`CapView`]: the capability's own grant,
//! host-wide state and per-instance state, and the instance's [`InstanceCtx`].

use std::collections::BTreeSet;
use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi::WasiCtxBuilder;

use super::CapsData;
use crate::contract::bindings::CapError;
use crate::contract::{Audit, HostLink, InstanceLink};

/// One capability the host grants to plugins.
pub trait Capability: Sized + Send + Sync + 'static {
    /// Policy table granting it: `[grants.<NAME>]`.
    const NAME: &'static str;
    /// WIT interfaces (without version) that need this grant to be imported;
    /// one ending in `/` stands for every interface of its package.
    const INTERFACES: &'static [&'static str];
    /// The typed policy slice (deserialised with unknown keys refused).
    type Grant: DeserializeOwned + Send + Sync + 'static;
    /// State shared by every instance of every plugin, built once.
    type Shared: Send + Sync + 'static;
    /// State of one instance.
    type Local: Send + 'static;

    /// Checks that go beyond the grant's types.
    fn validate(_grant: &Self::Grant) -> Result<(), String> {
        Ok(())
    }

    /// Adds the capability's host functions to the linker.
    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()>;

    /// Builds the host-wide state when the daemon starts.
    fn build(setup: &HostSetup) -> anyhow::Result<Self::Shared>;

    /// Checks a component about to be installed against what already runs,
    /// after its grants passed (a route someone else serves, say).
    fn vet(
        _shared: &Self::Shared,
        _plugin: &Candidate<'_>,
        _grant: Option<&Self::Grant>,
        _serving: &Serving,
    ) -> Result<(), Refusal> {
        Ok(())
    }

    /// Re-adopts what survived a restart, before any plugin starts.
    fn recover(_shared: &Self::Shared, _host: &HostLink) {}

    /// Builds an instance's state, contributing to its WASI context.
    fn prepare(
        shared: &Self::Shared,
        grant: Option<&Self::Grant>,
        instance: &mut InstanceSetup<'_>,
    ) -> Self::Local;

    /// Releases what the instance held (subscriptions, timers).
    fn instance_ended(_shared: &Self::Shared, _local: &mut Self::Local, _ctx: &InstanceCtx) {}

    /// Drops everything kept for a plugin that was removed.
    fn plugin_removed(_shared: &Self::Shared, _plugin: &str) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// After boot: drops what belongs to plugins no longer installed.
    fn booted(
        _shared: &Self::Shared,
        _installed: &BTreeSet<String>,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Stops what the capability runs, after every plugin has stopped.
    fn shutdown(_shared: &Self::Shared) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Appends the capability's own metrics (Prometheus text format).
    fn render_metrics(_shared: &Self::Shared, _out: &mut String) {}
}

/// Why a capability refuses a component at install.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its policy does not allow what it does.
    #[error("{0}")]
    Policy(String),
    /// It conflicts with what is installed.
    #[error("{0}")]
    Conflict(String),
}

/// A component about to be installed.
pub struct Candidate<'a> {
    pub name: &'a str,
    /// The component's exported interfaces (`wasi:http/incoming-handler@…`).
    pub exports: &'a [String],
}

/// The plugins serving now, as install checks and request routing see them.
pub struct Serving {
    /// Changes whenever a serving release does (release ids are never reused).
    pub fingerprint: u64,
    pub plugins: Vec<ServingPlugin>,
}

/// One plugin's serving release.
pub struct ServingPlugin {
    pub name: String,
    pub grants: Arc<super::Grants>,
    /// Whether the release exports `wasi:http/incoming-handler`.
    pub serves_http: bool,
}

/// What capabilities are built from when the daemon starts.
pub struct HostSetup {
    pub state_dir: PathBuf,
    /// This device's id (`{device}` in topic grants and broker settings).
    pub device_id: Arc<str>,
    pub started: Instant,
    pub audit: Arc<Audit>,
    /// The daemon configuration's capability sections.
    pub config: super::CapsConfig,
}

/// What a new instance's capabilities are prepared with.
pub struct InstanceSetup<'a> {
    pub ctx: &'a InstanceCtx,
    /// Every grant of the plugin (for hooks that outlive the call, like HTTP egress).
    pub grants: &'a Arc<super::Grants>,
    /// The instance's WASI context, before it is built.
    pub wasi: &'a mut WasiCtxBuilder,
}

/// Who an instance is, and how capabilities reach it and the kernel.
pub struct InstanceCtx {
    pub plugin: Arc<str>,
    /// Unique among every instance the daemon ever ran.
    pub instance: u64,
    pub link: InstanceLink,
    pub host: HostLink,
    pub audit: Arc<Audit>,
    pub device_id: Arc<str>,
}

impl InstanceCtx {
    /// Refuses a call: writes the audit line, counts it, and returns `denied`.
    pub fn deny(&self, capability: &str, detail: impl Into<String>) -> CapError {
        self.audit.deny(&self.plugin, capability, detail)
    }
}

/// One capability's view of an instance, on which its WIT is implemented.
pub struct CapView<'a, C: Capability> {
    pub ctx: &'a InstanceCtx,
    pub grant: Option<&'a C::Grant>,
    pub shared: &'a C::Shared,
    pub local: &'a mut C::Local,
}

impl<'a, C: Capability> CapView<'a, C> {
    /// The grant, or `denied` (audited) when the policy has none.
    pub fn grant(&self) -> Result<&'a C::Grant, CapError> {
        self.grant.ok_or_else(|| {
            self.ctx
                .deny(C::NAME, format!("the policy has no [grants.{}]", C::NAME))
        })
    }

    /// Refuses a call: audit line, denial counted, `denied` returned.
    pub fn deny(&self, detail: impl Into<String>) -> CapError {
        self.ctx.deny(C::NAME, detail)
    }

    /// The calling plugin's name.
    pub fn plugin(&self) -> &'a str {
        &self.ctx.plugin
    }
}

/// The linker's handle on a capability's view (`wit::add_to_linker::<T, ViewOf<C>>`).
pub struct ViewOf<C>(PhantomData<C>);

impl<C: Capability> HasData for ViewOf<C> {
    type Data<'a> = CapView<'a, C>;
}

/// Picks one capability's view out of an instance's capabilities.
pub trait Select<C: Capability> {
    fn view(&mut self) -> CapView<'_, C>;
}
