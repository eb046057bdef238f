//! The host's MQTT outbox: QoS 1/2 messages published while the broker is
//! unreachable are kept on disk, bounded (oldest dropped and counted), and
//! delivered in order once the connection is back — also after the daemon was
//! killed in between.

mod harness;

use std::time::Duration;

use harness::mosquitto::{Auth, Mosquitto};
use harness::proxy::Gate;
use harness::{Daemon, Options, plugin_wasm};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn metric(daemon: &Daemon, series: &str) -> Option<u64> {
    let out = daemon.cli(&["metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn publish(
    daemon: &Daemon,
    topic: &str,
    payload: &str,
    qos: u8,
) -> Result<serde_json::Value, String> {
    daemon.call(
        "mqtt-probe",
        "publish",
        &json!({"broker": "local", "topic": topic, "payload": payload, "qos": qos}).to_string(),
    )
}

#[test]
fn messages_wait_through_a_network_cut_and_a_restart_and_arrive_in_order() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let gate = Gate::start(&broker.url().replace("mqtt://", ""));
    let mut daemon = Daemon::start_with(Options {
        extra_config: format!(
            "[mqtt.brokers.local]\nurl = \"mqtt://{}\"\nreconnect-min = \"100ms\"\nreconnect-max = \"500ms\"\noutbox-messages = 5\n",
            gate.address
        ),
        ..Options::default()
    });
    daemon.install(&plugin_wasm("mqtt_probe")).unwrap();
    let connected = "cairn_mqtt_connected{broker=\"local\"}";
    assert!(daemon.eventually(WAIT, || metric(&daemon, connected) == Some(1)));
    let subscriber = broker.subscribe("probe/out/#", None);
    publish(&daemon, "probe/out/seq", "0", 1).unwrap();
    assert!(subscriber.wait_for("probe/out/seq 0", WAIT));

    gate.close();
    assert!(daemon.eventually(WAIT, || metric(&daemon, connected) == Some(0)));
    // QoS 0 is never queued.
    let refused = publish(&daemon, "probe/out/seq", "lost", 0).unwrap_err();
    assert!(refused.contains("unavailable"), "{refused}");
    for n in 1..=8 {
        publish(&daemon, "probe/out/seq", &n.to_string(), 1).unwrap();
    }
    let waiting = "cairn_mqtt_outbox_messages{broker=\"local\"}";
    let dropped = "cairn_mqtt_outbox_dropped_total{broker=\"local\"}";
    assert_eq!(metric(&daemon, waiting), Some(5));
    assert_eq!(metric(&daemon, dropped), Some(3));

    // A power cut while they wait: the outbox is on disk.
    daemon.kill9();
    daemon.restart();
    assert_eq!(metric(&daemon, waiting), Some(5));
    gate.open();
    assert!(
        subscriber.wait_for("probe/out/seq 8", WAIT),
        "{:?}\n{}",
        subscriber.messages(),
        daemon.daemon_log()
    );
    let delivered: Vec<String> = subscriber
        .messages()
        .into_iter()
        .filter_map(|line| line.strip_prefix("probe/out/seq ").map(str::to_string))
        .collect();
    assert_eq!(delivered, ["0", "4", "5", "6", "7", "8"]);
    assert!(daemon.eventually(WAIT, || metric(&daemon, waiting) == Some(0)));

    // Connected and empty again: messages go straight out.
    publish(&daemon, "probe/out/seq", "9", 1).unwrap();
    assert!(subscriber.wait_for("probe/out/seq 9", WAIT));
}

#[test]
fn a_disabled_outbox_refuses_while_disconnected() {
    let broker = Mosquitto::start(Auth::Anonymous);
    let gate = Gate::start(&broker.url().replace("mqtt://", ""));
    let daemon = Daemon::start_with(Options {
        extra_config: format!(
            "[mqtt.brokers.local]\nurl = \"mqtt://{}\"\noutbox-messages = 0\n",
            gate.address
        ),
        ..Options::default()
    });
    daemon.install(&plugin_wasm("mqtt_probe")).unwrap();
    let connected = "cairn_mqtt_connected{broker=\"local\"}";
    assert!(daemon.eventually(WAIT, || metric(&daemon, connected) == Some(1)));
    gate.close();
    assert!(daemon.eventually(WAIT, || metric(&daemon, connected) == Some(0)));
    let refused = publish(&daemon, "probe/out/x", "x", 1).unwrap_err();
    assert!(refused.contains("unavailable"), "{refused}");
}
