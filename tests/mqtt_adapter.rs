//! The `mqtt-adapter` plugin against a real mosquitto and registry: commands
//! and replies with correlation ids, device operations, bad input, duplicate
//! commands, state and health reports, birth and last will, and installs over
//! the air — including the adapter replacing itself, and a release that fails
//! its readiness.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::mosquitto::{Auth, Mosquitto, Subscriber};
use harness::proxy::Gate;
use harness::registry::TestRegistry;
use harness::{Daemon, Options, plugin_wasm, variant, workspace};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const DEVICE: &str = "dev-1";

struct Device {
    broker: Mosquitto,
    daemon: Daemon,
    replies: Subscriber,
}

/// The adapter's policy with reports every `interval` seconds.
fn adapter_policy(interval: u64) -> String {
    std::fs::read_to_string(workspace().join("policies/mqtt-adapter.toml"))
        .unwrap()
        .replace(
            "report-interval-secs = 30",
            &format!("report-interval-secs = {interval}"),
        )
}

fn start(
    broker: Mosquitto,
    broker_address: &str,
    extra: &str,
    registry: Option<&TestRegistry>,
) -> Device {
    let daemon = Daemon::start_with(Options {
        device_id: Some(DEVICE.into()),
        insecure_registries: registry
            .map(|r| vec![r.address.clone()])
            .unwrap_or_default(),
        extra_config: format!(
            "[mqtt.brokers.local]\nurl = \"mqtt://{broker_address}\"\nreconnect-min = \"100ms\"\nreconnect-max = \"500ms\"\n{extra}"
        ),
        ..Options::default()
    });
    daemon.write_policy("mqtt-adapter", &adapter_policy(30));
    let replies = broker.subscribe(&format!("cairn/{DEVICE}/resp/#"), None);
    daemon.install(&plugin_wasm("mqtt_adapter")).unwrap();
    let device = Device {
        broker,
        daemon,
        replies,
    };
    // The adapter answers once its subscription is in place.
    let deadline = Instant::now() + WAIT;
    loop {
        device.send("host", "list", "ready", json!(null));
        if device.try_reply("ready", Duration::from_secs(1)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the adapter never answered:\n{}",
            device.daemon.daemon_log()
        );
    }
    device
}

impl Device {
    fn send_raw(&self, target: &str, command: &str, payload: &str) {
        self.broker.publish(
            &format!("cairn/{DEVICE}/cmd/{target}/{command}"),
            payload,
            None,
        );
    }

    fn send(&self, target: &str, command: &str, id: &str, payload: Value) {
        self.send_raw(
            target,
            command,
            &json!({"id": id, "payload": payload}).to_string(),
        );
    }

    /// Every reply received so far, as `(topic, body)`.
    fn all_replies(&self) -> Vec<(String, Value)> {
        self.replies
            .messages()
            .iter()
            .filter_map(|line| {
                let (topic, body) = line.split_once(' ')?;
                Some((topic.to_string(), serde_json::from_str(body).ok()?))
            })
            .collect()
    }

    fn try_reply(&self, id: &str, wait: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(found) = self
                .all_replies()
                .into_iter()
                .find(|(_, body)| body["id"] == id)
            {
                return Some(found);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn reply(&self, id: &str) -> Value {
        self.try_reply(id, WAIT)
            .unwrap_or_else(|| panic!("no reply to {id}:\n{}", self.daemon.daemon_log()))
            .1
    }

    fn call(&self, target: &str, command: &str, id: &str, payload: Value) -> Value {
        self.send(target, command, id, payload);
        self.reply(id)
    }
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "{reply}");
    reply["error"]["code"].as_str().unwrap()
}

#[test]
fn commands_reach_plugins_and_the_device_with_their_correlation_ids() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let address = broker.url().replace("mqtt://", "");
    let device = start(broker, &address, "", None);
    device.daemon.install(&plugin_wasm("echo")).unwrap();
    device.daemon.install(&plugin_wasm("counter")).unwrap();

    let (topic, reply) = device.try_reply("ready", WAIT).unwrap();
    assert_eq!(topic, format!("cairn/{DEVICE}/resp/host/list"));
    assert_eq!(reply["served_by"], "0.1.0");

    let echoed = device.call("echo", "echo", "e1", json!({"hello": [1, 2]}));
    assert_eq!(echoed["ok"], true, "{echoed}");
    assert_eq!(echoed["result"], json!({"hello": [1, 2]}));
    let (topic, _) = device.try_reply("e1", WAIT).unwrap();
    assert_eq!(topic, format!("cairn/{DEVICE}/resp/echo/echo"));

    let listed = device.call("host", "list", "l1", json!(null));
    let names: Vec<&str> = listed["result"]["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counter", "echo", "mqtt-adapter"]);
    let health = device.call("host", "health", "h1", json!(null));
    assert_eq!(health["result"]["status"], "ok", "{health}");
    let metrics = device.call("host", "metrics", "m1", json!(null));
    assert!(
        metrics["result"]
            .as_str()
            .unwrap()
            .contains("cairn_plugin_calls_total{plugin=\"echo\"}")
    );

    // Bad input: each a clear error reply, and the adapter keeps serving.
    assert_eq!(
        error_code(&device.call("nobody", "x", "b1", json!(null))),
        "not-found"
    );
    let unknown = device.call("echo", "bogus", "b2", json!(null));
    assert_eq!(error_code(&unknown), "plugin-error");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bogus")
    );
    assert_eq!(
        error_code(&device.call("host", "reboot", "b3", json!(null))),
        "not-found"
    );
    assert_eq!(
        error_code(&device.call("host", "install", "b4", json!({"src": 1}))),
        "invalid"
    );
    device.send_raw(
        "echo",
        "echo",
        r#"{"id": "b5", "payload": 1, "reply-to": "x"}"#,
    );
    assert_eq!(error_code(&device.reply("b5")), "invalid");
    device.send_raw("echo", "echo", "not json at all");
    assert!(device.daemon.eventually(WAIT, || {
        device
            .all_replies()
            .iter()
            .any(|(_, body)| body["id"].is_null() && body["error"]["code"] == "invalid")
    }));
    let oversized = format!(r#"{{"id": "big", "payload": "{}"}}"#, "x".repeat(70 * 1024));
    device.send_raw("echo", "echo", &oversized);
    assert!(device.daemon.eventually(WAIT, || {
        device
            .all_replies()
            .iter()
            .any(|(_, body)| body["error"]["code"] == "too-large")
    }));
    device.send_raw("echo", "echo/extra", r#"{"id": "b6"}"#);
    assert_eq!(error_code(&device.reply("b6")), "invalid");

    // The same correlation id twice: executed once, answered twice alike.
    let first = device.call("counter", "increment", "once", json!(null));
    assert_eq!(first["result"]["count"], 1, "{first}");
    device.send("counter", "increment", "once", json!(null));
    assert!(device.daemon.eventually(WAIT, || {
        device
            .all_replies()
            .iter()
            .filter(|(_, body)| body["id"] == "once")
            .count()
            == 2
    }));
    let again = device.call("counter", "increment", "twice", json!(null));
    assert_eq!(again["result"]["count"], 2, "the duplicate ran: {again}");
    assert!(
        device
            .all_replies()
            .iter()
            .filter(|(_, b)| b["id"] == "once")
            .all(|(_, b)| *b == first)
    );
}

#[test]
fn duplicates_are_recognised_after_a_restart() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let address = broker.url().replace("mqtt://", "");
    let mut device = start(broker, &address, "", None);
    device.daemon.install(&plugin_wasm("counter")).unwrap();
    let first = device.call("counter", "increment", "c-1", json!(null));
    assert_eq!(first["result"]["count"], 1, "{first}");
    device.daemon.kill9();
    device.daemon.restart();
    device.send("counter", "increment", "c-1", json!(null));
    assert!(device.daemon.eventually(WAIT, || {
        device
            .all_replies()
            .iter()
            .filter(|(_, body)| body["id"] == "c-1")
            .count()
            == 2
    }));
    let next = device.call("counter", "increment", "c-2", json!(null));
    assert_eq!(next["result"]["count"], 2, "{next}");
}

#[test]
fn state_and_health_reports_birth_and_last_will() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let address = broker.url().replace("mqtt://", "");
    let status = broker.subscribe(&format!("cairn/{DEVICE}/status"), None);
    let events = broker.subscribe(&format!("cairn/{DEVICE}/events/#"), None);
    let lifecycle = "keep-alive = \"2s\"\n\
        [mqtt.brokers.local.birth]\ntopic = \"cairn/{device}/status\"\npayload = \"online\"\nqos = 1\nretain = true\n\
        [mqtt.brokers.local.last-will]\ntopic = \"cairn/{device}/status\"\npayload = \"offline\"\nqos = 1\nretain = true\n";
    let mut device = start(broker, &address, lifecycle, None);
    device
        .daemon
        .write_policy("mqtt-adapter", &adapter_policy(1));
    device
        .daemon
        .install_forced(&variant("mqtt-adapter", "0.1.1", ""))
        .unwrap();
    assert!(status.wait_for(&format!("cairn/{DEVICE}/status online"), WAIT));
    let reports = |topic: &str| -> Vec<Value> {
        events
            .messages()
            .iter()
            .filter_map(|line| {
                serde_json::from_str(line.strip_prefix(&format!("cairn/{DEVICE}/events/{topic} "))?)
                    .ok()
            })
            .collect()
    };
    assert!(
        device
            .daemon
            .eventually(WAIT, || reports("state").len() >= 3
                && reports("health").len() >= 3)
    );
    let state = reports("state").pop().unwrap();
    assert_eq!(state["plugins"][0]["name"], "mqtt-adapter");
    assert_eq!(state["plugins"][0]["version"], "0.1.1");
    assert_eq!(reports("health").pop().unwrap()["status"], "ok");

    device.daemon.kill9();
    assert!(status.wait_for(&format!("cairn/{DEVICE}/status offline"), WAIT));
    device.daemon.restart();
    assert!(device.daemon.eventually(WAIT, || {
        status
            .messages()
            .last()
            .is_some_and(|line| line.ends_with(" online"))
    }));
}

/// Calls `versioned/increment` through the adapter in a loop, counting failures.
fn hammer(device: &Arc<Device>, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let (device, stop) = (device.clone(), stop.clone());
    std::thread::spawn(move || {
        let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let reply = device.call("versioned", "increment", &format!("h-{n}"), json!(null));
            if reply["ok"] == true { &ok } else { &failed }.fetch_add(1, Ordering::SeqCst);
            if reply["ok"] != true {
                eprintln!("failed call: {reply}");
            }
        }
        (ok.into_inner(), failed.into_inner())
    })
}

#[test]
fn installs_over_the_air_including_the_adapter_itself() {
    let registry = TestRegistry::start();
    let broker = Mosquitto::start(Auth::Anonymous);
    let address = broker.url().replace("mqtt://", "");
    let device = Arc::new(start(broker, &address, "", Some(&registry)));
    let daemon = &device.daemon;
    daemon
        .install(&variant("versioned", "1.0.0", "ok"))
        .unwrap();
    for (version, mode) in [("2.0.0", "ok"), ("3.0.0", "unhealthy")] {
        let reference = registry.reference(&format!("plugins/versioned:{version}"));
        daemon
            .push(&variant("versioned", version, mode), &reference, "dev", &[])
            .unwrap();
    }
    let adapter_v2 = registry.reference("plugins/mqtt-adapter:0.2.0");
    daemon
        .push(
            &variant("mqtt-adapter", "0.2.0", ""),
            &adapter_v2,
            "dev",
            &[],
        )
        .unwrap();

    // Version 2 while calls keep coming: none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = hammer(&device, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let source = registry.reference("plugins/versioned:2.0.0");
    let installed = device.call("host", "install", "i-2", json!({"source": source}));
    assert_eq!(installed["ok"], true, "{installed}");
    assert_eq!(installed["result"]["version"], "2.0.0");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = calls.join().unwrap();
    assert!(ok > 5, "only {ok} calls went through");
    assert_eq!(failed, 0, "calls failed during the swap");
    let version = device.call("versioned", "version", "v-2", json!(null));
    assert_eq!(version["result"]["version"], "2.0.0");

    // Version 3 never becomes ready: the reply says so, and 2 keeps serving.
    let source = registry.reference("plugins/versioned:3.0.0");
    let refused = device.call("host", "install", "i-3", json!({"source": source}));
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not ready") && message.contains("2.0.0 keeps serving"),
        "{refused}"
    );
    let version = device.call("versioned", "version", "v-3", json!(null));
    assert_eq!(version["result"]["version"], "2.0.0");

    // The adapter replaces itself; the reply comes from the new release.
    let replaced = device.call(
        "host",
        "install",
        "i-adapter",
        json!({"source": adapter_v2}),
    );
    assert_eq!(replaced["ok"], true, "{replaced}");
    assert_eq!(replaced["result"]["version"], "0.2.0");
    assert_eq!(replaced["served_by"], "0.2.0");
    let listed = device.call("host", "list", "after", json!(null));
    assert_eq!(listed["served_by"], "0.2.0");

    // Rollback and removal over MQTT.
    let rolled = device.call("host", "rollback", "rb", json!({"plugin": "versioned"}));
    assert_eq!(rolled["result"]["version"], "1.0.0", "{rolled}");
    let removed = device.call("host", "remove", "rm", json!({"plugin": "versioned"}));
    assert_eq!(removed["ok"], true, "{removed}");
    assert_eq!(
        error_code(&device.call("versioned", "version", "gone", json!(null))),
        "not-found"
    );
}

#[test]
fn a_reply_produced_during_a_network_cut_arrives_after_it() {
    let registry = TestRegistry::start();
    let broker = Mosquitto::start(Auth::Anonymous);
    let gate = Gate::start(&broker.url().replace("mqtt://", ""));
    let device = start(broker, &gate.address, "", Some(&registry));
    let reference = registry.reference("plugins/versioned:2.0.0");
    device
        .daemon
        .push(&variant("versioned", "2.0.0", "ok"), &reference, "dev", &[])
        .unwrap();
    device.send(
        "host",
        "install",
        "during-cut",
        json!({"source": reference}),
    );
    assert!(
        device
            .daemon
            .eventually(WAIT, || device.daemon.daemon_log().contains("during-cut"))
    );
    gate.close();
    assert!(
        device
            .try_reply("during-cut", Duration::from_secs(3))
            .is_none()
    );
    assert!(device.daemon.eventually(WAIT, || {
        device
            .daemon
            .plugins()
            .iter()
            .any(|(name, _, _)| name == "versioned")
    }));
    gate.open();
    let reply = device.reply("during-cut");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["version"], "2.0.0");
}
