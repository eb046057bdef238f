//! Interoperability with `wkg` (Bytecode Alliance's wasm package tool): an
//! artifact pushed by `cairn` pulls with `wkg oci pull`, and one pushed by
//! `wkg oci push` installs with `cairn` once signed with `cairn plugin sign`.

mod harness;

use std::process::{Command, Output};

use harness::registry::TestRegistry;
use harness::{Daemon, Options, plugin_wasm};

fn wkg(args: &[&str]) -> Output {
    Command::new("wkg")
        .args(args)
        .output()
        .expect("wkg is installed (scripts/test installs it)")
}

#[test]
fn cairn_pushes_what_wkg_pulls_and_installs_what_wkg_pushes() {
    let registry = TestRegistry::start();
    let daemon = Daemon::start_with(Options {
        insecure_registries: vec![registry.address.clone()],
        ..Options::default()
    });
    let key = daemon.root().join("dev.key");

    // cairn → wkg
    let counter = plugin_wasm("counter");
    let reference = registry.reference("plugins/counter:0.1.0");
    daemon
        .cli_json(&[
            "plugin",
            "push",
            counter.to_str().unwrap(),
            &reference,
            "--key",
            key.to_str().unwrap(),
            "--insecure",
        ])
        .expect("cairn push");
    let pulled = daemon.root().join("pulled.wasm");
    let bare = reference.trim_start_matches("oci://");
    let out = wkg(&[
        "oci",
        "pull",
        "--insecure",
        &registry.address,
        bare,
        "-o",
        pulled.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "wkg pull: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&counter).unwrap()
    );

    // wkg → cairn
    let echo = plugin_wasm("echo");
    let reference = registry.reference("plugins/echo:0.1.0");
    let bare = reference.trim_start_matches("oci://");
    let out = wkg(&[
        "oci",
        "push",
        "--insecure",
        &registry.address,
        bare,
        echo.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "wkg push: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unsigned = daemon
        .cli_json(&["plugin", "install", &reference])
        .unwrap_err();
    assert!(unsigned.contains("signature"), "{unsigned}");
    let sign = daemon.cli(&[
        "plugin",
        "sign",
        &reference,
        "--key",
        key.to_str().unwrap(),
        "--insecure",
    ]);
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let installed = daemon
        .cli_json(&["plugin", "install", &reference])
        .expect("install what wkg pushed");
    assert_eq!(installed["name"], "echo");
    assert_eq!(daemon.call("echo", "echo", "42").unwrap(), 42);
}
