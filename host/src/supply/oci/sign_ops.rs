//! Storing and fetching cosign signatures (`sha256-<hex>.sig` manifests).

use std::collections::BTreeMap;

use oci_client::manifest::OciImageManifest;

use super::artifact::declared_size;
use super::client::Registry;
use super::error::OciError;
use super::reference::Reference;
use super::signature::{
    self, SIG_CONFIG, SignatureLayer, signature_descriptor, signature_manifest, signature_tag,
    simple_signing_payload,
};
use crate::state::digest::Digest;
use crate::supply::signing::{SigningKey, sign_blob, verify_blob};

/// Largest signature payload accepted; real ones are well under a kilobyte.
const MAX_PAYLOAD_SIZE: u64 = 64 * 1024;

impl Registry {
    /// Signs manifest `manifest_digest` of `repository`'s repository with `key`,
    /// cosign-style, signing `annotations` along. Existing signatures are kept; signing
    /// the same payload with the same key again changes nothing.
    ///
    /// Two signers racing on the same artifact can lose one signature (the registry
    /// has no compare-and-swap on tags); signing is an operator action, not a hot path.
    pub async fn sign(
        &self,
        repository: &Reference,
        manifest_digest: &Digest,
        key: &SigningKey,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), OciError> {
        // Refuse to sign a digest the registry does not have (a typo would otherwise
        // produce a valid-looking but useless signature).
        self.resolve(&repository.with_digest(manifest_digest.clone()))
            .await?;
        let payload =
            simple_signing_payload(&repository.repository_name(), manifest_digest, annotations);
        let signature = sign_blob(key, &payload);
        let sig_ref = repository.with_tag(signature_tag(manifest_digest));
        let mut layers = match self.fetch_manifest_opt(&sig_ref).await? {
            Some(body) => parse_signature_manifest(&body, &sig_ref)?.layers,
            None => Vec::new(),
        };
        let desc = signature_descriptor(&payload, &signature);
        let public = key.verifying_key().ok();
        let duplicate = layers.iter().any(|l| {
            l.digest == desc.digest
                && l.annotations
                    .as_ref()
                    .and_then(|a| a.get(signature::SIGNATURE_ANNOTATION))
                    .zip(public.as_ref())
                    .is_some_and(|(sig, public)| verify_blob(public, &payload, sig).is_ok())
        });
        if duplicate {
            tracing::debug!(reference = %sig_ref, "already signed with this key and payload");
            return Ok(());
        }
        let oref = sig_ref.to_oci();
        self.retry(&sig_ref, "signature payload", || {
            self.client.push_blob(&oref, payload.clone(), &desc.digest)
        })
        .await?;
        let config_digest = Digest::of(SIG_CONFIG);
        self.retry(&sig_ref, "signature config", || {
            self.client
                .push_blob(&oref, SIG_CONFIG.to_vec(), config_digest.as_str())
        })
        .await?;
        layers.push(desc);
        let body = serde_json::to_vec(&signature_manifest(layers))
            .map_err(|e| OciError::ManifestInvalid(e.to_string()))?;
        self.push_manifest(&sig_ref, &body).await?;
        Ok(())
    }

    /// The cosign signatures stored for `manifest_digest` in `repository`'s repository;
    /// empty when there are none (a failure to fetch them is an error, not "none").
    pub async fn signatures(
        &self,
        repository: &Reference,
        manifest_digest: &Digest,
    ) -> Result<Vec<SignatureLayer>, OciError> {
        let sig_ref = repository.with_tag(signature_tag(manifest_digest));
        self.prepare(&sig_ref).await;
        let Some(body) = self.fetch_manifest_opt(&sig_ref).await? else {
            return Ok(Vec::new());
        };
        let manifest = parse_signature_manifest(&body, &sig_ref)?;
        let mut out = Vec::new();
        for (desc, sig) in signature::signature_descriptors(&manifest) {
            let size = declared_size(desc, "signature payload")?;
            if size > MAX_PAYLOAD_SIZE {
                return Err(OciError::TooLarge {
                    what: "signature payload".into(),
                    size,
                    limit: MAX_PAYLOAD_SIZE,
                });
            }
            let payload = self
                .download_blob(&sig_ref, desc, "signature payload", size, &|_, _| {})
                .await?;
            out.push(SignatureLayer {
                payload,
                signature: sig.to_owned(),
            });
        }
        Ok(out)
    }
}

pub(crate) fn parse_signature_manifest(
    body: &[u8],
    reference: &Reference,
) -> Result<OciImageManifest, OciError> {
    let manifest: OciImageManifest =
        serde_json::from_slice(body).map_err(|e| OciError::SignatureManifest {
            reference: reference.to_string(),
            reason: e.to_string(),
        })?;
    signature::check_signature_manifest(&manifest, &reference.to_string())?;
    Ok(manifest)
}
