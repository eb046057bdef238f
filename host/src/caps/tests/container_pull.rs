//! Image layers stream into containerd's content store: a pull the registry
//! abandons mid-layer leaves its bytes for the next pull to resume after (and
//! bytes that turn out corrupt are dropped and fetched again), and a pull that
//! fills the disk fails saying so and gives the space back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use containerd_client::services::v1::ListStatusesRequest;

use super::container::config;
use crate::caps::bench::Bench;
use crate::caps::container::Container;
use crate::caps::container::testbed::{TestContainerd, TestImage, TestRegistry, push_busybox};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::{Host as _, PullPolicy};
use crate::contract::testing::FakeHost;
use crate::supply::oci::tests::harness::Proxy;

const GRANT: &str = "[grants.container]\nimages = [\"127.0.0.1:*/apps/*\"]\n";
const NAMESPACE: &str = "cairn-test";
const MIB: u64 = 1024 * 1024;

/// A bench whose registry client also trusts the plain-HTTP `proxies`.
fn bench(containerd: &TestContainerd, registry: &TestRegistry, proxies: &[&Proxy]) -> Bench {
    let mut config = config(containerd, registry);
    for proxy in proxies {
        config.registry.insecure.push(proxy.addr.clone());
    }
    Bench::with_config(GRANT, FakeHost::default(), config)
}

/// The writes containerd holds open or abandoned: `(ref, bytes written)`.
async fn ingests(containerd: &TestContainerd) -> Vec<(String, u64)> {
    let channel = containerd_client::connect(&containerd.socket)
        .await
        .unwrap();
    let client = containerd_client::Client::from(channel);
    let mut request = containerd_client::tonic::Request::new(ListStatusesRequest::default());
    request
        .metadata_mut()
        .insert("containerd-namespace", NAMESPACE.parse().unwrap());
    let statuses = client
        .content()
        .list_statuses(request)
        .await
        .unwrap()
        .into_inner()
        .statuses;
    statuses
        .into_iter()
        .map(|status| (status.r#ref, status.offset as u64))
        .collect()
}

/// The layer's compressed size, from the registry.
fn layer_size(registry: &TestRegistry, image: &TestImage) -> u64 {
    std::fs::metadata(crate::caps::container::testbed::blob_path(
        registry,
        &image.layer_digest,
    ))
    .unwrap()
    .len()
}

/// Pulls `image` through a slow proxy that dies once it has sent `cut`
/// bytes; returns how many bytes of the layer containerd kept.
async fn interrupted_pull(
    containerd: &TestContainerd,
    registry: &TestRegistry,
    image: &TestImage,
    cut: u64,
) -> u64 {
    let proxy = Arc::new(Proxy::start(
        &registry.address,
        64 * 1024,
        Duration::from_millis(2),
        None,
    ));
    let mut bench = bench(containerd, registry, &[&proxy]);
    let killer = {
        let proxy = proxy.clone();
        std::thread::spawn(move || {
            while proxy.forwarded.load(Ordering::SeqCst) < cut {
                std::thread::sleep(Duration::from_millis(1));
            }
            proxy.kill();
        })
    };
    let through_proxy = image.reference.replace(&registry.address, &proxy.addr);
    let failed = bench
        .view::<Container>()
        .pull(through_proxy, PullPolicy::Always)
        .await;
    killer.join().unwrap();
    match failed {
        Err(CapError::Unavailable(message)) => {
            assert!(
                message.contains("interrupted") || message.contains("connect"),
                "{message}"
            )
        }
        other => panic!("a pull from a registry that died succeeded: {other:?}"),
    }
    assert!(bench.view::<Container>().images().await.unwrap().is_empty());
    let held = ingests(containerd).await;
    let layer_ref = format!("cairn-pull-{}", image.layer_digest);
    let kept = held
        .iter()
        .find(|(reference, _)| *reference == layer_ref)
        .map(|(_, offset)| *offset)
        .unwrap_or_else(|| panic!("no partial layer kept: {held:?}"));
    assert!(
        kept >= 2 * MIB && kept < layer_size(registry, image),
        "{kept} bytes kept"
    );
    kept
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_pull_resumes_a_layer_after_the_bytes_containerd_kept() {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let image = push_busybox(&registry, "apps/big", "1", 12 * MIB as usize).await;
    let size = layer_size(&registry, &image);
    let kept = interrupted_pull(&containerd, &registry, &image, 6 * MIB).await;

    // The second pull fetches only what is missing, and the image is whole:
    // containerd checked the layer's digest, the unpack its diff ID.
    let proxy = Proxy::start(&registry.address, 256 * 1024, Duration::ZERO, None);
    let mut bench = bench(&containerd, &registry, &[&proxy]);
    let through_proxy = image.reference.replace(&registry.address, &proxy.addr);
    let pulled = bench
        .view::<Container>()
        .pull(through_proxy.clone(), PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest);
    let forwarded = proxy.forwarded.load(Ordering::SeqCst);
    assert!(
        forwarded < size - kept + MIB / 2,
        "{forwarded} bytes fetched for a {size}-byte layer of which {kept} were kept"
    );
    assert!(ingests(&containerd).await.is_empty());
    let passwd = crate::caps::container::image::file_of(
        &crate::caps::container::engine::Containerd::new(config(&containerd, &registry).containers),
        &image.digest,
        "etc/passwd",
    )
    .await
    .unwrap();
    assert!(passwd.is_some_and(|passwd| passwd.starts_with(b"root:")));
}

#[tokio::test(flavor = "multi_thread")]
async fn kept_bytes_that_are_corrupt_are_dropped_and_the_layer_fetched_whole() {
    let containerd = TestContainerd::start();
    let registry = TestRegistry::start();
    let image = push_busybox(&registry, "apps/big", "1", 8 * MIB as usize).await;
    let size = layer_size(&registry, &image);
    interrupted_pull(&containerd, &registry, &image, 4 * MIB).await;

    // A byte of what containerd kept flips (a power cut mid-write can do it).
    let ingest_dir = containerd
        .dir
        .path()
        .join("root/io.containerd.content.v1.content/ingest");
    let mut dirs: Vec<_> = std::fs::read_dir(&ingest_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let data = dirs.remove(0).join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[MIB as usize] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let proxy = Proxy::start(&registry.address, 256 * 1024, Duration::ZERO, None);
    let mut bench = bench(&containerd, &registry, &[&proxy]);
    let through_proxy = image.reference.replace(&registry.address, &proxy.addr);
    let pulled = bench
        .view::<Container>()
        .pull(through_proxy, PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest);
    assert!(
        proxy.forwarded.load(Ordering::SeqCst) > size,
        "the layer was not fetched again whole"
    );
    assert!(ingests(&containerd).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_that_fills_the_disk_fails_saying_so_and_frees_the_space() {
    let containerd = TestContainerd::start_on_small_disk(40 * MIB);
    let registry = TestRegistry::start();
    let big = push_busybox(&registry, "apps/big", "1", 64 * MIB as usize).await;
    let small = push_busybox(&registry, "apps/small", "1", 0).await;
    let root = containerd.dir.path().join("root");
    let used = || {
        let path = std::ffi::CString::new(root.to_str().unwrap()).unwrap();
        // SAFETY: statvfs writes only into the zeroed struct it is given.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stats) }, 0);
        (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    };
    let before = used();

    let mut bench = bench(&containerd, &registry, &[]);
    match bench
        .view::<Container>()
        .pull(big.reference.clone(), PullPolicy::Always)
        .await
    {
        Err(CapError::Internal(message)) => {
            assert!(message.contains("no space left"), "{message}");
            assert!(message.contains(&big.layer_digest), "{message}");
        }
        other => panic!("a pull larger than the disk did not fail: {other:?}"),
    }
    assert!(ingests(&containerd).await.is_empty());
    assert!(
        used() < before + 2 * MIB,
        "{} bytes still used after the failed pull, {before} before",
        used()
    );

    // The device goes on working: a smaller image fits.
    let mut container = bench.view::<Container>();
    container
        .pull(small.reference.clone(), PullPolicy::Always)
        .await
        .unwrap();
    let images = container.images().await.unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
}
