//! Publishing plugins to, and fetching them from, OCI registries, with
//! cosign-compatible keyed signatures.
//!
//! Plugins travel as CNCF Wasm artifacts (an OCI manifest with an
//! `application/vnd.wasm.config.v0+json` config and one `application/wasm` layer).
//! Signatures follow cosign's tag convention (`sha256-<hex>.sig`) and simple-signing
//! payload, so `cosign verify --key` and sigstore-rs accept what [`Registry::sign`]
//! writes, and [`verify_signatures`] works fully offline against the host's
//! [`TrustStore`](crate::supply::trust::TrustStore).
//!
//! The safe sequence for installing is: [`Registry::resolve`] a tag once, check
//! [`Registry::signatures`] for that digest with [`verify_signatures`], then
//! [`Registry::pull_plugin`] by the same digest — a tag moved in between cannot slip in.

mod artifact;
mod auth;
mod client;
mod download;
mod error;
mod reference;
mod retry;
mod sign_ops;
mod signature;
mod upload;

#[cfg(test)]
pub(crate) mod tests;

/// The registry parsers a pull runs on a registry's answers, reachable without a
/// network for the fuzz targets in `fuzz/`. Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use super::artifact::{check_config, declared_size, parse_manifest, wasm_descriptors};
    use super::{OciError, Reference, WasmConfig};
    use crate::state::digest::Digest;

    /// What [`super::Registry::pull_plugin`] checks in a manifest body before any
    /// blob is fetched; returns the layer's digest, which the config must name.
    pub fn manifest(body: &[u8]) -> Result<String, OciError> {
        let manifest = parse_manifest(body)?;
        let (config, layer) = wasm_descriptors(&manifest)?;
        declared_size(layer, "layer")?;
        declared_size(config, "config")?;
        // A download refuses a descriptor whose digest is not sha256.
        for desc in [config, layer] {
            Digest::parse(&desc.digest).map_err(|e| OciError::ManifestInvalid(e.to_string()))?;
        }
        Ok(layer.digest.clone())
    }

    /// Parses a config blob and checks it against the manifest's layer digest.
    pub fn config(bytes: &[u8], layer_digest: &str) -> Result<WasmConfig, OciError> {
        check_config(bytes, layer_digest)
    }

    /// What [`super::Registry::signatures`] does with a signature manifest body:
    /// the number of signature layers it would download.
    pub fn signature_manifest(body: &[u8], reference: &Reference) -> Result<usize, OciError> {
        let manifest = super::sign_ops::parse_signature_manifest(body, reference)?;
        let layers = super::signature::signature_descriptors(&manifest);
        for (desc, _) in &layers {
            declared_size(desc, "signature payload")?;
        }
        Ok(layers.len())
    }
}

pub use artifact::{
    ComponentSection, MANIFEST_MEDIA_TYPE, PluginMeta, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE, WasmConfig, annotation,
};
pub use auth::{Credentials, CredentialsError, RegistryCredential, Secret};
pub use client::{PulledPlugin, Registry, RegistryOptions};
pub(crate) use download::BlobSink;
pub use error::OciError;
pub use reference::{Reference, ReferenceError};
pub use signature::{
    COSIGN_SIGNATURE_TYPE, PLUGIN_NAME_ANNOTATION, PLUGIN_VERSION_ANNOTATION, SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE, SignatureCheckError, SignatureLayer, SimpleSigning,
    claimed_identities, plugin_annotations, signature_tag, simple_signing_payload,
    verify_signatures,
};
