//! Real parts for the container tests: a containerd of the test's own,
//! Debian's `docker-registry`, and busybox images pushed to it (the same
//! helpers the end-to-end tests use, from `tests/harness/`).

use std::path::PathBuf;
use std::time::Duration;

#[path = "../../../../tests/harness/registry.rs"]
mod registry;

#[path = "../../../../tests/harness/containers.rs"]
mod containers;

pub use containers::{TestContainerd, TestImage};
pub use registry::TestRegistry;

use crate::supply::oci::RegistryOptions;

/// Pushes a busybox image (plus `extra` bytes of padding) to `registry` as
/// `repository:tag`.
pub async fn push_busybox(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    extra: usize,
) -> TestImage {
    push_busybox_with(&registry.address, None, repository, tag, extra).await
}

/// [`push_busybox`] to the registry at `address`, with basic auth when given.
pub async fn push_busybox_with(
    address: &str,
    login: Option<(&str, &str)>,
    repository: &str,
    tag: &str,
    extra: usize,
) -> TestImage {
    let (address, repository, tag) = (address.to_string(), repository.to_string(), tag.to_string());
    let login = login.map(|(user, password)| (user.to_string(), password.to_string()));
    tokio::task::spawn_blocking(move || {
        let login = login
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()));
        containers::push_busybox(&address, login, &repository, &tag, extra)
    })
    .await
    .expect("the push ran")
}

/// A busybox image whose config carries `labels`, pushed as `repository:tag`.
pub async fn push_labelled(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    labels: &[(&str, &str)],
) -> TestImage {
    let blobs = containers::busybox_image_labelled(0, labels);
    let (address, repository, tag) = (
        registry.address.clone(),
        repository.to_string(),
        tag.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        containers::push_image(&address, None, &repository, &tag, blobs)
    })
    .await
    .expect("the push ran")
}

/// Registry options for the test registry.
pub fn options(registry: &TestRegistry) -> RegistryOptions {
    RegistryOptions {
        insecure: vec![registry.address.clone()],
        retries: 2,
        backoff: Duration::from_millis(50),
        ..RegistryOptions::default()
    }
}

/// Where the registry keeps the blob `digest`, to tamper with it.
pub fn blob_path(registry: &TestRegistry, digest: &str) -> PathBuf {
    registry.blob_path(digest)
}
