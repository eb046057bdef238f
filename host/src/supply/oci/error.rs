//! Errors of registry operations, one variant per distinct failure.

use super::auth::CredentialsError;
use super::reference::ReferenceError;

/// Why a registry operation failed. Messages never contain secrets.
#[derive(thiserror::Error, Debug)]
pub enum OciError {
    /// A reference string is malformed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The credentials file is unusable.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The options cannot build a client.
    #[error("invalid registry client configuration: {0}")]
    Config(String),
    /// The registry refused the request for lack of (valid) credentials.
    #[error("registry {registry} refused access ({as_who}): {hint}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// `anonymous`, `user "..."` or `bearer token`.
        as_who: String,
        /// What to do about it.
        hint: String,
    },
    /// The manifest, tag or blob does not exist.
    #[error("{what} not found in {reference}")]
    NotFound {
        /// What was looked up.
        what: String,
        /// Where.
        reference: String,
    },
    /// A TLS connection failed, most often because the registry serves plain HTTP.
    #[error(
        "TLS connection to registry {registry} failed ({detail}); if this registry serves \
         plain HTTP, it must be allowed explicitly by listing {registry:?} as insecure"
    )]
    Tls {
        /// The registry.
        registry: String,
        /// The underlying error.
        detail: String,
    },
    /// The registry could not be reached, or failed with a server error, on every attempt.
    #[error("registry {registry} unreachable after {attempts} attempt(s): {detail}")]
    Network {
        /// The registry.
        registry: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last underlying error.
        detail: String,
    },
    /// The registry answered with an error that retrying cannot fix.
    #[error("registry {registry} error: {detail}")]
    Registry {
        /// The registry.
        registry: String,
        /// The registry's answer.
        detail: String,
    },
    /// The manifest's bytes do not hash to the digest requested.
    #[error(
        "manifest digest mismatch: requested {expected}, registry returned content hashing to {actual}"
    )]
    ManifestDigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The manifest is not an OCI image manifest.
    #[error(
        "not a Wasm artifact: manifest media type is {found:?}, expected \"application/vnd.oci.image.manifest.v1+json\""
    )]
    ManifestMediaType {
        /// The media type found (empty when absent).
        found: String,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    /// A Wasm artifact must have exactly one layer.
    #[error("not a Wasm artifact: the manifest has {found} layers, expected exactly one")]
    LayerCount {
        /// The number of layers found.
        found: usize,
    },
    /// The single layer is not a Wasm binary.
    #[error("not a Wasm artifact: layer media type is {found:?}, expected \"application/wasm\"")]
    LayerMediaType {
        /// The media type found.
        found: String,
    },
    /// The config is not a Wasm config.
    #[error(
        "not a Wasm artifact: config media type is {found:?}, expected \"application/vnd.wasm.config.v0+json\""
    )]
    ConfigMediaType {
        /// The media type found.
        found: String,
    },
    /// The config blob is not a valid Wasm config.
    #[error("invalid Wasm config: {0}")]
    ConfigInvalid(String),
    /// The config's `layerDigests` does not list exactly the manifest's layer.
    #[error("Wasm config layerDigests {found:?} does not match the manifest's layer {layer}")]
    ConfigLayerDigests {
        /// `layerDigests` from the config.
        found: Vec<String>,
        /// The manifest's layer digest.
        layer: String,
    },
    /// A blob is larger than allowed; refused before downloading.
    #[error("{what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Which blob.
        what: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A blob's bytes do not hash to its descriptor's digest.
    #[error("{what} digest mismatch: expected {expected}, downloaded content hashes to {actual}")]
    BlobDigestMismatch {
        /// Which blob.
        what: String,
        /// The descriptor's digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A blob's length differs from its descriptor's size.
    #[error("{what} size mismatch: descriptor says {expected} bytes, registry sent {actual}")]
    BlobSizeMismatch {
        /// Which blob.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// Bytes received (so far).
        actual: u64,
    },
    /// Where a download puts its bytes refused them (a full disk, a store gone).
    #[error("storing {what} failed: {detail}")]
    Store {
        /// Which blob.
        what: String,
        /// What the store said.
        detail: String,
    },
    /// The signature manifest (`sha256-<hex>.sig`) is malformed.
    #[error("invalid signature manifest {reference}: {reason}")]
    SignatureManifest {
        /// Where it was fetched from.
        reference: String,
        /// What is wrong.
        reason: String,
    },
}

impl OciError {
    /// Whether retrying might succeed: connection failures and server-side errors.
    pub fn is_transient(&self) -> bool {
        matches!(self, OciError::Network { .. })
    }
}

/// The error and its sources joined by `: `, since HTTP client errors keep the useful
/// part (connection refused, TLS alert) in their source chain.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
