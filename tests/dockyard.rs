//! The `dockyard` plugin plans a service from its image's own labels, on a
//! real containerd and registry: the image is pulled (its tag resolved to a
//! digest) and its Nanocloud or Cairn options label read from the
//! digest-checked config; the plan shows the resolved options with secrets
//! masked, the container it would run, and touches nothing else. Every
//! malformed label, unknown option or missing provider is a clear error.

mod harness;

use harness::containers::{TestContainerd, busybox_image_running, push_image};
use harness::registry::TestRegistry;
use harness::{Daemon, Options, plugin_wasm};
use serde_json::{Value, json};

/// A Nanocloud-labelled provider: a generated password, a port, a default user.
const DB_OPTIONS: &str = r#"{"port": ["5432"], "user": ["app"], "secret_password": ["!rand 24 charset26"], "resolver": ["!dns"], "?port_db": ["15432->5432"], "runtime_command": ["/bin/sleep"], "runtime_args": ["3600"]}"#;

/// A Cairn-labelled consumer of `db` (or of nothing, with sqlite).
const APP_OPTIONS: &str = r#"{"options": [
  {"name": "database", "type": "service", "choices": [
     {"service": "db", "imports": ["port", {"key": "secret_password", "secret": true}],
      "bindings": [{"id": "create_user", "run": ["sh", "-c", "echo creating $1; cat \"$0\"; read -r line; test \"$line\" = \"$(cat \"$0\")\"", "$database_secret_password", "$database_port"],
                    "unbind": ["sh", "-c", "test -s \"$0\" && echo dropping $1", "$database_secret_password", "$database_port"]}]},
     {"value": "sqlite"}], "default": "sqlite"},
  {"name": "workers", "type": "integer", "min": 1, "max": 8, "default": "2"},
  {"name": "token", "type": "secret", "default": "!rand 16 hex"},
  {"name": "port_http", "type": "string", "default": "18080->80"},
  {"name": "runtime_command", "default": "/bin/sleep"},
  {"name": "runtime_args", "default": "3600"}
]}"#;

/// A service with TLS material (and an option to change).
const TLS_OPTIONS: &str = r#"{"mode": ["fast", "safe"], "tls_cert": ["!tls cert"], "tls_key": ["!tls key"], "tls_ca": ["!tls ca"], "runtime_command": ["/bin/sleep"], "runtime_args": ["3600"]}"#;

/// A provider that serves (2 s after it starts) on 8080, and says so
/// through its ready check; another whose check never passes.
const WEB_OPTIONS: &str = r#"{"options": [{"name": "port_http", "default": "28085->8080"}],
  "ready": {"check": "tcp://{ip}:8080", "interval": "200ms", "start-timeout": "30s"}}"#;
const WEB_CMD: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; sleep 2; httpd -f -p 8080 -h / & wait",
];
const NEVER_OPTIONS: &str = r#"{"options": [{"name": "port_http", "default": "28086->8080"}],
  "ready": {"check": "tcp://{ip}:8080", "interval": "200ms", "start-timeout": "3s"}}"#;
/// Consumers of `web` that are rebound, restarted or left alone when it restarts.
const FRONT_OPTIONS: &str = r#"{"options": [{"name": "backend", "type": "service", "choices": [
  {"service": "web", "on-restart": "rebind", "bindings": [{"id": "register", "run": ["true"]}]},
  {"service": "never"}]}]}"#;
const SIDE_OPTIONS: &str = r#"{"backend=&web": []}"#;
const LAZY_OPTIONS: &str = r#"{"options": [{"name": "backend", "type": "service", "choices": [{"service": "web", "on-restart": "ignore"}]}]}"#;
/// Runs until stopped, and stops at once on SIGTERM.
const IDLE_CMD: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while true; do sleep 1; done",
];

/// Consumers of `db` whose binding fails, or outlasts the timeout.
const FAILING_OPTIONS: &str = r#"{"database=&db": ["&bindings.grant false"]}"#;
const SLOW_OPTIONS: &str = r#"{"database=&db": ["&bindings.wait sleep 30"]}"#;

struct Bed {
    daemon: Daemon,
    containerd: TestContainerd,
    _registry: TestRegistry,
    namespace: String,
    state: tempfile::TempDir,
}

/// Test `n`'s containerd, registry (with the images) and daemon.
fn bed(n: u8) -> Bed {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let address = registry.address.clone();
    let shell: &[&str] = &["/bin/sh"];
    for (service, label, options, cmd) in [
        ("db", "io.nanocloud.options", DB_OPTIONS, shell),
        ("app", "dev.cairn.options", APP_OPTIONS, shell),
        (
            "broken",
            "io.nanocloud.options",
            r#"{"seed": ["!rand 8 emoji"]}"#,
            shell,
        ),
        (
            "plain",
            "org.opencontainers.image.title",
            "no options",
            shell,
        ),
        ("failing", "io.nanocloud.options", FAILING_OPTIONS, shell),
        ("slow", "io.nanocloud.options", SLOW_OPTIONS, shell),
        ("tlsd", "io.nanocloud.options", TLS_OPTIONS, shell),
        ("web", "dev.cairn.options", WEB_OPTIONS, WEB_CMD),
        ("never", "dev.cairn.options", NEVER_OPTIONS, IDLE_CMD),
        ("front", "dev.cairn.options", FRONT_OPTIONS, IDLE_CMD),
        ("side", "io.nanocloud.options", SIDE_OPTIONS, IDLE_CMD),
        ("lazy", "dev.cairn.options", LAZY_OPTIONS, IDLE_CMD),
    ] {
        let blobs = busybox_image_running(0, &[(label, options)], cmd);
        push_image(
            &address,
            None,
            &format!("dockyard/{service}"),
            "latest",
            blobs,
        );
    }
    let namespace = format!("cairn-dockyard{n}");
    let daemon = Daemon::start_with(Options {
        insecure_registries: vec![address.clone()],
        extra_config: containerd.config_section(
            &namespace,
            &format!("cairndock{n}"),
            &format!("10.23{n}.0.0/24"),
        ),
        ..Options::default()
    });
    let state = harness::dockyard::install(
        &daemon,
        &address,
        "2s",
        r#"ports = ["18080", "28085", "28086"]"#,
    );
    Bed {
        daemon,
        containerd,
        _registry: registry,
        namespace,
        state,
    }
}

impl Bed {
    fn plan(&self, service: &str, options: Value) -> Result<Value, String> {
        let request = json!({"service": service, "options": options});
        self.daemon.call("dockyard", "plan", &request.to_string())
    }
}

#[test]
fn a_plan_reads_the_images_labels_masks_secrets_and_touches_nothing() {
    let bed = bed(1);

    // Nanocloud's label: defaults, a macro, a generated secret (masked).
    let db = bed.plan("db", json!({})).unwrap();
    assert_eq!(db["image"]["label"], "io.nanocloud.options", "{db:#}");
    assert!(
        db["image"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(harness::dockyard::option(&db, "port")["value"], "5432");
    assert_eq!(
        harness::dockyard::option(&db, "resolver")["value"],
        "10.0.0.53"
    );
    let password = harness::dockyard::option(&db, "secret_password");
    assert_eq!(
        (&password["value"], &password["secret"]),
        (&json!("<secret>"), &json!(true))
    );
    assert_eq!(
        db["container"]["secret-files"],
        json!(["/run/cairn/dockyard/secrets/secret_password"])
    );
    assert_eq!(db["container"]["command"], json!(["/bin/sleep"]));
    assert_eq!(db["container"]["args"], json!(["3600"]));
    let pinned = db["container"]["image"].as_str().unwrap();
    assert!(
        pinned.ends_with(db["image"]["digest"].as_str().unwrap()),
        "{pinned}"
    );

    // Cairn's typed label: the user's values are checked against their types.
    let app = bed.plan("app", json!({"workers": "4"})).unwrap();
    assert_eq!(app["image"]["label"], "dev.cairn.options");
    assert_eq!(
        harness::dockyard::option(&app, "database")["value"],
        "sqlite"
    );
    assert_eq!(harness::dockyard::option(&app, "workers")["value"], "4");
    assert_eq!(
        harness::dockyard::option(&app, "token")["value"],
        "<secret>"
    );
    assert_eq!(app["runtime"]["ports"][0]["host_port"], 18080, "{app:#}");
    let too_many = bed.plan("app", json!({"workers": "9"})).unwrap_err();
    assert!(
        too_many.contains("workers") && too_many.contains("invalid"),
        "{too_many}"
    );

    // Clear errors: a provider that is not installed, an unknown option, a
    // bad macro, a service with no image.
    let no_db = bed.plan("app", json!({"database": "db"})).unwrap_err();
    assert!(
        no_db.contains("not-found") && no_db.contains("db"),
        "{no_db}"
    );
    let typo = bed.plan("app", json!({"wrokers": "4"})).unwrap_err();
    assert!(typo.contains("wrokers"), "{typo}");
    let broken = bed.plan("broken", json!({})).unwrap_err();
    assert!(
        broken.contains("seed") && broken.contains("emoji"),
        "{broken}"
    );
    let missing = bed.plan("ghost", json!({})).unwrap_err();
    assert!(missing.contains("ghost"), "{missing}");
    let bad_name = bed.plan("../etc", json!({})).unwrap_err();
    assert!(bad_name.contains("not a service name"), "{bad_name}");

    // An image without options is a service with none.
    let plain = bed.plan("plain", json!({})).unwrap();
    assert_eq!(plain["options"], json!([]), "{plain:#}");
    assert_eq!(
        plain["container"]["args"],
        json!(["/bin/sh"]),
        "the image's own command"
    );

    // Nothing was created, and the daemon still serves.
    let containers = bed
        .containerd
        .ctr(&bed.namespace, &["containers", "ls", "-q"]);
    assert_eq!(containers.trim(), "", "a plan created a container");
    assert!(bed.plan("db", json!({})).is_ok());
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file()
            && std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(path);
        }
    }
    found
}

impl Bed {
    fn call(&self, command: &str, service: &str, options: Value) -> Result<Value, String> {
        let request = json!({"service": service, "options": options});
        self.daemon.call("dockyard", command, &request.to_string())
    }

    fn file(&self, path: &str) -> String {
        std::fs::read_to_string(self.state.path().join(path)).unwrap_or_default()
    }

    fn running(&self) -> Vec<String> {
        let tasks = self.containerd.ctr(&self.namespace, &["tasks", "ls"]);
        tasks
            .lines()
            .filter(|line| line.contains("RUNNING"))
            .map(|line| {
                line.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

#[test]
fn an_installed_service_keeps_its_configuration_across_reinstalls_and_restarts() {
    let mut bed = bed(2);
    let installed = bed.call("install", "db", json!({})).unwrap();
    assert_eq!(installed["changed"], true, "{installed}");
    assert_eq!(bed.running().len(), 1, "{installed}");

    // Options in a file, each secret in its own; the generated password is
    // in neither the log nor any reply.
    let options = bed.file("services/db/options.env");
    assert!(
        options.contains("port=5432\n") && options.contains("user=app\n"),
        "{options}"
    );
    assert!(!options.contains("secret_password"), "{options}");
    let password = bed.file("services/db/secrets/secret_password");
    assert_eq!(password.len(), 24, "{password:?}");
    assert!(
        password.chars().all(|c| c.is_ascii_lowercase()),
        "{password:?}"
    );
    let listed = bed.daemon.call("dockyard", "list", "null").unwrap();
    assert_eq!(listed[0]["service"], "db", "{listed}");
    assert_eq!(listed[0]["running"], true, "{listed}");
    assert!(!listed.to_string().contains(&password));
    assert!(!installed.to_string().contains(&password));

    // At rest, only the secret's own file holds it: the plugin's records
    // (kv, in the daemon's state) are sealed under the device key.
    let holders = files_containing(bed.daemon.root(), &password);
    assert!(holders.is_empty(), "the password in {holders:?}");
    let holders = files_containing(bed.state.path(), &password);
    assert_eq!(
        holders,
        [bed.state.path().join("services/db/secrets/secret_password")]
    );

    // The same install again changes nothing; a restart neither.
    let again = bed.call("install", "db", json!({})).unwrap();
    assert_eq!(again["changed"], false, "{again}");
    bed.daemon.restart();
    let after_restart = bed.call("install", "db", json!({})).unwrap();
    assert_eq!(after_restart["changed"], false, "{after_restart}");
    assert_eq!(bed.file("services/db/secrets/secret_password"), password);

    // A changed option is applied; what was generated stays.
    let changed = bed.call("install", "db", json!({"user": "other"})).unwrap();
    assert_eq!(changed["changed"], true, "{changed}");
    assert!(bed.file("services/db/options.env").contains("user=other\n"));
    assert_eq!(bed.file("services/db/secrets/secret_password"), password);
    assert_eq!(bed.running().len(), 1);

    // A service whose container dies is started again.
    let task = bed.running().pop().unwrap();
    bed.containerd
        .ctr(&bed.namespace, &["tasks", "kill", "-s", "SIGKILL", &task]);
    let mut listed = Value::Null;
    let restarted = bed
        .daemon
        .eventually(std::time::Duration::from_secs(30), || {
            listed = bed.daemon.call("dockyard", "list", "null").unwrap();
            listed[0]["running"] == true && listed[0]["restarts"] == 1
        });
    assert!(
        restarted,
        "not restarted: {listed}\n{}",
        bed.daemon.daemon_log()
    );

    // A consumer now resolves against the installed provider's profile.
    let app = bed.call("plan", "app", json!({"database": "db"})).unwrap();
    assert_eq!(
        harness::dockyard::option(&app, "database_port")["value"],
        "5432",
        "{app:#}"
    );
    assert_eq!(
        harness::dockyard::option(&app, "database_secret_password")["value"],
        "<secret>"
    );
    assert_eq!(app["bindings"][0]["service"], "db", "{app:#}");
    let shown = &app["bindings"][0]["argv"];
    assert_eq!(
        (&shown[3], &shown[4]),
        (&json!("<secret>"), &json!("5432")),
        "{app:#}"
    );
    assert!(!app.to_string().contains(&password));

    // Its binding runs in the provider, the secret a file and stdin, never
    // an argument; what it printed is kept with the secret masked.
    let app = bed
        .daemon
        .cli_json(&["service", "install", "app", "--option", "database=db"])
        .unwrap();
    let listed = bed.daemon.cli(&["service", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("app") && listed.contains("running"),
        "{listed}"
    );
    assert_eq!(app["bindings"][0]["outcome"], "succeeded", "{app}");
    let steps = bed.call("bindings", "app", json!({})).unwrap();
    let step = &steps[0];
    assert_eq!(
        (&step["id"], &step["attempts"]),
        (&json!("bindings.create_user"), &json!(1)),
        "{steps}"
    );
    assert_eq!(step["command"][3], "<secret>", "{steps}");
    let output = step["output"].as_str().unwrap();
    assert!(
        output.contains("creating 5432") && output.contains("<secret>"),
        "{output}"
    );
    assert!(!steps.to_string().contains(&password), "{steps}");
    assert_eq!(bed.running().len(), 2);
    // Done once: not again on a re-install; again on `rebind`.
    assert_eq!(
        bed.call("install", "app", json!({"database": "db"}))
            .unwrap()["changed"],
        false
    );
    let rebound = bed
        .daemon
        .call(
            "dockyard",
            "rebind",
            r#"{"service":"app","binding":"bindings.create_user"}"#,
        )
        .unwrap();
    assert_eq!(rebound[0]["attempts"], 2, "{rebound}");

    // A provider in use cannot go.
    let in_use = bed.call("uninstall", "db", json!({})).unwrap_err();
    assert!(in_use.contains("used by app"), "{in_use}");

    // A step that fails, or runs past the timeout, stops its install; the
    // consumer does not start and the failure is recorded.
    let failed = bed.call("install", "failing", json!({})).unwrap_err();
    assert!(
        failed.contains("bindings.grant") && failed.contains("failed"),
        "{failed}"
    );
    let slow = bed.call("install", "slow", json!({})).unwrap_err();
    assert!(slow.contains("timed-out"), "{slow}");
    assert_eq!(
        bed.running().len(),
        2,
        "a consumer started after its binding failed"
    );
    let recorded = bed.call("bindings", "slow", json!({})).unwrap();
    assert_eq!(recorded[0]["outcome"], "timed-out", "{recorded}");
    // Uninstalling app undoes its binding in db first (the secret a file again).
    assert!(bed.call("uninstall", "app", json!({})).is_ok());
    let log = bed.daemon.daemon_log();
    assert!(
        log.contains("binding bindings.create_user.unbind of app: running")
            && log.contains("<secret>"),
        "the unbind step did not run"
    );

    // A backup: sealed, no secret in the clear.
    let backup = bed.call("export", "db", json!({})).unwrap();
    assert!(
        !backup.to_string().contains(&password),
        "the password in an export"
    );

    // Uninstalling takes the container, the files and the record away.
    let removed = bed.call("uninstall", "db", json!({})).unwrap();
    assert_eq!(removed["removed"], true, "{removed}");
    assert!(bed.running().is_empty());
    assert!(!bed.state.path().join("services/db").exists());
    assert_eq!(
        bed.daemon.call("dockyard", "list", "null").unwrap(),
        json!([])
    );
    let gone = bed.call("uninstall", "db", json!({})).unwrap_err();
    assert!(gone.contains("not installed"), "{gone}");

    // Restoring the backup, then installing, brings db back as it was.
    let imported = bed
        .daemon
        .call("dockyard", "import", &backup.to_string())
        .unwrap();
    assert_eq!(imported["imported"], true, "{imported}");
    let twice = bed
        .daemon
        .call("dockyard", "import", &backup.to_string())
        .unwrap_err();
    assert!(twice.contains("is installed"), "{twice}");
    let mut forged = backup.clone();
    forged["key-id"] = json!("0000000000000000");
    let forged = bed
        .daemon
        .call("dockyard", "import", &forged.to_string())
        .unwrap_err();
    assert!(forged.contains("device key"), "{forged}");
    bed.call("install", "db", json!({})).unwrap();
    assert_eq!(bed.file("services/db/secrets/secret_password"), password);
    assert!(bed.file("services/db/options.env").contains("user=other\n"));
    bed.call("uninstall", "db", json!({})).unwrap();
    assert!(
        !bed.daemon.daemon_log().contains(&password),
        "the password in the log"
    );
}

/// The daemon killed with SIGKILL in the middle of an install (a binding
/// step running in the provider) comes back consistent: the consumer is not
/// installed, the step's secret files are gone, nothing half-made stays,
/// and installing again behaves as the first time.
#[test]
fn a_daemon_killed_mid_install_leaves_nothing_half_made() {
    let mut bed = bed(3);
    bed.call("install", "db", json!({})).unwrap();
    let pid = bed.daemon.pid().unwrap();
    std::thread::scope(|scope| {
        let installing = scope.spawn(|| bed.daemon.cli(&["service", "install", "slow"]));
        // The step sleeps; its 2 s timeout has not struck yet.
        let leftovers = bed.state.path().join("services/db/bindings/slow");
        let started = bed
            .daemon
            .eventually(std::time::Duration::from_secs(20), || leftovers.exists());
        assert!(started, "the binding step never started");
        // SAFETY: signalling the daemon this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let _ = installing.join();
    });
    bed.daemon.restart();
    let listed = bed.daemon.call("dockyard", "list", "null").unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|service| service["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db"], "{listed}");
    assert_eq!(listed[0]["running"], true, "{listed}");
    let everywhere = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(bed.state.path().join("services/db"))
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .collect()
    };
    assert!(
        !bed.state.path().join("services/db/bindings").exists(),
        "step secrets left behind: {:?}",
        everywhere()
    );
    assert_eq!(bed.running().len(), 1, "a half-made consumer runs");
    let again = bed.call("install", "slow", json!({})).unwrap_err();
    assert!(again.contains("timed-out"), "{again}");
    let steps = bed.call("bindings", "slow", json!({})).unwrap();
    assert_eq!(steps[0]["attempts"], 1, "{steps}");

    // A reboot that lost the container store: the service is made again
    // from its record, with exactly the same configuration.
    let password = bed.file("services/db/secrets/secret_password");
    bed.daemon.kill9();
    let containers = bed
        .containerd
        .ctr(&bed.namespace, &["containers", "ls", "-q"]);
    for id in containers.lines() {
        bed.containerd
            .ctr(&bed.namespace, &["tasks", "rm", "-f", id]);
        bed.containerd
            .ctr(&bed.namespace, &["containers", "rm", id]);
    }
    assert_eq!(
        bed.containerd
            .ctr(&bed.namespace, &["containers", "ls", "-q"])
            .trim(),
        "",
        "containers left"
    );
    bed.daemon.restart();
    let back = bed
        .daemon
        .eventually(std::time::Duration::from_secs(60), || {
            bed.running().len() == 1
        });
    assert!(back, "db was not made again\n{}", bed.daemon.daemon_log());
    let listed = bed.daemon.call("dockyard", "list", "null").unwrap();
    assert_eq!(listed[0]["running"], true, "{listed}");
    assert_eq!(bed.file("services/db/secrets/secret_password"), password);
    assert!(
        bed.daemon
            .daemon_log()
            .contains("service db made again from its record"),
        "{}",
        bed.daemon.daemon_log()
    );
}

/// `!tls`: a plan shows where the material will be and makes none; an
/// install issues it from the device CA once, and a re-install, a restart
/// or a backup restored keeps the same certificate; a fresh install gets a
/// new one from the same CA.
#[test]
fn tls_material_is_issued_once_by_the_device_ca() {
    let mut bed = bed(4);
    let plan = bed.plan("tlsd", json!({})).unwrap();
    assert_eq!(
        harness::dockyard::option(&plan, "tls_cert")["value"],
        "/run/cairn/dockyard/tls/cert.pem",
        "{plan:#}"
    );
    assert_eq!(plan["container"]["tls-dir"], "/run/cairn/dockyard/tls");
    assert!(!bed.state.path().join("tls").exists(), "a plan made a CA");

    bed.call("install", "tlsd", json!({})).unwrap();
    let dir = bed.state.path().join("services/tlsd/tls");
    let ca = bed.file("tls/ca.pem");
    let cert = bed.file("services/tlsd/tls/cert.pem");
    let key = bed.file("services/tlsd/tls/key.pem");
    assert!(key.contains("PRIVATE KEY"), "{key}");
    assert_eq!(bed.file("services/tlsd/tls/ca.pem"), ca);
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca.pem"))
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let subject = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
            "-in",
        ])
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap();
    let subject = String::from_utf8_lossy(&subject.stdout);
    assert!(
        subject.contains("CN = tlsd") && subject.contains("DNS:tlsd"),
        "{subject}"
    );
    // The container reads what the host holds.
    let task = bed.running().pop().unwrap();
    let inside = bed.containerd.ctr(
        &bed.namespace,
        &[
            "tasks",
            "exec",
            "--exec-id",
            "read-cert",
            &task,
            "cat",
            "/run/cairn/dockyard/tls/cert.pem",
        ],
    );
    assert_eq!(inside, cert);

    // A changed option, a restart: the same certificate.
    let changed = bed
        .call("install", "tlsd", json!({"mode": "safe"}))
        .unwrap();
    assert_eq!(changed["changed"], true, "{changed}");
    bed.daemon.restart();
    bed.call("install", "tlsd", json!({})).unwrap();
    assert_eq!(bed.file("services/tlsd/tls/cert.pem"), cert);
    assert_eq!(bed.file("services/tlsd/tls/key.pem"), key);

    // A backup holds it sealed; restored, the service has it again.
    let backup = bed.call("export", "tlsd", json!({})).unwrap();
    let key_body: String = key.lines().nth(1).unwrap().to_string();
    assert!(
        !backup.to_string().contains(&key_body),
        "the key in a backup"
    );
    bed.call("uninstall", "tlsd", json!({})).unwrap();
    assert!(!dir.exists());
    bed.daemon
        .call("dockyard", "import", &backup.to_string())
        .unwrap();
    bed.call("install", "tlsd", json!({})).unwrap();
    assert_eq!(bed.file("services/tlsd/tls/cert.pem"), cert);
    assert_eq!(bed.file("services/tlsd/tls/key.pem"), key);

    // Installed afresh: a new certificate, from the same CA.
    bed.call("uninstall", "tlsd", json!({})).unwrap();
    bed.call("install", "tlsd", json!({})).unwrap();
    assert_ne!(bed.file("services/tlsd/tls/cert.pem"), cert);
    assert_eq!(bed.file("tls/ca.pem"), ca);
    let log = bed.daemon.daemon_log();
    let ca_key = bed.file("tls/ca-key.pem");
    let ca_key_body = ca_key.lines().nth(1).unwrap();
    assert!(
        !log.contains(&key_body) && !log.contains(ca_key_body),
        "a key in the log"
    );
}

/// Readiness and restarts, with the real `health` plugin: an install waits
/// for its service's ready check; a consumer is refused while its provider
/// is not ready; when a provider's container dies and is started again,
/// each consumer is handled as it declared (rebound and restarted,
/// restarted, or left alone).
#[test]
fn providers_gate_readiness_and_restarts_reach_their_consumers() {
    let bed = bed(5);
    let health = std::fs::read_to_string(harness::workspace().join("policies/health.toml"))
        .unwrap()
        .replace(
            r#"tcp-connect = ["127.0.0.1:*", "[::1]:*"]"#,
            r#"tcp-connect = ["127.0.0.1:*", "10.235.0.0/24:*"]"#,
        );
    assert!(
        health.contains("10.235.0.0/24"),
        "the health policy changed"
    );
    bed.daemon.write_policy("health", &health);
    bed.daemon.install(&plugin_wasm("health")).unwrap();

    // The install returns once the check passed (the server starts 2 s in).
    let web = bed.call("install", "web", json!({})).unwrap();
    assert_eq!(web["changed"], true, "{web}");
    let check = bed
        .daemon
        .call("health", "get", r#"{"name": "dockyard-web"}"#)
        .unwrap();
    assert_eq!(check["state"], "healthy", "{check}");
    let listed = bed.daemon.call("dockyard", "list", "null").unwrap();
    assert_eq!(listed[0]["ready"], true, "{listed}");

    // A provider whose check never passes: installed, not ready, and no
    // consumer of it is installed.
    let never = bed.call("install", "never", json!({})).unwrap_err();
    assert!(
        never.contains("unavailable") && never.contains("not ready"),
        "{never}"
    );
    let listed = bed.daemon.cli(&["service", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("never") && line.contains("not-ready")),
        "{listed}"
    );
    let refused = bed
        .call("install", "front", json!({"backend": "never"}))
        .unwrap_err();
    assert!(
        refused.contains("needs never, which is not ready"),
        "{refused}"
    );
    bed.call("uninstall", "never", json!({})).unwrap();
    let checks = bed.daemon.call("health", "status", "null").unwrap();
    assert!(
        !checks.to_string().contains("dockyard-never"),
        "the check of an uninstalled service stays: {checks}"
    );

    for consumer in ["front", "side", "lazy"] {
        bed.call("install", consumer, json!({"backend": "web"}))
            .unwrap();
    }
    let pids = |bed: &Bed| -> std::collections::BTreeMap<String, String> {
        bed.containerd
            .ctr(&bed.namespace, &["tasks", "ls"])
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let task = fields.next()?;
                let pid = fields.next()?;
                let service = ["web", "front", "side", "lazy"]
                    .into_iter()
                    .find(|service| task.contains(service))?;
                Some((service.to_string(), pid.to_string()))
            })
            .collect()
    };
    let before = pids(&bed);
    assert_eq!(before.len(), 4, "{before:?}");

    // web dies; the supervisor starts it again, waits for it to be ready,
    // then handles each consumer.
    let web_task = bed
        .running()
        .into_iter()
        .find(|task| task.contains("web"))
        .unwrap();
    bed.containerd.ctr(
        &bed.namespace,
        &["tasks", "kill", "-s", "SIGKILL", &web_task],
    );
    let mut now = Default::default();
    let handled = bed
        .daemon
        .eventually(std::time::Duration::from_secs(60), || {
            now = pids(&bed);
            now.len() == 4
                && now["web"] != before["web"]
                && now["front"] != before["front"]
                && now["side"] != before["side"]
        });
    assert!(
        handled,
        "before {before:?}, now {now:?}\n{}",
        bed.daemon.daemon_log()
    );
    assert_eq!(
        now["lazy"], before["lazy"],
        "an ignoring consumer was restarted"
    );
    let steps = bed.call("bindings", "front", json!({})).unwrap();
    assert_eq!(
        (&steps[0]["id"], &steps[0]["attempts"]),
        (&json!("bindings.register"), &json!(2)),
        "{steps}"
    );
    let log = bed.daemon.daemon_log();
    assert!(
        log.contains("service front rebound") && log.contains("service side restarted"),
        "{log}"
    );
}
