//! The `dockyard` plugin's service commands reach every adapter: `plan`,
//! `install`, `list`, `bindings` and `uninstall` through the REST API of
//! `http-adapter` and over MQTT through `mqtt-adapter` give the replies the
//! CLI gives, refuse bad input with the same typed errors, and never carry a
//! generated password. Service images must be signed by a key the policy
//! names: an unsigned one, or one signed by a trusted key the policy does not
//! name, is refused before it is pulled, through every adapter, and nothing
//! is installed. Real containerd, runc, registry and broker throughout.

mod harness;

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn::state::digest::Digest;
use cairn::supply::oci::{Reference, Registry, RegistryOptions};
use cairn::supply::signing::SigningKey;
use harness::containers::{TestContainerd, TestImage, busybox_image_labelled, push_image};
use harness::http::{Reply, request_with_timeout};
use harness::mosquitto::{Auth, Mosquitto, Subscriber};
use harness::registry::TestRegistry;
use harness::{Daemon, Options};
use serde_json::{Value, json};

const TOKEN: &str = "dockyard-adapters-token";

// Both services run `sh` with a TERM trap (spelt without spaces, since
// `runtime_args` is split on whitespace): `sleep` as PID 1 ignores SIGTERM,
// so every uninstall would wait out the plugin's 10 s stop grace.

/// A Nanocloud-labelled provider with a generated password.
const DB_OPTIONS: &str = r#"{"port": ["5432"], "user": ["app"], "secret_password": ["!rand 24 charset26"], "resolver": ["!dns"], "runtime_command": ["/bin/sh"], "runtime_args": ["-c trap${IFS}exit${IFS}TERM;sleep${IFS}3600&wait"]}"#;

/// A Cairn-labelled consumer of `db` whose binding step prints the imported
/// password: its recorded output must come back masked through every adapter.
const APP_OPTIONS: &str = r#"{"options": [
  {"name": "database", "type": "service", "choices": [
     {"service": "db", "imports": ["port", {"key": "secret_password", "secret": true}],
      "bindings": [{"id": "create_user", "run": ["sh", "-c", "echo creating $1; cat \"$0\"", "$database_secret_password", "$database_port"]}]},
     {"value": "sqlite"}], "default": "sqlite"},
  {"name": "token", "type": "secret", "default": "!rand 16 hex"},
  {"name": "runtime_command", "default": "/bin/sh"},
  {"name": "runtime_args", "default": "-c trap${IFS}exit${IFS}TERM;sleep${IFS}3600&wait"}
]}"#;

/// A label with an unknown `!rand` charset.
const BROKEN_OPTIONS: &str = r#"{"seed": ["!rand 8 emoji"]}"#;

struct Bed {
    daemon: Daemon,
    containerd: TestContainerd,
    replies: Subscriber,
    broker: Mosquitto,
    _registry: TestRegistry,
    images: Vec<(String, TestImage)>,
    device: String,
    http: String,
    namespace: String,
    state: tempfile::TempDir,
    /// Every REST reply body, to look for secrets in.
    http_bodies: RefCell<Vec<String>>,
}

/// Bed `n`: containerd, a registry with the service images (db, app and
/// broken signed with the daemon's `dev` key, `foreign` with its `other` key,
/// `unsigned` not at all), a broker, and a daemon running dockyard and both
/// adapters.
fn bed(n: u8) -> Bed {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let broker = Mosquitto::start(Auth::Anonymous);
    let address = registry.address.clone();
    let images: Vec<(String, TestImage)> = [
        ("db", "io.nanocloud.options", DB_OPTIONS),
        ("app", "dev.cairn.options", APP_OPTIONS),
        ("broken", "io.nanocloud.options", BROKEN_OPTIONS),
        ("unsigned", "io.nanocloud.options", DB_OPTIONS),
        ("foreign", "io.nanocloud.options", DB_OPTIONS),
    ]
    .into_iter()
    .map(|(service, label, options)| {
        // Distinct sizes make distinct digests: a signature of one image
        // must not stand for another.
        let blobs = busybox_image_labelled(service.len(), &[(label, options)]);
        let image = push_image(
            &address,
            None,
            &format!("dockyard/{service}"),
            "latest",
            blobs,
        );
        (service.to_string(), image)
    })
    .collect();
    let device = format!("dockyard-adapters-{n}");
    let namespace = format!("cairn-dockyard-adapters{n}");
    let daemon = Daemon::start_with(Options {
        device_id: Some(device.clone()),
        insecure_registries: vec![address.clone()],
        extra_config: format!(
            "{}[listeners.http]\naddress = \"127.0.0.1:0\"\nrequest-timeout = \"120s\"\n\
             [mqtt.brokers.local]\nurl = \"{}\"\n",
            containerd.config_section(
                &namespace,
                &format!("cairndockad{n}"),
                &format!("10.23{}.0.0/24", 10 - n),
            ),
            broker.url()
        ),
        ..Options::default()
    });
    for (service, image) in &images {
        let key = match service.as_str() {
            "unsigned" => continue,
            "foreign" => "other",
            _ => "dev",
        };
        sign(&address, image, &daemon.root().join(format!("{key}.key")));
    }

    let state = harness::dockyard::install(
        &daemon,
        &address,
        "10s",
        "require-signatures = true\nsigners = [\"dev\"]",
    );

    let mut replies = None;
    daemon.install_adapters(TOKEN, || {
        replies = Some(broker.subscribe(&format!("cairn/{device}/resp/#"), None));
    });
    let replies = replies.unwrap();
    let http = daemon.http_address();
    Bed {
        daemon,
        containerd,
        replies,
        broker,
        _registry: registry,
        images,
        device,
        http,
        namespace,
        state,
        http_bodies: RefCell::new(Vec::new()),
    }
}

/// Signs `image`'s manifest digest with the key at `key`, as `cairn plugin
/// push` signs a plugin.
fn sign(registry: &str, image: &TestImage, key: &Path) {
    let client = Registry::new(RegistryOptions {
        insecure: vec![registry.to_string()],
        ..RegistryOptions::default()
    })
    .unwrap();
    let reference = Reference::parse(&image.reference).unwrap();
    let digest = Digest::parse(&image.digest).unwrap();
    let key = SigningKey::load(key).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(client.sign(&reference, &digest, &key, &Default::default()))
        .unwrap();
}

fn unique_id(command: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{command}-{n}")
}

/// A plugin's typed refusal as one adapter reported it.
#[derive(Debug, PartialEq)]
struct Refusal {
    code: String,
    message: String,
}

impl Bed {
    fn digest(&self, service: &str) -> &str {
        let (_, image) = self
            .images
            .iter()
            .find(|(name, _)| name == service)
            .unwrap();
        &image.digest
    }

    /// `cairn call dockyard COMMAND PAYLOAD`; a refusal as the plugin's code
    /// (`plugin-code`, beside the CLI's own `invalid`) and message.
    fn cli(&self, command: &str, payload: &Value) -> Result<Value, Refusal> {
        self.daemon
            .call("dockyard", command, &payload.to_string())
            .map_err(|stderr| {
                let wrapped: Value = serde_json::from_str(stderr.trim())
                    .unwrap_or_else(|_| panic!("{command}: the CLI's error is not JSON: {stderr}"));
                let error = &wrapped["error"];
                assert_eq!(error["code"], "invalid", "{command}: {stderr}");
                Refusal {
                    code: error["plugin-code"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{command}: no plugin-code in {stderr}"))
                        .to_string(),
                    message: error["message"].as_str().unwrap_or_default().to_string(),
                }
            })
    }

    /// `POST /v1/plugins/dockyard/commands/COMMAND` with the API token.
    fn rest(&self, command: &str, payload: &Value) -> Reply {
        let body = payload.to_string();
        let head = format!(
            "POST /v1/plugins/dockyard/commands/{command} HTTP/1.1\r\nHost: {}\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json",
            self.http
        );
        let reply =
            request_with_timeout(&self.http, &head, body.as_bytes(), Duration::from_secs(120))
                .unwrap_or_else(|err| panic!("{command} over HTTP: {err}"));
        self.http_bodies.borrow_mut().push(reply.text());
        reply
    }

    /// The request on `cairn/<device>/cmd/dockyard/COMMAND`; the reply
    /// envelope from `cairn/<device>/resp/dockyard/COMMAND`.
    fn mqtt(&self, command: &str, payload: &Value) -> Value {
        let id = unique_id(command);
        let message = json!({"id": id, "payload": payload}).to_string();
        let topic = format!("cairn/{}/resp/dockyard/{command}", self.device);
        let deadline = Instant::now() + Duration::from_secs(120);
        // The first request may beat the adapter's subscription: send again
        // until answered (the adapter runs an id once, however often it comes).
        let mut next_send = Instant::now();
        loop {
            if Instant::now() >= next_send {
                self.broker.publish(
                    &format!("cairn/{}/cmd/dockyard/{command}", self.device),
                    &message,
                    None,
                );
                next_send = Instant::now() + Duration::from_secs(10);
            }
            let found = self.replies.messages().into_iter().find_map(|line| {
                let (on, body) = line.split_once(' ')?;
                let body: Value = serde_json::from_str(body).ok()?;
                (body["id"] == id.as_str()).then(|| (on.to_string(), body))
            });
            if let Some((on, body)) = found {
                assert_eq!(on, topic, "{command}: the reply's topic");
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "no MQTT reply to {command}:\n{}",
                self.daemon.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `COMMAND` through the CLI, the REST API and MQTT, each answering the
    /// same (for commands whose reply depends on nothing but the state);
    /// that reply.
    fn everywhere(&self, command: &str, payload: Value) -> Value {
        let cli = self
            .cli(command, &payload)
            .unwrap_or_else(|err| panic!("{command} through the CLI: {err:?}"));
        let http = self.rest(command, &payload);
        assert_eq!(http.status, 200, "{command} over HTTP: {}", http.text());
        let http: Value = serde_json::from_slice(&http.body).unwrap();
        let mqtt = self.mqtt(command, &payload);
        assert_eq!(mqtt["ok"], true, "{command} over MQTT: {mqtt}");
        assert_eq!(http, cli, "{command}: REST and the CLI disagree");
        assert_eq!(mqtt["result"], cli, "{command}: MQTT and the CLI disagree");
        cli
    }

    /// `COMMAND` refused through the CLI, the REST API (422 `plugin-error`
    /// with the plugin's code) and MQTT (`plugin-error` likewise), with the
    /// same code and message; the message.
    fn refused_everywhere(&self, command: &str, payload: Value, code: &str) -> String {
        let cli = self
            .cli(command, &payload)
            .expect_err(&format!("{command} {payload} through the CLI"));
        assert_eq!(
            cli.code, code,
            "{command} {payload} through the CLI: {cli:?}"
        );

        let http = self.rest(command, &payload);
        let body: Value = serde_json::from_slice(&http.body).unwrap_or_default();
        assert_eq!(
            (
                http.status,
                &body["error"]["code"],
                &body["error"]["plugin-code"]
            ),
            (422, &json!("plugin-error"), &json!(code)),
            "{command} {payload} over HTTP: {}",
            http.text()
        );
        let http = Refusal {
            code: code.to_string(),
            message: body["error"]["message"].as_str().unwrap().to_string(),
        };

        let mqtt = self.mqtt(command, &payload);
        assert_eq!(
            (
                &mqtt["ok"],
                &mqtt["error"]["code"],
                &mqtt["error"]["plugin-code"]
            ),
            (&json!(false), &json!("plugin-error"), &json!(code)),
            "{command} {payload} over MQTT: {mqtt}"
        );
        let mqtt = Refusal {
            code: code.to_string(),
            message: mqtt["error"]["message"].as_str().unwrap().to_string(),
        };
        assert_eq!(http, cli, "{command} {payload}: REST and the CLI disagree");
        assert_eq!(mqtt, cli, "{command} {payload}: MQTT and the CLI disagree");
        cli.message
    }

    fn running(&self) -> usize {
        let tasks = self.containerd.ctr(&self.namespace, &["tasks", "ls"]);
        tasks
            .lines()
            .filter(|line| line.contains("RUNNING"))
            .count()
    }
}

#[test]
fn service_commands_reach_both_adapters_as_the_cli_and_never_carry_a_secret() {
    let bed = bed(1);

    // The dry run: the same plan three ways, the generated password masked.
    let plan = bed.everywhere("plan", json!({"service": "db", "options": {}}));
    assert_eq!(plan["image"]["digest"], bed.digest("db"), "{plan:#}");
    assert_eq!(plan["image"]["label"], "io.nanocloud.options");
    let password = harness::dockyard::option(&plan, "secret_password");
    assert_eq!(
        (&password["value"], &password["secret"]),
        (&json!("<secret>"), &json!(true)),
        "{plan:#}"
    );
    assert_eq!(
        harness::dockyard::option(&plan, "resolver")["value"],
        "10.0.0.53"
    );

    // Typed refusals, the same code and message whichever way they came.
    let typo = bed.refused_everywhere(
        "plan",
        json!({"service": "db", "options": {"pasword": "x"}}),
        "invalid",
    );
    assert!(typo.contains("pasword"), "{typo}");
    let broken = bed.refused_everywhere("plan", json!({"service": "broken"}), "invalid");
    assert!(
        broken.contains("seed") && broken.contains("emoji"),
        "{broken}"
    );
    let no_provider = bed.refused_everywhere(
        "plan",
        json!({"service": "app", "options": {"database": "db"}}),
        "not-found",
    );
    assert!(no_provider.contains("db"), "{no_provider}");
    let not_installed = bed.refused_everywhere("uninstall", json!({"service": "db"}), "not-found");
    assert!(
        not_installed.contains("db is not installed"),
        "{not_installed}"
    );
    assert_eq!(bed.running(), 0, "a refused command started a container");

    // Installed over REST; the same install over MQTT and through the CLI
    // then finds nothing to do, and says so alike.
    let installed = bed.rest("install", &json!({"service": "db", "options": {}}));
    assert_eq!(installed.status, 200, "{}", installed.text());
    let installed: Value = serde_json::from_slice(&installed.body).unwrap();
    assert_eq!(
        (&installed["changed"], &installed["digest"]),
        (&json!(true), &json!(bed.digest("db"))),
        "{installed}"
    );
    assert_eq!(bed.running(), 1, "{installed}");
    let over_mqtt = bed.mqtt("install", &json!({"service": "db", "options": {}}));
    assert_eq!(over_mqtt["ok"], true, "{over_mqtt}");
    assert_eq!(over_mqtt["result"]["changed"], false, "{over_mqtt}");
    let from_cli = bed
        .cli("install", &json!({"service": "db", "options": {}}))
        .unwrap();
    assert_eq!(over_mqtt["result"], from_cli);
    assert_eq!(bed.running(), 1);
    let secret =
        std::fs::read_to_string(bed.state.path().join("services/db/secrets/secret_password"))
            .unwrap();
    assert_eq!(secret.len(), 24, "{secret:?}");

    // A consumer installed over MQTT: its binding step runs in db with the
    // password, and what it printed is kept masked.
    let app = bed.mqtt(
        "install",
        &json!({"service": "app", "options": {"database": "db"}}),
    );
    assert_eq!(app["ok"], true, "{app}");
    assert_eq!(
        app["result"]["bindings"][0]["outcome"], "succeeded",
        "{app}"
    );
    assert_eq!(bed.running(), 2);

    let listed = bed.everywhere("list", json!(null));
    let services: Vec<(&Value, &Value, &Value)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|service| {
            (
                &service["service"],
                &service["running"],
                &service["providers"],
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            (&json!("app"), &json!(true), &json!(["db"])),
            (&json!("db"), &json!(true), &json!([]))
        ],
        "{listed:#}"
    );
    let steps = bed.everywhere("bindings", json!({"service": "app"}));
    let step = &steps[0];
    assert_eq!(
        (&step["id"], &step["outcome"]),
        (&json!("bindings.create_user"), &json!("succeeded")),
        "{steps:#}"
    );
    assert_eq!(step["command"][3], "<secret>", "{steps:#}");
    let output = step["output"].as_str().unwrap();
    assert!(
        output.contains("creating 5432") && output.contains("<secret>"),
        "{output}"
    );

    // A provider in use is kept, whoever asks.
    let in_use = bed.refused_everywhere("uninstall", json!({"service": "db"}), "conflict");
    assert!(in_use.contains("used by app"), "{in_use}");

    // Removed through one adapter each; then gone for all three.
    let removed = bed.rest("uninstall", &json!({"service": "app"}));
    assert_eq!(removed.status, 200, "{}", removed.text());
    let removed: Value = serde_json::from_slice(&removed.body).unwrap();
    assert_eq!(removed, json!({"service": "app", "removed": true}));
    let removed = bed.mqtt("uninstall", &json!({"service": "db"}));
    assert_eq!(
        removed["result"],
        json!({"service": "db", "removed": true}),
        "{removed}"
    );
    assert_eq!(bed.everywhere("list", json!(null)), json!([]));
    bed.refused_everywhere("uninstall", json!({"service": "db"}), "not-found");
    assert_eq!(bed.running(), 0);
    assert!(!bed.state.path().join("services/db").exists());

    // The password went nowhere but its own file.
    let bodies = bed.http_bodies.borrow();
    assert!(bodies.len() >= 10, "{} REST replies", bodies.len());
    assert!(
        !bodies.iter().any(|body| body.contains(&secret)),
        "the password in a REST reply"
    );
    let messages = bed.replies.messages();
    assert!(messages.len() >= 10, "{} MQTT replies", messages.len());
    assert!(
        !messages.iter().any(|message| message.contains(&secret)),
        "the password in an MQTT reply"
    );
    assert!(
        !bed.daemon.daemon_log().contains(&secret),
        "the password in the daemon log"
    );
}

#[test]
fn unsigned_service_images_are_refused_through_every_adapter() {
    let bed = bed(2);

    // Signed by a key the policy names: planned.
    let signed = bed.everywhere("plan", json!({"service": "db"}));
    assert_eq!(signed["image"]["digest"], bed.digest("db"), "{signed:#}");

    // Unsigned, or signed by a key the daemon trusts but the policy does
    // not name: refused before anything is pulled, whatever the command.
    for service in ["unsigned", "foreign"] {
        for command in ["plan", "install"] {
            let refusal = bed.refused_everywhere(command, json!({"service": service}), "denied");
            assert!(
                refusal.contains("not signed") && refusal.contains(&format!("dockyard/{service}")),
                "{command} {service}: {refusal}"
            );
        }
    }
    assert_eq!(bed.everywhere("list", json!(null)), json!([]));
    assert_eq!(bed.running(), 0, "a refused image runs");
    let containers = bed
        .containerd
        .ctr(&bed.namespace, &["containers", "ls", "-q"]);
    assert_eq!(containers.trim(), "", "a refused image has a container");
    let stored = bed.containerd.ctr(&bed.namespace, &["images", "ls", "-q"]);
    assert!(
        stored.contains("dockyard/db")
            && !stored.contains("dockyard/unsigned")
            && !stored.contains("dockyard/foreign"),
        "{stored}"
    );
    for service in ["unsigned", "foreign"] {
        assert!(
            !bed.state.path().join("services").join(service).exists(),
            "files for {service}"
        );
    }
}
