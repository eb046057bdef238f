//! `cairn:host/log` through the bench: records pass, a missing grant is reported once.

use crate::caps::bench::Bench;
use crate::caps::log::Log;
use crate::contract::bindings::cairn::host::log::{Host as _, Level};

#[tokio::test]
async fn records_are_kept_without_denials() {
    let mut bench = Bench::new("[grants.log]\nlevel = \"info\"");
    let mut log = bench.view::<Log>();
    log.write(Level::Debug, "dropped below the level".into())
        .await;
    log.write(Level::Error, "x".repeat(20_000)).await;
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn without_the_grant_records_are_dropped_and_reported_once() {
    let mut bench = Bench::new("");
    let mut log = bench.view::<Log>();
    log.write(Level::Info, "one".into()).await;
    log.write(Level::Info, "two".into()).await;
    assert_eq!(bench.denials(), 1);
    let audit = bench.shared.audit.recent();
    assert!(audit[0].contains("log records dropped"), "{audit:?}");
}

#[test]
fn levels_are_checked() {
    assert!(crate::caps::bench::grants_of("[grants.log]\nlevel = \"loud\"").is_err());
}
