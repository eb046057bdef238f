//! Pruning the device's stores this plugin fills: the container images its
//! components run and the artifact cache. Both keep what a plan needs — the
//! applied one and, while an operation runs, its target and the plan it
//! would return to — and the latest `keep` per component (images: per
//! repository, as the host orders pulls); the rest goes. A dry run lists
//! every entry with why it stays or goes.

use std::collections::BTreeMap;

use cairn_sdk::container;
use serde_json::{Value, json};

use crate::artifact::parse_sha256;
use crate::engine::Engine;
use crate::plan::Plan;

/// The plans whose components must keep what they use.
fn plans(engine: &Engine) -> impl Iterator<Item = (&'static str, &Plan)> {
    let applied = engine.applied.iter().map(|plan| ("applied plan", plan));
    let operation = engine.operation.iter().flat_map(|operation| {
        std::iter::once(("plan being applied", &operation.target)).chain(
            operation
                .previous
                .iter()
                .map(|plan| ("plan to return to", plan)),
        )
    });
    applied.chain(operation)
}

/// `prune-images`: the host prunes the images the grant covers, keeping the
/// ones containers use, the latest `keep` of each repository and every image
/// a plan's component names or runs (by reference or digest).
pub fn images(engine: &Engine, keep: u32, dry_run: bool) -> Result<Value, String> {
    let mut needed: Vec<String> = engine
        .records
        .values()
        .filter_map(|record| record.image.clone())
        .flat_map(|pinned| {
            let digest = pinned.split_once('@').map(|(_, digest)| digest.to_string());
            std::iter::once(pinned).chain(digest)
        })
        .collect();
    for (_, plan) in plans(engine) {
        for component in plan.components.values() {
            let run = component.recipe.lifecycle.run.as_ref();
            if let Some(container) = run.and_then(|run| run.container.as_ref()) {
                needed.push(container.image.clone());
            }
        }
    }
    needed.sort();
    needed.dedup();
    let plan = container::prune_images(keep, &needed, dry_run).map_err(|err| err.to_string())?;
    let list = |images: &[container::PrunedImage]| -> Vec<Value> {
        images
            .iter()
            .map(|image| {
                json!({
                    "reference": image.reference,
                    "digest": image.digest,
                    "size": image.size,
                    "reasons": image.reasons,
                })
            })
            .collect()
    };
    Ok(json!({
        "dry-run": plan.dry_run,
        "kept": list(&plan.kept),
        "deleted": list(&plan.deleted),
        "bytes-freed": plan.bytes_freed,
    }))
}

/// `in-use`: the digests this plugin runs or needs, with who uses each —
/// what a device reports to its site registry so that retention there keeps
/// them: the image each container runs (pinned), the images plans name by
/// digest, and the artifacts plans name (blobs, by sha256).
pub fn in_use(engine: &Engine) -> BTreeMap<String, Vec<String>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, record) in &engine.records {
        if let Some((_, digest)) = record
            .image
            .as_deref()
            .and_then(|image| image.split_once('@'))
        {
            users
                .entry(digest.to_string())
                .or_default()
                .push(format!("container of {name}"));
        }
    }
    for (which, plan) in plans(engine) {
        for component in plan.components.values() {
            let run = component.recipe.lifecycle.run.as_ref();
            let image = run
                .and_then(|run| run.container.as_ref())
                .map(|c| c.image.as_str());
            if let Some((_, digest)) = image.and_then(|image| image.split_once('@')) {
                users
                    .entry(digest.to_string())
                    .or_default()
                    .push(format!("image of {} in the {which}", component.name));
            }
            for artifact in &component.recipe.artifacts {
                if let Ok(hex) = parse_sha256(&artifact.uri, &artifact.sha256) {
                    users
                        .entry(format!("sha256:{hex}"))
                        .or_default()
                        .push(format!("artifact of {} in the {which}", component.name));
                }
            }
        }
    }
    for list in users.values_mut() {
        list.sort();
        list.dedup();
    }
    users
}

/// `prune-artifacts`: the artifact cache keeps every artifact a plan's
/// component names and the last `keep` each component installed.
pub fn artifacts(engine: &mut Engine, keep: usize, dry_run: bool) -> Result<Value, String> {
    if keep == 0 {
        return Err(
            "keep must be at least 1: a component's current artifacts are always kept".into(),
        );
    }
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (which, plan) in plans(engine) {
        for component in plan.components.values() {
            for artifact in &component.recipe.artifacts {
                // Recipes are validated when parsed: every sha256 is one.
                let Ok(hex) = parse_sha256(&artifact.uri, &artifact.sha256) else {
                    continue;
                };
                reasons
                    .entry(hex)
                    .or_default()
                    .push(format!("needed by {} in the {which}", component.name));
            }
        }
    }
    for (name, record) in &engine.records {
        for (rank, hex) in record.artifacts.iter().rev().take(keep).enumerate() {
            reasons
                .entry(hex.clone())
                .or_default()
                .push(format!("latest {keep} of {name} (#{})", rank + 1));
        }
    }
    let pruned = engine
        .runner
        .store
        .prune(&reasons, dry_run)
        .map_err(|err| err.to_string())?;
    let kept: Vec<Value> = pruned
        .kept
        .iter()
        .map(|(hex, size, why)| json!({"sha256": hex, "size": size, "reasons": why}))
        .collect();
    let deleted: Vec<Value> = pruned
        .deleted
        .iter()
        .map(|(hex, size)| json!({"sha256": hex, "size": size, "reasons": ["no plan needs it and no component used it lately"]}))
        .collect();
    Ok(json!({
        "dry-run": dry_run,
        "kept": kept,
        "deleted": deleted,
        "bytes-freed": pruned.bytes_freed,
    }))
}
