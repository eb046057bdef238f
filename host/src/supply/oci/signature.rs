//! Cosign-compatible keyed signatures: the "simple signing" payload, the
//! `sha256-<hex>.sig` manifest that stores them, and offline verification against the
//! host's trust store.
//!
//! The payload is signed with the host's [`sign_blob`](crate::supply::signing::sign_blob)
//! (base64 DER ECDSA-P256-SHA256), which is exactly the encoding cosign stores in the
//! `dev.cosignproject.cosign/signature` layer annotation.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::{Deserialize, Serialize};

use super::artifact::{MANIFEST_MEDIA_TYPE, descriptor};
use super::error::OciError;
use crate::state::digest::Digest;
use crate::supply::signing::SignatureError;
use crate::supply::trust::TrustStore;

/// Media type of a signature layer (the payload).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign image signature.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// Media type of the signature manifest's config.
pub(crate) const SIG_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The config blob sigstore-rs writes; cosign readers never look at it.
pub(crate) const SIG_CONFIG: &[u8] = b"{}";

/// One signature as stored in the registry: the exact payload bytes that were signed
/// and the base64 signature over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The simple-signing JSON payload, byte for byte.
    pub payload: Vec<u8>,
    /// Base64 DER ECDSA signature of `payload`.
    pub signature: String,
}

/// The simple-signing payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimpleSigning {
    /// The part verifiers must understand.
    pub critical: Critical,
    /// Free-form annotations (signed, so verifiers may rely on them).
    #[serde(default)]
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// `critical` section of the payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Critical {
    /// The repository the signer saw (informational; verifiers do not check it).
    pub identity: Identity,
    /// The signed manifest.
    pub image: Image,
    /// Always [`COSIGN_SIGNATURE_TYPE`].
    #[serde(rename = "type")]
    pub type_name: String,
}

/// `critical.identity`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    /// `HOST/REPO`.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the signed manifest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload bytes for signing `manifest_digest` in `docker_reference` with
/// `annotations`. Cosign writes `"optional": null` when there are no annotations.
pub fn simple_signing_payload(
    docker_reference: &str,
    manifest_digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let payload = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: docker_reference.to_owned(),
            },
            image: Image {
                docker_manifest_digest: manifest_digest.to_string(),
            },
            type_name: COSIGN_SIGNATURE_TYPE.to_owned(),
        },
        optional: (!annotations.is_empty()).then(|| {
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        }),
    };
    // Serialising a struct of strings and string maps cannot fail.
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// The tag cosign stores signatures of `manifest_digest` under.
pub fn signature_tag(manifest_digest: &Digest) -> String {
    format!("sha256-{}.sig", manifest_digest.hex())
}

/// Builds the signature manifest from existing layer descriptors plus a new one.
pub(crate) fn signature_manifest(layers: Vec<OciDescriptor>) -> OciImageManifest {
    OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: descriptor(
            SIG_CONFIG_MEDIA_TYPE,
            &Digest::of(SIG_CONFIG),
            SIG_CONFIG.len(),
        ),
        layers,
        subject: None,
        artifact_type: None,
        annotations: None,
    }
}

/// The descriptor of a signature layer.
pub(crate) fn signature_descriptor(payload: &[u8], signature: &str) -> OciDescriptor {
    let mut desc = descriptor(
        SIMPLE_SIGNING_MEDIA_TYPE,
        &Digest::of(payload),
        payload.len(),
    );
    desc.annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        signature.to_owned(),
    )]));
    desc
}

/// Why no stored signature was accepted.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheckError {
    /// The artifact has no signatures at all.
    #[error("the artifact {digest} has no signatures")]
    NoSignatures {
        /// The manifest digest checked.
        digest: String,
    },
    /// No signature verifies with a trusted key named by policy.
    #[error("none of the {count} signature(s) is by a trusted key: {reason}")]
    Untrusted {
        /// How many signatures were examined.
        count: usize,
        /// Why the last one was refused (names the keys tried).
        reason: SignatureError,
    },
    /// A trusted key signed a payload that is not a cosign image signature.
    #[error("signature by trusted key {key:?} has an invalid payload: {reason}")]
    InvalidPayload {
        /// The key that verified.
        key: String,
        /// What is wrong with the payload.
        reason: String,
    },
    /// A trusted key signed a different manifest.
    #[error("signature by trusted key {key:?} is for manifest {found}, not {expected}")]
    WrongDigest {
        /// The key that verified.
        key: String,
        /// The manifest being checked.
        expected: String,
        /// The digest in the signed payload.
        found: String,
    },
    /// A trusted key signed this manifest with different annotations.
    #[error(
        "signature by trusted key {key:?} has annotation {annotation:?} = {}, expected {expected:?}",
        .found.as_ref().map_or("(missing)".to_owned(), |f| format!("{f:?}"))
    )]
    AnnotationMismatch {
        /// The key that verified.
        key: String,
        /// The annotation.
        annotation: String,
        /// The value required.
        expected: String,
        /// The signed value, if present.
        found: Option<String>,
    },
}

impl SignatureCheckError {
    /// Ranks refusals so the most informative one is reported: a trusted signature for
    /// the wrong name beats an untrusted one.
    fn rank(&self) -> u8 {
        match self {
            SignatureCheckError::NoSignatures { .. } => 0,
            SignatureCheckError::Untrusted { .. } => 1,
            SignatureCheckError::InvalidPayload { .. } => 2,
            SignatureCheckError::WrongDigest { .. } => 3,
            SignatureCheckError::AnnotationMismatch { .. } => 4,
        }
    }
}

/// Accepts the artifact `manifest_digest` if one of `signatures` verifies, over its
/// exact payload bytes, with a key in `trust` named by `signers`, is a cosign image
/// signature of `manifest_digest`, and carries every `expected` annotation. Returns the
/// name of the key that verified.
pub fn verify_signatures(
    signatures: &[SignatureLayer],
    manifest_digest: &Digest,
    trust: &TrustStore,
    signers: &[String],
    expected: &BTreeMap<String, String>,
) -> Result<String, SignatureCheckError> {
    if signatures.is_empty() {
        return Err(SignatureCheckError::NoSignatures {
            digest: manifest_digest.to_string(),
        });
    }
    let mut best: Option<SignatureCheckError> = None;
    for layer in signatures {
        let refusal = match check_one(
            layer,
            manifest_digest,
            trust,
            signers,
            expected,
            signatures.len(),
        ) {
            Ok(key) => return Ok(key),
            Err(e) => e,
        };
        tracing::debug!(error = %refusal, "signature refused");
        if best.as_ref().is_none_or(|b| refusal.rank() > b.rank()) {
            best = Some(refusal);
        }
    }
    Err(best.unwrap_or(SignatureCheckError::NoSignatures {
        digest: manifest_digest.to_string(),
    }))
}

fn check_one(
    layer: &SignatureLayer,
    manifest_digest: &Digest,
    trust: &TrustStore,
    signers: &[String],
    expected: &BTreeMap<String, String>,
    count: usize,
) -> Result<String, SignatureCheckError> {
    let key = trust
        .verify_by_any(signers, &layer.payload, Some(&layer.signature))
        .map_err(|reason| SignatureCheckError::Untrusted { count, reason })?;
    let payload: SimpleSigning = serde_json::from_slice(&layer.payload).map_err(|e| {
        SignatureCheckError::InvalidPayload {
            key: key.clone(),
            reason: e.to_string(),
        }
    })?;
    if payload.critical.type_name != COSIGN_SIGNATURE_TYPE {
        return Err(SignatureCheckError::InvalidPayload {
            key,
            reason: format!(
                "critical.type is {:?}, expected {COSIGN_SIGNATURE_TYPE:?}",
                payload.critical.type_name
            ),
        });
    }
    if payload.critical.image.docker_manifest_digest != manifest_digest.as_str() {
        return Err(SignatureCheckError::WrongDigest {
            key,
            expected: manifest_digest.to_string(),
            found: payload.critical.image.docker_manifest_digest,
        });
    }
    let optional = payload.optional.unwrap_or_default();
    for (name, value) in expected {
        let found = optional.get(name).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if found.as_deref() != Some(value.as_str()) {
            return Err(SignatureCheckError::AnnotationMismatch {
                key,
                annotation: name.clone(),
                expected: value.clone(),
                found,
            });
        }
    }
    Ok(key)
}

/// Extracts the signature layers from a signature manifest (layers of other media
/// types, or without a signature annotation, are not signatures and are skipped).
pub(crate) fn signature_descriptors(manifest: &OciImageManifest) -> Vec<(&OciDescriptor, &str)> {
    manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter_map(|l| {
            let sig = l.annotations.as_ref()?.get(SIGNATURE_ANNOTATION)?;
            Some((l, sig.as_str()))
        })
        .collect()
}

/// Fails when a signature manifest is not shaped like one.
pub(crate) fn check_signature_manifest(
    manifest: &OciImageManifest,
    reference: &str,
) -> Result<(), OciError> {
    if manifest.layers.len() > 1024 {
        return Err(OciError::SignatureManifest {
            reference: reference.to_owned(),
            reason: format!("{} layers is more than 1024", manifest.layers.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "signature_unit_tests.rs"]
mod tests;

/// Signed annotation binding a signature to the plugin's name: installs check it
/// against the name the component and its policy carry.
pub const PLUGIN_NAME_ANNOTATION: &str = "dev.cairn.plugin.name";
/// Signed annotation binding a signature to the plugin's version.
pub const PLUGIN_VERSION_ANNOTATION: &str = "dev.cairn.plugin.version";

/// The plugin names and versions the signatures claim, unverified and without
/// repeats: a component without an identity of its own takes it from here, and
/// is then verified against the claimed name's policy (so only a signer that
/// policy trusts can name it).
pub fn claimed_identities(signatures: &[SignatureLayer]) -> Vec<(String, String)> {
    let mut claims: Vec<(String, String)> = signatures
        .iter()
        .filter_map(|layer| {
            let payload: SimpleSigning = serde_json::from_slice(&layer.payload).ok()?;
            let annotations = payload.optional?;
            let text = |key: &str| annotations.get(key)?.as_str().map(str::to_string);
            Some((
                text(PLUGIN_NAME_ANNOTATION)?,
                text(PLUGIN_VERSION_ANNOTATION)?,
            ))
        })
        .collect();
    claims.sort();
    claims.dedup();
    claims
}

/// The annotations Cairn signs for a plugin release.
pub fn plugin_annotations(name: &str, version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PLUGIN_NAME_ANNOTATION.to_string(), name.to_string()),
        (PLUGIN_VERSION_ANNOTATION.to_string(), version.to_string()),
    ])
}
