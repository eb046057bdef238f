//! What a registry answers during an install, parsed as a pull does: the
//! plugin's manifest, its Wasm config blob, the signature manifest, and a
//! signature's simple-signing payload (read before and after verification).
#![no_main]

use std::sync::OnceLock;

use cairn::supply::oci::fuzzing;
use cairn::supply::oci::{Reference, SignatureLayer, SimpleSigning, claimed_identities};
use libfuzzer_sys::fuzz_target;

/// The digest a config must name when the input is not a valid manifest.
const LAYER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn signature_reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        Reference::parse(
            "oci://registry.example:5000/plugins/counter:sha256-0000000000000000000000000000000000000000000000000000000000000000.sig",
        )
        .expect("valid reference")
    })
}

fuzz_target!(|data: &[u8]| {
    let layer = fuzzing::manifest(data).unwrap_or_else(|_| LAYER.to_string());
    let _ = fuzzing::config(data, &layer);
    let _ = fuzzing::signature_manifest(data, signature_reference());
    let _ = serde_json::from_slice::<SimpleSigning>(data);
    let _ = claimed_identities(&[SignatureLayer {
        payload: data.to_vec(),
        signature: String::new(),
    }]);
});
