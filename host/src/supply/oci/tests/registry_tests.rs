//! Push, resolve and pull against a real registry, and refusal of bad artifacts.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::harness::{TestRegistry, bytes, meta};
use crate::state::digest::Digest;
use crate::supply::oci::{
    Credentials, CredentialsError, MANIFEST_MEDIA_TYPE, OciError, Reference, Registry,
    RegistryOptions, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, annotation,
};

fn no_progress(_: u64, _: u64) {}

#[tokio::test]
async fn pushes_in_chunks_with_progress_and_skips_blobs_the_registry_has() {
    let reg = TestRegistry::start();
    let client = reg.client(None);
    let wasm = bytes(2_500_000, 7);
    let reference = reg.reference("plugins/chunked:1");
    let seen = std::sync::Mutex::new(Vec::new());
    let record = |done, total| seen.lock().unwrap().push((done, total));
    let digest = client
        .push_plugin(&reference, &wasm, &meta("chunked"), &record)
        .await
        .unwrap();
    let first: Vec<(u64, u64)> = std::mem::take(&mut *seen.lock().unwrap());
    let total = wasm.len() as u64;
    assert_eq!(first.first(), Some(&(0, total)), "{first:?}");
    assert_eq!(first.last(), Some(&(total, total)), "{first:?}");
    assert!(first.len() >= 4, "one report per 1 MiB chunk: {first:?}");
    let pulled = client
        .pull_plugin(&reference, &digest, &no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.wasm, wasm);

    // The layer is there already: a second push sends nothing and says so at once.
    client
        .push_plugin(&reference, &wasm, &meta("chunked"), &record)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [(total, total)]);
}

#[tokio::test]
async fn anonymous_round_trip_and_reproducible_digest() {
    let reg = TestRegistry::start();
    let client = reg.client(None);
    let wasm = bytes(10_000, 1);
    let reference = reg.reference("plugins/counter:1.0.0");
    let digest = client
        .push_plugin(&reference, &wasm, &meta("counter"), &|_, _| {})
        .await
        .unwrap();
    let again = client
        .push_plugin(&reference, &wasm, &meta("counter"), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        digest, again,
        "same component and meta must give the same digest"
    );

    assert_eq!(client.resolve(&reference).await.unwrap(), digest);
    let pinned = reference.with_digest(digest.clone());
    assert_eq!(client.resolve(&pinned).await.unwrap(), digest);

    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |done, total| seen.lock().unwrap().push((done, total));
    let pulled = client
        .pull_plugin(&reference, &digest, &progress)
        .await
        .unwrap();
    assert_eq!(pulled.wasm, wasm);
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.config.os, "wasip2");
    assert_eq!(
        pulled.config.layer_digests,
        vec![Digest::of(&wasm).to_string()]
    );
    let component = pulled.config.component.unwrap();
    assert_eq!(component.exports, meta("x").exports);
    assert_eq!(pulled.annotations[annotation::TITLE], "counter");
    assert_eq!(pulled.annotations[annotation::VERSION], "1.0.0");
    assert_eq!(
        pulled.annotations[annotation::CREATED],
        "2024-05-01T12:00:00Z"
    );
    assert_eq!(
        pulled.annotations[annotation::SOURCE],
        "https://example.invalid/src"
    );
    assert_eq!(pulled.annotations[annotation::DESCRIPTION], "test plugin");
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.last(), Some(&(10_000, 10_000)));

    let missing = reg.reference("plugins/counter:2.0.0");
    let err = client.resolve(&missing).await.unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err}");
    let err = client
        .pull_plugin(&reference, &Digest::of(b"nothing"), &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn basic_auth_round_trip_and_wrong_password() {
    let password = "s3cret-Pa55word";
    let reg = TestRegistry::start_with(Some(("alice", password)));
    let client = reg.client(Some(("alice", password)));
    let reference = reg.reference("auth/echo:1");
    let wasm = bytes(4096, 2);
    let digest = client
        .push_plugin(&reference, &wasm, &meta("echo"), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(client.resolve(&reference).await.unwrap(), digest);
    let pulled = client
        .pull_plugin(&reference, &digest, &no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.wasm, wasm);

    let wrong = "WRONG-pa55word-xyz";
    let bad = reg.client(Some(("alice", wrong)));
    for err in [
        bad.push_plugin(&reference, &wasm, &meta("echo"), &|_, _| {})
            .await
            .unwrap_err(),
        bad.resolve(&reference).await.unwrap_err(),
        bad.pull_plugin(&reference, &digest, &no_progress)
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(wrong) && !text.contains(password), "{text}");
        assert!(text.contains("alice") && text.contains(&reg.addr), "{text}");
    }
    let anonymous = reg.client(None);
    let err = anonymous.resolve(&reference).await.unwrap_err();
    assert!(err.to_string().contains("anonymous"), "{err}");
    assert!(err.to_string().contains("add credentials"), "{err}");
}

#[tokio::test]
async fn credentials_file_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registries.toml");
    std::fs::write(
        &path,
        "[registries.\"127.0.0.1:5000\"]\nusername = \"a\"\npassword = \"pw\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Credentials::load(&path).unwrap_err();
    assert!(
        matches!(err, CredentialsError::InsecurePermissions { .. }),
        "{err}"
    );
    let err = OciError::from(err);
    assert!(
        err.to_string().contains("0644") || err.to_string().contains("644"),
        "{err}"
    );
}

#[tokio::test]
async fn moved_tag_does_not_change_a_resolved_digest() {
    let reg = TestRegistry::start();
    let client = reg.client(None);
    let reference = reg.reference("plugins/moving:stable");
    let first = bytes(3000, 3);
    let digest = client
        .push_plugin(&reference, &first, &meta("moving"), &|_, _| {})
        .await
        .unwrap();
    let resolved = client.resolve(&reference).await.unwrap();
    let second = bytes(3000, 4);
    let moved = client
        .push_plugin(&reference, &second, &meta("moving"), &|_, _| {})
        .await
        .unwrap();
    assert_ne!(moved, digest);
    assert_eq!(client.resolve(&reference).await.unwrap(), moved);
    let pulled = client
        .pull_plugin(&reference, &resolved, &no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.wasm, first);
}

#[tokio::test]
async fn tampered_blob_is_refused() {
    let reg = TestRegistry::start();
    let client = reg.client(None);
    let reference = reg.reference("plugins/tamper:1");
    let wasm = bytes(5000, 5);
    let digest = client
        .push_plugin(&reference, &wasm, &meta("tamper"), &|_, _| {})
        .await
        .unwrap();
    let path = reg.blob_path(Digest::of(&wasm).as_str());
    let mut evil = wasm.clone();
    evil[100] ^= 0xff;
    std::fs::write(&path, &evil).unwrap();
    let err = client
        .pull_plugin(&reference, &digest, &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::BlobDigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(Digest::of(&wasm).as_str()),
        "{err}"
    );
}

/// Pushes `blobs` and a hand-written manifest, returning the manifest digest.
async fn push_raw(
    client: &Registry,
    reference: &Reference,
    blobs: &[&[u8]],
    manifest: serde_json::Value,
) -> Digest {
    client.prepare(reference).await;
    let oref = reference.to_oci();
    for blob in blobs {
        client
            .client
            .push_blob(&oref, blob.to_vec(), Digest::of(blob).as_str())
            .await
            .unwrap();
    }
    let body = serde_json::to_vec(&manifest).unwrap();
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or(MANIFEST_MEDIA_TYPE)
        .parse()
        .unwrap();
    client
        .client
        .push_manifest_raw(&oref, body.clone(), media_type)
        .await
        .unwrap();
    Digest::of(&body)
}

fn desc(media_type: &str, blob: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": Digest::of(blob).to_string(), "size": blob.len()})
}

#[tokio::test]
async fn malformed_artifacts_are_refused() {
    let reg = TestRegistry::start();
    let client = reg.client(None);
    let wasm = bytes(2000, 6);
    let other = bytes(2000, 7);
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip2",
        "layerDigests": [Digest::of(&wasm).to_string()],
    }))
    .unwrap();
    let manifest = |config_type: &str, layers: Vec<serde_json::Value>| {
        json!({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
               "config": desc(config_type, &config), "layers": layers})
    };
    let blobs: [&[u8]; 3] = [&wasm, &other, &config];
    let r = reg.reference("bad/two-layers:1");
    let two = manifest(
        WASM_CONFIG_MEDIA_TYPE,
        vec![
            desc(WASM_LAYER_MEDIA_TYPE, &wasm),
            desc(WASM_LAYER_MEDIA_TYPE, &other),
        ],
    );
    let d = push_raw(&client, &r, &blobs, two).await;
    let err = client.pull_plugin(&r, &d, &no_progress).await.unwrap_err();
    assert!(matches!(err, OciError::LayerCount { found: 2 }), "{err}");

    let r = reg.reference("bad/config-type:1");
    let m = manifest(
        "application/vnd.oci.image.config.v1+json",
        vec![desc(WASM_LAYER_MEDIA_TYPE, &wasm)],
    );
    let d = push_raw(&client, &r, &blobs, m).await;
    let err = client.pull_plugin(&r, &d, &no_progress).await.unwrap_err();
    assert!(matches!(err, OciError::ConfigMediaType { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("application/vnd.oci.image.config.v1+json"),
        "{err}"
    );

    // An ordinary container image: not a Wasm artifact.
    let r = reg.reference("bad/container:1");
    let m = manifest(
        "application/vnd.oci.image.config.v1+json",
        vec![desc("application/vnd.oci.image.layer.v1.tar", &wasm)],
    );
    let m = json!({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
                   "config": desc(WASM_CONFIG_MEDIA_TYPE, &config), "layers": m["layers"]});
    let d = push_raw(&client, &r, &blobs, m).await;
    let err = client.pull_plugin(&r, &d, &no_progress).await.unwrap_err();
    assert!(matches!(err, OciError::LayerMediaType { .. }), "{err}");
    assert!(err.to_string().contains("not a Wasm artifact"), "{err}");

    // An image index is not a plugin manifest.
    let r = reg.reference("bad/index:1");
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []});
    let d = push_raw(&client, &r, &[], index).await;
    let err = client.pull_plugin(&r, &d, &no_progress).await.unwrap_err();
    assert!(matches!(err, OciError::ManifestMediaType { .. }), "{err}");

    // layerDigests naming another blob.
    let r = reg.reference("bad/layer-digests:1");
    let m = manifest(
        WASM_CONFIG_MEDIA_TYPE,
        vec![desc(WASM_LAYER_MEDIA_TYPE, &other)],
    );
    let d = push_raw(&client, &r, &blobs, m).await;
    let err = client.pull_plugin(&r, &d, &no_progress).await.unwrap_err();
    assert!(matches!(err, OciError::ConfigLayerDigests { .. }), "{err}");

    // Too large: refused from the manifest alone.
    let mut small = reg.options();
    small.max_layer_size = 1000;
    let small = Registry::new(small).unwrap();
    let r = reg.reference("bad/big:1");
    let d = client
        .push_plugin(&r, &wasm, &meta("big"), &|_, _| {})
        .await
        .unwrap();
    let err = small.pull_plugin(&r, &d, &no_progress).await.unwrap_err();
    assert!(
        matches!(
            err,
            OciError::TooLarge {
                size: 2000,
                limit: 1000,
                ..
            }
        ),
        "{err}"
    );

    // Asking for a digest by a tag that points elsewhere is caught by content hashing.
    let err = client
        .resolve(&r.with_digest(Digest::of(b"other")))
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn plain_http_must_be_allowed_explicitly() {
    let reg = TestRegistry::start();
    let client = Registry::new(RegistryOptions {
        insecure: vec!["127.0.0.1:1".into()],
        ..reg.options()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = client.resolve(&reg.reference("x/y:1")).await.unwrap_err();
    assert!(matches!(err, OciError::Tls { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("plain HTTP") && text.contains("insecure") && text.contains(&reg.addr),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
