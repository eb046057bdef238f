//! Downloads through a throttling proxy: resume after a dropped connection, and a
//! bounded failure when the registry dies mid-download.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::harness::{Proxy, TestRegistry, bytes, fast_options, meta};
use crate::supply::oci::{OciError, Reference, Registry};

const SIZE: usize = 5 * 1024 * 1024 + 123;

/// Pushes a 5 MiB+ plugin directly and returns a client and reference that go
/// through `proxy`.
async fn setup(
    reg: &TestRegistry,
    proxy: &Proxy,
) -> (Registry, Reference, crate::state::digest::Digest, Vec<u8>) {
    let wasm = bytes(SIZE, 20);
    let direct = reg.client(None);
    let digest = direct
        .push_plugin(
            &reg.reference("big/plugin:1"),
            &wasm,
            &meta("big"),
            &|_, _| {},
        )
        .await
        .unwrap();
    let via_proxy = Registry::new(fast_options(&proxy.addr)).unwrap();
    let reference = Reference::parse(&format!("{}/big/plugin:1", proxy.addr)).unwrap();
    (via_proxy, reference, digest, wasm)
}

#[tokio::test]
async fn dropped_connection_resumes_with_range() {
    let reg = TestRegistry::start();
    // Drops the connection once, after 2 MiB have gone through.
    let proxy = Proxy::start(
        &reg.addr,
        256 * 1024,
        Duration::from_millis(1),
        Some(2 * 1024 * 1024),
    );
    let (client, reference, digest, wasm) = setup(&reg, &proxy).await;
    let pulled = client
        .pull_plugin(&reference, &digest, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(pulled.wasm, wasm);
    assert!(
        proxy.cut.load(Ordering::SeqCst),
        "the connection was never dropped"
    );
    let forwarded = proxy.forwarded.load(Ordering::SeqCst);
    // A restart from zero would send at least 2 MiB + 5 MiB.
    assert!(
        forwarded < (SIZE + 1024 * 1024) as u64,
        "{forwarded} bytes forwarded: no resume?"
    );
}

#[tokio::test]
async fn registry_dying_mid_download_fails_after_bounded_retries() {
    let reg = TestRegistry::start();
    // About 6 MiB/s, so the download is still running when the proxy is killed.
    let proxy = Proxy::start(&reg.addr, 64 * 1024, Duration::from_millis(10), None);
    let (client, reference, digest, _) = setup(&reg, &proxy).await;
    let killed = AtomicBool::new(false);
    let last = AtomicU64::new(0);
    let progress = |done: u64, total: u64| {
        assert_eq!(total, SIZE as u64);
        last.store(done, Ordering::SeqCst);
        if done > 1024 * 1024 && !killed.swap(true, Ordering::SeqCst) {
            proxy.kill();
        }
    };
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        client.pull_plugin(&reference, &digest, &progress),
    )
    .await
    .expect("download must not hang");
    let err = result.unwrap_err();
    assert!(killed.load(Ordering::SeqCst));
    match &err {
        OciError::Network {
            attempts, detail, ..
        } => {
            assert_eq!(*attempts, 4, "{err}");
            assert!(!detail.is_empty());
        }
        other => panic!("expected a network error, got {other}"),
    }
    let done = last.load(Ordering::SeqCst);
    assert!(done > 1024 * 1024 && done < SIZE as u64, "{done}");
    // Backoff 100 + 200 + 400 ms, plus the transfer before the kill.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
