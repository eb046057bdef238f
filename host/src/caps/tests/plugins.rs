//! `cairn:host/plugins` through the bench: reading and managing, inside the grant only.

use std::time::Duration;

use crate::caps::bench::{Bench, assert_denied};
use crate::caps::plugins::{INSTALL_FINISHED, Plugins};
use crate::contract::bindings::cairn::host::plugins::{Host as _, Source};
use crate::contract::testing::{FakeHost, HostCall};

const GRANT: &str = "[grants.plugins]\nread = true\nmanage = [\"app-*\"]";

fn installing(name: &str) -> FakeHost {
    FakeHost {
        install_name: name.into(),
        ..FakeHost::default()
    }
}

#[tokio::test]
async fn reading_needs_read() {
    let mut bench = Bench::new(GRANT);
    let mut plugins = bench.view::<Plugins>();
    assert!(plugins.list().await.unwrap().is_empty());
    assert_eq!(plugins.health().await.unwrap().status, "ok");
    assert_eq!(plugins.metrics().await.unwrap(), "# fake\n");

    let mut bench = Bench::new("[grants.plugins]\nmanage = [\"app-*\"]");
    let mut plugins = bench.view::<Plugins>();
    assert_denied(plugins.list().await, "listing plugins needs `read = true`");
    assert_denied(plugins.health().await, "reading health needs `read = true`");
    assert_denied(
        plugins.metrics().await,
        "reading metrics needs `read = true`",
    );
    assert_eq!(bench.denials(), 3);
}

#[tokio::test]
async fn managing_is_limited_to_the_granted_names() {
    let mut bench = Bench::new(GRANT);
    let mut plugins = bench.view::<Plugins>();
    plugins.rollback("app-1".into()).await.unwrap();
    plugins.remove("app-2".into()).await.unwrap();
    assert_denied(
        plugins.rollback("core".into()).await,
        "managing plugin `core`",
    );
    assert_denied(
        plugins.remove("core".into()).await,
        "managing plugin `core`",
    );
    assert_eq!(
        bench.host.recorded(),
        [
            HostCall::Rollback {
                plugin: "app-1".into()
            },
            HostCall::Remove {
                plugin: "app-2".into()
            },
        ]
    );
    assert_eq!(bench.denials(), 2);
}

#[tokio::test]
async fn an_install_is_authorised_by_the_name_the_component_carries() {
    let mut bench = Bench::with_host(GRANT, installing("app-7"));
    let source = || Source::Oci("oci://registry/app:1".into());
    let installed = bench
        .view::<Plugins>()
        .install(source(), false)
        .await
        .unwrap();
    assert_eq!(installed.name, "app-7");

    let mut bench = Bench::with_host(GRANT, installing("core"));
    assert_denied(
        bench.view::<Plugins>().install(source(), false).await,
        "installing plugin `core` is outside the grant",
    );
    assert_eq!(bench.denials(), 1);
    assert_eq!(
        bench.host.recorded(),
        [HostCall::Install {
            authorized: Err("installing plugin `core` is outside the grant".into())
        }]
    );
}

#[tokio::test]
async fn a_started_install_reports_to_the_caller() {
    let mut bench = Bench::with_host(GRANT, installing("app-7"));
    bench
        .view::<Plugins>()
        .start_install(Source::Cached("sha256:00".into()), false, "t1".into())
        .await
        .unwrap();
    let notified = HostCall::Notify {
        plugin: "bench".into(),
        topic: INSTALL_FINISHED.into(),
    };
    for _ in 0..100 {
        if bench.host.recorded().contains(&notified) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never notified: {:?}", bench.host.recorded());
}

#[tokio::test]
async fn without_the_grant_everything_is_denied() {
    let mut bench = Bench::new("");
    let mut plugins = bench.view::<Plugins>();
    assert_denied(plugins.list().await, "no [grants.plugins]");
    assert_denied(plugins.remove("x".into()).await, "no [grants.plugins]");
    assert_denied(
        plugins
            .install(Source::Cached("sha256:00".into()), false)
            .await,
        "no [grants.plugins]",
    );
    assert_eq!(bench.denials(), 3);
}
