//! One line on the admin socket: decoded as the daemon decodes a request,
//! then what the daemon parses out of it before acting (component bytes,
//! detached signature, version, OCI reference); and decoded as the CLI
//! decodes a reply line.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use cairn::admin::{Request, Response};
use cairn::supply::VerifyingKey;
use cairn::supply::oci::Reference;
use libfuzzer_sys::fuzz_target;

/// Any P-256 key: a signature is decoded in full before it can mismatch.
const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYG3EvpBFmUeTLjXRPivgYzSuODMw
cmhYzhC46Vv5qyZwhJwbB4HcXJjb00xvWVw6AfGKCnNbKFPwHlqwJvBv0w==
-----END PUBLIC KEY-----";

fn key() -> &'static VerifyingKey {
    static KEY_CELL: OnceLock<VerifyingKey> = OnceLock::new();
    KEY_CELL.get_or_init(|| VerifyingKey::from_pem(KEY).expect("test key"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        match request {
            Request::Install(install) => {
                let Ok(bytes) = base64::engine::general_purpose::STANDARD
                    .decode(install.component_b64.as_bytes())
                else {
                    return;
                };
                if let Some(version) = &install.version {
                    let _ = semver::Version::parse(version);
                }
                let _ = cairn::supply::inspect(&bytes);
                if let Some(signature) = &install.signature {
                    let _ = cairn::supply::verify_blob(key(), &bytes, signature);
                }
            }
            Request::InstallRef { reference, .. } => {
                let _ = Reference::parse(&reference);
            }
            Request::Rollback { name } | Request::Remove { name } => {
                let _ = cairn::policy::validate_plugin_name(&name);
            }
            Request::Call { payload, .. } => {
                // Forwarded to the plugin as JSON bytes.
                let _ = serde_json::to_vec(&payload);
            }
            _ => {}
        }
    }
    if let Ok(response) = serde_json::from_slice::<Response>(data) {
        let _ = serde_json::to_vec(&response);
    }
});
