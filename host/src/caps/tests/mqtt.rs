//! `cairn:host/mqtt` through the bench: the grant's topic patterns (global,
//! per broker, with `{device}`), the payload bound, and denials. The bench has
//! no brokers configured, so a call the grant allows ends in `not-found`.

use crate::caps::bench::{Bench, DEVICE, assert_denied, grants_of};
use crate::caps::mqtt::Mqtt;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::mqtt::{Host as _, Qos};

const GRANT: &str = r#"
[grants.mqtt]
publish = ["devices/{device}/status", "telemetry/#"]
subscribe = ["devices/{device}/cmd/#"]
max-payload = "8B"

[grants.mqtt.brokers.cloud]
publish = ["fleet/announce"]
subscribe = ["fleet/+/orders"]
"#;

#[track_caller]
fn assert_no_broker<T: std::fmt::Debug>(result: Result<T, CapError>, broker: &str) {
    match result {
        Err(CapError::NotFound(msg)) => assert_eq!(
            msg,
            format!("no mqtt broker named `{broker}` is configured")
        ),
        other => panic!("expected not-found for broker {broker}, got {other:?}"),
    }
}

#[tokio::test]
async fn allowed_calls_reach_the_broker_lookup() {
    let mut bench = Bench::new(GRANT);
    let mut mqtt = bench.view::<Mqtt>();
    let status = format!("devices/{DEVICE}/status");
    for topic in [status.as_str(), "devices/{device}/status", "telemetry/a/b"] {
        let sent = mqtt
            .publish(
                "local".into(),
                topic.into(),
                b"up".to_vec(),
                Qos::AtLeastOnce,
                false,
            )
            .await;
        assert_no_broker(sent, "local");
    }
    let sent = mqtt
        .publish(
            "cloud".into(),
            "fleet/announce".into(),
            vec![],
            Qos::AtMostOnce,
            true,
        )
        .await;
    assert_no_broker(sent, "cloud");
    for filter in ["devices/{device}/cmd/#", "devices/bench-device/cmd/+"] {
        let subscribed = mqtt
            .subscribe("local".into(), filter.into(), Qos::AtLeastOnce)
            .await;
        assert_no_broker(subscribed, "local");
    }
    let subscribed = mqtt
        .subscribe("cloud".into(), "fleet/x/orders".into(), Qos::ExactlyOnce)
        .await;
    assert_no_broker(subscribed, "cloud");
    assert_no_broker(
        mqtt.unsubscribe("local".into(), "devices/{device}/cmd/#".into())
            .await,
        "local",
    );
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn publishing_outside_the_grant_is_denied() {
    let mut bench = Bench::new(GRANT);
    let mut mqtt = bench.view::<Mqtt>();
    let mut publish = async |broker: &str, topic: &str| {
        mqtt.publish(
            broker.into(),
            topic.into(),
            b"x".to_vec(),
            Qos::AtMostOnce,
            false,
        )
        .await
    };
    assert_denied(
        publish("local", "devices/other-device/status").await,
        "publishing on `devices/other-device/status` at broker `local` is outside the grant",
    );
    // Per-broker patterns hold at their broker only.
    assert_denied(
        publish("local", "fleet/announce").await,
        "publishing on `fleet/announce` at broker `local` is outside the grant",
    );
    assert_denied(publish("other", "fleet/announce").await, "broker `other`");
    assert_denied(publish("local", "telemetryx/a").await, "outside the grant");
    // `{device}` in the topic is this device's id, and is shown resolved.
    assert_denied(
        publish("local", "devices/{device}/secret").await,
        "publishing on `devices/bench-device/secret`",
    );
    assert_eq!(bench.denials(), 5);
    let audit = bench.shared.audit.recent();
    assert_eq!(
        audit[0],
        "plugin=bench capability=mqtt denied: publishing on `devices/other-device/status` at broker `local` is outside the grant"
    );
}

#[tokio::test]
async fn subscribing_outside_the_grant_is_denied() {
    let mut bench = Bench::new(GRANT);
    let mut mqtt = bench.view::<Mqtt>();
    let mut subscribe = async |broker: &str, filter: &str| {
        mqtt.subscribe(broker.into(), filter.into(), Qos::AtMostOnce)
            .await
    };
    // Wider than the grant: any device.
    assert_denied(
        subscribe("local", "devices/+/cmd/#").await,
        "subscribing to `devices/+/cmd/#` at broker `local` is outside the grant",
    );
    assert_denied(subscribe("local", "#").await, "subscribing to `#`");
    assert_denied(
        subscribe("local", "devices/other-device/cmd/#").await,
        "outside the grant",
    );
    assert_denied(
        subscribe("local", "fleet/x/orders").await,
        "at broker `local` is outside the grant",
    );
    assert_denied(
        subscribe("cloud", "fleet/#").await,
        "subscribing to `fleet/#` at broker `cloud`",
    );
    assert_eq!(bench.denials(), 5);
    assert_eq!(bench.shared.audit.recent().len(), 5);
}

#[tokio::test]
async fn payloads_above_max_payload_exceed_the_quota() {
    let mut bench = Bench::new(GRANT);
    let mut mqtt = bench.view::<Mqtt>();
    let sent = mqtt
        .publish(
            "local".into(),
            "telemetry/x".into(),
            vec![0; 9],
            Qos::AtMostOnce,
            false,
        )
        .await;
    match sent {
        Err(CapError::QuotaExceeded(msg)) => assert_eq!(
            msg,
            "payload of 9 bytes exceeds the grant's max-payload of 8 bytes"
        ),
        other => panic!("expected quota-exceeded, got {other:?}"),
    }
    // Exactly max-payload passes the check.
    let sent = mqtt
        .publish(
            "local".into(),
            "telemetry/x".into(),
            vec![0; 8],
            Qos::AtMostOnce,
            false,
        )
        .await;
    assert_no_broker(sent, "local");
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn malformed_topics_are_invalid_not_denied() {
    let mut bench = Bench::new(GRANT);
    let mut mqtt = bench.view::<Mqtt>();
    let sent = mqtt
        .publish(
            "local".into(),
            "telemetry/#".into(),
            vec![],
            Qos::AtMostOnce,
            false,
        )
        .await;
    assert!(matches!(sent, Err(CapError::Invalid(_))), "{sent:?}");
    let subscribed = mqtt
        .subscribe("local".into(), "a/#/b".into(), Qos::AtMostOnce)
        .await;
    assert!(
        matches!(subscribed, Err(CapError::Invalid(_))),
        "{subscribed:?}"
    );
    // Unsubscribing from a filter that cannot exist is simply false.
    let unsubscribed = mqtt.unsubscribe("local".into(), "a/#/b".into()).await;
    assert!(matches!(unsubscribed, Ok(false)), "{unsubscribed:?}");
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn without_the_grant_every_call_is_denied_audited_and_counted() {
    let mut bench = Bench::new("");
    let mut mqtt = bench.view::<Mqtt>();
    let needle = "the policy has no [grants.mqtt]";
    assert_denied(
        mqtt.publish("local".into(), "a".into(), vec![], Qos::AtMostOnce, false)
            .await,
        needle,
    );
    assert_denied(
        mqtt.subscribe("local".into(), "a/#".into(), Qos::AtMostOnce)
            .await,
        needle,
    );
    assert_denied(mqtt.unsubscribe("local".into(), "a/#".into()).await, needle);
    assert_eq!(bench.denials(), 3);
    let audit = bench.shared.audit.recent();
    assert_eq!(audit.len(), 3);
    assert_eq!(
        audit[2],
        "plugin=bench capability=mqtt denied: the policy has no [grants.mqtt]"
    );
}

#[test]
fn grants_are_validated_with_the_table_named() {
    assert!(grants_of(GRANT).is_ok());
    for (table, needle) in [
        (
            "[grants.mqtt]\nmax-payload = \"0B\"",
            "max-payload must be between 1B",
        ),
        (
            "[grants.mqtt]\nmax-payload = \"17MiB\"",
            "max-payload must be between 1B",
        ),
        ("[grants.mqtt]\npublsh = []", "publsh"),
        ("[grants.mqtt]\npublish = [\"a/#/b\"]", "a/#/b"),
    ] {
        let err = grants_of(table).err().unwrap_or_default();
        assert!(err.contains("mqtt"), "{table}: {err}");
        assert!(err.contains(needle), "{table}: {err}");
    }
}
