//! Applying a 20-component plan (4 layers of 5 trivial processes, each
//! gated on a `cmd:/bin/true` health check) with the `recipes` plugin: time
//! until all are ready, and the daemon's resident memory while it supervises
//! them. The native baseline in the same run spawns the same processes layer
//! by layer and runs the same probe once per process: the floor any
//! orchestrator pays.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{cli, footprint, install_signed, prepare_root, start};
use crate::stats::median_p99;

const LAYERS: usize = 4;
const WIDTH: usize = 5;
const RUNS: usize = 5;

fn policies(dir: &Path, root: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("health.toml"),
        r#"[plugin]
name = "health"
signers = ["dev"]
[config]
tick-ms = 100
[grants.log]
level = "warn"
[grants.kv]
[grants.timer]
max-timers = 1
[grants.events]
publish = ["health/#"]
[grants.metrics]
max-series = 256
[grants.http-client]
allow = ["http://127.0.0.1:9"]
[grants.sockets]
tcp-connect = ["127.0.0.1:9"]
[grants.process]
max-processes = 4
[[grants.process.allow]]
exe = "/bin/true"
args = []
"#,
    )?;
    let root = root.display();
    std::fs::write(
        dir.join("recipes.toml"),
        format!(
            r#"[plugin]
name = "recipes"
signers = ["dev"]
[config]
root = "{root}"
tick-ms = 100
[grants.log]
level = "warn"
[grants.kv]
quota = "8MiB"
[grants.timer]
max-timers = 1
[grants.events]
subscribe = ["health/changed/+"]
[grants.commands]
call = ["health/add", "health/remove", "health/get"]
[grants.files]
write = ["{root}"]
[grants.http-client]
allow = ["http://127.0.0.1:9"]
[grants.process]
max-processes = 64
[[grants.process.allow]]
exe = "/bin/sleep"
args = ["*"]
[grants.container]
images = []
"#
        ),
    )?;
    Ok(())
}

/// The plan file and its 20 recipes: component `cK-I` depends on `c(K-1)-I`.
fn write_plan(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut plan = String::new();
    for layer in 0..LAYERS {
        for index in 0..WIDTH {
            let name = format!("c{layer}-{index}");
            let mut recipe = format!(
                "[metadata]\nname = \"{name}\"\nversion = \"1.0.0\"\n\n[lifecycle.run.exec]\ncommand = \"/bin/sleep\"\nargs = [\"600\"]\n\n[lifecycle.run.health]\ncheck = \"cmd:/bin/true\"\ninterval = \"100ms\"\n"
            );
            if layer > 0 {
                recipe.push_str(&format!(
                    "\n[[dependencies]]\nname = \"c{}-{index}\"\ntype = \"hard\"\n",
                    layer - 1
                ));
            }
            std::fs::write(dir.join(format!("{name}.toml")), recipe)?;
            plan.push_str(&format!(
                "[[components]]\nname = \"{name}\"\nrecipe = \"{name}.toml\"\n\n"
            ));
        }
    }
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan)?;
    Ok(path)
}

/// The same work done directly: spawn a layer, probe each process once,
/// go on to the next layer.
fn native_once() -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..LAYERS {
        for _ in 0..WIDTH {
            children.push(
                Command::new("/bin/sleep")
                    .arg("600")
                    .stdin(Stdio::null())
                    .spawn()?,
            );
        }
        for _ in 0..WIDTH {
            anyhow::ensure!(Command::new("/bin/true").status()?.success());
        }
    }
    let elapsed = started.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(elapsed)
}

pub fn run(cairn: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let policy_dir = root.join("policies");
    let components = root.join("components-root");
    std::fs::create_dir_all(&policy_dir)?;
    std::fs::create_dir_all(&components)?;
    policies(&policy_dir, &components)?;
    let plan = write_plan(root)?;
    prepare_root(cairn, root, &policy_dir, "")?;
    let (daemon, _) = start(cairn, root)?;
    install_signed(cairn, root, "health")?;
    install_signed(cairn, root, "recipes")?;
    let socket = root.join("admin.sock");
    let pid = daemon.child.id();
    let (idle_rss, _) = footprint(pid)?;
    let plan = plan.to_string_lossy().to_string();

    let mut applied = Vec::new();
    let mut supervising_rss = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        cli(cairn, &socket, &["apply", &plan, "--timeout", "120s"])?;
        applied.push(started.elapsed());
        // Settled: one more tick of supervision before measuring memory.
        std::thread::sleep(Duration::from_millis(500));
        supervising_rss = supervising_rss.max(footprint(pid)?.0);
        cli(cairn, &socket, &["plan", "stop"])?;
    }
    drop(daemon);
    let mut native = Vec::new();
    for _ in 0..RUNS {
        native.push(native_once()?);
    }

    // median_p99 reports microseconds.
    let (cairn_us, _) = median_p99(&mut applied);
    let (native_us, _) = median_p99(&mut native);
    println!("\n## Recipes: a 20-component plan (4 layers × 5, cmd health checks)\n");
    println!("| | time to all ready (median of {RUNS}) | ratio |");
    println!("| --- | --- | --- |");
    println!(
        "| `cairn apply` (recipes + health plugins) | {:.0} ms | {:.1}× |",
        cairn_us / 1e3,
        cairn_us / native_us
    );
    println!(
        "| native: spawn + one probe per process, layer by layer | {:.1} ms | 1× |",
        native_us / 1e3
    );
    println!("\n| daemon RSS | MiB |");
    println!("| --- | --- |");
    println!(
        "| health + recipes installed, no plan | {:.1} |",
        idle_rss as f64 / 1048576.0
    );
    println!(
        "| supervising 20 components (max over runs) | {:.1} |",
        supervising_rss as f64 / 1048576.0
    );
    Ok(())
}
