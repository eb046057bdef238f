//! `cairn:host/container` through the bench, against a real containerd and a
//! real registry started by each test: pulls (by tag to digest, refused,
//! tampered, unsigned), containers (run, exec, stop, OOM, limits, refusals),
//! re-adoption after a daemon restart, a containerd restart underneath, and
//! removal with the plugin.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::caps::CapsConfig;
use crate::caps::bench::{Bench, PLUGIN, assert_denied};
use crate::caps::container::testbed::{
    TestContainerd, TestImage, TestRegistry, blob_path, options, push_busybox, push_busybox_with,
};
use crate::caps::container::{Container, ContainersConfig, EXITED, stats};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::{
    ContainerSpec, ContainerState, ExecSpec, Host as _, Mount, MountKind, NetworkMode, Port,
    Protocol, PullPolicy, Resources,
};
use crate::contract::testing::FakeHost;
use crate::state::digest::Digest;
use crate::supply::oci::{Reference, Registry};
use crate::supply::signing::{SigningKey, generate_key_pair};

/// Real containerd, a registry holding a busybox image, and a bench whose
/// plugin has `grant` (`{registry}` is replaced by the registry's address).
struct Setup {
    bench: Bench,
    containerd: TestContainerd,
    registry: TestRegistry,
    image: TestImage,
}

pub(super) fn config(containerd: &TestContainerd, registry: &TestRegistry) -> CapsConfig {
    CapsConfig {
        containers: ContainersConfig {
            socket: containerd.socket.clone(),
            namespace: "cairn-test".into(),
            ..ContainersConfig::default()
        },
        registry: options(registry),
        ..CapsConfig::default()
    }
}

const GRANT: &str = r#"
[grants.container]
images = ["{registry}/apps/*"]
max-containers = 4
max-memory = "256MiB"
ports = ["18000-18099"]

[[grants.container.mounts]]
path = "/tmp"
"#;

async fn setup(grant: &str) -> Setup {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let image = push_busybox(&registry, "apps/busybox", "1", 0).await;
    let grant = grant.replace("{registry}", &registry.address);
    let bench = Bench::with_config(&grant, FakeHost::default(), config(&containerd, &registry));
    Setup {
        bench,
        containerd,
        registry,
        image,
    }
}

/// [`setup`], with the image pulled.
async fn setup_pulled(grant: &str) -> Setup {
    let mut setup = setup(grant).await;
    let reference = setup.image.reference.clone();
    setup
        .bench
        .view::<Container>()
        .pull(reference, PullPolicy::IfNotPresent)
        .await
        .expect("the test image is pulled");
    setup
}

fn spec(name: &str, image: &str, args: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: image.into(),
        command: None,
        args: (!args.is_empty()).then(|| args.iter().map(|arg| arg.to_string()).collect()),
        env: Vec::new(),
        working_dir: None,
        user: None,
        hostname: None,
        read_only_rootfs: false,
        mounts: Vec::new(),
        ports: Vec::new(),
        network: NetworkMode::None,
        resources: Resources {
            memory_bytes: None,
            memory_swap_bytes: None,
            cpu_shares: None,
            cpu_quota: None,
            cpu_period: None,
            pids_limit: None,
        },
        capabilities: Vec::new(),
        privileged: false,
        labels: Vec::new(),
    }
}

/// A container running `script` with `/bin/sh -c`.
fn shell(name: &str, image: &str, script: &str) -> ContainerSpec {
    let mut spec = spec(name, image, &["-c", script]);
    spec.command = Some(vec!["/bin/sh".into()]);
    spec
}

fn exec(args: &[&str]) -> ExecSpec {
    ExecSpec {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        env: Vec::new(),
        clear_env: false,
        working_dir: None,
        stdin: Vec::new(),
        timeout_ms: 10_000,
    }
}

/// The next exit event delivered to the plugin.
async fn next_exit(bench: &mut Bench) -> serde_json::Value {
    let event = tokio::time::timeout(Duration::from_secs(30), bench.events.recv())
        .await
        .expect("an exit event within 30 s")
        .expect("the queue is open");
    assert_eq!(
        (event.topic.as_str(), event.source.as_str()),
        (EXITED, "host")
    );
    serde_json::from_slice(&event.payload).expect("a JSON payload")
}

async fn remove_everything(bench: &Bench) {
    bench
        .shared
        .container
        .containers
        .remove_all(None, Duration::from_millis(200))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_is_pulled_by_digest_and_reused_when_present() {
    let Setup {
        mut bench,
        registry,
        image,
        containerd: _containerd,
        ..
    } = setup(GRANT).await;
    let mut container = bench.view::<Container>();
    let pulled = container
        .pull(image.reference.clone(), PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest);
    assert_eq!(pulled.reference, image.reference);
    assert!(pulled.size > 500_000, "{pulled:?}");
    // Present now: no registry needed.
    drop(registry);
    let again = container
        .pull(image.reference.clone(), PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert_eq!(again.digest, image.digest);
    let never = container
        .pull(image.reference.clone(), PullPolicy::Never)
        .await
        .unwrap();
    assert_eq!(never.digest, image.digest);
    let listed = container.images().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(matches!(
        container
            .pull(image.reference.replace(":1", ":2"), PullPolicy::Never)
            .await,
        Err(CapError::NotFound(_))
    ));
    assert!(matches!(
        container
            .pull(image.reference.clone(), PullPolicy::Always)
            .await,
        Err(CapError::Unavailable(_))
    ));
    container
        .remove_image(image.reference.clone())
        .await
        .unwrap();
    assert!(container.images().await.unwrap().is_empty());
    assert_eq!(bench.denials(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_outside_the_grant_tampered_or_unsigned_are_refused() {
    let Setup {
        mut bench,
        registry,
        image,
        containerd: _containerd,
        ..
    } = setup(GRANT).await;
    let other = push_busybox(&registry, "other/busybox", "1", 0).await;
    let mut container = bench.view::<Container>();
    assert_denied(
        container
            .pull(other.reference.clone(), PullPolicy::Always)
            .await,
        "outside the grant",
    );
    assert_eq!(bench.denials(), 1);
    assert!(
        bench
            .shared
            .audit
            .recent()
            .iter()
            .any(|line| line.contains("other/busybox")),
    );

    // The registry serves other bytes for the layer: refused, nothing recorded.
    let tampered = push_busybox(&registry, "apps/tampered", "1", 1000).await;
    let path = blob_path(&registry, &tampered.layer_digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut container = bench.view::<Container>();
    match container
        .pull(tampered.reference.clone(), PullPolicy::Always)
        .await
    {
        Err(CapError::Rejected(message)) => assert!(message.contains("digest"), "{message}"),
        other => panic!("a tampered layer was not rejected: {other:?}"),
    }
    assert!(container.images().await.unwrap().is_empty());
    drop(image);

    // A grant that requires signatures: an image signed by a trusted key the
    // grant names is pulled; unsigned or signed by another key, refused.
    let keys = tempfile::tempdir().unwrap();
    let (release_key, release_pub) = generate_key_pair(&keys.path().join("release")).unwrap();
    let (other_key, other_pub) = generate_key_pair(&keys.path().join("other")).unwrap();
    let signed_grant = format!(
        "[grants.container]\nimages = [\"{}/apps/*\"]\nrequire-signatures = true\nsigners = [\"release\"]\n",
        registry.address
    );
    let containerd = TestContainerd::start();
    let mut signing_config = config(&containerd, &registry);
    signing_config.trust_keys = [
        ("release".to_string(), release_pub),
        ("other".to_string(), other_pub),
    ]
    .into_iter()
    .collect();
    let mut signed = Bench::with_config(&signed_grant, FakeHost::default(), signing_config);
    let client = Registry::new(options(&registry)).unwrap();
    let sign = |image: &TestImage, key: &std::path::Path| {
        let reference = Reference::parse(&image.reference).unwrap();
        let digest = Digest::parse(&image.digest).unwrap();
        let key = SigningKey::load(key).unwrap();
        let client = &client;
        async move {
            client
                .sign(&reference, &digest, &key, &Default::default())
                .await
                .unwrap();
        }
    };
    let good = push_busybox(&registry, "apps/signed", "1", 0).await;
    sign(&good, &release_key).await;
    let foreign = push_busybox(&registry, "apps/foreign", "1", 0).await;
    sign(&foreign, &other_key).await;
    let unsigned = push_busybox(&registry, "apps/unsigned", "1", 0).await;
    let mut container = signed.view::<Container>();
    let pulled = container
        .pull(good.reference.clone(), PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(pulled.signed_by, ["release"]);
    assert_denied(
        container
            .pull(unsigned.reference.clone(), PullPolicy::Always)
            .await,
        "not signed",
    );
    assert_denied(
        container
            .pull(foreign.reference.clone(), PullPolicy::Always)
            .await,
        "not signed",
    );
    assert_eq!(signed.denials(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_runs_reports_its_exit_and_keeps_its_output() {
    let Setup {
        mut bench,
        image,
        containerd: _containerd,
        registry: _registry,
        ..
    } = setup_pulled(GRANT).await;
    let mut container = bench.view::<Container>();
    let hello = shell(
        "hello",
        &image.reference,
        "echo hello from $(hostname); echo oops >&2; exit 3",
    );
    let created = container.create(hello).await.unwrap();
    assert_eq!(created.state, ContainerState::Created);
    assert_eq!(created.image_digest, image.digest);
    assert_eq!(created.id, format!("{PLUGIN}.hello"));
    let started = container.start("hello".into()).await.unwrap();
    assert!(started.pid.is_some());
    let exit = next_exit(&mut bench).await;
    assert_eq!(
        exit,
        serde_json::json!({"name": "hello", "code": 3, "oom": false, "pid": started.pid})
    );
    let mut container = bench.view::<Container>();
    let info = container.info("hello".into()).await.unwrap();
    assert_eq!(
        (info.state, info.exit_code),
        (ContainerState::Exited, Some(3))
    );
    let logs = container.logs("hello".into(), 1000).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello from hello\n");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "oops\n");
    // Started again: a fresh run of the same container, told apart by its pid.
    let again = container.start("hello".into()).await.unwrap();
    let exit = next_exit(&mut bench).await;
    assert_eq!(exit["code"], 3);
    assert_eq!(exit["pid"], serde_json::json!(again.pid));
    assert_ne!(again.pid, started.pid);
    let mut container = bench.view::<Container>();
    assert!(matches!(
        container.create(spec("hello", &image.reference, &[])).await,
        Err(CapError::Conflict(_))
    ));
    container.remove("hello".into()).await.unwrap();
    assert!(container.list().await.unwrap().is_empty());
    assert!(matches!(
        container.info("hello".into()).await,
        Err(CapError::NotFound(_))
    ));
    assert_eq!(bench.denials(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_stop_and_limits_work_on_a_running_container() {
    let Setup {
        mut bench,
        image,
        containerd: _containerd,
        registry: _registry,
        ..
    } = setup_pulled(GRANT).await;
    let mut container = bench.view::<Container>();
    // sleep as PID 1 ignores SIGTERM: stop must fall back to SIGKILL.
    let mut nap = shell("nap", &image.reference, "exec sleep 300");
    nap.resources.memory_bytes = Some(64 << 20);
    nap.resources.cpu_quota = Some(50_000);
    nap.resources.pids_limit = Some(32);
    nap.env = vec![("GREETING".into(), "hi".into())];
    container.create(nap).await.unwrap();
    container.start("nap".into()).await.unwrap();

    let mut echo = exec(&["/bin/sh", "-c", "cat; echo $GREETING; echo err >&2; exit 4"]);
    echo.stdin = b"from stdin\n".to_vec();
    let result = container.exec("nap".into(), echo).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&result.stdout), "from stdin\nhi\n");
    assert_eq!(String::from_utf8_lossy(&result.stderr), "err\n");
    assert_eq!((result.exit_code, result.timed_out), (4, false));
    // A cleared environment: the container's GREETING is gone, PATH and
    // what the exec sets are there.
    let mut isolated = exec(&["sh", "-c", "env | sort"]);
    isolated.clear_env = true;
    isolated.env = vec![("ONLY".into(), "this".into())];
    let result = container.exec("nap".into(), isolated).await.unwrap();
    let seen = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(!seen.contains("GREETING"), "{seen}");
    assert!(
        seen.contains("ONLY=this\n") && seen.contains("PATH=/usr/local/sbin:"),
        "{seen}"
    );
    let mut slow = exec(&["/bin/sleep", "30"]);
    slow.timeout_ms = 300;
    let result = container.exec("nap".into(), slow).await.unwrap();
    assert!(result.timed_out);
    assert!(matches!(
        container
            .exec("nap".into(), exec(&["/bin/no-such-program"]))
            .await,
        Err(CapError::NotFound(_) | CapError::Internal(_))
    ));

    let entry = bench
        .shared
        .container
        .containers
        .get(PLUGIN, "nap")
        .unwrap();
    assert_eq!(
        stats::limit_file(&entry.spec, "memory", "memory.limit_in_bytes").as_deref(),
        Some("67108864")
    );
    assert_eq!(
        stats::limit_file(&entry.spec, "cpu", "cpu.cfs_quota_us").as_deref(),
        Some("50000")
    );
    assert_eq!(
        stats::limit_file(&entry.spec, "pids", "pids.max").as_deref(),
        Some("32")
    );
    let mut container = bench.view::<Container>();
    let usage = container.stats("nap".into()).await.unwrap();
    assert_eq!(usage.memory_limit_bytes, Some(64 << 20));
    assert!(usage.pids >= 1, "{usage:?}");

    let started = std::time::Instant::now();
    let stopped = container.stop("nap".into(), 300).await.unwrap();
    assert_eq!(stopped.state, ContainerState::Exited);
    assert_eq!(stopped.exit_code, Some(137));
    assert!(started.elapsed() < Duration::from_secs(10));
    let exit = next_exit(&mut bench).await;
    assert_eq!(exit["code"], 137);
    remove_everything(&bench).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_over_its_memory_limit_is_reported_oom_killed() {
    let Setup {
        mut bench,
        image,
        containerd: _containerd,
        registry: _registry,
        ..
    } = setup_pulled(GRANT).await;
    let mut container = bench.view::<Container>();
    let mut hog = spec(
        "hog",
        &image.reference,
        &["if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
    );
    hog.command = Some(vec!["/bin/dd".into()]);
    hog.resources.memory_bytes = Some(32 << 20);
    container.create(hog).await.unwrap();
    let started = container.start("hog".into()).await.unwrap();
    let exit = next_exit(&mut bench).await;
    assert_eq!(
        exit,
        serde_json::json!({"name": "hog", "code": 137, "oom": true, "pid": started.pid})
    );
    let mut container = bench.view::<Container>();
    assert!(container.info("hog".into()).await.unwrap().oom_killed);
    remove_everything(&bench).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_beyond_the_grant_are_refused() {
    let Setup {
        mut bench,
        image,
        containerd: _containerd,
        registry: _registry,
        ..
    } = setup_pulled(GRANT).await;
    let mut container = bench.view::<Container>();
    let mut host = spec("h", &image.reference, &[]);
    host.network = NetworkMode::Host;
    assert_denied(container.create(host).await, "host network");
    let mut privileged = spec("p", &image.reference, &[]);
    privileged.privileged = true;
    assert_denied(container.create(privileged).await, "privileged");
    let mut outside = spec("m", &image.reference, &[]);
    outside.mounts = vec![Mount {
        kind: MountKind::Bind,
        source: "/etc".into(),
        target: "/host-etc".into(),
        read_only: true,
    }];
    assert_denied(container.create(outside).await, "/etc");
    let mut capable = spec("c", &image.reference, &[]);
    capable.capabilities = vec!["CAP_SYS_ADMIN".into()];
    assert_denied(container.create(capable).await, "CAP_SYS_ADMIN");
    let mut greedy = spec("g", &image.reference, &[]);
    greedy.resources.memory_bytes = Some(1 << 30);
    assert_denied(container.create(greedy).await, "memory");
    // Nothing was left behind by the refusals.
    assert!(container.list().await.unwrap().is_empty());
    assert_eq!(bench.denials(), 5);
    let mut container = bench.view::<Container>();

    // Within the grant: a bind mount under /tmp, and a quota of containers.
    let shared = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(shared.path().join("note"), "from the host").unwrap();
    let mut reader = shell("r", &image.reference, "cat /data/note");
    reader.mounts = vec![Mount {
        kind: MountKind::Bind,
        source: shared.path().display().to_string(),
        target: "/data".into(),
        read_only: true,
    }];
    container.create(reader).await.unwrap();
    container.start("r".into()).await.unwrap();
    assert_eq!(next_exit(&mut bench).await["code"], 0);
    let mut container = bench.view::<Container>();
    let logs = container.logs("r".into(), 100).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "from the host");
    for name in ["q1", "q2", "q3"] {
        container
            .create(spec(name, &image.reference, &[]))
            .await
            .unwrap();
    }
    assert!(matches!(
        container.create(spec("q4", &image.reference, &[])).await,
        Err(CapError::QuotaExceeded(_))
    ));
    remove_everything(&bench).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_re_adopts_its_containers_and_removes_orphans() {
    let Setup {
        mut bench,
        containerd,
        registry,
        image,
    } = setup_pulled(GRANT).await;
    let mut container = bench.view::<Container>();
    let ticker = shell(
        "ticker",
        &image.reference,
        "while true; do echo tick; sleep 0.2; done",
    );
    container.create(ticker).await.unwrap();
    container.start("ticker".into()).await.unwrap();
    let pid = container.info("ticker".into()).await.unwrap().pid;

    // A second daemon on the same state and containerd (the first one "died").
    let grant = GRANT.replace("{registry}", &registry.address);
    let mut after = bench.restarted(&grant, config(&containerd, &registry));
    let mut container = after.view::<Container>();
    let listed = container.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, "ticker");
    assert_eq!(listed[0].state, ContainerState::Running);
    assert_eq!(listed[0].pid, pid);
    assert!(listed[0].adopted);
    // Its output is followed again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let logs = container.logs("ticker".into(), 100).await.unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("tick"),
        "{logs:?}"
    );
    // And its exit is seen.
    container
        .kill("ticker".into(), "KILL".into())
        .await
        .unwrap();
    assert_eq!(next_exit(&mut after).await["code"], 137);

    // A plugin that is no longer installed loses its containers at boot.
    let mut container = after.view::<Container>();
    container
        .create(spec("leftover", &image.reference, &[]))
        .await
        .unwrap();
    use crate::caps::Capability as _;
    Container::booted(&after.shared.container, &BTreeSet::new()).await;
    let mut container = after.view::<Container>();
    assert!(container.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_survive_a_containerd_restart_and_go_with_their_plugin() {
    let Setup {
        mut bench,
        mut containerd,
        image,
        registry: _registry,
        ..
    } = setup_pulled(GRANT).await;
    let mut container = bench.view::<Container>();
    let nap = shell(
        "nap",
        &image.reference,
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    );
    container.create(nap).await.unwrap();
    container.start("nap".into()).await.unwrap();

    containerd.restart();
    let mut container = bench.view::<Container>();
    let result = container
        .exec("nap".into(), exec(&["/bin/echo", "still here"]))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&result.stdout), "still here\n");
    // The exit watcher reconnected: a SIGTERM the shell traps ends it with 0.
    container.kill("nap".into(), "TERM".into()).await.unwrap();
    assert_eq!(next_exit(&mut bench).await["code"], 0);

    use crate::caps::Capability as _;
    Container::plugin_removed(&bench.shared.container, PLUGIN).await;
    let mut container = bench.view::<Container>();
    assert!(container.list().await.unwrap().is_empty());
    let left = containerd.ctr("cairn-test", &["containers", "ls", "-q"]);
    assert!(left.trim().is_empty(), "left behind: {left}");
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// GETs `/` from `address`, retrying while the server starts.
async fn http_get(address: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for _ in 0..100 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
            let request = "GET / HTTP/1.0\r\nHost: test\r\n\r\n";
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut reply = String::new();
                if stream.read_to_string(&mut reply).await.is_ok() && !reply.is_empty() {
                    return reply;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answered on {address}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_network_maps_a_port_and_is_cleaned_up_on_removal() {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let image = push_busybox(&registry, "apps/busybox", "1", 0).await;
    let mut config = config(&containerd, &registry);
    config.containers.bridge = "cairntest0".into();
    config.containers.subnet = "10.213.0.0/24".into();
    let grant = GRANT.replace("{registry}", &registry.address);
    let mut bench = Bench::with_config(&grant, FakeHost::default(), config);
    let mut container = bench.view::<Container>();
    container
        .pull(image.reference.clone(), PullPolicy::IfNotPresent)
        .await
        .unwrap();
    let mut web = shell(
        "web",
        &image.reference,
        "mkdir -p /tmp/www && echo hello from the bridge > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
    );
    web.network = NetworkMode::Bridge;
    web.ports = vec![Port {
        host_ip: None,
        host_port: 18080,
        container_port: 8080,
        protocol: Protocol::Tcp,
    }];
    let created = container.create(web).await.unwrap();
    let ip = created.ip.clone().expect("an address on the bridge");
    assert!(ip.starts_with("10.213.0."), "{ip}");
    container.start("web".into()).await.unwrap();
    let reply = http_get("127.0.0.1:18080").await;
    assert!(reply.contains("hello from the bridge"), "{reply}");
    let direct = http_get(&format!("{ip}:8080")).await;
    assert!(direct.contains("hello from the bridge"), "{direct}");
    assert!(!command_output("ip", &["-o", "link", "show", "master", "cairntest0"]).is_empty());
    let id = format!("cairn-test.{}", created.id);
    assert!(command_output("iptables-save", &["-t", "nat"]).contains(&id));

    // A host port another container maps is a conflict.
    let mut twin = shell("twin", &image.reference, "true");
    twin.network = NetworkMode::Bridge;
    twin.ports = vec![Port {
        host_ip: Some("127.0.0.1".into()),
        host_port: 18080,
        container_port: 80,
        protocol: Protocol::Tcp,
    }];
    match container.create(twin).await {
        Err(CapError::Conflict(message)) => assert!(message.contains("18080"), "{message}"),
        other => panic!("a taken port was mapped again: {other:?}"),
    }

    // Ports outside the grant are refused before anything is set up.
    let mut outside = spec("outside", &image.reference, &["-c", "true"]);
    outside.network = NetworkMode::Bridge;
    outside.ports = vec![Port {
        host_ip: None,
        host_port: 80,
        container_port: 80,
        protocol: Protocol::Tcp,
    }];
    assert_denied(container.create(outside).await, "port 80");

    container.remove("web".into()).await.unwrap();
    let veths = command_output("ip", &["-o", "link", "show", "master", "cairntest0"]);
    assert!(veths.trim().is_empty(), "veth left behind: {veths}");
    let nat = command_output("iptables-save", &["-t", "nat"]);
    assert!(!nat.contains(&id), "iptables rules left behind:\n{nat}");
    let net_dir = bench.state_dir.path().join("container/net");
    let left: Vec<_> = std::fs::read_dir(&net_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| name != "ipam")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "cairntest0"])
        .status();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_logs_in_and_resumes_after_the_registry_drops_mid_layer() {
    use crate::supply::oci::Credentials;
    use crate::supply::oci::tests::harness::Proxy;
    use std::sync::atomic::Ordering;

    const LAYER: usize = 20 * 1024 * 1024;
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start_with(Some(("edge", "s3cret")));
    // The connection drops once, 5 MiB into the 20 MiB layer.
    let proxy = Proxy::start(
        &registry.address,
        256 * 1024,
        Duration::from_millis(1),
        Some(5 * 1024 * 1024),
    );
    let login = |address: &str| {
        Credentials::parse(&format!(
            "[registries.\"{address}\"]\nusername = \"edge\"\npassword = \"s3cret\"\n"
        ))
        .unwrap()
    };
    let image = push_busybox_with(
        &registry.address,
        Some(("edge", "s3cret")),
        "apps/big",
        "1",
        LAYER,
    )
    .await;

    let mut config = config(&containerd, &registry);
    config.registry.insecure.push(proxy.addr.clone());
    config.registry.credentials = Some(login(&proxy.addr));
    let grant = "[grants.container]\nimages = [\"127.0.0.1:*/apps/*\"]\n";
    let mut bench = Bench::with_config(grant, FakeHost::default(), config);
    let mut container = bench.view::<Container>();
    let through_proxy = image.reference.replace(&registry.address, &proxy.addr);
    let pulled = container
        .pull(through_proxy.clone(), PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest);
    assert!(pulled.size > LAYER as u64, "{pulled:?}");
    assert!(
        proxy.cut.load(Ordering::SeqCst),
        "the connection never dropped"
    );
    let forwarded = proxy.forwarded.load(Ordering::SeqCst);
    assert!(
        forwarded < (LAYER + 4 * 1024 * 1024) as u64,
        "{forwarded} bytes forwarded: the layer was not resumed"
    );

    // It runs, and its padding arrived whole.
    let check = shell("check", &through_proxy, "wc -c < /padding");
    container.create(check).await.unwrap();
    container.start("check".into()).await.unwrap();
    assert_eq!(next_exit(&mut bench).await["code"], 0);
    let mut container = bench.view::<Container>();
    let logs = container.logs("check".into(), 100).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout).trim(),
        LAYER.to_string()
    );

    // Without the login the registry refuses, and the error says so.
    let mut anonymous = config_without_login(&containerd, &registry, &proxy.addr);
    anonymous.registry.credentials = None;
    let mut bench = Bench::with_config(grant, FakeHost::default(), anonymous);
    let mut container = bench.view::<Container>();
    let refused = container.pull(through_proxy, PullPolicy::Always).await;
    match refused {
        Err(CapError::Internal(message)) => {
            assert!(message.contains("refused access"), "{message}");
            assert!(message.contains("credentials"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        other => panic!("an anonymous pull was not refused: {other:?}"),
    }
    remove_everything(&bench).await;
}

fn config_without_login(
    containerd: &TestContainerd,
    registry: &TestRegistry,
    proxy: &str,
) -> CapsConfig {
    let mut config = config(containerd, registry);
    config.registry.insecure.push(proxy.to_string());
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_without_images_refuses_every_image() {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let image = push_busybox(&registry, "apps/busybox", "1", 0).await;
    let mut bench = Bench::with_config(
        "[grants.container]\nimages = []\n",
        FakeHost::default(),
        config(&containerd, &registry),
    );
    let mut container = bench.view::<Container>();
    assert_denied(
        container
            .pull(image.reference.clone(), PullPolicy::Always)
            .await,
        "outside the grant",
    );
    assert!(container.list().await.unwrap().is_empty());
    assert_eq!(bench.denials(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn granted_host_network_and_privilege_are_applied_and_the_default_drops_every_capability() {
    let Setup {
        mut bench,
        image,
        containerd: _containerd,
        registry: _registry,
    } = setup(&GRANT.replace(
        "[grants.container]\n",
        "[grants.container]\nhost-network = true\nprivileged = true\n",
    ))
    .await;
    let mut container = bench.view::<Container>();
    container
        .pull(image.reference.clone(), PullPolicy::IfNotPresent)
        .await
        .unwrap();
    let script = "grep CapEff /proc/self/status; ls /sys/class/net";
    let plain = shell("plain", &image.reference, script);
    let mut host = shell("host", &image.reference, script);
    host.network = NetworkMode::Host;
    let mut privileged = shell("root", &image.reference, script);
    privileged.privileged = true;
    for spec in [plain, host, privileged] {
        container.create(spec).await.unwrap();
    }
    for name in ["plain", "host", "root"] {
        container.start(name.into()).await.unwrap();
        assert_eq!(next_exit(&mut bench).await["code"], 0);
        container = bench.view::<Container>();
    }
    let output = |logs: crate::contract::bindings::cairn::host::container::LogTail| {
        String::from_utf8_lossy(&logs.stdout).into_owned()
    };
    let plain = output(container.logs("plain".into(), 4096).await.unwrap());
    let host = output(container.logs("host".into(), 4096).await.unwrap());
    let root = output(container.logs("root".into(), 4096).await.unwrap());
    assert!(plain.contains("CapEff:\t0000000000000000"), "{plain}");
    assert_eq!(plain.lines().skip(1).collect::<Vec<_>>(), ["lo"], "{plain}");
    let host_interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        host_interfaces
            .iter()
            .all(|name| host.contains(name.as_str())),
        "{host}"
    );
    assert!(!root.contains("CapEff:\t0000000000000000"), "{root}");
    remove_everything(&bench).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_names_are_looked_up_in_the_image() {
    let Setup {
        mut bench,
        image,
        containerd: _containerd,
        registry: _registry,
        ..
    } = setup_pulled(GRANT).await;
    let mut container = bench.view::<Container>();
    let mut named = shell("named", &image.reference, "echo $(id -u):$(id -g)");
    named.user = Some("nobody".into());
    container.create(named).await.unwrap();
    container.start("named".into()).await.unwrap();
    assert_eq!(next_exit(&mut bench).await["code"], 0);
    let mut container = bench.view::<Container>();
    let logs = container.logs("named".into(), 100).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "65534:65534\n");
    let mut unknown = shell("unknown", &image.reference, "true");
    unknown.user = Some("postgres".into());
    match container.create(unknown).await {
        Err(CapError::Invalid(message)) => assert!(message.contains("postgres"), "{message}"),
        other => panic!("an unknown user was accepted: {other:?}"),
    }
    remove_everything(&bench).await;
}
