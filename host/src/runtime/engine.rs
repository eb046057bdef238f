//! The one wasmtime [`Engine`] of the daemon, sized for small devices.

use std::time::Duration;

use anyhow::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Largest linear memory any plugin may be granted, in bytes.
pub const MAX_PLUGIN_MEMORY: u64 = 1 << 30;

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots: fastest instantiation.
    Pooling,
    /// Memory mapped per instance: used when the pool's reservation fails.
    OnDemand,
}

impl Allocator {
    pub fn as_str(self) -> &'static str {
        match self {
            Allocator::Pooling => "pooling",
            Allocator::OnDemand => "on-demand",
        }
    }
}

/// Engine settings taken from the daemon configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How many component instances may be alive at once (running plugins,
    /// plus the second instance during a swap).
    pub max_instances: u32,
    /// Period of the epoch ticker that drives CPU deadlines.
    pub epoch_tick: Duration,
}

/// Builds the engine, preferring the pooling allocator.
///
/// The pool reserves virtual address space up front. A large reservation (guard
/// regions that remove bounds checks) is tried first, then a small one for boards
/// with a 39-bit address space, then on-demand allocation: a device with little
/// address space still starts, only instantiation gets slower.
pub fn build(settings: &EngineSettings) -> anyhow::Result<(Engine, Allocator)> {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    let attempts = [(4 * GIB, 32 * MIB), (MAX_PLUGIN_MEMORY, 64 * 1024)];
    for (reservation, guard) in attempts {
        match Engine::new(&pooling_config(settings, reservation, guard)) {
            Ok(engine) => return Ok((engine, Allocator::Pooling)),
            Err(err) => tracing::warn!(
                reservation_mib = reservation / MIB,
                "pooling allocator unavailable ({err:#}); trying a smaller reservation"
            ),
        }
    }
    let engine = Engine::new(&base_config())
        .map_err(anyhow::Error::from)
        .context("creating the wasm engine")?;
    tracing::warn!("using on-demand instance allocation");
    Ok((engine, Allocator::OnDemand))
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

fn pooling_config(settings: &EngineSettings, reservation: u64, guard: u64) -> Config {
    let instances = settings.max_instances.max(2);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances);
    // A Rust component holds a few core instances (its module plus shims).
    pool.total_core_instances(instances * 8);
    pool.total_memories(instances * 2);
    pool.total_tables(instances * 8);
    pool.total_stacks(instances);
    pool.max_memory_size(MAX_PLUGIN_MEMORY as usize);
    let mut config = base_config();
    config.memory_reservation(reservation);
    config.memory_guard_size(guard);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every `tick` on a dedicated thread, for as long as
/// the engine lives. Deadlines are counted in these ticks.
pub fn start_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("cairn-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        });
    if let Err(err) = spawned {
        tracing::error!("cannot start the epoch ticker, CPU deadlines are off: {err}");
    }
}
