//! Which manifests retention keeps and which it deletes, and why.
//!
//! docker-registry deletes by digest, and deleting a digest drops every tag
//! on it, so the decision is made per digest, after taking the union of every
//! reason to keep it: the latest N successful artifacts of each environment,
//! digests in use (running containers, installed plugins, deployments, as
//! reported), tags that are not a published artifact's or belong to a kept
//! one, the children of a kept index and the signatures (`sha256-<hex>.sig`
//! tags) of a kept digest. Only digests published through this plugin are
//! ever candidates.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A published artifact, as `publish` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Artifact {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub environment: String,
    pub published_ms: u64,
    pub successful: bool,
    /// `image` or `plugin`.
    #[serde(default)]
    pub kind: String,
    /// The source revision it was built from.
    #[serde(default)]
    pub revision: String,
}

/// What the registry holds, as far as retention needs it.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Repository → tag → digest.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    /// (repository, index digest) → the digests of its manifests.
    pub children: BTreeMap<Key, Vec<String>>,
    /// Published manifests the registry still has (tagged or not).
    pub present: BTreeSet<Key>,
    /// The blobs (config and layers) of every manifest read: a Cairn
    /// plugin's layer is its component, which is how an installed plugin's
    /// digest finds the manifest it came from.
    pub blobs: BTreeMap<Key, Vec<String>>,
}

impl Inventory {
    /// The manifests whose blobs include `blob`.
    pub fn manifests_with_blob<'a>(&'a self, blob: &'a str) -> impl Iterator<Item = &'a Key> + 'a {
        self.blobs
            .iter()
            .filter(move |(_, blobs)| blobs.iter().any(|b| b == blob))
            .map(|(key, _)| key)
    }
}

/// A manifest: its repository and digest.
pub type Key = (String, String);

/// The outcome, for a dry run or a prune.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Every kept manifest with its reasons: repository → digest → reasons.
    pub keep: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Every manifest to delete, with why.
    pub delete: Vec<Deletion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub repository: String,
    pub digest: String,
    /// Tags that go with it.
    pub tags: Vec<String>,
    pub why: String,
}

/// The referrer tag scheme: `sha256-<hex>` (+ `.sig`, `.att`, `.sbom`).
fn subject_of(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("sha256-")?;
    let hex = rest.split('.').next()?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// Decides, keeping `keep_latest` artifacts per environment and the digests
/// `in_use` (digest → who uses it).
pub fn plan(
    artifacts: &[Artifact],
    inventory: &Inventory,
    in_use: &BTreeMap<String, Vec<String>>,
    keep_latest: usize,
) -> Result<Plan, String> {
    if keep_latest == 0 {
        return Err("retention must keep at least 1 artifact per environment".into());
    }
    let mut keep: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    keep_latest_artifacts(artifacts, keep_latest, &mut keep);
    keep_foreign_tags(artifacts, inventory, &mut keep);
    let published: BTreeSet<Key> = artifacts
        .iter()
        .map(|artifact| (artifact.repository.clone(), artifact.digest.clone()))
        .collect();
    let held: BTreeSet<&Key> = published.iter().chain(&inventory.present).collect();
    for (digest, users) in in_use {
        for (repository, _) in held.iter().filter(|(_, d)| d == digest) {
            for user in users {
                keep.entry((repository.clone(), digest.clone()))
                    .or_default()
                    .push(format!("in use by {user}"));
            }
        }
    }
    keep_dependents(inventory, &mut keep);
    let delete = deletions(inventory, &keep);
    let mut plan = Plan {
        keep: BTreeMap::new(),
        delete,
    };
    for ((repository, digest), reasons) in keep {
        plan.keep
            .entry(repository)
            .or_default()
            .insert(digest, reasons);
    }
    Ok(plan)
}

/// The latest `count` successful artifacts of each environment.
fn keep_latest_artifacts(
    artifacts: &[Artifact],
    count: usize,
    keep: &mut BTreeMap<Key, Vec<String>>,
) {
    let mut by_environment: BTreeMap<&str, Vec<&Artifact>> = BTreeMap::new();
    for artifact in artifacts.iter().filter(|artifact| artifact.successful) {
        by_environment
            .entry(&artifact.environment)
            .or_default()
            .push(artifact);
    }
    for (environment, mut list) in by_environment {
        list.sort_by_key(|artifact| std::cmp::Reverse(artifact.published_ms));
        // The same digest published again is still one artifact.
        let mut seen = BTreeSet::new();
        list.retain(|artifact| seen.insert((&artifact.repository, &artifact.digest)));
        for (rank, artifact) in list.into_iter().take(count).enumerate() {
            keep.entry((artifact.repository.clone(), artifact.digest.clone()))
                .or_default()
                .push(format!("latest {count} of {environment} (#{})", rank + 1));
        }
    }
}

/// Tags that are not a published artifact's (or no longer point at it):
/// deleting their digest would take them away.
fn keep_foreign_tags(
    artifacts: &[Artifact],
    inventory: &Inventory,
    keep: &mut BTreeMap<Key, Vec<String>>,
) {
    let published: BTreeMap<(&str, &str), &str> = artifacts
        .iter()
        .map(|artifact| {
            (
                (artifact.repository.as_str(), artifact.tag.as_str()),
                artifact.digest.as_str(),
            )
        })
        .collect();
    for (repository, tags) in &inventory.tags {
        for (tag, digest) in tags {
            if subject_of(tag).is_some() {
                continue;
            }
            let reason = match published.get(&(repository.as_str(), tag.as_str())) {
                None => format!("tag {tag} is not a published artifact"),
                Some(artifact) if artifact != digest => {
                    format!("tag {tag} was moved here from its published artifact")
                }
                Some(_) => continue,
            };
            keep.entry((repository.clone(), digest.clone()))
                .or_default()
                .push(reason);
        }
    }
}

/// Children of kept indexes and signatures of kept digests, to a fixed point.
fn keep_dependents(inventory: &Inventory, keep: &mut BTreeMap<Key, Vec<String>>) {
    loop {
        let mut added = Vec::new();
        for ((repository, index), children) in &inventory.children {
            if keep.contains_key(&(repository.clone(), index.clone())) {
                for child in children {
                    added.push((
                        (repository.clone(), child.clone()),
                        format!("child of kept index {index}"),
                    ));
                }
            }
        }
        for (repository, tags) in &inventory.tags {
            for (tag, digest) in tags {
                if let Some(subject) = subject_of(tag)
                    && keep.contains_key(&(repository.clone(), subject.clone()))
                {
                    added.push((
                        (repository.clone(), digest.clone()),
                        format!("signature {tag} of kept {subject}"),
                    ));
                }
            }
        }
        added.retain(|(key, _)| !keep.contains_key(key));
        if added.is_empty() {
            return;
        }
        for (key, reason) in added {
            keep.entry(key).or_default().push(reason);
        }
    }
}

/// Published manifests the registry has that nothing keeps, then what only
/// served them: their signatures and, for an index, its children.
fn deletions(inventory: &Inventory, keep: &BTreeMap<Key, Vec<String>>) -> Vec<Deletion> {
    let mut delete = Vec::new();
    let mut deleted: BTreeSet<Key> = BTreeSet::new();
    let mut remove = |key: Key, why: String, delete: &mut Vec<Deletion>| {
        if keep.contains_key(&key) || !deleted.insert(key.clone()) {
            return;
        }
        delete.push(Deletion {
            tags: tags_of(inventory, &key),
            repository: key.0,
            digest: key.1,
            why,
        });
    };
    for key in &inventory.present {
        remove(
            key.clone(),
            "published, not among the kept artifacts, not in use".into(),
            &mut delete,
        );
    }
    let subjects: Vec<Key> = delete
        .iter()
        .map(|gone| (gone.repository.clone(), gone.digest.clone()))
        .collect();
    for (repository, subject) in subjects {
        for (tag, digest) in inventory.tags.get(&repository).into_iter().flatten() {
            if subject_of(tag).as_deref() == Some(subject.as_str()) {
                let why = format!("signature of deleted {subject}");
                remove((repository.clone(), digest.clone()), why, &mut delete);
            }
        }
        for child in inventory
            .children
            .get(&(repository.clone(), subject.clone()))
            .into_iter()
            .flatten()
        {
            let why = format!("child of deleted index {subject}");
            remove((repository.clone(), child.clone()), why, &mut delete);
        }
    }
    delete
}

fn tags_of(inventory: &Inventory, (repository, digest): &Key) -> Vec<String> {
    inventory
        .tags
        .get(repository)
        .into_iter()
        .flatten()
        .filter(|(_, d)| *d == digest)
        .map(|(tag, _)| tag.clone())
        .collect()
}
