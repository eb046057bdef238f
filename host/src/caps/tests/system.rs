//! `cairn:host/system` through the bench.

use crate::caps::bench::{Bench, assert_denied};
use crate::caps::system::System;
use crate::contract::bindings::cairn::host::system::Host as _;

#[tokio::test]
async fn facts_describe_this_device() {
    let mut bench = Bench::new("[grants.system]");
    let facts = bench.view::<System>().facts().await.unwrap();
    assert_eq!(facts.os, std::env::consts::OS);
    assert!(facts.memory_total > 0 && facts.memory_available <= facts.memory_total);
    assert!(facts.disk_total > 0);
    assert_eq!(facts.host_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn without_the_grant_facts_are_denied() {
    let mut bench = Bench::new("");
    assert_denied(bench.view::<System>().facts().await, "no [grants.system]");
    assert_eq!(bench.denials(), 1);
}

#[test]
fn the_grant_takes_no_settings() {
    assert!(crate::caps::bench::grants_of("[grants.system]\nverbose = true").is_err());
}
