//! Which grant each import needs (`grant_needed`) and the install-time check
//! of a component's imports against its policy (`check_imports`).

use crate::caps::bench::grants_of;
use crate::caps::{CAPABILITIES, GrantNeed, Grants, ImportRefusal, check_imports, grant_needed};

/// Every capability with a grant that parses alone, for the imports test.
const GRANTS: &[(&str, &str)] = &[
    ("log", ""),
    ("kv", ""),
    ("events", "publish = [\"a/#\"]"),
    ("timer", ""),
    ("commands", "call = [\"*\"]"),
    ("plugins", "read = true"),
    ("system", ""),
    ("metrics", ""),
    ("mqtt", ""),
    ("http-server", "routes = [\"/\"]"),
    ("http-client", "allow = [\"https://api.example.com\"]"),
    ("files", "read = [\"/etc/cairn\"]"),
    ("process", "[[grants.process.allow]]\nexe = \"/bin/true\""),
    ("sockets", ""),
    ("container", "images = [\"registry.example/apps/*\"]"),
];

fn granting(name: &str) -> Grants {
    let (_, table) = GRANTS
        .iter()
        .find(|(known, _)| *known == name)
        .unwrap_or_else(|| panic!("no sample grant for {name}"));
    grants_of(&format!("[grants.{name}]\n{table}")).unwrap()
}

fn check(imports: &[&str], grants: &Grants) -> Result<(), ImportRefusal> {
    check_imports(imports.iter().copied(), grants)
}

#[test]
fn every_capability_interface_needs_its_own_grant() {
    let nothing = Grants::default();
    let mut checked = 0;
    for (name, interfaces) in CAPABILITIES {
        for interface in *interfaces {
            let import = match interface.strip_suffix('/') {
                Some(package) => format!("{package}/some-interface@0.2.6"),
                None => format!("{interface}@0.1.0"),
            };
            assert_eq!(
                grant_needed(&import),
                GrantNeed::Capability(name),
                "{import}"
            );
            assert_eq!(
                check(&[&import], &nothing),
                Err(ImportRefusal::NotGranted {
                    import: import.clone(),
                    capability: name,
                })
            );
            assert_eq!(check(&[&import], &granting(name)), Ok(()), "{import}");
            // Another capability's grant does not stand in for it.
            let other = if *name == "log" { "kv" } else { "log" };
            assert!(check(&[&import], &granting(other)).is_err(), "{import}");
            checked += 1;
        }
    }
    // Every capability but http-server (an export) is imported.
    assert_eq!(checked, GRANTS.len() - 1);
    assert_eq!(CAPABILITIES.len(), GRANTS.len());
}

#[test]
fn the_kv_interface_without_its_grant_is_refused_by_name() {
    let refusal = check(
        &["wasi:io/streams@0.2.6", "cairn:host/kv@0.1.0"],
        &granting("log"),
    )
    .unwrap_err();
    assert_eq!(
        refusal,
        ImportRefusal::NotGranted {
            import: "cairn:host/kv@0.1.0".into(),
            capability: "kv",
        }
    );
    assert_eq!(
        refusal.to_string(),
        "the plugin imports `cairn:host/kv@0.1.0` but its policy has no [grants.kv]"
    );
}

#[test]
fn files_sockets_and_outgoing_http_need_their_grants() {
    assert_eq!(
        grant_needed("wasi:filesystem/preopens@0.2.6"),
        GrantNeed::Capability("files")
    );
    assert_eq!(
        check(&["wasi:filesystem/types@0.2.6"], &Grants::default()),
        Err(ImportRefusal::NotGranted {
            import: "wasi:filesystem/types@0.2.6".into(),
            capability: "files",
        })
    );
    assert_eq!(
        grant_needed("wasi:sockets/tcp@0.2.6"),
        GrantNeed::Capability("sockets")
    );
    assert_eq!(
        grant_needed("wasi:sockets/ip-name-lookup@0.2.6"),
        GrantNeed::Capability("sockets")
    );
    assert_eq!(
        grant_needed("wasi:http/outgoing-handler@0.2.6"),
        GrantNeed::Capability("http-client")
    );
    assert_eq!(
        check(&["wasi:sockets/tcp@0.2.6"], &granting("http-client")),
        Err(ImportRefusal::NotGranted {
            import: "wasi:sockets/tcp@0.2.6".into(),
            capability: "sockets",
        })
    );
    assert_eq!(
        check(&["wasi:http/outgoing-handler@0.2.6"], &granting("sockets")),
        Err(ImportRefusal::NotGranted {
            import: "wasi:http/outgoing-handler@0.2.6".into(),
            capability: "http-client",
        })
    );
    assert_eq!(
        check(&["wasi:sockets/tcp@0.2.6"], &granting("sockets")),
        Ok(())
    );
    // A package name that merely starts like a capability's is not it.
    assert_eq!(
        grant_needed("wasi:socketsx/tcp@0.2.6"),
        GrantNeed::Unavailable
    );
}

#[test]
fn baseline_wasi_needs_nothing() {
    let baseline = [
        "wasi:io/streams@0.2.6",
        "wasi:io/error@0.2.6",
        "wasi:clocks/monotonic-clock@0.2.6",
        "wasi:random/random@0.2.6",
        "wasi:cli/environment@0.2.6",
        "wasi:http/types@0.2.6",
        "cairn:host/types@0.1.0",
    ];
    for import in baseline {
        assert_eq!(grant_needed(import), GrantNeed::Baseline, "{import}");
    }
    assert_eq!(check(&baseline, &Grants::default()), Ok(()));
    assert_eq!(check(&[], &Grants::default()), Ok(()));
}

#[test]
fn interfaces_the_host_does_not_offer_are_refused() {
    let nothing = Grants::default();
    assert_eq!(
        grant_needed("wasi:nn/inference@0.2.0"),
        GrantNeed::Unavailable
    );
    let refusal = check(&["wasi:nn/inference@0.2.0"], &nothing).unwrap_err();
    assert_eq!(
        refusal,
        ImportRefusal::WasiNotOffered {
            import: "wasi:nn/inference@0.2.0".into()
        }
    );
    assert_eq!(
        refusal.to_string(),
        "the plugin imports `wasi:nn/inference@0.2.0`, which the host does not grant to plugins"
    );
    // The incoming handler is served, never imported.
    assert!(matches!(
        check(
            &["wasi:http/incoming-handler@0.2.6"],
            &granting("http-server")
        ),
        Err(ImportRefusal::WasiNotOffered { .. })
    ));

    for foreign in ["acme:tools/frobnicate@1.0.0", "cairn:host/teleport@0.1.0"] {
        assert_eq!(grant_needed(foreign), GrantNeed::Unavailable, "{foreign}");
        let refusal = check(&[foreign], &nothing).unwrap_err();
        assert_eq!(
            refusal,
            ImportRefusal::Unknown {
                import: foreign.into()
            }
        );
        assert_eq!(
            refusal.to_string(),
            format!("the plugin imports `{foreign}`, which the host does not provide")
        );
    }
}

#[test]
fn the_first_refused_import_is_named() {
    let refusal = check(
        &[
            "wasi:io/streams@0.2.6",
            "cairn:host/timer@0.1.0",
            "acme:tools/frobnicate@1.0.0",
        ],
        &granting("log"),
    )
    .unwrap_err();
    assert_eq!(
        refusal,
        ImportRefusal::NotGranted {
            import: "cairn:host/timer@0.1.0".into(),
            capability: "timer",
        }
    );
}
