//! Pruning the device's plugin store: the component blobs, their precompiled
//! code and the records of registry manifests fetched for them. A component
//! is kept when a plugin runs it, when it is a plugin's rollback target, or
//! when it is among the latest `keep` releases of its plugin; everything
//! else is deleted. The dry run says why each component is kept or deleted.
//! It runs under the lock every install takes, so a component being
//! installed is never deleted under it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Kernel, KernelError};
use crate::state::digest::Digest;
use crate::supply::component;

/// One component of the store and what the prune decides for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StoredComponent {
    pub digest: String,
    /// The plugin it is a release of (absent when it carries no name).
    pub plugin: Option<String>,
    pub version: Option<String>,
    pub bytes: u64,
    /// Why it is kept, or why it goes.
    pub reasons: Vec<String>,
}

/// The outcome (or, with `dry_run`, the plan) of a store prune.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StorePrune {
    pub dry_run: bool,
    /// Releases kept per plugin beyond the running one and its rollback target.
    pub keep_latest: usize,
    pub keep: Vec<StoredComponent>,
    pub delete: Vec<StoredComponent>,
    /// Bytes of components and precompiled code deleted (0 in a dry run).
    pub bytes_freed: u64,
}

impl Kernel {
    /// Deletes the components nothing keeps (see the module's documentation);
    /// with `dry_run`, only says what it would delete.
    pub async fn prune_store(
        &self,
        keep_latest: usize,
        dry_run: bool,
    ) -> Result<StorePrune, KernelError> {
        if keep_latest == 0 {
            return Err(KernelError::Invalid(
                "keep must be at least 1: the latest release of each plugin is always kept".into(),
            ));
        }
        let _change = self.changes.lock().await;
        let mut reasons: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (name, record) in &self.installed_snapshot().plugins {
            reasons
                .entry(record.active.digest.clone())
                .or_default()
                .push(format!("runs as {name} {}", record.active.version));
            if let Some(previous) = &record.previous {
                reasons
                    .entry(previous.digest.clone())
                    .or_default()
                    .push(format!("rollback target of {name}"));
            }
        }
        let digests = self
            .blobs
            .list()
            .map_err(|err| KernelError::internal(format!("listing the plugin store: {err}")))?;
        let mut components = Vec::new();
        for digest in digests {
            let bytes = std::fs::metadata(self.blobs.path(&digest)).map_or(0, |meta| meta.len());
            let identity = self
                .blobs
                .get(&digest)
                .ok()
                .and_then(|wasm| component::inspect(&wasm).ok())
                .and_then(|info| info.identity());
            components.push((digest, bytes, identity));
        }
        // The latest releases of each plugin, by version.
        let mut by_plugin: BTreeMap<&str, Vec<(&semver::Version, &Digest)>> = BTreeMap::new();
        for (digest, _, identity) in &components {
            if let Some((name, version)) = identity {
                by_plugin.entry(name).or_default().push((version, digest));
            }
        }
        for (name, mut releases) in by_plugin {
            releases.sort_by(|a, b| b.0.cmp(a.0));
            for (rank, (_, digest)) in releases.into_iter().take(keep_latest).enumerate() {
                reasons
                    .entry((*digest).clone())
                    .or_default()
                    .push(format!("latest {keep_latest} of {name} (#{})", rank + 1));
            }
        }
        let mut plan = StorePrune {
            dry_run,
            keep_latest,
            ..StorePrune::default()
        };
        for (digest, bytes, identity) in components {
            let kept = reasons.remove(&digest);
            let entry = |reasons| StoredComponent {
                digest: digest.to_string(),
                plugin: identity.as_ref().map(|(name, _)| name.clone()),
                version: identity.as_ref().map(|(_, version)| version.to_string()),
                bytes,
                reasons,
            };
            match kept {
                Some(why) => plan.keep.push(entry(why)),
                None => {
                    let why = match &identity {
                        Some((name, _)) => format!("an older release of {name}, not installed"),
                        None => "not a named plugin release, not installed".to_string(),
                    };
                    plan.delete.push(entry(vec![why]));
                }
            }
        }
        if !dry_run {
            let gone = plan
                .delete
                .iter()
                .map(|gone| Digest::parse(&gone.digest).map_err(KernelError::internal))
                .collect::<Result<Vec<_>, _>>()?;
            // Records first: a crash after them leaves blobs nothing names,
            // which the next prune deletes.
            self.fetched
                .forget_components(&gone.iter().cloned().collect());
            for (component, digest) in plan.delete.iter().zip(&gone) {
                plan.bytes_freed += component.bytes + self.cache.remove(digest);
                self.blobs
                    .remove(digest)
                    .map_err(|err| KernelError::internal(format!("deleting {digest}: {err}")))?;
            }
            if !plan.delete.is_empty() {
                tracing::info!(
                    components = plan.delete.len(),
                    bytes = plan.bytes_freed,
                    "pruned the plugin store"
                );
            }
        }
        Ok(plan)
    }
}
