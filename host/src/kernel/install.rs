//! Vetting a component and installing it.
//!
//! Order matters: everything that can refuse a plugin (format, metadata, policy,
//! signature, grants, version) runs before anything is written, so a refused
//! install leaves the device exactly as it was.

use std::sync::Arc;

use semver::Version;

use super::registry::Provenance;
use super::{Kernel, KernelError, PluginView, failpoint};
use crate::caps::{Candidate, Grants, check_imports};
use crate::policy::Policy;
use crate::progress::{Phase, Progress, Reporter};
use crate::runtime::engine::MAX_PLUGIN_MEMORY;
use crate::runtime::{PluginIdentity, ReleaseSpec};
use crate::state::digest::Digest;
use crate::state::journal::{HistoryEntry, PluginRecord, RegistryOrigin, Release as ReleaseRecord};
use crate::supply::component;
use crate::supply::oci::{
    SignatureLayer, claimed_identities, plugin_annotations, verify_signatures,
};

pub use crate::contract::InstallSource;

/// A component that passed every check against its policy.
pub(super) struct Vetted {
    pub name: String,
    pub version: Version,
    pub digest: Digest,
    pub signature: Option<String>,
    pub origin: Option<RegistryOrigin>,
    /// Signatures to keep locally, for components fetched from a registry.
    registry_signatures: Vec<SignatureLayer>,
    pub policy: Policy,
    pub grants: Arc<Grants>,
}

impl Kernel {
    /// Installs a plugin release, hot-swapping it in if an older one runs.
    /// `authorize` decides, from the plugin's name, whether the caller may;
    /// `progress` hears about each step as it starts (and about bytes downloaded).
    pub async fn install(
        &self,
        source: InstallSource,
        force: bool,
        authorize: &(dyn Fn(&str) -> Result<(), String> + Sync),
        progress: &Reporter<'_>,
    ) -> Result<PluginView, KernelError> {
        let mut claimed = None;
        let (bytes, provenance) = match source {
            InstallSource::Bytes {
                bytes,
                signature,
                identity,
            } => {
                claimed = identity;
                (bytes, Provenance::Detached(signature))
            }
            InstallSource::Cached(digest) => {
                let digest = Digest::parse(&digest)
                    .map_err(|err| KernelError::Invalid(format!("`{digest}`: {err}")))?;
                let bytes = self.blobs.get(&digest).map_err(|err| {
                    KernelError::NotFound(format!("{digest} is not in the local cache: {err}"))
                })?;
                (bytes, self.known_provenance(&digest))
            }
            InstallSource::Oci(reference) => self.fetch(&reference, progress).await?,
        };
        progress(Progress::entering(Phase::Verify));
        let vetted = self.vet(&bytes, provenance, claimed)?;
        authorize(&vetted.name).map_err(KernelError::Denied)?;
        let _change = self.changes.lock().await;
        let current = self.installed_snapshot().plugins.get(&vetted.name).cloned();
        let action = match &current {
            None => "install",
            Some(record) if record.active.digest == vetted.digest => {
                return self
                    .view(&vetted.name)
                    .ok_or_else(|| KernelError::internal("installed plugin vanished"));
            }
            Some(record) => upgrade_action(&record.active.version, &vetted.version, force)?,
        };
        let digest = self
            .blobs
            .put(&bytes)
            .map_err(|err| KernelError::internal(format!("storing the component: {err}")))?;
        if digest != vetted.digest {
            return Err(KernelError::internal(
                "the stored component's digest differs from the vetted one",
            ));
        }
        if let Some(origin) = &vetted.origin {
            self.fetched.save(
                &origin.manifest_digest,
                &digest,
                &vetted.registry_signatures,
            )?;
        }
        failpoint::hit("install:after-blob");
        progress(Progress::entering(Phase::Compile));
        let spec = self.prepare(&vetted, bytes).await?;
        failpoint::hit("install:after-compile");
        let release = ReleaseRecord {
            version: vetted.version.clone(),
            digest: vetted.digest.clone(),
            signature: vetted.signature.clone(),
            installed_at: unix_now(),
            origin: vetted.origin.clone(),
        };
        let name = vetted.name.clone();
        let entry = HistoryEntry {
            at: unix_now(),
            action: action.into(),
            version: vetted.version.to_string(),
            reason: None,
        };
        progress(Progress::entering(Phase::Start));
        self.activate(&name, spec, current.is_some(), |set| {
            let record = set
                .plugins
                .entry(name.clone())
                .or_insert_with(|| PluginRecord {
                    active: release.clone(),
                    previous: None,
                    history: Vec::new(),
                });
            if record.active.digest != release.digest {
                record.previous = Some(std::mem::replace(&mut record.active, release));
            }
            record.push_history(entry);
        })
        .await?;
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&name);
        }
        tracing::info!(plugin = %name, "{action}: now running {} ({})", vetted.version, vetted.digest);
        self.view(&name)
            .ok_or_else(|| KernelError::internal("installed plugin vanished"))
    }

    /// Every check that can refuse a component, without side effects. `claimed` is
    /// the name and version the caller installs it as; a component that carries
    /// its own must agree with it.
    pub(super) fn vet(
        &self,
        bytes: &[u8],
        provenance: Provenance,
        claimed: Option<(String, Version)>,
    ) -> Result<Vetted, KernelError> {
        let info = component::inspect(bytes)?;
        let claimed = match (claimed, info.identity(), &provenance) {
            (None, None, Provenance::Registry { signatures, .. }) => signed_identity(signatures)?,
            (claimed, _, _) => claimed,
        };
        let (name, version) = match (info.identity(), claimed) {
            (Some(own), Some(claim)) if own != claim => {
                return Err(KernelError::Invalid(format!(
                    "the component says it is {} {}, not {} {}",
                    own.0, own.1, claim.0, claim.1
                )));
            }
            (Some(own), _) => own,
            (None, Some(claim)) => {
                crate::policy::validate_plugin_name(&claim.0)
                    .map_err(|err| KernelError::Invalid(format!("name `{}`: {err}", claim.0)))?;
                claim
            }
            (None, None) => {
                return Err(KernelError::Invalid(
                    "the component carries no plugin name and version (a `cairn-plugin` custom section): build it with cairn-sdk's export_plugin! macro, install it with --name and --version, or push and sign it with --name and --version".into(),
                ));
            }
        };
        let policy = Policy::load_for(&self.config.policy_dir, &name)?;
        let grants = Grants::from_policy(&policy)?;
        if policy.limits.memory > MAX_PLUGIN_MEMORY {
            return Err(KernelError::Limits(format!(
                "memory limit {} exceeds the host maximum of {MAX_PLUGIN_MEMORY} bytes",
                policy.limits.memory
            )));
        }
        let (signature, origin, registry_signatures) = match provenance {
            Provenance::Detached(signature) => {
                self.verify_signature(&policy, bytes, signature.as_deref())?;
                (signature, None, Vec::new())
            }
            Provenance::Registry { origin, signatures } => {
                self.verify_registry_signatures(&policy, &version, &origin, &signatures)?;
                (None, Some(origin), signatures)
            }
        };
        check_imports(info.imports.iter().map(String::as_str), &grants).map_err(|refusal| {
            KernelError::Imports {
                plugin: name.clone(),
                refusal,
            }
        })?;
        let candidate = Candidate {
            name: &name,
            exports: &info.exports,
        };
        self.env
            .caps
            .vet(&candidate, &grants, &self.serving())
            .map_err(|refusal| KernelError::Vetted {
                plugin: name.clone(),
                refusal,
            })?;
        Ok(Vetted {
            name,
            version,
            digest: Digest::of(bytes),
            signature,
            origin,
            registry_signatures,
            policy,
            grants: Arc::new(grants),
        })
    }

    fn verify_signature(
        &self,
        policy: &Policy,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<(), KernelError> {
        match self
            .trust
            .verify_by_any(&policy.plugin.signers, bytes, signature)
        {
            Ok(key) => {
                tracing::debug!(plugin = %policy.plugin.name, "signature verified with key `{key}`");
                Ok(())
            }
            Err(err) if self.config.allow_unsigned => {
                tracing::warn!(plugin = %policy.plugin.name, "DEVELOPMENT MODE: accepting a plugin whose signature does not verify ({err})");
                Ok(())
            }
            Err(err) => Err(KernelError::BadSignature(err)),
        }
    }

    /// At least one cosign signature over exactly `origin`'s manifest digest, by a
    /// key the policy names, binding this plugin's name and version.
    fn verify_registry_signatures(
        &self,
        policy: &Policy,
        version: &Version,
        origin: &RegistryOrigin,
        signatures: &[SignatureLayer],
    ) -> Result<(), KernelError> {
        let expected = plugin_annotations(&policy.plugin.name, &version.to_string());
        match verify_signatures(
            signatures,
            &origin.manifest_digest,
            &self.trust,
            &policy.plugin.signers,
            &expected,
        ) {
            Ok(key) => {
                tracing::debug!(plugin = %policy.plugin.name, "{} verified with key `{key}`", origin.reference);
                Ok(())
            }
            Err(err) if self.config.allow_unsigned => {
                tracing::warn!(plugin = %policy.plugin.name, "DEVELOPMENT MODE: accepting {} whose signatures do not verify ({err})", origin.reference);
                Ok(())
            }
            Err(err) => Err(KernelError::Signature(format!(
                "{}: {err}",
                origin.reference
            ))),
        }
    }

    /// Compiles (or loads from the precompiled cache) and links a vetted component.
    pub(super) async fn prepare(
        &self,
        vetted: &Vetted,
        bytes: Vec<u8>,
    ) -> Result<ReleaseSpec, KernelError> {
        let (cache, digest) = (self.cache.clone(), vetted.digest.clone());
        let component = tokio::task::spawn_blocking(move || cache.load_or_compile(&digest, &bytes))
            .await
            .map_err(KernelError::internal)?
            .map_err(|err| KernelError::Invalid(format!("{err:#}")))?;
        let (plugin, http) = ReleaseSpec::prepare(&self.env, &component)
            .map_err(|err| KernelError::Invalid(format!("cannot link {}: {err:#}", vetted.name)))?;
        Ok(ReleaseSpec {
            identity: PluginIdentity {
                name: vetted.name.as_str().into(),
                version: vetted.version.clone(),
            },
            digest: vetted.digest.clone(),
            plugin,
            http,
            grants: vetted.grants.clone(),
            limits: vetted.policy.limits.clone(),
            config_json: vetted.policy.config.to_string(),
        })
    }

    /// Prepares a release the journal records, from the local stores only.
    pub(super) async fn prepare_recorded(
        &self,
        name: &str,
        release: &ReleaseRecord,
    ) -> Result<ReleaseSpec, KernelError> {
        let bytes = self
            .blobs
            .get(&release.digest)
            .map_err(|err| KernelError::NotFound(format!("{name} {}: {err}", release.version)))?;
        let provenance =
            self.recorded_provenance(release.signature.clone(), release.origin.as_ref());
        let claimed = Some((name.to_string(), release.version.clone()));
        let vetted = self.vet(&bytes, provenance, claimed)?;
        if vetted.name != name {
            return Err(KernelError::Invalid(format!(
                "the stored component of `{name}` names itself `{}`",
                vetted.name
            )));
        }
        self.prepare(&vetted, bytes).await
    }

    /// How a cached component was verified when the journal recorded it.
    fn known_provenance(&self, digest: &Digest) -> Provenance {
        let installed = self.installed_snapshot();
        let release = installed
            .plugins
            .values()
            .flat_map(|record| std::iter::once(&record.active).chain(record.previous.as_ref()))
            .find(|release| &release.digest == digest);
        match release {
            Some(release) => {
                self.recorded_provenance(release.signature.clone(), release.origin.as_ref())
            }
            None => Provenance::Detached(None),
        }
    }
}

/// Names the change from `installed` to `candidate`, refusing what needs `force`.
fn upgrade_action(
    installed: &Version,
    candidate: &Version,
    force: bool,
) -> Result<&'static str, KernelError> {
    if candidate > installed {
        Ok("upgrade")
    } else if force {
        Ok(if candidate < installed {
            "downgrade"
        } else {
            "reinstall"
        })
    } else if candidate < installed {
        Err(KernelError::Conflict(format!(
            "refusing to downgrade from {installed} to {candidate} (use --force)"
        )))
    } else {
        Err(KernelError::Conflict(format!(
            "version {candidate} is already installed with different contents: bump the version, or use --force"
        )))
    }
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// The name and version the signatures of an artifact claim, when its component
/// carries none. They are only a claim: `vet` then verifies the signatures
/// against that name's policy, with exactly these annotations.
fn signed_identity(
    signatures: &[SignatureLayer],
) -> Result<Option<(String, Version)>, KernelError> {
    let claims = claimed_identities(signatures);
    match claims.as_slice() {
        [] => Ok(None),
        [(name, version)] => {
            let version = Version::parse(version).map_err(|err| {
                KernelError::Invalid(format!("the signatures claim version `{version}`: {err}"))
            })?;
            Ok(Some((name.clone(), version)))
        }
        several => Err(KernelError::Invalid(format!(
            "the component carries no name and version, and its signatures claim several: {}",
            several
                .iter()
                .map(|(name, version)| format!("{name} {version}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn upgrades_pass_and_downgrades_need_force() {
        assert_eq!(
            upgrade_action(&v("1.0.0"), &v("1.1.0"), false).unwrap(),
            "upgrade"
        );
        assert!(matches!(
            upgrade_action(&v("1.1.0"), &v("1.0.0"), false),
            Err(KernelError::Conflict(_))
        ));
        assert_eq!(
            upgrade_action(&v("1.1.0"), &v("1.0.0"), true).unwrap(),
            "downgrade"
        );
        assert!(matches!(
            upgrade_action(&v("1.0.0"), &v("1.0.0"), false),
            Err(KernelError::Conflict(_))
        ));
        assert_eq!(
            upgrade_action(&v("1.0.0"), &v("1.0.0"), true).unwrap(),
            "reinstall"
        );
    }
}
