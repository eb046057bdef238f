//! The data each plugin instance's wasmtime `Store` carries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::guest_output::GuestOutput;
use crate::caps::{CapsData, Grants, InstanceCaps, NewInstance, SharedCaps};
use crate::contract::{HostLink, InstanceLink};

/// Who an instance is: the plugin and release it runs.
#[derive(Debug, Clone)]
pub struct PluginIdentity {
    pub name: Arc<str>,
    pub version: semver::Version,
}

/// Store data of one plugin instance: its identity, what its capabilities
/// keep for it, and its limits.
pub struct InstanceState {
    pub identity: PluginIdentity,
    caps: InstanceCaps,
    pub(super) limiter: MemoryLimiter,
    pub(super) budget: CpuBudget,
    pub(super) output: GuestOutput,
}

/// How a new instance reaches its queue and the kernel.
pub struct InstanceLinks {
    pub link: InstanceLink,
    pub host: HostLink,
}

impl InstanceState {
    /// `config` is the plugin's `[config]` as JSON, which every instance can
    /// read from its environment as `CAIRN_CONFIG`.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per kind of instance"
    )]
    pub fn new(
        identity: PluginIdentity,
        grants: Arc<Grants>,
        config: &str,
        shared: Arc<SharedCaps>,
        links: InstanceLinks,
        memory_limit: u64,
        memory_gauge: Arc<AtomicU64>,
    ) -> Self {
        let output = GuestOutput::new(identity.name.clone());
        let caps = InstanceCaps::new(
            shared,
            grants,
            NewInstance {
                plugin: identity.name.clone(),
                link: links.link,
                host: links.host,
                config_json: config,
            },
            output.clone(),
        );
        InstanceState {
            identity,
            caps,
            limiter: MemoryLimiter {
                limit: memory_limit,
                denied: false,
                current: 0,
                gauge: memory_gauge,
            },
            budget: CpuBudget::default(),
            output,
        }
    }

    /// The plugin's name, for capability checks and audit lines.
    pub fn plugin(&self) -> &str {
        &self.identity.name
    }
}

impl CapsData for InstanceState {
    fn caps(&mut self) -> &mut InstanceCaps {
        &mut self.caps
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.caps.wasi_http()
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.caps.wasi()
    }
}

/// Caps a plugin's linear memory at its policy limit. A refused growth makes
/// `memory.grow` fail inside the guest (Rust then aborts, which traps); the flag
/// lets the fault report say the plugin ran out of memory.
pub struct MemoryLimiter {
    limit: u64,
    pub denied: bool,
    /// This instance's linear memory, and the release-wide total it adds to.
    current: u64,
    gauge: Arc<AtomicU64>,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.gauge.fetch_sub(self.current, Ordering::Relaxed);
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.limit;
        if allowed {
            let desired = desired as u64;
            self.gauge
                .fetch_add(desired.saturating_sub(self.current), Ordering::Relaxed);
            self.current = desired;
        } else {
            self.denied = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Epoch ticks a call may spend executing wasm. Time spent awaiting host calls
/// does not count: only ticks observed while wasm runs do.
#[derive(Default)]
pub struct CpuBudget {
    pub allowed_ticks: u64,
    used_ticks: u64,
    pub exceeded: bool,
}

/// The error a call ends with when it outran its CPU budget.
#[derive(Debug, thiserror::Error)]
#[error("exceeded its CPU time limit of {0} ticks")]
pub struct DeadlineExceeded(pub u64);

/// Configures a new store: memory limiter, and an epoch callback that yields to
/// the executor every tick (so a spinning plugin never starves the others) and
/// interrupts the call once its budget is spent.
pub fn configure_store(store: &mut Store<InstanceState>) {
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_callback(|mut ctx| {
        let budget = &mut ctx.data_mut().budget;
        budget.used_ticks += 1;
        if budget.used_ticks > budget.allowed_ticks {
            budget.exceeded = true;
            return Err(DeadlineExceeded(budget.allowed_ticks).into());
        }
        Ok(UpdateDeadline::Yield(1))
    });
}

/// Resets the per-call limits before calling into the instance.
pub fn begin_call(store: &mut Store<InstanceState>, allowed_ticks: u64) {
    let data = store.data_mut();
    data.budget = CpuBudget {
        allowed_ticks,
        used_ticks: 0,
        exceeded: false,
    };
    data.limiter.denied = false;
    store.set_epoch_deadline(1);
}
