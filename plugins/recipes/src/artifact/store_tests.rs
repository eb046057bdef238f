use super::*;
use crate::artifact::fetch::tests::{Reply, record_sleep, scripted};
use crate::artifact::test_support::{
    TarItem, file_uri, gzip, listing, public_pem, sha256_hex, sign_der, signing_key, tar, write,
};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A store whose network is `replies` (none: any request panics).
    fn store(&self, limits: Limits, keys: &[String], replies: Vec<Reply>) -> Store {
        let keys = TrustedKeys::parse(keys).unwrap();
        let (transport, _) = scripted(replies);
        Store::with_transport(
            &self.path("cache"),
            limits,
            keys,
            Box::new(transport),
            record_sleep,
        )
        .unwrap()
    }

    /// A local artifact and the spec pinning it.
    fn artifact(&self, name: &str, bytes: &[u8], unpack: Unpack) -> ArtifactSpec {
        let path = write(&self.path(&format!("src/{name}")), bytes);
        ArtifactSpec {
            uri: file_uri(&path),
            sha256: format!("sha256:{}", sha256_hex(bytes).to_uppercase()),
            unpack,
            sig_uri: None,
            headers: BTreeMap::new(),
        }
    }

    fn blobs(&self) -> Vec<String> {
        listing(&self.path("cache/blobs"))
    }
}

fn tool_tgz() -> Vec<u8> {
    gzip(&tar(&[TarItem::File("bin/tool", b"tool v1", 0o755)]))
}

#[test]
fn second_install_comes_from_the_cache() {
    let fx = Fixture::new();
    let mut store = fx.store(Limits::default(), &[], Vec::new());
    let spec = fx.artifact("tool-1.0.tgz", &tool_tgz(), Unpack::Auto);
    let first = store.install(&spec, &fx.path("apps/a")).unwrap();
    assert!(!first.from_cache);
    assert_eq!((first.files, first.bytes), (1, 7));
    let second = store.install(&spec, &fx.path("apps/b")).unwrap();
    assert!(second.from_cache);
    assert_eq!(fs::read(fx.path("apps/b/bin/tool")).unwrap(), b"tool v1");
    let usage = store.usage();
    assert_eq!((usage.entries, usage.bytes), (1, tool_tgz().len() as u64));
    assert_eq!(usage.limit, Limits::default().cache_limit_bytes);
    let blob = store.fetch(&spec).unwrap();
    assert_eq!(
        blob,
        fx.path("cache/blobs")
            .join(format!("sha256-{}", sha256_hex(&tool_tgz())))
    );
}

#[test]
fn checksum_mismatch_caches_and_installs_nothing() {
    let fx = Fixture::new();
    let mut store = fx.store(Limits::default(), &[], Vec::new());
    let mut spec = fx.artifact("tool.tgz", &tool_tgz(), Unpack::TarGz);
    spec.sha256 = sha256_hex(b"something else");
    let err = store.install(&spec, &fx.path("apps/a")).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Checksum);
    assert!(err.to_string().contains(&spec.uri), "{err}");
    assert!(fx.blobs().is_empty());
    assert!(listing(&fx.path("cache/partial")).is_empty());
    assert!(!fx.path("apps/a").exists());
    assert_eq!(store.usage().entries, 0);
}

#[test]
fn a_rotten_cached_blob_is_fetched_again() {
    let fx = Fixture::new();
    let mut store = fx.store(Limits::default(), &[], Vec::new());
    let spec = fx.artifact("tool", b"good bytes", Unpack::None);
    let blob = store.fetch(&spec).unwrap();
    fs::write(&blob, b"bad! bytes").unwrap();
    let installed = store.install(&spec, &fx.path("apps/a")).unwrap();
    assert!(!installed.from_cache);
    assert_eq!(fs::read(fx.path("apps/a/tool")).unwrap(), b"good bytes");
}

#[test]
fn the_index_is_rebuilt_when_lost() {
    let fx = Fixture::new();
    let spec = fx.artifact("tool", b"bytes", Unpack::None);
    fx.store(Limits::default(), &[], Vec::new())
        .fetch(&spec)
        .unwrap();
    fs::remove_file(fx.path("cache/index.json")).unwrap();
    let mut store = fx.store(Limits::default(), &[], Vec::new());
    assert_eq!(store.usage().entries, 1);
    let installed = store.install(&spec, &fx.path("apps/a")).unwrap();
    assert!(installed.from_cache);
}

#[test]
fn the_cache_stays_under_its_limit() {
    let fx = Fixture::new();
    let limits = Limits {
        cache_limit_bytes: 250,
        ..Limits::default()
    };
    let mut store = fx.store(limits, &[], Vec::new());
    let specs: Vec<ArtifactSpec> = (0..4u8)
        .map(|n| fx.artifact(&format!("f{n}"), &[n; 100], Unpack::None))
        .collect();
    for spec in &specs[..3] {
        store.fetch(spec).unwrap();
    }
    store.fetch(&specs[0]).unwrap();
    store.fetch(&specs[3]).unwrap();
    assert_eq!(store.usage().bytes, 200);
    let mut kept: Vec<String> = [0, 3]
        .iter()
        .map(|&n| format!("sha256-{}", sha256_hex(&[n; 100])))
        .collect();
    kept.sort();
    assert_eq!(fx.blobs(), kept);
}

/// A signed artifact: spec with a `file://` signature by `signer`.
fn signed(fx: &Fixture, signer: u8, bytes: &[u8]) -> ArtifactSpec {
    let mut spec = fx.artifact("agent", bytes, Unpack::None);
    let sig = write(
        &fx.path("src/agent.sig"),
        &sign_der(&signing_key(signer), bytes),
    );
    spec.sig_uri = Some(file_uri(&sig));
    spec
}

#[test]
fn signed_artifact_installs_with_a_trusted_key() {
    let fx = Fixture::new();
    let keys = [public_pem(&signing_key(9)), public_pem(&signing_key(1))];
    let mut store = fx.store(Limits::default(), &keys, Vec::new());
    let spec = signed(&fx, 1, b"agent binary");
    store.install(&spec, &fx.path("apps/a")).unwrap();
    // Cached blob and signature: still checked, still fine.
    assert!(store.install(&spec, &fx.path("apps/b")).unwrap().from_cache);
}

#[test]
fn signature_by_an_untrusted_key_is_refused() {
    let fx = Fixture::new();
    let mut store = fx.store(
        Limits::default(),
        &[public_pem(&signing_key(2))],
        Vec::new(),
    );
    let spec = signed(&fx, 1, b"agent binary");
    let err = store.install(&spec, &fx.path("apps/a")).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
    assert!(!fx.path("apps/a").exists());
}

#[test]
fn signature_over_other_bytes_is_refused() {
    let fx = Fixture::new();
    let mut store = fx.store(
        Limits::default(),
        &[public_pem(&signing_key(1))],
        Vec::new(),
    );
    let mut spec = signed(&fx, 1, b"agent binary");
    // The pinned digest matches the (tampered) file; the signature does not.
    let tampered = fx.artifact("agent", b"agent b1nary", Unpack::None);
    spec.sha256 = tampered.sha256;
    let err = store.fetch(&spec).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
}

#[test]
fn signature_without_keys_is_refused_before_downloading() {
    let fx = Fixture::new();
    let mut store = fx.store(Limits::default(), &[], Vec::new());
    let err = store.fetch(&signed(&fx, 1, b"agent")).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
    assert!(err.message.contains("no trusted keys"), "{err}");
    assert!(fx.blobs().is_empty());
}

#[test]
fn a_cached_signature_is_checked_against_the_current_keys() {
    let fx = Fixture::new();
    let spec = signed(&fx, 1, b"agent binary");
    let mut store = fx.store(
        Limits::default(),
        &[public_pem(&signing_key(1))],
        Vec::new(),
    );
    store.fetch(&spec).unwrap();
    let mut store = fx.store(
        Limits::default(),
        &[public_pem(&signing_key(2))],
        Vec::new(),
    );
    let err = store.fetch(&spec).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Signature);
}

#[test]
fn http_artifact_and_signature_are_downloaded() {
    let fx = Fixture::new();
    let bytes = b"served over http".to_vec();
    let signature = sign_der(&signing_key(1), &bytes);
    let mut headers = BTreeMap::new();
    headers.insert("Authorization".to_string(), "Bearer secret".to_string());
    let spec = ArtifactSpec {
        uri: "https://example.com/agent".into(),
        sha256: sha256_hex(&bytes),
        unpack: Unpack::None,
        sig_uri: Some("https://sigs.example.org/agent.sig".into()),
        headers,
    };
    let keys = TrustedKeys::parse(&[public_pem(&signing_key(1))]).unwrap();
    let (transport, seen) = scripted(vec![
        Reply::Status(503, Vec::new()),
        Reply::Status(200, bytes.clone()),
        Reply::Status(200, signature),
    ]);
    let cache = fx.path("cache");
    let mut store = Store::with_transport(
        &cache,
        Limits::default(),
        keys,
        Box::new(transport),
        record_sleep,
    )
    .unwrap();
    let installed = store.install(&spec, &fx.path("apps/a")).unwrap();
    assert_eq!(installed.executables, vec![PathBuf::from("agent")]);
    assert_eq!(fs::read(fx.path("apps/a/agent")).unwrap(), bytes);
    let seen = seen.borrow();
    assert_eq!(seen[2].0, "https://sigs.example.org/agent.sig");
    assert!(seen[1].1.iter().any(|(name, _)| name == "Authorization"));
    assert!(seen[2].1.is_empty(), "credentials went to another origin");
}

#[test]
fn unknown_archive_extension_fails_before_any_download() {
    let fx = Fixture::new();
    let mut store = fx.store(Limits::default(), &[], Vec::new());
    let spec = ArtifactSpec {
        uri: "https://example.com/tool.rar".into(),
        sha256: sha256_hex(b"x"),
        unpack: Unpack::Auto,
        sig_uri: None,
        headers: BTreeMap::new(),
    };
    let err = store.install(&spec, &fx.path("apps/a")).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Invalid);
    assert!(
        err.to_string()
            .starts_with("artifact https://example.com/tool.rar: "),
        "{err}"
    );
}

#[test]
fn bad_trusted_keys_fail_open() {
    let fx = Fixture::new();
    let result = Store::open(&fx.path("cache"), Limits::default(), &["nope".to_string()]);
    assert_eq!(
        result.err().map(|e| e.kind),
        Some(ArtifactErrorKind::Invalid)
    );
}
