//! Pruning the device's image store: delete the images a plugin's grant
//! covers that no container uses, that the caller does not name, and that
//! are not among the latest `keep` pulled of their repository. Images the
//! grant does not cover are neither listed nor touched.

use std::collections::BTreeMap;

use super::grant::ContainerGrant;
use super::image::{self, ImageRecord};
use super::table::Containers;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::{ImagePrune, PrunedImage};
use crate::supply::oci::Reference;

/// What the caller asked for.
pub struct PruneRequest {
    pub keep: u32,
    /// References or digests the caller still needs.
    pub also_keep: Vec<String>,
    pub dry_run: bool,
}

/// Decides, and unless dry, deletes.
pub async fn prune_images(
    containers: &Containers,
    grant: &ContainerGrant,
    request: PruneRequest,
) -> Result<ImagePrune, CapError> {
    if request.keep == 0 {
        return Err(CapError::Invalid(
            "keep must be at least 1: the latest image of each repository is always kept".into(),
        ));
    }
    let mut candidates = Vec::new();
    for found in image::list(&containers.engine).await? {
        let record = image::record(&found);
        let Ok(parsed) = Reference::parse(&record.name) else {
            continue;
        };
        if grant.image_refusal(&parsed, Some(&record.digest)).is_some() {
            continue;
        }
        let pulled = found
            .updated_at
            .or(found.created_at)
            .map_or((0, 0), |at| (at.seconds, at.nanos));
        candidates.push((parsed.repository_name(), pulled, record));
    }
    // Newest first, so each repository's first `keep` are its latest.
    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.1));
    let mut ranks: BTreeMap<String, u32> = BTreeMap::new();
    let mut plan = ImagePrune {
        dry_run: request.dry_run,
        kept: Vec::new(),
        deleted: Vec::new(),
        bytes_freed: 0,
    };
    for (repository, _, record) in candidates {
        let mut reasons = Vec::new();
        if let Some(user) = containers.uses_image(&record.name, &record.digest)? {
            reasons.push(format!("used by container {user}"));
        }
        if request
            .also_keep
            .iter()
            .any(|wanted| *wanted == record.name || *wanted == record.digest)
        {
            reasons.push("needed by the caller's deployments".to_string());
        }
        let rank = ranks.entry(repository.clone()).or_default();
        *rank += 1;
        if *rank <= request.keep {
            reasons.push(format!("latest {} of {repository} (#{rank})", request.keep));
        }
        match reasons.is_empty() {
            false => plan.kept.push(pruned(&record, reasons)),
            true => {
                let why = format!("an older image of {repository}, not in use");
                if !request.dry_run {
                    image::remove(&containers.engine, &record.name).await?;
                    plan.bytes_freed += record.size;
                }
                plan.deleted.push(pruned(&record, vec![why]));
            }
        }
    }
    Ok(plan)
}

fn pruned(record: &ImageRecord, reasons: Vec<String>) -> PrunedImage {
    PrunedImage {
        reference: record.name.clone(),
        digest: record.digest.clone(),
        size: record.size,
        reasons,
    }
}
