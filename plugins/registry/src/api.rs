//! The registry's HTTP API as the plugin's operations use it: resolving a
//! tag to its digest, reading what the registry holds for retention, deleting
//! manifests and checking that kept ones are whole.

use std::collections::BTreeSet;

use cairn_sdk::http::{Method, Request, Response};

use crate::login::Login;
use crate::retention::{Artifact, Inventory};
use crate::secrets::User;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;
/// Repositories per catalog page.
const PAGE: usize = 1000;

/// The registry at `base`, as the `build` user.
pub struct Api<'a> {
    pub base: String,
    pub login: Login<'a>,
}

impl Api<'_> {
    fn send(&self, method: Method, path: &str) -> Result<Response, String> {
        self.send_as(User::Build, method, path)
    }

    fn send_as(&self, user: User, method: Method, path: &str) -> Result<Response, String> {
        let authorization = self.login.authorization(user, &method, path)?;
        Request::new(method, format!("{}{path}", self.base))
            .header("authorization", authorization)
            .header("accept", MANIFEST_TYPES)
            .send()
            .map_err(|err| format!("the registry did not answer {path}: {err}"))
    }

    fn json(&self, path: &str) -> Result<serde_json::Value, String> {
        let response = self.send(Method::Get, path)?;
        if !response.is_success() {
            return Err(format!("{path}: the registry answered {}", response.status));
        }
        let body = response
            .bytes(MAX_DOCUMENT)
            .map_err(|err| err.to_string())?;
        serde_json::from_slice(&body).map_err(|err| format!("{path}: {err}"))
    }

    /// The digest `repository:reference` points at, with its manifest;
    /// `None` when the registry does not have it.
    pub fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(String, serde_json::Value)>, String> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self.send(Method::Get, &path)?;
        match response.status {
            404 => return Ok(None),
            200 => {}
            other => return Err(format!("{path}: the registry answered {other}")),
        }
        let digest = response
            .header("docker-content-digest")
            .map(str::to_string)
            .ok_or_else(|| format!("{path}: no Docker-Content-Digest"))?;
        let body = response
            .bytes(MAX_DOCUMENT)
            .map_err(|err| err.to_string())?;
        let document = serde_json::from_slice(&body).map_err(|err| format!("{path}: {err}"))?;
        Ok(Some((digest, document)))
    }

    /// Whether the registry answers an authenticated `GET /v2/`.
    pub fn answers(&self) -> bool {
        self.send_as(User::Runtime, Method::Get, "/v2/")
            .is_ok_and(|response| response.status == 200)
    }

    /// Deletes a manifest by digest (and with it every tag on it); `false`
    /// when it was already gone.
    pub fn delete_manifest(&self, repository: &str, digest: &str) -> Result<bool, String> {
        let path = format!("/v2/{repository}/manifests/{digest}");
        let response = self.send(Method::Delete, &path)?;
        match response.status {
            202 => Ok(true),
            404 => Ok(false),
            other => {
                let body = response.bytes(4096).unwrap_or_default();
                Err(format!(
                    "DELETE {path}: the registry answered {other}: {}",
                    String::from_utf8_lossy(&body).trim()
                ))
            }
        }
    }

    /// What is missing of `repository@digest`, pulled as the `runtime`
    /// user: the manifest, its config and layers, an index's children.
    pub fn missing_parts(&self, repository: &str, digest: &str) -> Result<Vec<String>, String> {
        let path = format!("/v2/{repository}/manifests/{digest}");
        let response = self.send_as(User::Runtime, Method::Get, &path)?;
        match response.status {
            200 => {}
            404 => return Ok(vec![format!("{repository}@{digest}")]),
            other => return Err(format!("{path}: the registry answered {other}")),
        }
        let body = response
            .bytes(MAX_DOCUMENT)
            .map_err(|err| err.to_string())?;
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|err| format!("{path}: {err}"))?;
        let mut missing = Vec::new();
        let blobs = document["config"]["digest"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .chain(strings_at(&document["layers"], "digest"));
        for blob in blobs {
            let path = format!("/v2/{repository}/blobs/{blob}");
            if self.send_as(User::Runtime, Method::Head, &path)?.status != 200 {
                missing.push(format!("{repository}@{blob} (blob of {digest})"));
            }
        }
        for child in strings_at(&document["manifests"], "digest") {
            missing.extend(self.missing_parts(repository, &child)?);
        }
        Ok(missing)
    }

    /// Every repository, a page of [`PAGE`] at a time (2.8 refuses larger pages).
    fn repositories(&self) -> Result<Vec<String>, String> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let path = match all.last() {
                None => format!("/v2/_catalog?n={PAGE}"),
                Some(last) => format!("/v2/_catalog?n={PAGE}&last={last}"),
            };
            let page = strings(&self.json(&path)?["repositories"]);
            let full = page.len() == PAGE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Tags, indexes' children, and which published manifests are present.
    /// Each manifest is fetched once: a published digest a tag points at is
    /// present without asking again.
    pub fn inventory(&self, artifacts: &[Artifact]) -> Result<Inventory, String> {
        let mut inventory = Inventory::default();
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for repository in self.repositories()? {
            let listed = self.json(&format!("/v2/{repository}/tags/list"))?;
            // docker-registry 2.8 answers `"tags": null` for an emptied repository.
            for tag in strings(&listed["tags"]) {
                let Some((digest, document)) = self.manifest(&repository, &tag)? else {
                    continue;
                };
                let key = (repository.clone(), digest.clone());
                add_children(&mut inventory, &key, &document);
                seen.insert(key);
                inventory
                    .tags
                    .entry(repository.clone())
                    .or_default()
                    .insert(tag, digest);
            }
        }
        let published: BTreeSet<(String, String)> = artifacts
            .iter()
            .map(|artifact| (artifact.repository.clone(), artifact.digest.clone()))
            .collect();
        for key in published {
            if !seen.contains(&key) {
                let Some((_, document)) = self.manifest(&key.0, &key.1)? else {
                    continue;
                };
                add_children(&mut inventory, &key, &document);
            }
            inventory.present.insert(key);
        }
        Ok(inventory)
    }
}

/// Records the children of `key` when its manifest is an index, and its blobs.
fn add_children(inventory: &mut Inventory, key: &(String, String), document: &serde_json::Value) {
    let children = strings_at(&document["manifests"], "digest");
    if !children.is_empty() {
        inventory.children.insert(key.clone(), children);
    }
    let blobs: Vec<String> = document["config"]["digest"]
        .as_str()
        .map(str::to_string)
        .into_iter()
        .chain(strings_at(&document["layers"], "digest"))
        .collect();
    if !blobs.is_empty() {
        inventory.blobs.insert(key.clone(), blobs);
    }
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_string))
        .collect()
}

fn strings_at(value: &serde_json::Value, field: &str) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item[field].as_str().map(str::to_string))
        .collect()
}
