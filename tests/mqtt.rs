//! The MQTT capability against a real mosquitto broker: publishing and
//! receiving, password and mutual-TLS authentication, grants, `{device}`,
//! payload limits, reconnection and the last will.

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::mosquitto::{Auth, Mosquitto};
use harness::{Daemon, Options, cairn_bin, plugin_wasm, variant};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const PROBE: &str = "mqtt-probe";

/// `[mqtt.brokers.local]` for `broker`, plus extra keys.
fn broker_config(broker: &Mosquitto, extra: &str) -> String {
    format!(
        "[mqtt.brokers.local]\nurl = \"{}\"\nreconnect-min = \"100ms\"\nreconnect-max = \"1s\"\n{extra}",
        broker.url()
    )
}

fn daemon_with(broker_toml: String, device_id: Option<&str>) -> Daemon {
    let daemon = Daemon::start_with(Options {
        extra_config: broker_toml,
        device_id: device_id.map(str::to_string),
        ..Options::default()
    });
    daemon.install(&plugin_wasm("mqtt_probe")).unwrap();
    daemon
}

fn connections(daemon: &Daemon) -> usize {
    daemon
        .daemon_log()
        .matches("connected to the mqtt broker")
        .count()
}

fn wait_connected(daemon: &Daemon, at_least: usize) {
    assert!(
        daemon.eventually(WAIT, || connections(daemon) >= at_least),
        "the daemon did not connect:\n{}",
        daemon.daemon_log()
    );
}

fn publish(daemon: &Daemon, topic: &str, payload: &str, qos: u8) -> Result<Value, String> {
    daemon.call(
        PROBE,
        "publish",
        &json!({"broker": "local", "topic": topic, "payload": payload, "qos": qos}).to_string(),
    )
}

fn subscribe(daemon: &Daemon, filter: &str, qos: u8) -> Result<Value, String> {
    daemon.call(
        PROBE,
        "subscribe",
        &json!({"broker": "local", "filter": filter, "qos": qos}).to_string(),
    )
}

fn received(daemon: &Daemon) -> Vec<Value> {
    daemon
        .call(PROBE, "received", "null")
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Publishes with `mosquitto_pub` until the plugin has received `payload` on
/// `topic` (the broker may not have processed the host's SUBSCRIBE yet).
fn delivered(
    daemon: &Daemon,
    broker: &Mosquitto,
    topic: &str,
    payload: &str,
    auth: Option<(&str, &str)>,
) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        broker.publish(topic, payload, auth);
        let arrived = daemon.eventually(Duration::from_millis(500), || {
            received(daemon)
                .iter()
                .any(|event| event["topic"] == topic && event["payload"] == payload)
        });
        if arrived {
            return true;
        }
    }
    false
}

/// An owner-only file holding `password`.
fn password_file(dir: &Path, password: &str, mode: u32) -> PathBuf {
    let path = dir.join(format!("mqtt-password-{mode:o}"));
    std::fs::write(&path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn anonymous_publish_reaches_subscribers_at_the_broker() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = daemon_with(broker_config(&broker, ""), None);
    wait_connected(&daemon, 1);
    let subscriber = broker.subscribe("probe/out/#", None);
    publish(&daemon, "probe/out/a", "hello", 1).unwrap();
    publish(&daemon, "probe/out/b", "at most once", 0).unwrap();
    assert!(
        subscriber.wait_for("probe/out/a hello", WAIT),
        "{:?}",
        subscriber.messages()
    );
    assert!(
        subscriber.wait_for("probe/out/b at most once", WAIT),
        "{:?}",
        subscriber.messages()
    );
}

#[test]
fn broker_messages_reach_the_plugin_with_topic_and_source() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = daemon_with(broker_config(&broker, ""), None);
    wait_connected(&daemon, 1);
    subscribe(&daemon, "probe/in/+", 1).unwrap();
    assert!(
        delivered(&daemon, &broker, "probe/in/x", "hi", None),
        "{:?}\n{}",
        received(&daemon),
        daemon.daemon_log()
    );
    let events = received(&daemon);
    let event = events
        .iter()
        .find(|event| event["payload"] == "hi")
        .unwrap();
    assert_eq!(event["source"], "mqtt:local");
    // Outside the subscription: never delivered.
    broker.publish("probe/in/x/deeper", "no", None);
    broker.publish("probe/other", "no", None);
    assert!(delivered(&daemon, &broker, "probe/in/y", "later", None));
    assert!(
        received(&daemon)
            .iter()
            .all(|event| event["payload"] != "no"),
        "{:?}",
        received(&daemon)
    );

    // After unsubscribing, nothing more arrives.
    let answer = daemon
        .call(
            PROBE,
            "unsubscribe",
            r#"{"broker": "local", "filter": "probe/in/+"}"#,
        )
        .unwrap();
    assert_eq!(answer["existed"], true);
    let before = received(&daemon).len();
    // A marker on a second subscription shows the broker processed our
    // UNSUBSCRIBE before it (requests are sent in order).
    subscribe(&daemon, "probe/in/marker/#", 0).unwrap();
    broker.publish("probe/in/z", "gone", None);
    assert!(delivered(&daemon, &broker, "probe/in/marker/1", "m", None));
    broker.publish("probe/in/z", "gone", None);
    let after: Vec<Value> = received(&daemon).split_off(before);
    assert!(
        after.iter().all(|event| event["payload"] != "gone"),
        "{after:?}"
    );
}

#[test]
fn password_authentication() {
    let broker = Mosquitto::start(Auth::Password {
        user: "cairn".into(),
        password: "s3cret-pw".into(),
    });
    let secrets = tempfile::tempdir().unwrap();
    let good = password_file(secrets.path(), "s3cret-pw", 0o600);
    let daemon = daemon_with(
        broker_config(
            &broker,
            &format!("username = \"cairn\"\npassword-file = {:?}\n", good),
        ),
        None,
    );
    wait_connected(&daemon, 1);
    let subscriber = broker.subscribe("probe/out/#", Some(("cairn", "s3cret-pw")));
    publish(&daemon, "probe/out/auth", "ok", 1).unwrap();
    assert!(subscriber.wait_for("probe/out/auth ok", WAIT));
    assert!(!daemon.daemon_log().contains("s3cret-pw"));
}

#[test]
fn a_wrong_password_is_reported_and_qos0_publishing_is_unavailable() {
    let broker = Mosquitto::start(Auth::Password {
        user: "cairn".into(),
        password: "s3cret-pw".into(),
    });
    let secrets = tempfile::tempdir().unwrap();
    let wrong = password_file(secrets.path(), "not-the-pw", 0o600);
    let daemon = daemon_with(
        broker_config(
            &broker,
            &format!("username = \"cairn\"\npassword-file = {:?}\n", wrong),
        ),
        None,
    );
    assert!(
        daemon.eventually(WAIT, || daemon
            .daemon_log()
            .contains("the broker refused the connection")),
        "{}",
        daemon.daemon_log()
    );
    let error = publish(&daemon, "probe/out/x", "x", 0).unwrap_err();
    assert!(error.contains("unavailable"), "{error}");
    // QoS 1 waits in the outbox for a connection instead.
    publish(&daemon, "probe/out/x", "x", 1).unwrap();
    let log = daemon.daemon_log();
    assert!(!log.contains("not-the-pw"), "{log}");
    assert_eq!(connections(&daemon), 0);
}

#[test]
fn a_password_file_readable_by_others_stops_the_daemon() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let loose = password_file(dir.path(), "s3cret-pw", 0o644);
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "state-dir = \"state\"\npolicy-dir = \"policies\"\nadmin-socket = \"admin.sock\"\n{}",
            broker_config(
                &broker,
                &format!("username = \"cairn\"\npassword-file = {loose:?}\n")
            )
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let out = Command::new(cairn_bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("accessible by group or others"), "{stderr}");
    assert!(stderr.contains("[mqtt.brokers.local]"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

#[test]
fn mutual_tls() {
    let broker = Mosquitto::start(Auth::MutualTls);
    let certs = broker.certs.as_ref().unwrap();
    let daemon = daemon_with(
        broker_config(
            &broker,
            &format!(
                "ca-file = {:?}\ncert-file = {:?}\nkey-file = {:?}\n",
                certs.ca, certs.client_cert, certs.client_key
            ),
        ),
        None,
    );
    wait_connected(&daemon, 1);
    let subscriber = broker.subscribe("probe/out/#", None);
    publish(&daemon, "probe/out/tls", "secure", 2).unwrap();
    assert!(
        subscriber.wait_for("probe/out/tls secure", WAIT),
        "{:?}",
        subscriber.messages()
    );
    subscribe(&daemon, "probe/in/#", 2).unwrap();
    assert!(delivered(&daemon, &broker, "probe/in/tls", "back", None));
}

#[test]
fn a_tls_broker_refuses_a_daemon_without_a_client_certificate() {
    let broker = Mosquitto::start(Auth::MutualTls);
    let certs = broker.certs.as_ref().unwrap();
    let daemon = daemon_with(
        broker_config(&broker, &format!("ca-file = {:?}\n", certs.ca)),
        None,
    );
    assert!(
        daemon.eventually(WAIT, || daemon
            .daemon_log()
            .contains("mqtt broker unreachable")),
        "{}",
        daemon.daemon_log()
    );
    assert_eq!(connections(&daemon), 0);
    let error = publish(&daemon, "probe/out/x", "x", 0).unwrap_err();
    assert!(error.contains("unavailable"), "{error}");
}

#[test]
fn calls_outside_the_grant_are_denied_and_audited() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = daemon_with(broker_config(&broker, ""), None);
    wait_connected(&daemon, 1);
    let error = publish(&daemon, "elsewhere/x", "x", 0).unwrap_err();
    assert!(error.contains("denied"), "{error}");
    let error = subscribe(&daemon, "#", 0).unwrap_err();
    assert!(error.contains("denied"), "{error}");
    let error = subscribe(&daemon, "probe/+/x", 0).unwrap_err();
    assert!(error.contains("denied"), "{error}");
    let error = daemon
        .call(
            PROBE,
            "publish",
            r#"{"broker": "nowhere", "topic": "probe/out/x", "payload": "x"}"#,
        )
        .unwrap_err();
    assert!(error.contains("not-found"), "{error}");
    let error = publish(&daemon, "probe/out/+", "x", 0).unwrap_err();
    assert!(error.contains("invalid"), "{error}");
    let log = daemon.daemon_log();
    let audits: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("cairn::audit") && line.contains("mqtt"))
        .collect();
    assert_eq!(audits.len(), 3, "{log}");
    assert!(audits[0].contains("elsewhere/x"), "{}", audits[0]);
    // The daemon and the plugin keep working.
    publish(&daemon, "probe/out/fine", "x", 0).unwrap();
}

#[test]
fn a_plugin_without_the_grant_cannot_be_installed() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = Daemon::start_with(Options {
        extra_config: broker_config(&broker, ""),
        ..Options::default()
    });
    daemon.write_policy(
        PROBE,
        "[plugin]\nname = \"mqtt-probe\"\nsigners = [\"dev\"]\n[grants.log]\n",
    );
    let error = daemon.install(&plugin_wasm("mqtt_probe")).unwrap_err();
    assert!(error.contains("[grants.mqtt]"), "{error}");
}

#[test]
fn device_placeholder_in_grants_and_filters() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = daemon_with(broker_config(&broker, ""), Some("pump-7"));
    wait_connected(&daemon, 1);
    let subscriber = broker.subscribe("devices/#", None);
    publish(&daemon, "devices/pump-7/status", "up", 1).unwrap();
    assert!(subscriber.wait_for("devices/pump-7/status up", WAIT));
    let error = publish(&daemon, "devices/pump-8/status", "up", 1).unwrap_err();
    assert!(error.contains("denied"), "{error}");

    let error = subscribe(&daemon, "devices/pump-8/cmd/#", 1).unwrap_err();
    assert!(error.contains("denied"), "{error}");
    let error = subscribe(&daemon, "devices/+/cmd/#", 1).unwrap_err();
    assert!(error.contains("denied"), "{error}");
    // The plugin may write the placeholder itself, or the concrete id.
    subscribe(&daemon, "devices/{device}/cmd/#", 1).unwrap();
    assert!(delivered(
        &daemon,
        &broker,
        "devices/pump-7/cmd/start",
        "go",
        None
    ));
    subscribe(&daemon, "devices/pump-7/cmd/stop", 1).unwrap();
    broker.publish("devices/pump-8/cmd/start", "not me", None);
    assert!(delivered(
        &daemon,
        &broker,
        "devices/pump-7/cmd/stop",
        "halt",
        None
    ));
    assert!(
        received(&daemon)
            .iter()
            .all(|event| event["payload"] != "not me")
    );
}

#[test]
fn oversized_payloads_are_refused() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = daemon_with(broker_config(&broker, ""), None);
    wait_connected(&daemon, 1);
    let subscriber = broker.subscribe("probe/out/#", None);
    let at_limit = json!({"broker": "local", "topic": "probe/out/big", "size": 1024, "qos": 1});
    daemon
        .call(PROBE, "publish", &at_limit.to_string())
        .unwrap();
    let over = json!({"broker": "local", "topic": "probe/out/big", "size": 1025, "qos": 1});
    let error = daemon
        .call(PROBE, "publish", &over.to_string())
        .unwrap_err();
    assert!(error.contains("quota-exceeded"), "{error}");
    assert!(subscriber.wait_for(&format!("probe/out/big {}", "x".repeat(1024)), WAIT));
    assert_eq!(
        subscriber.messages().len(),
        1,
        "{:?}",
        subscriber.messages()
    );
}

#[test]
fn the_host_reconnects_and_subscriptions_resume_after_a_broker_restart() {
    let mut broker = Mosquitto::start(Auth::Anonymous);
    let daemon = daemon_with(broker_config(&broker, ""), None);
    wait_connected(&daemon, 1);
    subscribe(&daemon, "probe/in/#", 1).unwrap();
    assert!(delivered(&daemon, &broker, "probe/in/a", "before", None));

    let connected = |daemon: &Daemon| {
        let metrics = String::from_utf8_lossy(&daemon.cli(&["metrics"]).stdout).to_string();
        metrics.contains("cairn_mqtt_connected{broker=\"local\"} 1")
    };
    assert!(connected(&daemon), "the metric says connected");

    broker.stop();
    assert!(
        daemon.eventually(WAIT, || publish(&daemon, "probe/out/x", "x", 0)
            .is_err_and(|error| error.contains("unavailable"))),
        "{}",
        daemon.daemon_log()
    );
    assert!(!connected(&daemon), "the metric says disconnected");
    broker.restart();
    wait_connected(&daemon, 2);
    assert!(connected(&daemon));
    // mosquitto runs without persistence: only the host's re-subscription
    // can make this arrive.
    assert!(
        delivered(&daemon, &broker, "probe/in/b", "after", None),
        "{:?}\n{}",
        received(&daemon),
        daemon.daemon_log()
    );
    let subscriber = broker.subscribe("probe/out/#", None);
    publish(&daemon, "probe/out/back", "again", 1).unwrap();
    assert!(subscriber.wait_for("probe/out/back again", WAIT));
}

#[test]
fn the_last_will_is_published_when_the_daemon_is_killed() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let mut daemon = daemon_with(
        broker_config(
            &broker,
            "keep-alive = \"5s\"\n[mqtt.brokers.local.last-will]\ntopic = \"devices/{device}/status\"\npayload = \"offline {device}\"\nqos = 1\nretain = true\n",
        ),
        Some("pump-7"),
    );
    wait_connected(&daemon, 1);
    let subscriber = broker.subscribe("devices/+/status", None);
    assert!(subscriber.messages().is_empty());
    daemon.kill9();
    assert!(
        subscriber.wait_for("devices/pump-7/status offline pump-7", WAIT),
        "{:?}\n{}",
        subscriber.messages(),
        broker.log()
    );
    // Retained: a later subscriber sees it too.
    let late = broker.subscribe("devices/pump-7/status", None);
    assert!(late.wait_for("devices/pump-7/status offline pump-7", WAIT));
}

#[test]
fn a_graceful_stop_disconnects_without_the_last_will() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let mut daemon = daemon_with(
        broker_config(
            &broker,
            "[mqtt.brokers.local.last-will]\ntopic = \"devices/{device}/status\"\npayload = \"offline\"\n",
        ),
        Some("pump-7"),
    );
    wait_connected(&daemon, 1);
    let subscriber = broker.subscribe("devices/+/status", None);
    daemon.terminate();
    assert!(
        daemon
            .daemon_log()
            .contains("disconnected from the mqtt broker"),
        "{}",
        daemon.daemon_log()
    );
    // Published after the daemon is gone: a will would have come first.
    broker.publish("devices/marker/status", "marker", None);
    assert!(subscriber.wait_for("devices/marker/status marker", WAIT));
    assert_eq!(
        subscriber.messages(),
        vec!["devices/marker/status marker".to_string()]
    );
}

/// mosquitto sends at most 20 unacknowledged QoS 1/2 messages to a client
/// (`max_inflight_messages`); all of these arrive only if the host acks them.
#[test]
fn qos_messages_are_acknowledged_so_the_broker_keeps_sending() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = daemon_with(broker_config(&broker, ""), None);
    wait_connected(&daemon, 1);
    subscribe(&daemon, "probe/in/#", 2).unwrap();
    assert!(delivered(&daemon, &broker, "probe/in/ready", "ready", None));
    for qos in [1, 2] {
        let lines: Vec<String> = (0..60).map(|n| format!("q{qos}-{n}")).collect();
        broker.publish_lines(&format!("probe/in/q{qos}"), &lines, qos);
        let all = daemon.eventually(WAIT, || {
            let events = received(&daemon);
            lines
                .iter()
                .all(|line| events.iter().any(|event| event["payload"] == line.as_str()))
        });
        assert!(all, "qos {qos}: {:?}", received(&daemon).len());
    }
}

/// A hot swap hands the subscription to the new release: the old instance's
/// end does not unsubscribe a filter the new one uses, and the new release
/// gets each message once.
#[test]
fn subscriptions_made_in_init_carry_over_a_hot_swap() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let daemon = Daemon::start_with(Options {
        extra_config: broker_config(&broker, ""),
        ..Options::default()
    });
    let policy = std::fs::read_to_string(daemon.root().join("policies/mqtt-probe.toml")).unwrap();
    daemon.write_policy(
        PROBE,
        &format!(
            "{policy}\n[config]\nsubscribe = [{{ broker = \"local\", filter = \"probe/in/#\", qos = 1 }}]\n"
        ),
    );
    daemon
        .install(&variant("mqtt-probe", "1.0.0", "ok"))
        .unwrap();
    wait_connected(&daemon, 1);
    assert!(delivered(&daemon, &broker, "probe/in/v1", "one", None));

    daemon
        .install(&variant("mqtt-probe", "2.0.0", "ok"))
        .unwrap();
    assert_eq!(
        daemon.call(PROBE, "version", "null").unwrap()["version"],
        "2.0.0"
    );
    assert!(
        delivered(&daemon, &broker, "probe/in/v2", "two", None),
        "{}",
        daemon.daemon_log()
    );
    // In order from one connection: when the marker is in, so is every copy of `single`.
    broker.publish_lines("probe/in/once", &["single".into(), "marker".into()], 1);
    assert!(daemon.eventually(WAIT, || {
        received(&daemon)
            .iter()
            .any(|event| event["payload"] == "marker")
    }));
    let copies = received(&daemon)
        .iter()
        .filter(|event| event["payload"] == "single")
        .count();
    assert_eq!(copies, 1);
}
