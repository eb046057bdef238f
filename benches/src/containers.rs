//! Containers against `ctr`, containerd's own client, in the same run and on
//! the same containerd: pulling a 1 MB and a 20 MB image, an exec round
//! trip, and `cairn apply` of a one-container plan until ready against
//! `ctr run -d`; then the daemon's resident memory supervising ten
//! containers. Needs root, containerd, runc, the CNI plugins,
//! docker-registry and busybox-static (`scripts/test` installs them).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::caps::container::engine::Containerd;
use cairn::caps::container::{Containers, ContainersConfig, exec, image, pull};
use cairn::contract::bindings::cairn::host::container::ExecSpec;
use cairn::supply::oci::{Reference, Registry, RegistryOptions};

use crate::daemon::{cli, footprint, install_signed, prepare_root, start};
use crate::stats::median_p99;

#[path = "../../tests/harness/containers.rs"]
#[allow(dead_code)]
pub(crate) mod parts;
#[path = "../../tests/harness/registry.rs"]
#[allow(dead_code)]
pub(crate) mod registry;

const RUNS: usize = 5;
const EXECS: usize = 50;
const NAMESPACE: &str = "cairn-bench";
const CTR_NAMESPACE: &str = "ctr-bench";

pub(crate) fn ctr(socket: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `ctr images pull --plain-http REFERENCE` into `namespace`.
pub(crate) fn ctr_pull(socket: &Path, namespace: &str, reference: &str) -> anyhow::Result<()> {
    ctr(
        socket,
        &["-n", namespace, "images", "pull", "--plain-http", reference],
    )
}

/// The capability's connection to the bench's containerd.
fn engine(socket: &Path) -> Containerd {
    Containerd::new(ContainersConfig {
        socket: socket.to_path_buf(),
        namespace: NAMESPACE.into(),
        ..ContainersConfig::default()
    })
}

/// `ctr run -d` of `reference` as `id`, sleeping.
pub(crate) fn ctr_run_sleeper(
    socket: &Path,
    namespace: &str,
    reference: &str,
    id: &str,
) -> anyhow::Result<()> {
    ctr(
        socket,
        &[
            "-n",
            namespace,
            "run",
            "-d",
            reference,
            id,
            "/bin/sleep",
            "600",
        ],
    )
}

/// Kills the `ctr run` container `id` of `namespace` and deletes it.
pub(crate) fn ctr_remove(socket: &Path, namespace: &str, id: &str) -> anyhow::Result<()> {
    ctr(
        socket,
        &["-n", namespace, "task", "kill", "-s", "SIGKILL", id],
    )?;
    std::thread::sleep(Duration::from_millis(200));
    ctr(socket, &["-n", namespace, "task", "delete", "-f", id])?;
    ctr(socket, &["-n", namespace, "containers", "delete", id])
}

pub(crate) fn ms(us: f64) -> f64 {
    us / 1e3
}

/// The capability's pull of `reference` at `digest`.
async fn pull_image(
    engine: &Containerd,
    client: &Registry,
    reference: &Reference,
    digest: &cairn::state::digest::Digest,
) -> anyhow::Result<()> {
    pull::pull(
        engine,
        pull::PullRequest {
            registry: client,
            reference,
            digest,
            name: image::image_name(reference),
            signed_by: Vec::new(),
        },
    )
    .await
    .map_err(|err| anyhow::anyhow!("pull: {err:?}"))?;
    Ok(())
}

async fn remove_image(engine: &Containerd, reference: &Reference) -> anyhow::Result<()> {
    image::remove(engine, &image::image_name(reference))
        .await
        .map_err(|err| anyhow::anyhow!("remove: {err:?}"))
}

/// Cairn's pull (the capability's own code path) and `ctr images pull`,
/// each from nothing: the image is removed (synchronously collected) after
/// every run.
async fn pulls(socket: &Path, registry: &registry::TestRegistry) -> anyhow::Result<()> {
    let engine = engine(socket);
    let client = Registry::new(RegistryOptions {
        insecure: vec![registry.address.clone()],
        ..RegistryOptions::default()
    })?;
    println!("\n## Containers: pulling an image from a loopback registry\n");
    println!("| image | cairn (median of {RUNS}) | `ctr images pull` | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, extra) in [("busybox, 1 MB", 0), ("busybox + 20 MB layer", 20 << 20)] {
        let repository = format!("bench/pull{extra}");
        let pushed = parts::push_busybox(&registry.address, None, &repository, "1", extra);
        let reference = Reference::parse(&pushed.reference)?;
        let mut ours = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let digest = client.resolve(&reference).await?;
            pull_image(&engine, &client, &reference, &digest).await?;
            ours.push(started.elapsed());
            remove_image(&engine, &reference).await?;
        }
        let mut theirs = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            ctr_pull(socket, CTR_NAMESPACE, &pushed.reference)?;
            theirs.push(started.elapsed());
            ctr(
                socket,
                &[
                    "-n",
                    CTR_NAMESPACE,
                    "images",
                    "rm",
                    "--sync",
                    &pushed.reference,
                ],
            )?;
        }
        let (ours, _) = median_p99(&mut ours);
        let (theirs, _) = median_p99(&mut theirs);
        println!(
            "| {label} | {:.0} ms | {:.0} ms | {:.2}× |",
            ms(ours),
            ms(theirs),
            ours / theirs
        );
    }
    Ok(())
}

/// The process's `field` (`VmRSS`, `VmHWM`) from /proc/self/status, in KiB.
fn own_memory(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/self/status"))
}

/// The memory a pull adds to the process at its peak, for a small image and
/// one with a 256 MB layer: layers stream to containerd, so it does not grow
/// with the layer.
async fn pull_memory(socket: &Path, registry: &registry::TestRegistry) -> anyhow::Result<()> {
    let engine = engine(socket);
    let client = Registry::new(RegistryOptions {
        insecure: vec![registry.address.clone()],
        ..RegistryOptions::default()
    })?;
    println!("\n| pull | layer | peak memory added | share of the layer |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, extra) in [("busybox, 1 MB", 0), ("busybox + 256 MB layer", 256 << 20)] {
        let repository = format!("bench/memory{extra}");
        let pushed = parts::push_busybox(&registry.address, None, &repository, "1", extra);
        let layer = std::fs::metadata(registry.blob_path(&pushed.layer_digest))?.len();
        let reference = Reference::parse(&pushed.reference)?;
        let digest = client.resolve(&reference).await?;
        // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
        std::fs::write("/proc/self/clear_refs", "5")?;
        let before = own_memory("VmRSS")?;
        pull_image(&engine, &client, &reference, &digest).await?;
        let added = own_memory("VmHWM")?.saturating_sub(before) * 1024;
        remove_image(&engine, &reference).await?;
        println!(
            "| {label} | {:.1} MiB | {:.1} MiB | {:.2} % |",
            layer as f64 / 1048576.0,
            added as f64 / 1048576.0,
            added as f64 * 100.0 / layer as f64
        );
    }
    Ok(())
}

/// An exec of `/bin/true` in a running container: the capability's exec
/// against `ctr task exec`.
async fn execs(socket: &Path, reference: &str, state: &Path) -> anyhow::Result<()> {
    // The container is made with ctr and labelled as a plugin's, so the
    // capability takes it as its own.
    ctr_pull(socket, NAMESPACE, reference)?;
    ctr(
        socket,
        &[
            "-n",
            NAMESPACE,
            "run",
            "-d",
            "--label",
            "cairn.plugin=bench",
            "--label",
            "cairn.name=sleeper",
            reference,
            "bench.sleeper",
            "sleep",
            "600",
        ],
    )?;
    let engine = engine(socket);
    let containers = Arc::new(Containers::new(engine, state.join("container")));
    containers
        .adopt()
        .await
        .map_err(|err| anyhow::anyhow!("adopt: {err:?}"))?;
    let entry = containers
        .get("bench", "sleeper")
        .map_err(|err| anyhow::anyhow!("{err:?}"))?;
    let mut ours = Vec::new();
    for _ in 0..EXECS {
        let started = Instant::now();
        let result = exec::run(
            &containers,
            &entry,
            ExecSpec {
                args: vec!["/bin/true".into()],
                env: Vec::new(),
                clear_env: false,
                working_dir: None,
                stdin: Vec::new(),
                timeout_ms: 10_000,
            },
        )
        .await
        .map_err(|err| anyhow::anyhow!("exec: {err:?}"))?;
        anyhow::ensure!(result.exit_code == 0, "exec failed");
        ours.push(started.elapsed());
    }
    let mut theirs = Vec::new();
    for index in 0..EXECS {
        let started = Instant::now();
        ctr(
            socket,
            &[
                "-n",
                NAMESPACE,
                "task",
                "exec",
                "--exec-id",
                &format!("e{index}"),
                "bench.sleeper",
                "/bin/true",
            ],
        )?;
        theirs.push(started.elapsed());
    }
    let _ = containers
        .remove_all(None, Duration::from_millis(100))
        .await;
    let (ours_median, ours_p99) = median_p99(&mut ours);
    let (theirs_median, theirs_p99) = median_p99(&mut theirs);
    println!("\n## Containers: exec round trip (`/bin/true`, {EXECS} in a row)\n");
    println!("| | median | p99 | ratio (median) |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| cairn (capability exec) | {:.1} ms | {:.1} ms | {:.2}× |",
        ms(ours_median),
        ms(ours_p99),
        ours_median / theirs_median
    );
    println!(
        "| `ctr task exec` | {:.1} ms | {:.1} ms | 1× |",
        ms(theirs_median),
        ms(theirs_p99)
    );
    Ok(())
}

fn policies(dir: &Path, root: &Path, registry: &str) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("health.toml"),
        "[plugin]\nname = \"health\"\nsigners = [\"dev\"]\n[config]\ntick-ms = 100\n[grants.log]\nlevel = \"warn\"\n[grants.kv]\n[grants.timer]\nmax-timers = 1\n[grants.events]\npublish = [\"health/#\"]\n[grants.metrics]\nmax-series = 256\n[grants.http-client]\nallow = [\"http://127.0.0.1:9\"]\n[grants.sockets]\ntcp-connect = [\"127.0.0.1:9\"]\n[grants.process]\nmax-processes = 4\n[[grants.process.allow]]\nexe = \"/bin/true\"\nargs = []\n",
    )?;
    let root = root.display();
    std::fs::write(
        dir.join("recipes.toml"),
        format!(
            "[plugin]\nname = \"recipes\"\nsigners = [\"dev\"]\n[config]\nroot = \"{root}\"\ntick-ms = 100\n[grants.log]\nlevel = \"warn\"\n[grants.kv]\nquota = \"8MiB\"\n[grants.timer]\nmax-timers = 1\n[grants.events]\nsubscribe = [\"health/changed/+\"]\n[grants.commands]\ncall = [\"health/add\", \"health/remove\", \"health/get\"]\n[grants.files]\nwrite = [\"{root}\"]\n[grants.http-client]\nallow = [\"http://127.0.0.1:9\"]\n[grants.process]\nmax-processes = 4\n[[grants.process.allow]]\nexe = \"/bin/true\"\nargs = []\n[grants.container]\nimages = [\"{registry}/bench/*\"]\nmax-containers = 16\n"
        ),
    )?;
    Ok(())
}

/// A plan of `count` containers sleeping, each ready once started.
fn write_plan(dir: &Path, reference: &str, count: usize) -> anyhow::Result<String> {
    let mut plan = String::new();
    for index in 0..count {
        let name = format!("c{index}");
        std::fs::write(
            dir.join(format!("{name}.toml")),
            format!(
                "[metadata]\nname = \"{name}\"\nversion = \"1.0.0\"\n\n[lifecycle.run]\ntype = \"container\"\ngrace = \"0s\"\nstop_grace = \"1s\"\n\n[lifecycle.run.container]\nimage = \"{reference}\"\nnetwork_mode = \"none\"\ncommand = [\"/bin/sleep\", \"600\"]\n"
            ),
        )?;
        plan.push_str(&format!(
            "[[components]]\nname = \"{name}\"\nrecipe = \"{name}.toml\"\n\n"
        ));
    }
    let path = dir.join(format!("plan{count}.toml"));
    std::fs::write(&path, plan)?;
    Ok(path.to_string_lossy().to_string())
}

/// `cairn apply` of one container until ready, against `ctr run -d`; then
/// the daemon's memory with ten containers.
fn apply(cairn: &Path, socket: &Path, registry: &str, reference: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let policy_dir = root.join("policies");
    let components = root.join("components-root");
    std::fs::create_dir_all(&policy_dir)?;
    std::fs::create_dir_all(&components)?;
    policies(&policy_dir, &components, registry)?;
    let config = format!(
        "[registry]\ninsecure = [\"{registry}\"]\n[containers]\nsocket = \"{}\"\nnamespace = \"{NAMESPACE}\"\n",
        socket.display()
    );
    prepare_root(cairn, root, &policy_dir, &config)?;
    let (daemon, _) = start(cairn, root)?;
    install_signed(cairn, root, "health")?;
    install_signed(cairn, root, "recipes")?;
    let admin = root.join("admin.sock");
    let pid = daemon.child.id();
    let one = write_plan(root, reference, 1)?;
    let ten = write_plan(root, reference, 10)?;
    // The image is on the device for both, as a redeploy finds it.
    ctr_pull(socket, CTR_NAMESPACE, reference)?;
    cli(cairn, &admin, &["apply", &one, "--timeout", "120s"])?;
    cli(cairn, &admin, &["plan", "stop"])?;
    let idle_rss = footprint(pid)?.0;

    let mut ours = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        cli(cairn, &admin, &["apply", &one, "--timeout", "120s"])?;
        ours.push(started.elapsed());
        cli(cairn, &admin, &["plan", "stop"])?;
    }
    let mut theirs = Vec::new();
    for index in 0..RUNS {
        let id = format!("run{index}");
        let started = Instant::now();
        ctr_run_sleeper(socket, CTR_NAMESPACE, reference, &id)?;
        theirs.push(started.elapsed());
        ctr_remove(socket, CTR_NAMESPACE, &id)?;
    }
    cli(cairn, &admin, &["apply", &ten, "--timeout", "120s"])?;
    std::thread::sleep(Duration::from_millis(500));
    let supervising_rss = footprint(pid)?.0;
    cli(cairn, &admin, &["plan", "stop"])?;
    drop(daemon);

    let (ours, _) = median_p99(&mut ours);
    let (theirs, _) = median_p99(&mut theirs);
    println!("\n## Containers: a one-container plan until ready (image present)\n");
    println!("| | median of {RUNS} | ratio |");
    println!("| --- | ---: | ---: |");
    println!(
        "| `cairn apply` (recipes + health plugins) | {:.0} ms | {:.1}× |",
        ms(ours),
        ours / theirs
    );
    println!("| `ctr run -d` | {:.0} ms | 1× |", ms(theirs));
    println!("\n| daemon RSS | MiB |");
    println!("| --- | ---: |");
    println!(
        "| health + recipes installed, no plan | {:.1} |",
        idle_rss as f64 / 1048576.0
    );
    println!(
        "| **supervising 10 containers** | **{:.1}** |",
        supervising_rss as f64 / 1048576.0
    );
    Ok(())
}

pub async fn run(cairn: &Path) -> anyhow::Result<()> {
    let containerd = parts::TestContainerd::start();
    let registry = registry::TestRegistry::start();
    let state = tempfile::tempdir()?;
    pulls(&containerd.socket, &registry).await?;
    pull_memory(&containerd.socket, &registry).await?;
    let sleeper = parts::push_busybox(&registry.address, None, "bench/sleeper", "1", 0);
    execs(&containerd.socket, &sleeper.reference, state.path()).await?;
    let socket = containerd.socket.clone();
    let address = registry.address.clone();
    let reference = sleeper.reference.clone();
    let cairn = cairn.to_path_buf();
    tokio::task::spawn_blocking(move || apply(&cairn, &socket, &address, &reference)).await??;
    Ok(())
}
