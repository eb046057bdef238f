//! Dockyard against `ctr`: the time from `cairn service install db` and
//! `cairn service install app --option database=db` (the app's binding step
//! run in db) to both services running, against starting the same two
//! containers with `ctr run -d`, images present for both; and the daemon's
//! resident memory while it runs them. Needs root, containerd, runc,
//! docker-registry and busybox-static.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::daemon::{cli, footprint, install_signed, prepare_root, start};
use crate::stats::median_p99;

use crate::containers::{ctr_pull, ctr_remove, ctr_run_sleeper, ms, parts, registry};

const RUNS: usize = 5;
const NAMESPACE: &str = "cairn-bench-dockyard";
const CTR_NAMESPACE: &str = "ctr-bench-dockyard";

const DB_OPTIONS: &str = r#"{"port": ["5432"], "secret_password": ["!rand 24 charset26"], "runtime_command": ["/bin/sleep"], "runtime_args": ["600"]}"#;
const APP_OPTIONS: &str = r#"{"database=&db": ["*database_port", "&bindings.create_user test -n $database_port"], "database=none": [], "runtime_command": ["/bin/sleep"], "runtime_args": ["600"]}"#;

pub fn run(cairn: &Path) -> anyhow::Result<()> {
    let containerd = parts::TestContainerd::start();
    let registry = registry::TestRegistry::start();
    let address = registry.address.clone();
    let mut references = Vec::new();
    for (service, options) in [("db", DB_OPTIONS), ("app", APP_OPTIONS)] {
        let blobs = parts::busybox_image_labelled(0, &[("io.nanocloud.options", options)]);
        let pushed = parts::push_image(
            &address,
            None,
            &format!("dockyard/{service}"),
            "latest",
            blobs,
        );
        references.push(pushed.reference);
    }
    let socket = containerd.socket.clone();
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let policies = root.join("policies");
    let state = root.join("dockyard");
    std::fs::create_dir_all(&policies)?;
    std::fs::create_dir_all(&state)?;
    let state = state.display();
    std::fs::write(
        policies.join("dockyard.toml"),
        format!(
            "[plugin]\nname = \"dockyard\"\nsigners = [\"dev\"]\n[limits]\ncall-timeout = \"120s\"\nreply-wait = \"5m\"\n[config]\nimages = \"{address}/dockyard/{{service}}:latest\"\nstate = \"{state}\"\n[grants.log]\nlevel = \"warn\"\n[grants.kv]\n[grants.timer]\nmax-timers = 8\n[grants.metrics]\n[grants.events]\npublish = [\"dockyard/#\"]\n[grants.files]\nprivate = [\"{state}\"]\n[grants.commands]\ncall = [\"health/status\", \"health/get\"]\n[grants.container]\nimages = [\"{address}/dockyard/*\"]\n[[grants.container.mounts]]\npath = \"{state}\"\n"
        ),
    )?;
    let config = format!(
        "[registry]\ninsecure = [\"{address}\"]\n[containers]\nsocket = \"{}\"\nnamespace = \"{NAMESPACE}\"\n",
        socket.display()
    );
    prepare_root(cairn, root, &policies, &config)?;
    let (daemon, _) = start(cairn, root)?;
    install_signed(cairn, root, "dockyard")?;
    let admin = root.join("admin.sock");
    let pid = daemon.child.id();
    for reference in &references {
        ctr_pull(&socket, CTR_NAMESPACE, reference)?;
    }
    let install = || -> anyhow::Result<()> {
        cli(cairn, &admin, &["service", "install", "db"])?;
        cli(
            cairn,
            &admin,
            &["service", "install", "app", "--option", "database=db"],
        )?;
        Ok(())
    };
    let uninstall = || -> anyhow::Result<()> {
        cli(cairn, &admin, &["service", "uninstall", "app"])?;
        cli(cairn, &admin, &["service", "uninstall", "db"])?;
        Ok(())
    };
    // The first install pulls the images; what is measured finds them.
    install()?;
    uninstall()?;
    let idle_rss = footprint(pid)?.0;
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        install()?;
        ours.push(started.elapsed());
        uninstall()?;
    }
    install()?;
    std::thread::sleep(Duration::from_millis(500));
    let running_rss = footprint(pid)?.0;
    uninstall()?;
    drop(daemon);

    let mut theirs = Vec::new();
    for index in 0..RUNS {
        let started = Instant::now();
        for (name, reference) in ["db", "app"].iter().zip(&references) {
            ctr_run_sleeper(&socket, CTR_NAMESPACE, reference, &format!("{name}{index}"))?;
        }
        theirs.push(started.elapsed());
        for name in ["db", "app"] {
            ctr_remove(&socket, CTR_NAMESPACE, &format!("{name}{index}"))?;
        }
    }
    let (ours, _) = median_p99(&mut ours);
    let (theirs, _) = median_p99(&mut theirs);
    println!(
        "\n## Dockyard: installing a provider and its consumer until both run (images present)\n"
    );
    println!("| | median of {RUNS} | ratio |");
    println!("| --- | ---: | ---: |");
    println!(
        "| `cairn service install db` + `install app -o database=db` (labels read, options resolved, binding step run in db, files written) | {:.0} ms | {:.1}× |",
        ms(ours),
        ours / theirs
    );
    println!("| `ctr run -d` × 2 | {:.0} ms | 1× |", ms(theirs));
    println!("\n| daemon RSS | MiB |");
    println!("| --- | ---: |");
    println!(
        "| dockyard installed, no service | {:.1} |",
        idle_rss as f64 / 1048576.0
    );
    println!(
        "| **running db and app** | **{:.1}** |",
        running_rss as f64 / 1048576.0
    );
    Ok(())
}
