//! The kernel: what is installed and running, and every change to it.
//!
//! It owns the runtime, the content-addressed stores and the journal, and
//! serialises installs, swaps, rollbacks and removals. It knows plugins only by
//! the `cairn:plugin` contract; capabilities live in [`crate::caps`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, mpsc};

use crate::caps::{self, CapsConfig, HostSetup, SharedCaps};
use crate::contract::bindings::Event;
use crate::contract::{Audit, HostLink};
use crate::runtime::cache::CompiledCache;
use crate::runtime::engine::{self, Allocator, EngineSettings};
use crate::runtime::{Release, RuntimeEnv};
use crate::state::blobs::BlobStore;
use crate::state::journal::{InstalledSet, Journal, PluginRecord};
use crate::supply::oci::{Registry, RegistryOptions};
use crate::supply::signing::TrustStore;

mod error;
pub mod failpoint;
mod install;
mod lifecycle;
mod metrics;
mod plugin_host;
mod registry;
mod serving;
mod store;
mod swap;

pub use error::KernelError;
pub use install::InstallSource;
pub use store::{StorePrune, StoredComponent};

/// What the kernel needs from the daemon configuration.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub state_dir: PathBuf,
    pub policy_dir: PathBuf,
    /// Development switch: accept plugins without a valid signature.
    pub allow_unsigned: bool,
    /// Trusted public keys by name; policies name their signers from these.
    pub trust_keys: BTreeMap<String, PathBuf>,
    pub engine: EngineSettings,
    /// How plugins are fetched from OCI registries.
    pub registry: RegistryOptions,
    /// This device's id (`{device}` in topic grants and broker settings).
    pub device_id: String,
    /// The capabilities' sections of the daemon configuration.
    pub caps: CapsConfig,
}

/// One installed plugin's running release.
pub struct PluginSlot {
    pub active: ArcSwap<Release>,
    /// Id of the serving release, shared with every release of this plugin.
    activation: Arc<AtomicU64>,
    swaps: AtomicU64,
    soak: Mutex<Option<Soak>>,
}

/// After a swap: faults of the new release before `until` count toward rollback.
#[derive(Debug, Clone, Copy)]
struct Soak {
    release_id: u64,
    until: Instant,
    max_faults: u32,
}

/// A plugin as reported to the CLI and to plugins holding the `plugins` grant.
pub use cairn_types::PluginSummary as PluginView;

pub struct Kernel {
    config: KernelConfig,
    env: Arc<RuntimeEnv>,
    allocator: Allocator,
    cache: Arc<CompiledCache>,
    blobs: BlobStore,
    registry: Registry,
    fetched: registry::FetchedManifests,
    trust: TrustStore,
    journal: Journal,
    /// The last committed journal contents.
    installed: Mutex<InstalledSet>,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    /// Why a journaled plugin is not running (boot failures).
    failures: Mutex<BTreeMap<String, String>>,
    /// Serialises every change to what is installed.
    changes: tokio::sync::Mutex<()>,
    started: Instant,
    /// The kernel as capabilities hold it (see [`crate::contract::PluginHost`]).
    me: HostLink,
}

impl Kernel {
    /// Opens the state directory, builds the runtime and starts every plugin the
    /// journal records, from the local cache only (no network needed).
    pub async fn start(config: KernelConfig) -> anyhow::Result<Arc<Kernel>> {
        let state_dir = &config.state_dir;
        crate::state::atomic::create_private_dir(state_dir)
            .with_context(|| format!("creating state dir {}", state_dir.display()))?;
        let (engine, allocator) = engine::build(&config.engine)?;
        engine::start_epoch_ticker(&engine, config.engine.epoch_tick);
        let cache = Arc::new(CompiledCache::open(&state_dir.join("compiled"), &engine)?);
        let blobs = BlobStore::open(&state_dir.join("blobs")).context("opening the blob store")?;
        let (journal, installed) = Journal::open(state_dir).context("opening the journal")?;
        let trust = TrustStore::load(&config.trust_keys).context("loading trusted keys")?;
        let registry =
            Registry::new(config.registry.clone()).context("configuring registry access")?;
        let fetched = registry::FetchedManifests::open(&state_dir.join("registry"))
            .context("opening the registry records")?;
        let caps = Arc::new(SharedCaps::build(&HostSetup {
            state_dir: state_dir.clone(),
            device_id: config.device_id.as_str().into(),
            started: Instant::now(),
            audit: Arc::new(Audit::default()),
            config: config.caps.clone(),
        })?);
        let linker = caps::linker(&engine)?;
        let (faults_tx, faults_rx) = mpsc::unbounded_channel();
        if config.allow_unsigned {
            tracing::warn!(
                "DEVELOPMENT MODE: allow-unsigned is on; plugins without a valid signature will be installed"
            );
        }
        let kernel = Arc::new_cyclic(|me: &std::sync::Weak<Kernel>| {
            let me: HostLink = me.clone();
            let env = Arc::new(RuntimeEnv {
                linker,
                engine,
                caps: caps.clone(),
                host: me.clone(),
                instance_permits: Arc::new(Semaphore::new(config.engine.max_instances as usize)),
                faults: faults_tx,
                epoch_tick: config.engine.epoch_tick,
            });
            Kernel {
                config,
                env,
                allocator,
                cache,
                blobs,
                registry,
                fetched,
                trust,
                journal,
                installed: Mutex::new(installed),
                slots: RwLock::default(),
                failures: Mutex::default(),
                changes: tokio::sync::Mutex::new(()),
                started: Instant::now(),
                me,
            }
        });
        caps.recover(&kernel.me);
        tokio::spawn(lifecycle::supervise(Arc::downgrade(&kernel), faults_rx));
        kernel.boot().await;
        let installed = kernel.installed_snapshot().plugins.into_keys().collect();
        caps.booted(&installed).await;
        failpoint::arm();
        Ok(kernel)
    }

    /// Calls `command` on `plugin`'s serving release.
    pub async fn call(
        &self,
        plugin: &str,
        command: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, KernelError> {
        let release = self
            .slot(plugin)
            .ok_or_else(|| {
                KernelError::NotFound(format!("no plugin named `{plugin}` is installed"))
            })?
            .active
            .load_full();
        release
            .command(command, payload, release.limits.reply_wait)
            .await
            .map_err(KernelError::Call)
    }

    /// Queues `event` for `plugin`'s serving release, waiting up to `wait` for
    /// room in its queue; false if the plugin is not running or stayed busy.
    pub async fn notify(&self, plugin: &str, event: Event, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let delivered = self
                .slot(plugin)
                .is_some_and(|slot| slot.active.load_full().deliver(event.clone()));
            if delivered || Instant::now() >= deadline {
                return delivered;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every installed plugin, running or not.
    pub fn plugins(&self) -> Vec<PluginView> {
        let installed = self.installed_snapshot();
        installed
            .plugins
            .iter()
            .map(|(name, record)| self.view_of(name, record))
            .collect()
    }

    /// The plugin as the CLI shows it, if installed.
    pub fn view(&self, name: &str) -> Option<PluginView> {
        let record = self.installed_snapshot().plugins.get(name)?.clone();
        Some(self.view_of(name, &record))
    }

    fn view_of(&self, name: &str, record: &PluginRecord) -> PluginView {
        let previous_version = record
            .previous
            .as_ref()
            .map(|release| release.version.to_string());
        let failure = self
            .failures
            .lock()
            .ok()
            .and_then(|failures| failures.get(name).cloned());
        let Some(slot) = self.slot(name) else {
            return PluginView {
                name: name.to_string(),
                version: record.active.version.to_string(),
                digest: record.active.digest.to_string(),
                state: "failed".into(),
                previous_version,
                restarts: 0,
                calls: 0,
                faults: 0,
                swaps: 0,
                last_error: failure,
            };
        };
        let release = slot.active.load_full();
        let stats = &release.stats;
        let last_fault = stats.last_fault.lock().ok().and_then(|last| last.clone());
        PluginView {
            name: name.to_string(),
            version: release.identity.version.to_string(),
            digest: release.digest.to_string(),
            state: stats.state().as_str().into(),
            previous_version,
            restarts: stats.restarts.load(Ordering::Relaxed),
            calls: stats.calls.load(Ordering::Relaxed),
            faults: stats.faults.load(Ordering::Relaxed),
            swaps: slot.swaps.load(Ordering::Relaxed),
            last_error: last_fault.or(failure),
        }
    }

    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    pub fn config(&self) -> &KernelConfig {
        &self.config
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops every plugin (each finishes its queued calls, then `shutdown` runs).
    pub async fn stop(&self) {
        let slots: Vec<Arc<PluginSlot>> = match self.slots.write() {
            Ok(mut slots) => std::mem::take(&mut *slots).into_values().collect(),
            Err(_) => return,
        };
        let releases: Vec<Arc<Release>> =
            slots.iter().map(|slot| slot.active.load_full()).collect();
        drop(slots);
        for release in releases {
            let stats = release.stats.clone();
            drop(release);
            for _ in 0..50 {
                if stats.state() == crate::runtime::ReleaseState::Stopped {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // After the plugins, whose shutdown may still use them.
        self.env.caps.shutdown().await;
    }

    /// The capabilities' host-wide state.
    pub fn caps(&self) -> &Arc<SharedCaps> {
        &self.env.caps
    }

    fn slot(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots.read().ok()?.get(name).cloned()
    }

    fn installed_snapshot(&self) -> InstalledSet {
        self.installed
            .lock()
            .map(|set| set.clone())
            .unwrap_or_default()
    }
}

/// The daemon's resident set size, from /proc/self/statm.
pub fn resident_memory_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .nth(1)
                .and_then(|pages| pages.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).unwrap_or(4096)
}
