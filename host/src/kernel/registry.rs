//! Installing from OCI registries.
//!
//! A tag is resolved once; the cosign signatures for exactly that manifest
//! digest are fetched, and the artifact is pulled by the same digest (so a tag
//! moved in between cannot slip in). The signatures are kept in the state
//! directory beside the blob, so the release is verified again at every boot
//! without the network, and installing a digest already fetched needs none.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Kernel, KernelError};
use crate::progress::{Phase, Progress, Reporter};
use crate::state::atomic::write_atomic;
use crate::state::digest::Digest;
use crate::state::journal::RegistryOrigin;
use crate::supply::oci::{OciError, Reference, SignatureLayer};

/// Where a component's authenticity comes from.
pub(super) enum Provenance {
    /// A detached blob signature (or none, for development mode).
    Detached(Option<String>),
    /// Cosign signatures over the manifest the component was pulled from.
    Registry {
        origin: RegistryOrigin,
        signatures: Vec<SignatureLayer>,
    },
}

/// What is kept locally for a manifest fetched from a registry.
#[derive(Serialize, Deserialize)]
struct FetchedManifest {
    /// Digest of the component (the manifest's single layer).
    component: Digest,
    signatures: Vec<StoredSignature>,
}

#[derive(Serialize, Deserialize)]
struct StoredSignature {
    payload_b64: String,
    signature: String,
}

/// `state/registry/<manifest hex>.json` files.
pub(super) struct FetchedManifests {
    dir: PathBuf,
}

impl FetchedManifests {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        crate::state::atomic::create_private_dir(dir)?;
        Ok(FetchedManifests {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, manifest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", manifest.hex()))
    }

    pub fn save(
        &self,
        manifest: &Digest,
        component: &Digest,
        signatures: &[SignatureLayer],
    ) -> Result<(), KernelError> {
        let record = FetchedManifest {
            component: component.clone(),
            signatures: signatures
                .iter()
                .map(|layer| StoredSignature {
                    payload_b64: base64::engine::general_purpose::STANDARD.encode(&layer.payload),
                    signature: layer.signature.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(KernelError::internal)?;
        write_atomic(&self.path(manifest), &json)
            .map_err(|err| KernelError::internal(format!("recording {manifest}: {err}")))
    }

    /// Forgets every manifest recorded as fetching one of `components`, so
    /// installing it again downloads it. One pass over the records.
    pub fn forget_components(&self, components: &std::collections::BTreeSet<Digest>) {
        if components.is_empty() {
            return;
        }
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let names_one = std::fs::read(entry.path())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<FetchedManifest>(&bytes).ok())
                .is_some_and(|record| components.contains(&record.component));
            if names_one {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The component digest and signatures recorded for `manifest`, if fetched before.
    pub fn load(&self, manifest: &Digest) -> Option<(Digest, Vec<SignatureLayer>)> {
        let bytes = std::fs::read(self.path(manifest)).ok()?;
        let record: FetchedManifest = serde_json::from_slice(&bytes).ok()?;
        let signatures = record
            .signatures
            .into_iter()
            .filter_map(|stored| {
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(stored.payload_b64)
                    .ok()?;
                Some(SignatureLayer {
                    payload,
                    signature: stored.signature,
                })
            })
            .collect();
        Some((record.component, signatures))
    }
}

impl Kernel {
    /// Fetches the component behind `text` (`oci://…`) with its signatures.
    pub(super) async fn fetch(
        &self,
        text: &str,
        progress: &Reporter<'_>,
    ) -> Result<(Vec<u8>, Provenance), KernelError> {
        // Fetched from the registry's mirror when one is configured; recorded
        // under the reference as given.
        let requested = Reference::parse(text)?;
        let reference = self.registry.route(&requested);
        let named = match reference.registry() == requested.registry() {
            true => requested.to_string(),
            false => format!("{requested} (through the mirror {})", reference.registry()),
        };
        let failed = |err: OciError| registry_failure(&named, err);
        let manifest = match reference.digest() {
            Some(digest) => digest.clone(),
            None => {
                progress(Progress::entering(Phase::Resolve));
                self.registry.resolve(&reference).await.map_err(failed)?
            }
        };
        let origin = RegistryOrigin {
            reference: text.to_string(),
            manifest_digest: manifest.clone(),
        };
        if let Some((component, signatures)) = self.fetched.load(&manifest)
            && let Ok(bytes) = self.blobs.get(&component)
        {
            tracing::info!("{reference}: {manifest} is already cached, no download needed");
            return Ok((bytes, Provenance::Registry { origin, signatures }));
        }
        progress(Progress::entering(Phase::Signatures));
        let signatures = self
            .registry
            .signatures(&reference, &manifest)
            .await
            .map_err(failed)?;
        let pulled = self
            .registry
            .pull_plugin(&reference, &manifest, &|done, total| {
                progress(Progress {
                    phase: Phase::Download,
                    done,
                    total,
                })
            })
            .await
            .map_err(failed)?;
        Ok((pulled.wasm, Provenance::Registry { origin, signatures }))
    }

    /// The provenance recorded for an installed release.
    pub(super) fn recorded_provenance(
        &self,
        signature: Option<String>,
        origin: Option<&RegistryOrigin>,
    ) -> Provenance {
        match origin {
            Some(origin) => Provenance::Registry {
                origin: origin.clone(),
                signatures: self
                    .fetched
                    .load(&origin.manifest_digest)
                    .map(|(_, signatures)| signatures)
                    .unwrap_or_default(),
            },
            None => Provenance::Detached(signature),
        }
    }
}

/// The kernel's category for a registry failure, so callers (and `--json`) can tell
/// a refused login from an unreachable registry from a bad artifact.
fn registry_failure(reference: &str, err: OciError) -> KernelError {
    let message = format!("{reference}: {err}");
    match err {
        OciError::Unauthorized { .. } => KernelError::Denied(message),
        OciError::NotFound { .. } => KernelError::NotFound(message),
        OciError::Network { .. } | OciError::Tls { .. } | OciError::Registry { .. } => {
            KernelError::Call(crate::runtime::CallError::Unavailable(message))
        }
        _ => KernelError::Invalid(message),
    }
}
