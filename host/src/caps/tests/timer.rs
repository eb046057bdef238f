//! `cairn:host/timer` through the bench: events on time, bounds, denials.

use std::time::Duration;

use crate::caps::Capability;
use crate::caps::bench::{Bench, assert_denied};
use crate::caps::timer::Timer;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::timer::Host as _;

#[tokio::test]
async fn a_timer_fires_as_an_event_and_can_be_cancelled() {
    let mut bench = Bench::new("[grants.timer]");
    let mut timer = bench.view::<Timer>();
    timer.once(10, "tick".into()).await.unwrap();
    let later = timer.once(60_000, "later".into()).await.unwrap();
    assert!(timer.cancel(later).await.unwrap());
    assert!(!timer.cancel(later).await.unwrap());
    let event = tokio::time::timeout(Duration::from_secs(5), bench.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.topic.as_str(), event.source.as_str()),
        ("tick", "timer")
    );
}

#[tokio::test]
async fn intervals_respect_min_interval_and_the_timer_quota() {
    let mut bench = Bench::new("[grants.timer]\nmax-timers = 2\nmin-interval = \"1s\"");
    let mut timer = bench.view::<Timer>();
    let refused = timer.interval(100, "fast".into()).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    timer.interval(1000, "a".into()).await.unwrap();
    timer.once(60_000, "b".into()).await.unwrap();
    let refused = timer.once(60_000, "c".into()).await;
    assert!(
        matches!(refused, Err(CapError::QuotaExceeded(_))),
        "{refused:?}"
    );
    let refused = timer.once(1, String::new()).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn pending_timers_end_with_the_instance() {
    let mut bench = Bench::new("[grants.timer]");
    bench
        .view::<Timer>()
        .once(50, "never".into())
        .await
        .unwrap();
    let view = bench.caps.view::<Timer>();
    let (shared, local, ctx) = (view.shared, view.local, view.ctx);
    Timer::instance_ended(shared, local, ctx);
    let waited = tokio::time::timeout(Duration::from_millis(300), bench.events.recv()).await;
    assert!(waited.is_err(), "a cancelled timer fired: {waited:?}");
}

#[tokio::test]
async fn without_the_grant_timers_are_denied() {
    let mut bench = Bench::new("");
    let mut timer = bench.view::<Timer>();
    assert_denied(timer.once(1, "a".into()).await, "no [grants.timer]");
    assert_denied(timer.cancel(1).await, "no [grants.timer]");
    assert_eq!(bench.denials(), 2);
}
