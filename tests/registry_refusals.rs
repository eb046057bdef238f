//! Bad input from registries, through the daemon's `cairn plugin install oci://…`:
//! each is refused with a clear error and leaves the device as it was.

mod harness;

use std::path::Path;

use cairn::supply::oci::{Reference, Registry, RegistryOptions, plugin_annotations};
use cairn::supply::signing::SigningKey;
use harness::proxy::DyingProxy;
use harness::registry::TestRegistry;
use harness::{Daemon, Options, padded, plugin_wasm, variant};
use serde_json::Value;

const WASM_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn daemon_for(registries: &[&str]) -> Daemon {
    Daemon::start_with(Options {
        insecure_registries: registries.iter().map(|r| r.to_string()).collect(),
        ..Options::default()
    })
}

/// `cairn plugin push … --insecure` with the daemon's `dev` key; returns the digest.
fn push(daemon: &Daemon, wasm: &Path, reference: &str, extra: &[&str]) -> Result<String, String> {
    daemon.push(wasm, reference, "dev", extra)
}

fn assert_refused(daemon: &Daemon, reference: &str, needle: &str) -> String {
    daemon.assert_install_refused(reference, needle)
}

fn credentials(address: &str, user: &str, password: &str) -> String {
    format!("[registries.\"{address}\"]\nusername = \"{user}\"\npassword = \"{password}\"\n")
}

#[test]
fn wrong_credentials_are_refused_without_revealing_them() {
    let registry = TestRegistry::start_with(Some(("device", "right-password")));
    let mut daemon = Daemon::start_with(Options {
        insecure_registries: vec![registry.address.clone()],
        registry_credentials: Some(credentials(&registry.address, "device", "wrong-password")),
        ..Options::default()
    });
    let publisher_login = daemon.root().join("publisher.toml");
    std::fs::write(
        &publisher_login,
        credentials(&registry.address, "device", "right-password"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&publisher_login, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let reference = registry.reference("plugins/counter:1");
    push(
        &daemon,
        &plugin_wasm("counter"),
        &reference,
        &["--credentials", publisher_login.to_str().unwrap()],
    )
    .expect("push with the right login");

    let err = assert_refused(&daemon, &reference, "credentials");
    assert!(
        err.contains("device") && err.contains("denied"),
        "names the user: {err}"
    );
    assert!(!err.contains("wrong-password"), "leaks the password: {err}");
    assert!(
        !daemon.daemon_log().contains("wrong-password"),
        "the daemon log leaks the password"
    );

    daemon.set_registry_credentials(&credentials(&registry.address, "device", "right-password"));
    daemon.restart();
    let installed = daemon
        .cli_json(&["plugin", "install", &reference])
        .expect("install with the right login");
    assert_eq!(installed["name"], "counter");
}

#[test]
fn a_registry_dying_mid_download_fails_cleanly_and_a_later_install_works() {
    let registry = TestRegistry::start();
    // Dies after 2 MiB of a 5 MiB plugin.
    let proxy = DyingProxy::start(&registry.address, 2 * 1024 * 1024);
    let daemon = daemon_for(&[&registry.address, &proxy.address]);
    let big = padded(&plugin_wasm("counter"), 5 * 1024 * 1024, daemon.root());
    push(&daemon, &big, &registry.reference("plugins/big:1"), &[]).unwrap();

    let through_proxy = format!("oci://{}/plugins/big:1", proxy.address);
    let err = assert_refused(&daemon, &through_proxy, &proxy.address);
    assert!(proxy.dead.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        err.contains("interrupted") || err.contains("connect"),
        "says what happened: {err}"
    );
    let installed = daemon
        .cli_json(&["plugin", "install", &registry.reference("plugins/big:1")])
        .expect("the same plugin from the live registry");
    assert_eq!(installed["name"], "counter");
}

#[test]
fn a_lower_version_from_a_registry_needs_force() {
    let registry = TestRegistry::start();
    let daemon = daemon_for(&[&registry.address]);
    let v2 = registry.reference("plugins/counter:0.2.0");
    let v1 = registry.reference("plugins/counter:0.1.0");
    push(&daemon, &variant("counter", "0.2.0", "ok"), &v2, &[]).unwrap();
    push(&daemon, &plugin_wasm("counter"), &v1, &[]).unwrap();
    daemon.cli_json(&["plugin", "install", &v2]).unwrap();

    assert_refused(&daemon, &v1, "--force");
    let forced = daemon
        .cli_json(&["plugin", "install", &v1, "--force"])
        .expect("a forced downgrade");
    assert_eq!(forced["version"], "0.1.0");
}

#[test]
fn manifests_with_several_layers_a_foreign_config_or_a_core_module_are_refused() {
    let registry = TestRegistry::start();
    let daemon = daemon_for(&[&registry.address]);
    let good = registry.reference("plugins/echo:good");
    push(&daemon, &plugin_wasm("echo"), &good, &[]).unwrap();
    let manifest = fetch_manifest(&registry, "plugins/echo:good");

    let mut two_layers = manifest.clone();
    let layer = two_layers["layers"][0].clone();
    two_layers["layers"].as_array_mut().unwrap().push(layer);
    let reference =
        push_signed_manifest(&registry, &daemon, "plugins/echo:two-layers", &two_layers);
    assert_refused(&daemon, &reference, "layer");

    let mut foreign = manifest.clone();
    foreign["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let reference = push_signed_manifest(&registry, &daemon, "plugins/echo:foreign", &foreign);
    assert_refused(&daemon, &reference, "config");

    // A core module in a well-formed, validly signed artifact.
    let core = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let reference = push_signed_bytes(&registry, &daemon, "plugins/echo:core", &core);
    assert_refused(&daemon, &reference, "component");

    // The untouched artifact still installs: the refusals were about the manifests.
    daemon.cli_json(&["plugin", "install", &good]).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fetch_manifest(registry: &TestRegistry, path: &str) -> Value {
    let client = raw_client(registry);
    let reference: oci_client::Reference = format!("{}/{path}", registry.address).parse().unwrap();
    let (body, _) = runtime()
        .block_on(client.pull_manifest_raw(
            &reference,
            &oci_client::secrets::RegistryAuth::Anonymous,
            &[WASM_MANIFEST],
        ))
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// Pushes `manifest` (whose blobs the repository has) under `path` and signs it
/// as `echo` 0.1.0 with the daemon's `dev` key; returns the `oci://` reference.
fn push_signed_manifest(
    registry: &TestRegistry,
    daemon: &Daemon,
    path: &str,
    manifest: &Value,
) -> String {
    let body = serde_json::to_vec(manifest).unwrap();
    let oref: oci_client::Reference = format!("{}/{path}", registry.address).parse().unwrap();
    runtime()
        .block_on(raw_client(registry).push_manifest_raw(
            &oref,
            body.clone(),
            WASM_MANIFEST.parse().unwrap(),
        ))
        .unwrap();
    sign_as_echo(registry, daemon, path, |_| {
        cairn::state::digest::Digest::of(&body)
    })
}

/// Pushes arbitrary bytes as a Wasm artifact and signs it as `echo` 0.1.0.
fn push_signed_bytes(registry: &TestRegistry, daemon: &Daemon, path: &str, wasm: &[u8]) -> String {
    let meta = cairn::supply::oci::PluginMeta {
        name: "echo".into(),
        version: "0.1.0".into(),
        description: None,
        source: None,
        imports: Vec::new(),
        exports: Vec::new(),
        created: "1970-01-01T00:00:00Z".into(),
    };
    sign_as_echo(registry, daemon, path, |client| {
        let reference = Reference::parse(&registry.reference(path)).unwrap();
        runtime()
            .block_on(client.push_plugin(&reference, wasm, &meta, &|_, _| {}))
            .unwrap()
    })
}

/// Runs `push` (which returns the manifest digest), then signs that digest as
/// `echo` 0.1.0 with the daemon's `dev` key; returns the `oci://` reference.
fn sign_as_echo(
    registry: &TestRegistry,
    daemon: &Daemon,
    path: &str,
    push: impl FnOnce(&Registry) -> cairn::state::digest::Digest,
) -> String {
    let client = Registry::new(RegistryOptions {
        insecure: vec![registry.address.clone()],
        ..RegistryOptions::default()
    })
    .unwrap();
    let digest = push(&client);
    let reference = Reference::parse(&registry.reference(path)).unwrap();
    let key = SigningKey::load(&daemon.root().join("dev.key")).unwrap();
    runtime()
        .block_on(client.sign(
            &reference,
            &digest,
            &key,
            &plugin_annotations("echo", "0.1.0"),
        ))
        .unwrap();
    registry.reference(path)
}

fn raw_client(registry: &TestRegistry) -> oci_client::Client {
    oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(vec![registry.address.clone()]),
        ..Default::default()
    })
}
