//! Installing plugins from a real OCI registry: verified by cosign signatures
//! for exactly the resolved digest, refused with a clear error otherwise, and
//! still working once the registry is gone.

mod harness;

use std::path::Path;

use cairn::supply::oci::{PluginMeta, Reference, Registry, RegistryOptions, plugin_annotations};
use cairn::supply::signing::SigningKey;
use harness::registry::TestRegistry;
use harness::{Daemon, Options, plugin_wasm, variant};

fn daemon_for(registry: &TestRegistry) -> Daemon {
    Daemon::start_with(Options {
        insecure_registries: vec![registry.address.clone()],
        ..Options::default()
    })
}

/// `cairn plugin push` with one of the daemon's test keys.
fn push(daemon: &Daemon, wasm: &Path, reference: &str, key: &str) -> String {
    daemon.push(wasm, reference, key, &[]).expect("push")
}

/// Pushes without `cairn`'s signing, then signs (if asked) with arbitrary annotations.
fn push_raw(
    registry: &TestRegistry,
    daemon: &Daemon,
    wasm: &Path,
    path: &str,
    sign_as: Option<(&str, &str)>,
) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Registry::new(RegistryOptions {
        insecure: vec![registry.address.clone()],
        ..RegistryOptions::default()
    })
    .unwrap();
    let reference = Reference::parse(&registry.reference(path)).unwrap();
    let bytes = std::fs::read(wasm).unwrap();
    let info = cairn::supply::component::inspect(&bytes).unwrap();
    let meta = PluginMeta {
        name: info.name.clone().unwrap(),
        version: info.version.clone().unwrap().to_string(),
        description: None,
        source: None,
        imports: info.imports,
        exports: info.exports,
        created: "1970-01-01T00:00:00Z".into(),
    };
    let digest = runtime
        .block_on(client.push_plugin(&reference, &bytes, &meta, &|_, _| {}))
        .unwrap();
    if let Some((name, version)) = sign_as {
        let key = SigningKey::load(&daemon.root().join("dev.key")).unwrap();
        runtime
            .block_on(client.sign(
                &reference,
                &digest,
                &key,
                &plugin_annotations(name, version),
            ))
            .unwrap();
    }
    digest.to_string()
}

#[test]
fn installs_and_upgrades_from_a_registry_then_works_offline() {
    let registry = TestRegistry::start();
    let mut daemon = daemon_for(&registry);
    let v1 = registry.reference("plugins/counter:0.1.0");
    let digest = push(&daemon, &plugin_wasm("counter"), &v1, "dev");
    let installed = daemon
        .cli_json(&["plugin", "install", &v1])
        .expect("install from the registry");
    assert_eq!(installed["version"], "0.1.0");
    daemon.call("counter", "increment", r#"{"by": 2}"#).unwrap();

    // Without --json, slow steps are reported on stderr as they happen.
    let v2 = registry.reference("plugins/counter:0.2.0");
    let key = daemon.root().join("dev.key");
    let v2_wasm = variant("counter", "0.2.0", "ok");
    let pushed = daemon.cli(&[
        "plugin",
        "push",
        v2_wasm.to_str().unwrap(),
        &v2,
        "--key",
        key.to_str().unwrap(),
        "--insecure",
    ]);
    assert!(pushed.status.success(), "{pushed:?}");
    assert!(String::from_utf8_lossy(&pushed.stderr).contains("uploading"));
    let upgraded = daemon.cli(&["plugin", "install", &v2]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&upgraded.stdout),
        String::from_utf8_lossy(&upgraded.stderr),
    );
    assert!(upgraded.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("installed counter 0.2.0"), "{stdout}");
    let steps: Vec<&str> = stderr
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "resolving",
            "fetching",
            "downloading",
            "verifying",
            "compiling",
            "starting"
        ],
        "{stderr}"
    );
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 2);

    // The registry goes away: a restart brings everything back from the local cache,
    // and a digest already fetched installs without the network.
    drop(registry);
    daemon.restart();
    assert_eq!(
        daemon.call("counter", "version", "null").unwrap()["version"],
        "0.2.0"
    );
    daemon.cli_json(&["plugin", "remove", "counter"]).unwrap();
    let pinned = format!("{}@{digest}", v1.rsplit_once(':').unwrap().0);
    let offline = daemon
        .cli_json(&["plugin", "install", &pinned])
        .expect("cached digest installs offline");
    assert_eq!(offline["version"], "0.1.0");
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 2);
}

#[test]
fn refuses_unverifiable_or_ungranted_artifacts_and_changes_nothing() {
    let registry = TestRegistry::start();
    let daemon = daemon_for(&registry);
    let refused = |reference: &str, needle: &str| {
        daemon.assert_install_refused(reference, needle);
    };

    let untrusted = registry.reference("plugins/echo:untrusted");
    push(&daemon, &plugin_wasm("echo"), &untrusted, "other");
    refused(&untrusted, "signature");

    // Pushes are reproducible: each case uses its own component, so no digest
    // carries another case's signatures.
    let unsigned = "plugins/trap:unsigned";
    push_raw(&registry, &daemon, &plugin_wasm("trap"), unsigned, None);
    refused(&registry.reference(unsigned), "no signature");

    let renamed = "plugins/membomb:renamed";
    push_raw(
        &registry,
        &daemon,
        &plugin_wasm("membomb"),
        renamed,
        Some(("counter", "0.1.0")),
    );
    refused(&registry.reference(renamed), "dev.cairn.plugin.name");

    let escape = registry.reference("plugins/escape:1");
    push(&daemon, &plugin_wasm("escape"), &escape, "dev");
    refused(&escape, "cairn:host/commands");

    let tampered = registry.reference("plugins/echo:tampered");
    push(&daemon, &plugin_wasm("echo"), &tampered, "dev");
    let blobs = registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256");
    let wasm_len = std::fs::metadata(plugin_wasm("echo")).unwrap().len();
    for entry in walk(&blobs) {
        if entry.file_name().is_some_and(|name| name == "data")
            && std::fs::metadata(&entry).unwrap().len() == wasm_len
        {
            let mut bytes = std::fs::read(&entry).unwrap();
            bytes[100] ^= 0xff;
            std::fs::write(&entry, bytes).unwrap();
        }
    }
    refused(&tampered, "digest");

    refused(&registry.reference("plugins/nothing:here"), "not found");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_component_without_an_identity_takes_the_signed_one_from_the_registry() {
    let registry = TestRegistry::start();
    let daemon = daemon_for(&registry);
    let anonymous = variant("http-hello", "0.1.0", "anonymous");
    let reference = registry.reference("plugins/hello:anon");

    // Push needs a name and version for such a component.
    let err = daemon.push(&anonymous, &reference, "dev", &[]).unwrap_err();
    assert!(err.contains("--name"), "{err}");
    daemon
        .push(
            &anonymous,
            &reference,
            "dev",
            &["--name", "http-hello", "--version", "1.4.0"],
        )
        .expect("push with --name/--version");
    let installed = daemon
        .cli_json(&["plugin", "install", &reference])
        .expect("install");
    assert_eq!(installed["name"], "http-hello");
    assert_eq!(installed["version"], "1.4.0");
    daemon
        .cli_json(&["plugin", "remove", "http-hello"])
        .unwrap();

    // A claim signed by a key the claimed name's policy does not trust is refused.
    // (Each case pushes other bytes: a manifest installed once keeps the
    // signatures recorded then.)
    let forged = registry.reference("plugins/hello:forged");
    let other_build = variant("http-hello", "0.2.0", "anonymous");
    daemon
        .push(
            &other_build,
            &forged,
            "other",
            &["--name", "http-hello", "--version", "1.5.0"],
        )
        .expect("push");
    let err = daemon.assert_install_refused(&forged, "signature");
    assert!(!err.contains("several"), "{err}");

    // Signing an existing artifact again binds a name too; two signatures
    // claiming different identities are ambiguous and refused.
    let twice = registry.reference("plugins/hello:twice");
    let third_build = variant("http-hello", "0.3.0", "anonymous");
    daemon
        .push(
            &third_build,
            &twice,
            "dev",
            &["--name", "http-hello", "--version", "1.6.0"],
        )
        .expect("push");
    let signed = daemon
        .cli_json(&[
            "plugin",
            "sign",
            &twice,
            "--key",
            daemon.root().join("dev.key").to_str().unwrap(),
            "--insecure",
            "--name",
            "http-hello",
            "--version",
            "1.7.0",
        ])
        .expect("sign with a second identity");
    assert_eq!(signed["version"], "1.7.0");
    daemon.assert_install_refused(&twice, "several");
}
