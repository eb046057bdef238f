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
mod tests;

pub use artifact::{
    ComponentSection, MANIFEST_MEDIA_TYPE, PluginMeta, WASM_CONFIG_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE, WasmConfig, annotation,
};
pub use auth::{Credentials, CredentialsError, RegistryCredential, Secret};
pub use client::{PulledPlugin, Registry, RegistryOptions};
pub use error::OciError;
pub use reference::{Reference, ReferenceError};
pub use signature::{
    COSIGN_SIGNATURE_TYPE, PLUGIN_NAME_ANNOTATION, PLUGIN_VERSION_ANNOTATION, SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE, SignatureCheckError, SignatureLayer, SimpleSigning,
    claimed_identities, plugin_annotations, signature_tag, simple_signing_payload,
    verify_signatures,
};
