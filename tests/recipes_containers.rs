//! The `recipes` plugin with `type = "container"` components, on a real
//! containerd and registry: a plan mixing a container and a process, limits
//! in the cgroup, a named volume, a port mapping answered on 127.0.0.1, a
//! crash restarted with backoff, the daemon killed with SIGKILL and the
//! container re-adopted, and removal of the plugin leaving nothing behind.

mod harness;
#[path = "recipes/support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use harness::Options;
use harness::containers::{TestContainerd, push_busybox};
use harness::registry::TestRegistry;
use serde_json::{Value, json};
use support::{Extra, Fixture, WAIT, fixture_with_options, service};

/// One test's containerd, registry and daemon; `n` keeps its bridge, subnet
/// and ports apart from the other tests'.
struct Bed {
    fx: Fixture,
    containerd: TestContainerd,
    _registry: TestRegistry,
    image: String,
    digest: String,
    namespace: String,
    bridge: String,
    port: u16,
}

fn bed(n: u16) -> Bed {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let pushed = push_busybox(&registry.address, None, "apps/web", "1", 0);
    let namespace = format!("cairn-e2e{n}");
    let bridge = format!("cairne2e{n}");
    let port = 18_100 + n;
    let options = Options {
        insecure_registries: vec![registry.address.clone()],
        extra_config: containerd.config_section(&namespace, &bridge, &format!("10.22{n}.0.0/24")),
        ..Options::default()
    };
    let address = registry.address.clone();
    let fx = fixture_with_options(options, |root| Extra {
        grants: format!(
            "[grants.container]\nimages = [\"{address}/apps/*\"]\nports = [\"{port}\"]\nmax-memory = \"128MiB\"\n[[grants.container.mounts]]\npath = \"{}/volumes\"\n",
            root.display()
        ),
        ..Extra::default()
    });
    Bed {
        fx,
        containerd,
        _registry: registry,
        image: pushed.reference,
        digest: pushed.digest,
        namespace,
        bridge,
        port,
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Containers outlive the daemon: removing the plugin takes them, and
        // their network, away before the bed goes.
        let _ = self.fx.daemon.cli(&["plugin", "remove", "recipes"]);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A container recipe: busybox httpd behind a port mapping, checked by TCP.
fn web_recipe(bed: &Bed) -> String {
    format!(
        r#"[metadata]
name = "web"
version = "1.0.0"

[lifecycle.run]
type = "container"
restart_policy = "always"
backoff = "300ms"
stop_grace = "1s"

[lifecycle.run.container]
image = "{image}"
pull_policy = "if-not-present"
network_mode = "bridge"
command = ["/bin/sh"]
args = ["-c", "echo $GREETING > /data/who; mkdir -p /tmp/www; echo served > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www"]
env = {{ GREETING = "from ${{COMPONENT}}" }}

[[lifecycle.run.container.ports]]
host_port = {port}
container_port = 8080

[[lifecycle.run.container.mounts]]
source = "data"
target = "/data"
type = "volume"

[lifecycle.run.container.resources]
memory_mb = 64
pids_limit = 32
cpu_quota = 50000

[lifecycle.run.health]
check = "tcp://127.0.0.1:{port}"
interval = "200ms"
timeout = "1s"
failure_threshold = 2
start_timeout = "20s"
"#,
        image = bed.image,
        port = bed.port,
    )
}

/// The plan: the `web` container, and an `api` process hard-depending on it.
fn mixed_plan(bed: &Bed) -> Value {
    let api = service("api").depends("web", "hard");
    json!({
        "plan": "[[components]]\nname = \"web\"\nrecipe = \"web.toml\"\n\n[[components]]\nname = \"api\"\nrecipe = \"api.toml\"\n",
        "recipes": { "web.toml": web_recipe(bed), "api.toml": api.toml() },
    })
}

fn get(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the port answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

fn cgroup(bed: &Bed, controller: &str, file: &str) -> String {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/{controller}/{}/recipes.web/{file}",
        bed.namespace
    ))
    .unwrap_or_default()
    .trim()
    .to_string()
}

fn containers(bed: &Bed) -> Vec<String> {
    bed.containerd
        .ctr(&bed.namespace, &["containers", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_plan_runs_a_container_beside_a_process_and_restarts_it_after_a_crash() {
    let bed = bed(1);
    let fx = &bed.fx;
    fx.apply(mixed_plan(&bed)).unwrap();
    let status = fx.wait_phase("applied");
    let web = fx.component("web");
    assert_eq!(web["state"], "ready", "{status:#}");
    assert_eq!(web["container"], "web");
    // The image the plan ran, by digest.
    let repository = bed.image.rsplit_once(':').unwrap().0;
    assert_eq!(web["image"], format!("{repository}@{}", bed.digest));
    assert_eq!(fx.component("api")["state"], "ready");

    assert!(get(bed.port).contains("served"));
    let volume = fx.root.join("volumes/web/data/who");
    assert_eq!(std::fs::read_to_string(volume).unwrap(), "from web\n");
    assert_eq!(cgroup(&bed, "memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(cgroup(&bed, "pids", "pids.max"), "32");
    assert_eq!(cgroup(&bed, "cpu", "cpu.cfs_quota_us"), "50000");

    // The container's main process dies: it is restarted with backoff, and
    // the process depending on it goes through a restart too.
    let (web_pid, api_pid) = (fx.pid("web"), fx.pid("api"));
    // SAFETY: killing the container process this test started.
    unsafe { libc::kill(web_pid as libc::pid_t, libc::SIGKILL) };
    let web = fx.wait_component(
        "web",
        |c| {
            c["state"] == "ready"
                && c["pid"]
                    .as_u64()
                    .is_some_and(|pid| pid != u64::from(web_pid))
        },
        "came back",
    );
    assert!(web["restarts"].as_u64().unwrap() >= 1, "{web}");
    let api = fx.wait_component(
        "api",
        |c| {
            c["state"] == "ready"
                && c["pid"]
                    .as_u64()
                    .is_some_and(|pid| pid != u64::from(api_pid))
        },
        "followed its hard dependency",
    );
    assert_eq!(api["state"], "ready");
    assert!(get(bed.port).contains("served"));
    assert_eq!(containers(&bed), ["recipes.web"]);
}

#[test]
fn a_killed_daemon_re_adopts_the_container_and_removal_leaves_nothing() {
    let mut bed = bed(2);
    bed.fx.apply(mixed_plan(&bed)).unwrap();
    bed.fx.wait_phase("applied");
    let pid = bed.fx.pid("web");

    bed.fx.daemon.kill9();
    // The container keeps serving while the daemon is away.
    assert!(get(bed.port).contains("served"));
    bed.fx.daemon.restart();
    bed.fx.wait_phase("applied");
    let web = bed.fx.component("web");
    assert_eq!(web["state"], "ready", "{web}");
    assert_eq!(web["pid"], pid, "the same container, not a new one");
    assert_eq!(containers(&bed), ["recipes.web"], "no duplicate, no orphan");

    // Removing the plugin removes its container with its network.
    let removed = bed.fx.daemon.cli(&["plugin", "remove", "recipes"]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let gone = bed
        .fx
        .daemon
        .eventually(WAIT, || containers(&bed).is_empty());
    assert!(gone, "left behind: {:?}", containers(&bed));
    let veths = Command::new("ip")
        .args(["-o", "link", "show", "master", &bed.bridge])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&veths.stdout).trim().is_empty(),
        "veth left behind"
    );
    let nat = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&nat.stdout).contains(&format!("{}.recipes.web", bed.namespace)),
        "iptables rules left behind"
    );
    // Stop the bed's containerd before its temp dir goes.
    bed.containerd.stop();
}

/// `prune-images`: the device's image store keeps what a container runs,
/// what the plan names and the latest `keep` of each repository; the rest
/// goes, and the dry run says why for each image. On the way, each new image
/// replaces the component's container under the same name: the old run's
/// exit (SIGKILL after the grace) must not count as the new run's.
#[test]
fn pruning_images_keeps_what_runs_and_the_latest_and_deletes_the_rest() {
    let bed = bed(3);
    let address = bed.image.rsplit_once("/apps/").unwrap().0.to_string();
    let mut images = vec![(bed.image.clone(), bed.digest.clone())];
    for (tag, extra) in [("2", 1), ("3", 2)] {
        let pushed = push_busybox(&address, None, "apps/web", tag, extra);
        images.push((pushed.reference, pushed.digest));
    }
    for (image, digest) in &images {
        let recipe = format!(
            "[metadata]\nname = \"web\"\nversion = \"1.0.0\"\n\n[lifecycle.run]\ntype = \"container\"\nstop_grace = \"1s\"\n\n[lifecycle.run.container]\nimage = \"{image}\"\npull_policy = \"if-not-present\"\nnetwork_mode = \"none\"\ncommand = [\"/bin/sleep\"]\nargs = [\"600\"]\n"
        );
        let plan = json!({
            "plan": "[[components]]\nname = \"web\"\nrecipe = \"web.toml\"\n",
            "recipes": { "web.toml": recipe },
        });
        bed.fx.apply(plan).unwrap();
        bed.fx.wait_component(
            "web",
            |c| {
                c["state"] == "ready"
                    && c["image"]
                        .as_str()
                        .is_some_and(|i| i.ends_with(digest.as_str()))
            },
            "runs the new image",
        );
        // Pulls are ordered by time: keep them apart.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let listed = |bed: &Bed| bed.containerd.ctr(&bed.namespace, &["images", "ls", "-q"]);
    assert_eq!(listed(&bed).lines().count(), 3, "{}", listed(&bed));

    let plan = bed
        .fx
        .call("prune-images", json!({"keep": 1, "dry-run": true}))
        .unwrap();
    let names = |which: &str| -> Vec<String> {
        let mut names: Vec<String> = plan[which]
            .as_array()
            .unwrap()
            .iter()
            .map(|image| image["reference"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names("deleted"),
        [images[0].0.clone(), images[1].0.clone()],
        "{plan:#}"
    );
    assert_eq!(names("kept"), [images[2].0.clone()], "{plan:#}");
    let reasons = plan["kept"][0]["reasons"].to_string();
    assert!(reasons.contains("used by container"), "{reasons}");
    assert!(reasons.contains("needed by the caller"), "{reasons}");
    assert!(reasons.contains("latest 1 of"), "{reasons}");
    assert_eq!(
        listed(&bed).lines().count(),
        3,
        "the dry run deleted something"
    );

    let refused = bed.fx.call("prune-images", json!({"keep": 0})).unwrap_err();
    assert!(refused.contains("at least 1"), "{refused}");

    let pruned = bed.fx.call("prune-images", json!({"keep": 1})).unwrap();
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 2, "{pruned:#}");
    assert!(pruned["bytes-freed"].as_u64().unwrap() > 0, "{pruned:#}");
    assert_eq!(listed(&bed).trim(), images[2].0, "{}", listed(&bed));
    assert_eq!(bed.fx.component("web")["state"], "ready");
}
