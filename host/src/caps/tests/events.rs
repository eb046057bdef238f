//! `cairn:host/events` through the bench: topics inside the grant, quotas, denials.

use std::time::Duration;

use crate::caps::Capability;
use crate::caps::bench::{Bench, assert_denied};
use crate::caps::events::Events;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::events::Host as _;

const GRANT: &str =
    "[grants.events]\npublish = [\"app/#\", \"devices/{device}/status\"]\nsubscribe = [\"app/#\"]";

#[tokio::test]
async fn a_subscriber_receives_what_is_published_inside_the_grant() {
    let mut bench = Bench::new(GRANT);
    let mut events = bench.view::<Events>();
    events.subscribe("app/+".into()).await.unwrap();
    events
        .publish("app/x".into(), b"hi".to_vec())
        .await
        .unwrap();
    events
        .publish("devices/bench-device/status".into(), vec![])
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), bench.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.topic.as_str(), event.source.as_str()),
        ("app/x", "bench")
    );
    assert_eq!(event.payload, b"hi");
    // The status topic matches no subscription.
    assert!(bench.events.try_recv().is_err());
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn topics_outside_the_grant_are_denied_audited_and_counted() {
    let mut bench = Bench::new(GRANT);
    let mut events = bench.view::<Events>();
    assert_denied(
        events.publish("other/x".into(), vec![]).await,
        "publishing on `other/x`",
    );
    assert_denied(
        events
            .publish("devices/someone-else/status".into(), vec![])
            .await,
        "outside the grant",
    );
    assert_denied(events.subscribe("#".into()).await, "subscribing to `#`");
    assert_eq!(bench.denials(), 3);
    assert_eq!(bench.shared.audit.recent().len(), 3);
}

#[tokio::test]
async fn malformed_topics_and_big_payloads_are_invalid() {
    let mut bench = Bench::new(GRANT);
    let mut events = bench.view::<Events>();
    let refused = events.publish("app/+".into(), vec![]).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    let refused = events.publish("app/x".into(), vec![0; 2 << 20]).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    let refused = events.subscribe("app/#/x".into()).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn subscriptions_have_a_quota_and_end_with_the_instance() {
    let mut bench = Bench::new(GRANT);
    let mut events = bench.view::<Events>();
    for n in 0..64 {
        events.subscribe(format!("app/{n}")).await.unwrap();
    }
    let refused = events.subscribe("app/more".into()).await;
    assert!(
        matches!(refused, Err(CapError::QuotaExceeded(_))),
        "{refused:?}"
    );
    assert!(events.unsubscribe("app/0".into()).await.unwrap());
    assert!(!events.unsubscribe("app/0".into()).await.unwrap());

    assert_eq!(bench.shared.events.publish("x", "app/1", b""), 1);
    Events::instance_ended(&bench.shared.events, &mut (), bench.caps.ctx());
    assert_eq!(bench.shared.events.publish("x", "app/1", b""), 0);
}

#[tokio::test]
async fn without_the_grant_events_are_denied() {
    let mut bench = Bench::new("");
    let mut events = bench.view::<Events>();
    assert_denied(
        events.publish("a".into(), vec![]).await,
        "no [grants.events]",
    );
    assert_denied(events.subscribe("a".into()).await, "no [grants.events]");
    assert_denied(events.unsubscribe("a".into()).await, "no [grants.events]");
    assert_eq!(bench.denials(), 3);
}
