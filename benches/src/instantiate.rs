//! Loading and instantiating a plugin from the precompiled cache, measured
//! directly on the runtime (no kernel, journal or readiness around it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::caps::{self, CapsConfig, Grants, HostSetup, SharedCaps};
use cairn::contract::{Audit, HostLink};
use cairn::kernel::Kernel;
use cairn::policy::Policy;
use cairn::runtime::cache::CompiledCache;
use cairn::runtime::engine::{self, EngineSettings};
use cairn::runtime::{PluginIdentity, Release, ReleaseSpec, RuntimeEnv};
use cairn::state::digest::Digest;
use tokio::sync::{Semaphore, mpsc};

use crate::inprocess::wasm;
use crate::stats::median_p99;
use crate::workspace;

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tick = Duration::from_millis(10);
    let (engine, allocator) = engine::build(&EngineSettings {
        max_instances: 32,
        epoch_tick: tick,
    })?;
    engine::start_epoch_ticker(&engine, tick);
    let cache = CompiledCache::open(&dir.path().join("compiled"), &engine)?;
    let bytes = wasm("counter")?;
    let digest = Digest::of(&bytes);

    let started = Instant::now();
    cache.load_or_compile(&digest, &bytes)?;
    let compile = started.elapsed();
    let mut loads = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        cache.load(&digest)?;
        loads.push(started.elapsed());
    }

    let caps = Arc::new(SharedCaps::build(&HostSetup {
        state_dir: dir.path().to_path_buf(),
        device_id: "bench".into(),
        started: Instant::now(),
        audit: Arc::new(Audit::default()),
        config: CapsConfig::default(),
    })?);
    // No kernel: the counter plugin calls nothing that needs one.
    let host: HostLink = std::sync::Weak::<Kernel>::new();
    let (faults, _faults_rx) = mpsc::unbounded_channel();
    let env = Arc::new(RuntimeEnv {
        linker: caps::linker(&engine)?,
        engine: engine.clone(),
        caps,
        host,
        instance_permits: Arc::new(Semaphore::new(32)),
        faults,
        epoch_tick: tick,
    });
    let (plugin, http) = ReleaseSpec::prepare(&env, &cache.load(&digest)?)?;
    let policy = Policy::load(&workspace().join("policies/counter.toml"))?;
    let grants = Arc::new(Grants::from_policy(&policy)?);
    let mut starts = Vec::new();
    for _ in 0..500 {
        let spec = ReleaseSpec {
            identity: PluginIdentity {
                name: "counter".into(),
                version: semver::Version::new(0, 1, 0),
            },
            digest: digest.clone(),
            plugin: plugin.clone(),
            http: http.clone(),
            grants: grants.clone(),
            limits: policy.limits.clone(),
            config_json: "{}".into(),
        };
        let started = Instant::now();
        let release = Release::start(spec, env.clone(), Arc::default()).await?;
        starts.push(started.elapsed());
        drop(release);
    }
    let (load_median, load_p99) = median_p99(&mut loads);
    let (start_median, start_p99) = median_p99(&mut starts);
    println!(
        "\n## Instantiation from the precompiled cache (`counter`, {} allocator)\n",
        allocator.as_str()
    );
    println!("| operation | median µs | p99 µs |\n|---|---:|---:|");
    println!(
        "| compile once (cold, for comparison) | {:.0} | |",
        compile.as_secs_f64() * 1e6
    );
    println!(
        "| load the precompiled component from the cache (mmap) | {load_median:.0} | {load_p99:.0} |"
    );
    println!(
        "| instantiate + `init` + start the release actor (500 times) | {start_median:.0} | {start_p99:.0} |"
    );
    Ok(())
}
