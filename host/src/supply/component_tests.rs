use super::*;

/// A component shaped like a Cairn plugin: imports host interfaces, re-exports one,
/// and wraps a core module that carries the metadata (as toolchains leave it).
fn plugin(metadata: Option<&str>) -> Vec<u8> {
    let custom = metadata
        .map(|m| format!("(@custom \"cairn-plugin\" \"{}\")", m.replace('"', "\\\"")))
        .unwrap_or_default();
    let wat = format!(
        r#"(component
            (import "cairn:host/kv@0.1.0" (instance $kv
                (export "get" (func (param "key" string) (result (option (list u8)))))))
            (import "wasi:io/streams@0.2.3" (instance $streams))
            (import "cairn:plugin/lifecycle@0.1.0" (instance $life))
            (core module $m {custom}
                (func (export "start") (result i32) i32.const 0))
            (core instance (instantiate $m))
            (export "cairn:plugin/lifecycle@0.1.0" (instance $life)))"#
    );
    wat::parse_str(wat).unwrap()
}

/// Encodes a custom section by hand (id 0, size, name, data).
fn custom_section(name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    let mut section = vec![0];
    leb(body.len(), &mut section);
    section.extend(body);
    section
}

#[test]
fn reads_interfaces_and_nested_metadata() {
    let bytes = plugin(Some(r#"{"name":"counter","version":"1.2.3-rc.1"}"#));
    let info = inspect(&bytes).unwrap();
    assert_eq!(info.name.as_deref(), Some("counter"));
    assert_eq!(
        info.version,
        Some(semver::Version::parse("1.2.3-rc.1").unwrap())
    );
    assert_eq!(
        info.imports,
        [
            "cairn:host/kv@0.1.0",
            "wasi:io/streams@0.2.3",
            "cairn:plugin/lifecycle@0.1.0"
        ]
    );
    assert_eq!(info.exports, ["cairn:plugin/lifecycle@0.1.0"]);
    assert_eq!(info.size, bytes.len());
}

#[test]
fn metadata_is_optional() {
    let info = inspect(&plugin(None)).unwrap();
    assert_eq!((info.name, info.version), (None, None));
    let info = inspect(&plugin(Some(r#"{"name":"echo","extra":[1]}"#))).unwrap();
    assert_eq!((info.name.as_deref(), info.version), (Some("echo"), None));
}

#[test]
fn top_level_section_appended_to_a_component() {
    let mut bytes = plugin(None);
    bytes.extend(custom_section(
        METADATA_SECTION,
        br#"{"name":"echo","version":"0.3.0"}"#,
    ));
    let info = inspect(&bytes).unwrap();
    assert_eq!(info.name.as_deref(), Some("echo"));
    assert_eq!(info.version, Some(semver::Version::new(0, 3, 0)));

    // The same section twice is harmless; two that disagree are ambiguous.
    let mut twice = plugin(Some(r#"{"name":"echo","version":"0.3.0"}"#));
    twice.extend(custom_section(
        METADATA_SECTION,
        br#"{"name":"echo","version":"0.3.0"}"#,
    ));
    assert!(inspect(&twice).is_ok());
    bytes.extend(custom_section(
        METADATA_SECTION,
        br#"{"name":"evil","version":"0.3.0"}"#,
    ));
    assert!(matches!(
        inspect(&bytes),
        Err(ComponentError::BadMetadata(_))
    ));
}

#[test]
fn bad_metadata_is_reported() {
    for (meta, needle) in [
        (r#"{"name":"counter","version":"1.2"}"#, "not semver"),
        (r#"{"name":"counter""#, "JSON"),
        (r#"[1,2]"#, "JSON"),
        (r#"{"name":"Counter","version":"1.0.0"}"#, "plugin name"),
        (r#"{"name":"../etc","version":"1.0.0"}"#, "plugin name"),
    ] {
        let err = inspect(&plugin(Some(meta))).unwrap_err();
        assert!(
            matches!(err, ComponentError::BadMetadata(_)),
            "{meta}: {err}"
        );
        assert!(err.to_string().contains(needle), "{meta}: {err}");
    }
}

#[test]
fn core_module_is_refused() {
    let module = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let err = inspect(&module).unwrap_err();
    assert_eq!(err, ComponentError::CoreModule);
    assert!(err.to_string().contains("wasm32-wasip2"));
}

#[test]
fn garbage_is_not_wasm() {
    for bytes in [
        &b""[..],
        b"\0asm",
        b"hello world, not wasm",
        b"\x7fELF\x02\x01\x01\0",
    ] {
        assert_eq!(inspect(bytes), Err(ComponentError::NotWasm), "{bytes:?}");
    }
}

#[test]
fn truncated_component_is_malformed() {
    let bytes = plugin(Some(r#"{"name":"counter","version":"1.0.0"}"#));
    for cut in [9, bytes.len() / 2, bytes.len() - 1] {
        let err = inspect(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, ComponentError::Malformed(_)),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn invalid_code_is_rejected_by_validation() {
    // Parses fine, but the nested function returns the wrong type.
    let bytes = wat::parse_str("(component (core module (func (result i32) i64.const 0)))");
    let bytes = bytes.unwrap();
    let err = inspect(&bytes).unwrap_err();
    assert!(matches!(err, ComponentError::Malformed(_)), "{err}");
    assert!(err.to_string().contains("type mismatch"), "{err}");

    let mut unknown_section = plugin(None);
    unknown_section.extend([0x7f, 0x01, 0x00]);
    assert!(matches!(
        inspect(&unknown_section),
        Err(ComponentError::Malformed(_))
    ));
}
