//! Published artifacts, by digest: `publish` resolves a pushed tag once and
//! records the digest with where it came from; deployments consume the
//! digest, so a moved tag never changes what runs. Records live in the
//! key-value store, one key each, so a crash loses at most the one being made.

use std::collections::BTreeMap;

use cairn_sdk::{CommandError, kv};
use serde::Deserialize;

use crate::api::Api;
use crate::retention::Artifact;

const PREFIX: &str = "artifact/";
const IN_USE_PREFIX: &str = "in-use/";

/// What `publish` is given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PublishRequest {
    pub repository: String,
    pub tag: String,
    pub environment: String,
    #[serde(default)]
    pub revision: String,
    /// `image` (default) or `plugin`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// The digest the pusher saw, checked against the registry's.
    #[serde(default)]
    pub digest: Option<String>,
    /// Whether the build succeeded (failed ones are recorded, never kept).
    #[serde(default = "yes")]
    pub successful: bool,
}

fn default_kind() -> String {
    "image".into()
}

fn yes() -> bool {
    true
}

/// What a device reports it runs: digests and who uses each.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InUseReport {
    pub device: String,
    /// Digest → users (a container, a plugin, a deployment).
    pub digests: BTreeMap<String, Vec<String>>,
}

fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        && !text.starts_with('/')
        && !text.contains("..")
}

/// Resolves the tag, checks it, and records the artifact.
pub fn publish(
    api: &Api<'_>,
    environments: &[String],
    request: PublishRequest,
) -> Result<Artifact, CommandError> {
    if !environments.contains(&request.environment) {
        return Err(CommandError::invalid(format!(
            "unknown environment `{}`; configured: {}",
            request.environment,
            environments.join(", ")
        )));
    }
    if !valid_name(&request.repository) {
        return Err(CommandError::invalid(format!(
            "`{}` is not a repository name",
            request.repository
        )));
    }
    let tag_ok = !request.tag.is_empty()
        && request.tag.len() <= 128
        && request
            .tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !tag_ok {
        return Err(CommandError::invalid(format!(
            "`{}` is not a tag",
            request.tag
        )));
    }
    if !matches!(request.kind.as_str(), "image" | "plugin") {
        return Err(CommandError::invalid("`kind` is `image` or `plugin`"));
    }
    let (digest, _) = api
        .manifest(&request.repository, &request.tag)
        .map_err(CommandError::internal)?
        .ok_or_else(|| {
            CommandError::not_found(format!(
                "{}:{} is not in the registry; push it first",
                request.repository, request.tag
            ))
        })?;
    if let Some(seen) = &request.digest
        && *seen != digest
    {
        return Err(CommandError::conflict(format!(
            "{}:{} is {digest} in the registry, not {seen}: it moved since the push",
            request.repository, request.tag
        )));
    }
    let artifact = Artifact {
        repository: request.repository,
        tag: request.tag,
        digest,
        environment: request.environment,
        published_ms: cairn_sdk::timer::now_ms(),
        successful: request.successful,
        kind: request.kind,
        revision: request.revision,
    };
    let short = artifact.digest.get(7..19).unwrap_or_default();
    let key = format!("{PREFIX}{:016}-{short}", artifact.published_ms);
    kv::set_json(&key, &artifact)?;
    Ok(artifact)
}

/// Every recorded artifact, oldest first.
pub fn list() -> Result<Vec<Artifact>, CommandError> {
    let mut artifacts = Vec::new();
    for key in kv::list_keys(PREFIX)? {
        if let Some(artifact) = kv::get_json::<Artifact>(&key)? {
            artifacts.push(artifact);
        }
    }
    Ok(artifacts)
}

/// Replaces what `report.device` said it runs.
pub fn report_in_use(report: InUseReport) -> Result<(), CommandError> {
    if report.device.is_empty() || report.device.contains('/') {
        return Err(CommandError::invalid("`device` must be a device id"));
    }
    kv::set_json(
        &format!("{IN_USE_PREFIX}{}", report.device),
        &report.digests,
    )?;
    Ok(())
}

/// Every digest in use, with who uses it (`<user> on <device>`).
pub fn in_use() -> Result<BTreeMap<String, Vec<String>>, CommandError> {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in kv::list_keys(IN_USE_PREFIX)? {
        let device = key.trim_start_matches(IN_USE_PREFIX).to_string();
        let Some(digests) = kv::get_json::<BTreeMap<String, Vec<String>>>(&key)? else {
            continue;
        };
        for (digest, users) in digests {
            let entry = all.entry(digest).or_default();
            entry.extend(users.into_iter().map(|user| format!("{user} on {device}")));
        }
    }
    Ok(all)
}
