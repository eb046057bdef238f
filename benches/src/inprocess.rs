//! Benchmarks that drive the kernel in-process through the `cairn` library.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn::kernel::{InstallSource, Kernel, KernelConfig};
use cairn::runtime::engine::EngineSettings;
use cairn::supply::signing::{SigningKey, generate_key_pair, sign_blob};
use tokio::sync::{mpsc, oneshot};

use crate::stats::median_p99;
use crate::workspace;

pub fn wasm(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = crate::target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).map_err(|err| {
        anyhow::anyhow!(
            "{}: {err} (run scripts/bench, which builds the plugins)",
            path.display()
        )
    })
}

fn variant(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = crate::target_dir()
        .join("variants/out")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .map_err(|err| anyhow::anyhow!("{}: {err} (run scripts/bench)", path.display()))
}

pub(crate) struct Setup {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) key: SigningKey,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> anyhow::Result<Setup> {
        Setup::with_registry(cairn::supply::oci::RegistryOptions::default()).await
    }

    /// A kernel in a fresh state directory, trusting a fresh `dev` key.
    pub(crate) async fn with_registry(
        registry: cairn::supply::oci::RegistryOptions,
    ) -> anyhow::Result<Setup> {
        let dir = tempfile::tempdir()?;
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies)?;
        for (name, source) in [
            ("spin", "tests/plugins/spin/policy.toml"),
            ("counter", "policies/counter.toml"),
            ("echo", "policies/echo.toml"),
            ("bench", "benches/plugin/policy.toml"),
        ] {
            std::fs::copy(
                workspace().join(source),
                policies.join(format!("{name}.toml")),
            )?;
        }
        let (private, public) = generate_key_pair(&dir.path().join("dev"))?;
        let kernel = Kernel::start(KernelConfig {
            state_dir: dir.path().join("state"),
            policy_dir: policies,
            allow_unsigned: false,
            trust_keys: BTreeMap::from([("dev".to_string(), public)]),
            engine: EngineSettings {
                max_instances: 32,
                epoch_tick: Duration::from_millis(10),
            },
            registry,
            device_id: "bench".to_string(),
            caps: Default::default(),
        })
        .await?;
        Ok(Setup {
            kernel,
            key: SigningKey::load(&private)?,
            _dir: dir,
        })
    }

    async fn install(&self, bytes: Vec<u8>, force: bool) -> anyhow::Result<()> {
        let signature = sign_blob(&self.key, &bytes);
        self.kernel
            .install(
                InstallSource::Bytes {
                    identity: None,
                    bytes,
                    signature: Some(signature),
                },
                force,
                &|_| Ok(()),
                &cairn::progress::ignore,
            )
            .await?;
        Ok(())
    }
}

pub async fn run() -> anyhow::Result<()> {
    let setup = Setup::new().await?;
    setup.install(wasm("counter")?, false).await?;
    setup.install(wasm("bench")?, false).await?;
    setup.install(wasm("spin")?, false).await?;
    command_round_trip(&setup).await?;
    noisy_neighbour(&setup).await?;
    kv_round_trip(&setup).await?;
    swaps(&setup).await?;
    Ok(())
}

async fn command_round_trip(setup: &Setup) -> anyhow::Result<()> {
    const N: usize = 5000;
    let kernel = &setup.kernel;
    // The same round trip to a native handler: queue, task, reply channel.
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, oneshot::Sender<Vec<u8>>)>(256);
    tokio::spawn(async move {
        while let Some((payload, reply)) = rx.recv().await {
            let _ = reply.send(std::hint::black_box(payload));
        }
    });
    // Interleaved, so both paths see the same machine noise.
    let mut wasm_samples = Vec::with_capacity(N);
    let mut native_samples = Vec::with_capacity(N);
    for _ in 0..N {
        let started = Instant::now();
        kernel.call("bench", "noop", Vec::new()).await?;
        wasm_samples.push(started.elapsed());
        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        tx.send((Vec::new(), reply)).await?;
        answer.await?;
        native_samples.push(started.elapsed());
    }
    let (wasm_median, wasm_p99) = median_p99(&mut wasm_samples);
    let (native_median, native_p99) = median_p99(&mut native_samples);
    println!("\n## Host → plugin `on-command` round trip ({N} sequential calls)\n");
    println!("| path | median µs | p99 µs |\n|---|---:|---:|");
    println!("| wasm plugin `noop` through the release actor | {wasm_median:.1} | {wasm_p99:.1} |");
    println!(
        "| native handler through the same queue/reply shape | {native_median:.1} | {native_p99:.1} |"
    );
    println!(
        "| ratio (median) | {:.1}× | |",
        wasm_median / native_median.max(1e-9)
    );
    Ok(())
}

async fn kv_round_trip(setup: &Setup) -> anyhow::Result<()> {
    const N: u64 = 20_000;
    let reply = setup
        .kernel
        .call("bench", "kv-get", format!("{{\"n\":{N}}}").into_bytes())
        .await?;
    let reply: serde_json::Value = serde_json::from_slice(&reply)?;
    let wasm_ns = reply["ns_per_op"].as_f64().unwrap_or(f64::NAN);
    let store_dir = tempfile::tempdir()?;
    let store = cairn::state::kv::KvStore::open(&store_dir.path().join("kv.redb"))?;
    store.set("bench", "key", b"value", 1 << 20)?;
    let started = Instant::now();
    for _ in 0..N {
        std::hint::black_box(store.get("bench", "key")?);
    }
    let native_ns = started.elapsed().as_nanos() as f64 / N as f64;
    println!("\n## Plugin → host capability round trip: `kv.get` ({N} calls)\n");
    println!("| path | ns per call |\n|---|---:|");
    println!("| from wasm, through the capability (async host call, grant check) | {wasm_ns:.0} |");
    println!("| native `KvStore::get` on the same kind of store | {native_ns:.0} |");
    println!("| ratio | {:.1}× |", wasm_ns / native_ns.max(1e-9));
    Ok(())
}

/// `counter get` latency alone, then while another plugin spins at its CPU limit.
async fn noisy_neighbour(setup: &Setup) -> anyhow::Result<()> {
    const N: usize = 3000;
    let kernel = setup.kernel.clone();
    let sample = |kernel: Arc<Kernel>| async move {
        let mut samples = Vec::with_capacity(N);
        for _ in 0..N {
            let started = Instant::now();
            kernel.call("counter", "get", Vec::new()).await?;
            samples.push(started.elapsed());
        }
        anyhow::Ok(samples)
    };
    let mut quiet = sample(kernel.clone()).await?;
    let spinning = Arc::new(AtomicBool::new(true));
    let spinner = {
        let (kernel, spinning) = (kernel.clone(), spinning.clone());
        tokio::spawn(async move {
            let mut faults = 0u32;
            while spinning.load(Ordering::Relaxed) {
                // Each call spins until its CPU limit ends it; the plugin then restarts.
                if kernel.call("spin", "spin", Vec::new()).await.is_err() {
                    faults += 1;
                }
            }
            faults
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut noisy = sample(kernel).await?;
    spinning.store(false, Ordering::Relaxed);
    let faults = spinner.await?;
    let (quiet_median, quiet_p99) = median_p99(&mut quiet);
    let (noisy_median, noisy_p99) = median_p99(&mut noisy);
    println!(
        "\n## Isolation: another plugin spinning at its CPU limit ({N} `counter get` calls)\n"
    );
    println!("| condition | median µs | p99 µs |\n|---|---:|---:|");
    println!("| alone | {quiet_median:.1} | {quiet_p99:.1} |");
    println!(
        "| while `spin` loops (stopped {faults} times by its deadline meanwhile) | {noisy_median:.1} | {noisy_p99:.1} |"
    );
    Ok(())
}

/// 100 swaps between two releases while two callers hammer the plugin.
async fn swaps(setup: &Setup) -> anyhow::Result<()> {
    let kernel = setup.kernel.clone();
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut callers = Vec::new();
    for _ in 0..2 {
        let (kernel, running, ok, failed) =
            (kernel.clone(), running.clone(), ok.clone(), failed.clone());
        callers.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                match kernel.call("counter", "get", Vec::new()).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let releases = [wasm("counter")?, variant("counter-0.2.0-ok")?];
    let mut samples = Vec::new();
    for round in 0..100 {
        let started = Instant::now();
        setup.install(releases[round % 2].clone(), true).await?;
        samples.push(started.elapsed());
    }
    running.store(false, Ordering::Relaxed);
    for caller in callers {
        caller.await?;
    }
    let (median, p99) = median_p99(&mut samples);
    println!("\n## Hot swap under load (100 swaps, 2 callers calling continuously)\n");
    println!("| metric | value |\n|---|---:|");
    println!(
        "| install request → new release serving, median | {:.1} ms |",
        median / 1000.0
    );
    println!(
        "| install request → new release serving, p99 | {:.1} ms |",
        p99 / 1000.0
    );
    println!(
        "| calls served during the swaps | {} |",
        ok.load(Ordering::Relaxed)
    );
    println!(
        "| calls failed during the swaps | {} |",
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}
