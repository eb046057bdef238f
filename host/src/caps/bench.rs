//! The capability test bench: one instance's capabilities, built from a policy
//! snippet with a temp-dir state directory and a fake kernel, whose host
//! functions a test calls directly — no daemon, no wasm.
//!
//! ```ignore
//! let mut bench = Bench::new("[grants.kv]\nquota = \"1KiB\"");
//! let mut kv = bench.view::<kv::Kv>();
//! wit::Host::set(&mut kv, "a".into(), b"1".to_vec()).await?;
//! ```

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::{
    CapView, Capability, CapsConfig, Grants, HostSetup, InstanceCaps, NewInstance, Select,
    SharedCaps,
};
use crate::contract::bindings::{CapError, Event};
use crate::contract::testing::{FakeHost, QueueLink};
use crate::contract::{Audit, HostLink, InstanceLink, PluginHost};
use crate::policy::Policy;

/// The plugin every bench instance belongs to.
pub const PLUGIN: &str = "bench";
/// The device id capabilities see (`{device}` in topic grants).
pub const DEVICE: &str = "bench-device";

/// One instance's capabilities and what they reach.
pub struct Bench {
    pub caps: InstanceCaps,
    /// Events delivered to the instance (timers, subscriptions, and what the
    /// kernel is asked to notify it of: process exits, finished installs).
    pub events: mpsc::Receiver<Event>,
    /// The kernel the instance's capabilities act on.
    pub host: Arc<FakeHost>,
    pub shared: Arc<SharedCaps>,
    /// What the instance wrote to stdout and stderr.
    pub output: MemoryOutputPipe,
    pub state_dir: tempfile::TempDir,
}

impl Bench {
    /// A bench whose plugin's policy has `grants` (TOML `[grants.*]` tables).
    /// Panics on a bad snippet: it is the test's own text.
    pub fn new(grants: &str) -> Bench {
        Bench::with_host(grants, FakeHost::default())
    }

    /// A bench whose capabilities act on `host`.
    pub fn with_host(grants: &str, host: FakeHost) -> Bench {
        Bench::with_config(grants, host, CapsConfig::default())
    }

    /// A bench whose capabilities are configured by `config` (the daemon
    /// config's sections).
    pub fn with_config(grants: &str, host: FakeHost, config: CapsConfig) -> Bench {
        Bench::build(grants, host, config, None)
    }

    /// A new bench on this one's state directory, as the daemon restarted
    /// after a crash would be.
    pub fn restarted(self, grants: &str, config: CapsConfig) -> Bench {
        let Bench {
            state_dir,
            caps,
            shared,
            ..
        } = self;
        // The old "daemon" is gone: its stores close.
        drop(caps);
        drop(shared);
        let state = state_dir.path().to_path_buf();
        let mut after = Bench::build(grants, FakeHost::default(), config, Some(state));
        after.state_dir = state_dir;
        after
    }

    fn build(
        grants: &str,
        host: FakeHost,
        config: CapsConfig,
        state: Option<std::path::PathBuf>,
    ) -> Bench {
        let state_dir = tempfile::tempdir().expect("a temp dir");
        let setup = HostSetup {
            state_dir: state.unwrap_or_else(|| state_dir.path().to_path_buf()),
            device_id: DEVICE.into(),
            started: Instant::now(),
            audit: Arc::new(Audit::default()),
            config,
        };
        let shared = Arc::new(SharedCaps::build(&setup).expect("capabilities build"));
        let grants = Arc::new(grants_of(grants).expect("a valid policy snippet"));
        let (link, events) = QueueLink::new(64);
        let link: InstanceLink = Arc::new(link);
        if let Ok(mut queues) = host.queues.lock() {
            queues.push((PLUGIN.to_string(), link.clone()));
        }
        let host = Arc::new(host);
        let weak: HostLink = Arc::downgrade(&(host.clone() as Arc<dyn PluginHost>));
        // As the kernel does before any plugin starts.
        shared.recover(&weak);
        let output = MemoryOutputPipe::new(64 * 1024);
        let caps = InstanceCaps::new(
            shared.clone(),
            grants,
            NewInstance {
                plugin: PLUGIN.into(),
                link,
                host: weak,
                config_json: "{}",
            },
            output.clone(),
        );
        Bench {
            caps,
            events,
            host,
            shared,
            output,
            state_dir,
        }
    }

    /// One capability's view, to call its host functions on.
    pub fn view<C: Capability>(&mut self) -> CapView<'_, C>
    where
        InstanceCaps: Select<C>,
    {
        self.caps.view::<C>()
    }

    /// Denials counted for the bench's plugin so far.
    pub fn denials(&self) -> u64 {
        self.shared.audit.denials(PLUGIN)
    }
}

/// Parses and validates a policy whose grants are `grants`.
pub fn grants_of(grants: &str) -> Result<Grants, String> {
    let text = format!("[plugin]\nname = \"{PLUGIN}\"\nsigners = [\"dev\"]\n{grants}\n");
    let policy = Policy::parse(&text, None).map_err(|err| err.to_string())?;
    Grants::from_policy(&policy).map_err(|err| err.to_string())
}

/// Asserts that `result` is a `denied` whose message contains `needle`.
#[track_caller]
pub fn assert_denied<T: std::fmt::Debug>(result: Result<T, CapError>, needle: &str) {
    match result {
        Err(CapError::Denied(message)) => {
            assert!(
                message.contains(needle),
                "denied, but `{message}` lacks `{needle}`"
            )
        }
        other => panic!("expected denied ({needle}), got {other:?}"),
    }
}
