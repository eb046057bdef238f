//! Publishing to a real OCI registry: `cairn plugin push` and
//! `cairn plugin sign oci://…`, checked with the host's own verifier.

mod harness;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use cairn::supply::oci::{
    Reference, Registry, RegistryOptions, plugin_annotations, verify_signatures,
};
use cairn::supply::trust::TrustStore;
use harness::registry::TestRegistry;
use harness::{cairn_bin, plugin_wasm};

fn cairn(args: &[&str]) -> Output {
    Command::new(cairn_bin()).args(args).output().unwrap()
}

fn keys(dir: &std::path::Path) -> BTreeMap<String, PathBuf> {
    let mut keys = BTreeMap::new();
    for name in ["dev", "other"] {
        let prefix = dir.join(name);
        assert!(
            cairn(&["key", "generate", "--out", prefix.to_str().unwrap()])
                .status
                .success()
        );
        keys.insert(name.to_string(), dir.join(format!("{name}.pub")));
    }
    keys
}

#[test]
fn push_signs_and_a_second_signature_keeps_the_first() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let trust = TrustStore::load(&keys(dir.path())).unwrap();
    let wasm = plugin_wasm("counter");
    let reference = registry.reference("plugins/counter:0.1.0");
    let key = dir.path().join("dev.key");
    let push = || {
        cairn(&[
            "--json",
            "plugin",
            "push",
            wasm.to_str().unwrap(),
            &reference,
            "--key",
            key.to_str().unwrap(),
            "--insecure",
        ])
    };
    let first = push();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let pushed: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(pushed["name"], "counter");
    let again: serde_json::Value = serde_json::from_slice(&push().stdout).unwrap();
    assert_eq!(
        again["digest"], pushed["digest"],
        "pushing the same component twice must give the same digest"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Registry::new(RegistryOptions {
        insecure: vec![registry.address.clone()],
        ..RegistryOptions::default()
    })
    .unwrap();
    let parsed = Reference::parse(&reference).unwrap();
    let digest = runtime.block_on(client.resolve(&parsed)).unwrap();
    assert_eq!(digest.to_string(), pushed["digest"]);
    let pulled = runtime
        .block_on(client.pull_plugin(&parsed, &digest, &|_, _| {}))
        .unwrap();
    assert_eq!(pulled.wasm, std::fs::read(&wasm).unwrap());
    assert_eq!(pulled.config.os, "wasip2");

    let expected = plugin_annotations("counter", "0.1.0");
    let signatures = runtime
        .block_on(client.signatures(&parsed, &digest))
        .unwrap();
    assert_eq!(
        signatures.len(),
        1,
        "re-pushing must not duplicate the signature"
    );
    assert_eq!(
        verify_signatures(&signatures, &digest, &trust, &["dev".into()], &expected).unwrap(),
        "dev"
    );
    assert!(verify_signatures(&signatures, &digest, &trust, &["other".into()], &expected).is_err());
    let wrong_name = plugin_annotations("echo", "0.1.0");
    assert!(verify_signatures(&signatures, &digest, &trust, &["dev".into()], &wrong_name).is_err());

    let other_key = dir.path().join("other.key");
    let sign = cairn(&[
        "plugin",
        "sign",
        &reference,
        "--key",
        other_key.to_str().unwrap(),
        "--insecure",
    ]);
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let signatures = runtime
        .block_on(client.signatures(&parsed, &digest))
        .unwrap();
    assert_eq!(signatures.len(), 2);
    assert_eq!(
        verify_signatures(&signatures, &digest, &trust, &["other".into()], &expected).unwrap(),
        "other"
    );
    assert_eq!(
        verify_signatures(&signatures, &digest, &trust, &["dev".into()], &expected).unwrap(),
        "dev"
    );
}

#[test]
fn push_refuses_what_is_not_a_plugin_and_plain_http_unless_asked() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let key = dir.path().join("dev.key");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let reference = registry.reference("plugins/core:1");
    let out = cairn(&[
        "plugin",
        "push",
        core.to_str().unwrap(),
        &reference,
        "--key",
        key.to_str().unwrap(),
        "--insecure",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("core WebAssembly module"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let wasm = plugin_wasm("echo");
    let out = cairn(&[
        "plugin",
        "push",
        wasm.to_str().unwrap(),
        &registry.reference("plugins/echo:1"),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "plain HTTP must need --insecure");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("http"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspect_shows_signers_and_needed_grants() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let config = dir.path().join("cairn.toml");
    std::fs::write(
        &config,
        "[trust.keys]\ndev = \"dev.pub\"\nother = \"other.pub\"\n",
    )
    .unwrap();
    let wasm = plugin_wasm("counter");
    let reference = registry.reference("plugins/counter:0.1.0");
    let key = dir.path().join("dev.key");
    let pushed = cairn(&[
        "plugin",
        "push",
        wasm.to_str().unwrap(),
        &reference,
        "--key",
        key.to_str().unwrap(),
        "--insecure",
    ]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    let out = cairn(&[
        "--json",
        "--config",
        config.to_str().unwrap(),
        "plugin",
        "inspect",
        &reference,
        "--insecure",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["name"], "counter");
    assert_eq!(
        report["signatures"][0]["verified_by"],
        serde_json::json!(["dev"])
    );
    assert_eq!(
        report["signatures"][0]["annotations"]["dev.cairn.plugin.name"],
        "counter"
    );
    let grants: Vec<&str> = report["grants_needed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    for grant in ["log", "kv", "events", "metrics"] {
        assert!(grants.contains(&grant), "{grants:?}");
    }

    let signed_file = dir.path().join("counter.wasm");
    std::fs::copy(&wasm, &signed_file).unwrap();
    let other = dir.path().join("other.key");
    assert!(
        cairn(&[
            "plugin",
            "sign",
            signed_file.to_str().unwrap(),
            "--key",
            other.to_str().unwrap()
        ])
        .status
        .success()
    );
    let out = cairn(&[
        "--json",
        "--config",
        config.to_str().unwrap(),
        "plugin",
        "inspect",
        signed_file.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["signatures"][0]["verified_by"],
        serde_json::json!(["other"])
    );
    assert!(report["manifest_digest"].is_null());
}
