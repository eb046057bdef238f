//! Images: pulled by the host's own registry client, stored in containerd's
//! content store and unpacked into its snapshotter (containerd 1.6 has no
//! server-side pull).
//!
//! A pull resolves the tag once, then fetches by digest and checks every
//! digest (manifest, config, each layer, each unpacked layer's diff ID). Blobs
//! and snapshots are written under a lease and carry the garbage-collection
//! labels containerd's own client writes, so that once the lease ends the
//! image record keeps exactly what it needs alive.

use std::collections::HashMap;
use std::time::SystemTime;

use containerd_client::services::v1::Info as ContentInfo;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, InfoRequest,
    ListImagesRequest, ReadContentRequest, UpdateImageRequest, UpdateRequest, WriteAction,
    WriteContentRequest,
};
use containerd_client::types::Descriptor;
use oci_client::manifest::OciDescriptor;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::engine::{Containerd, is_already_exists, is_not_found, status_error};
use crate::contract::bindings::CapError;
use crate::state::digest::Digest;
use crate::supply::oci::{OciError, Reference, Registry};

/// Largest manifest or config read.
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;
/// Largest layer accepted (it is held in memory while it is stored).
pub const MAX_LAYER: u64 = 1024 * 1024 * 1024;
/// Bytes per content write message (containerd's limit is 16 MiB).
const CHUNK: usize = 1024 * 1024;
/// Label on the image record: the keys whose signatures verified.
pub const SIGNED_BY_LABEL: &str = "cairn.signed-by";
/// Label on the image record: bytes of its compressed layers.
pub const SIZE_LABEL: &str = "cairn.size";

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A descriptor as manifests write it.
#[derive(Debug, Clone, Deserialize)]
pub struct Desc {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

/// An image manifest or an index, whichever the document is.
#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
    #[serde(default)]
    manifests: Vec<Desc>,
}

/// The parts of an image config that decide how a container runs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// The snapshot holding the whole unpacked image.
    pub fn top_chain(&self) -> Option<String> {
        chain_ids(&self.rootfs.diff_ids).pop()
    }
}

/// An image on the device.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// `registry/repository:tag` or `…@sha256:…`.
    pub name: String,
    pub digest: String,
    pub size: u64,
    pub signed_by: Vec<String>,
}

/// Chain IDs of layers with these diff IDs, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match chains.last() {
            None => diff.clone(),
            Some(parent) => {
                let hash = Sha256::digest(format!("{parent} {diff}").as_bytes());
                format!("sha256:{}", hex::encode(hash))
            }
        };
        chains.push(next);
    }
    chains
}

/// The containerd image name of a reference (the reference without `oci://`).
pub fn image_name(reference: &Reference) -> String {
    let mut name = reference.repository_name();
    if let Some(tag) = reference.tag() {
        name.push(':');
        name.push_str(tag);
    }
    if let Some(digest) = reference.digest() {
        name.push('@');
        name.push_str(digest.as_str());
    }
    name
}

fn current_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        other => other,
    };
    ("linux", arch)
}

fn oci_error(err: OciError) -> CapError {
    match err {
        OciError::NotFound { .. } => CapError::NotFound(err.to_string()),
        OciError::BlobDigestMismatch { .. }
        | OciError::ManifestDigestMismatch { .. }
        | OciError::BlobSizeMismatch { .. } => CapError::Rejected(err.to_string()),
        OciError::TooLarge { .. } => CapError::QuotaExceeded(err.to_string()),
        err if err.is_transient() => CapError::Unavailable(err.to_string()),
        err => CapError::Internal(err.to_string()),
    }
}

fn descriptor(desc: &Desc) -> OciDescriptor {
    OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size,
        urls: None,
        annotations: None,
        artifact_type: None,
    }
}

fn size_of(desc: &Desc, limit: u64) -> Result<u64, CapError> {
    let size = u64::try_from(desc.size)
        .map_err(|_| CapError::Rejected(format!("{} has a negative size", desc.digest)))?;
    if size > limit {
        return Err(CapError::QuotaExceeded(format!(
            "{} is {size} bytes, more than the {limit} allowed",
            desc.digest
        )));
    }
    Digest::parse(&desc.digest)
        .map_err(|_| CapError::Rejected(format!("`{}` is not a sha256 digest", desc.digest)))?;
    Ok(size)
}

fn parse_document(bytes: &[u8], what: &str) -> Result<Document, CapError> {
    serde_json::from_slice(bytes)
        .map_err(|err| CapError::Rejected(format!("{what} is not an image manifest: {err}")))
}

/// One pull, holding the lease everything it writes is kept under.
struct Pull<'a> {
    engine: &'a Containerd,
    client: containerd_client::Client,
    lease: String,
}

impl Pull<'_> {
    /// Stores `bytes` (already verified to be `digest`) with `labels`; a blob
    /// containerd has (it answers "already exists") gets the labels added.
    async fn store(
        &self,
        digest: &str,
        bytes: Vec<u8>,
        labels: HashMap<String, String>,
    ) -> Result<(), CapError> {
        let mut content = self.client.content();
        let total = bytes.len() as i64;
        let reference = format!("cairn-pull-{digest}");
        let mut messages = Vec::new();
        let mut offset = 0usize;
        for chunk in bytes.chunks(CHUNK) {
            messages.push(WriteContentRequest {
                action: WriteAction::Write as i32,
                r#ref: reference.clone(),
                total,
                expected: digest.to_string(),
                offset: offset as i64,
                data: chunk.to_vec(),
                labels: HashMap::new(),
            });
            offset += chunk.len();
        }
        messages.push(WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: reference,
            total,
            expected: digest.to_string(),
            offset: offset as i64,
            data: Vec::new(),
            labels: labels.clone(),
        });
        drop(bytes);
        let request = self
            .engine
            .leased(futures_util::stream::iter(messages), &self.lease);
        let written = async {
            let mut replies = content.write(request).await?.into_inner();
            while replies.message().await?.is_some() {}
            Ok::<(), containerd_client::tonic::Status>(())
        };
        match written.await {
            Ok(()) => Ok(()),
            Err(status) if is_already_exists(&status) => self.label(digest, labels).await,
            Err(status) => Err(status_error(&format!("storing {digest}"), status)),
        }
    }

    async fn label(&self, digest: &str, labels: HashMap<String, String>) -> Result<(), CapError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|key| format!("labels.{key}")).collect();
        self.client
            .content()
            .update(self.engine.leased(
                UpdateRequest {
                    info: Some(ContentInfo {
                        digest: digest.to_string(),
                        labels,
                        ..ContentInfo::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                },
                &self.lease,
            ))
            .await
            .map_err(|status| status_error(&format!("labelling {digest}"), status))?;
        Ok(())
    }

    /// Unpacks the layers into snapshots; returns the top chain ID.
    async fn unpack(&self, layers: &[Desc], diff_ids: &[String]) -> Result<String, CapError> {
        let snapshotter = self.engine.config.snapshotter.clone();
        let chains = chain_ids(diff_ids);
        let mut snapshots = self.client.snapshots();
        let mut parent = String::new();
        for ((layer, diff_id), chain) in layers.iter().zip(diff_ids).zip(&chains) {
            let present = snapshots
                .stat(self.engine.req(StatSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: chain.clone(),
                }))
                .await
                .is_ok();
            if !present {
                let key = format!("cairn-extract-{}-{chain}", unique());
                let mounts = snapshots
                    .prepare(self.engine.leased(
                        PrepareSnapshotRequest {
                            snapshotter: snapshotter.clone(),
                            key: key.clone(),
                            parent: parent.clone(),
                            labels: HashMap::new(),
                        },
                        &self.lease,
                    ))
                    .await
                    .map_err(|status| status_error("preparing a layer snapshot", status))?
                    .into_inner()
                    .mounts;
                let applied = self
                    .client
                    .diff()
                    .apply(self.engine.leased(
                        ApplyRequest {
                            diff: Some(Descriptor {
                                media_type: layer.media_type.clone(),
                                digest: layer.digest.clone(),
                                size: layer.size,
                                annotations: HashMap::new(),
                            }),
                            mounts,
                            payloads: HashMap::new(),
                            sync_fs: true,
                        },
                        &self.lease,
                    ))
                    .await;
                let applied = match applied {
                    Ok(reply) => reply.into_inner().applied.map(|desc| desc.digest),
                    Err(status) => {
                        self.discard(&key).await;
                        return Err(status_error(
                            &format!("unpacking layer {}", layer.digest),
                            status,
                        ));
                    }
                };
                if applied.as_deref() != Some(diff_id.as_str()) {
                    self.discard(&key).await;
                    return Err(CapError::Rejected(format!(
                        "layer {} unpacks to {}, but the image config says {diff_id}",
                        layer.digest,
                        applied.unwrap_or_default()
                    )));
                }
                let committed = snapshots
                    .commit(self.engine.leased(
                        CommitSnapshotRequest {
                            snapshotter: snapshotter.clone(),
                            name: chain.clone(),
                            key: key.clone(),
                            labels: HashMap::new(),
                        },
                        &self.lease,
                    ))
                    .await;
                if let Err(status) = committed
                    && !is_already_exists(&status)
                {
                    self.discard(&key).await;
                    return Err(status_error("committing a layer snapshot", status));
                }
            }
            parent = chain.clone();
        }
        Ok(parent)
    }

    async fn discard(&self, key: &str) {
        let _ = self
            .client
            .snapshots()
            .remove(self.engine.req(RemoveSnapshotRequest {
                snapshotter: self.engine.config.snapshotter.clone(),
                key: key.to_string(),
            }))
            .await;
    }
}

fn unique() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The image record `name`, if containerd has it.
pub async fn find(engine: &Containerd, name: &str) -> Result<Option<Image>, CapError> {
    let client = engine.client().await?;
    match client
        .images()
        .get(engine.req(GetImageRequest { name: name.into() }))
        .await
    {
        Ok(reply) => Ok(reply.into_inner().image),
        Err(status) if is_not_found(&status) => Ok(None),
        Err(status) => Err(status_error(&format!("looking up image {name}"), status)),
    }
}

/// Every image record in the namespace.
pub async fn list(engine: &Containerd) -> Result<Vec<Image>, CapError> {
    let client = engine.client().await?;
    let images = client
        .images()
        .list(engine.req(ListImagesRequest::default()))
        .await
        .map_err(|status| status_error("listing images", status))?;
    Ok(images.into_inner().images)
}

/// Deletes the image record `name`; its content and snapshots go with
/// containerd's next garbage collection, unless a container still uses them.
pub async fn remove(engine: &Containerd, name: &str) -> Result<(), CapError> {
    let client = engine.client().await?;
    client
        .images()
        .delete(engine.req(DeleteImageRequest {
            name: name.into(),
            sync: true,
            target: None,
        }))
        .await
        .map_err(|status| status_error(&format!("removing image {name}"), status))?;
    Ok(())
}

/// What an image record says about itself.
pub fn record(image: &Image) -> ImageRecord {
    let label = |key: &str| image.labels.get(key).cloned().unwrap_or_default();
    ImageRecord {
        name: image.name.clone(),
        digest: image
            .target
            .as_ref()
            .map(|target| target.digest.clone())
            .unwrap_or_default(),
        size: label(SIZE_LABEL).parse().unwrap_or(0),
        signed_by: label(SIGNED_BY_LABEL)
            .split(',')
            .filter(|key| !key.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// Reads a whole blob (at most [`MAX_DOCUMENT`] bytes) from the content store.
async fn read_blob(engine: &Containerd, digest: &str) -> Result<Vec<u8>, CapError> {
    read_blob_up_to(engine, digest, MAX_DOCUMENT).await
}

/// Reads a whole blob of at most `limit` bytes from the content store.
async fn read_blob_up_to(
    engine: &Containerd,
    digest: &str,
    limit: u64,
) -> Result<Vec<u8>, CapError> {
    let client = engine.client().await?;
    let mut stream = client
        .content()
        .read(engine.req(ReadContentRequest {
            digest: digest.into(),
            offset: 0,
            size: 0,
        }))
        .await
        .map_err(|status| status_error(&format!("reading {digest}"), status))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| status_error(&format!("reading {digest}"), status))?
    {
        bytes.extend_from_slice(&chunk.data);
        if bytes.len() as u64 > limit {
            return Err(CapError::Rejected(format!(
                "{digest} is larger than {limit} bytes"
            )));
        }
    }
    if Digest::of(&bytes).as_str() != digest {
        return Err(CapError::Internal(format!(
            "the content store's {digest} is corrupt"
        )));
    }
    Ok(bytes)
}

/// The image manifest of `target` (a manifest, or an index: this platform's).
async fn manifest_of(engine: &Containerd, target: &str) -> Result<Document, CapError> {
    let mut document = parse_document(&read_blob(engine, target).await?, target)?;
    if document.config.is_none() && !document.manifests.is_empty() {
        let chosen = pick_platform(&document.manifests)?;
        document = parse_document(&read_blob(engine, &chosen.digest).await?, &chosen.digest)?;
    }
    Ok(document)
}

/// The file at `path` (relative, e.g. `etc/passwd`, at most 1 MiB) in the
/// image `target`, read from its layers, the topmost first; `None` when no
/// layer has it or one deleted it.
pub async fn file_of(
    engine: &Containerd,
    target: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, CapError> {
    use std::io::Read as _;
    let document = manifest_of(engine, target).await?;
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let whiteout = if dir.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{dir}/.wh.{name}")
    };
    for layer in document.layers.iter().rev() {
        let blob = read_blob_up_to(engine, &layer.digest, MAX_LAYER).await?;
        let reader: Box<dyn std::io::Read> = if layer.media_type.ends_with("gzip") {
            Box::new(flate2::read::GzDecoder::new(blob.as_slice()))
        } else if layer.media_type.ends_with(".tar") || layer.media_type.ends_with("diff.tar") {
            Box::new(blob.as_slice())
        } else {
            return Err(CapError::Unavailable(format!(
                "cannot read {path} from a layer of type {}",
                layer.media_type
            )));
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|err| CapError::Rejected(format!("layer {}: {err}", layer.digest)))?;
        for entry in entries {
            let mut entry = entry
                .map_err(|err| CapError::Rejected(format!("layer {}: {err}", layer.digest)))?;
            let entry_path = entry
                .path()
                .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
                .unwrap_or_default();
            if entry_path == whiteout {
                return Ok(None);
            }
            if entry_path == path && entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(1024 * 1024)
                    .read_to_end(&mut bytes)
                    .map_err(|err| CapError::Rejected(format!("layer {}: {err}", layer.digest)))?;
                return Ok(Some(bytes));
            }
        }
    }
    Ok(None)
}

/// The config of the image whose manifest (or index) is `target`.
pub async fn config_of(engine: &Containerd, target: &str) -> Result<ImageConfig, CapError> {
    let document = manifest_of(engine, target).await?;
    let config = document
        .config
        .ok_or_else(|| CapError::Rejected(format!("{target} has no config")))?;
    serde_json::from_slice(&read_blob(engine, &config.digest).await?).map_err(|err| {
        CapError::Rejected(format!(
            "the image config {} is malformed: {err}",
            config.digest
        ))
    })
}

fn pick_platform(manifests: &[Desc]) -> Result<&Desc, CapError> {
    let (os, arch) = current_platform();
    manifests
        .iter()
        .find(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|platform| platform.os == os && platform.architecture == arch)
        })
        .ok_or_else(|| CapError::NotFound(format!("the image has no {os}/{arch} manifest")))
}

/// What a verified pull needs besides the reference.
pub struct PullRequest<'a> {
    pub registry: &'a Registry,
    /// The repository and the manifest digest the tag resolved to.
    pub reference: &'a Reference,
    pub digest: &'a Digest,
    /// The containerd image name to record.
    pub name: String,
    pub signed_by: Vec<String>,
}

/// Fetches, stores and unpacks the image at `request.digest`, then records it.
pub async fn pull(engine: &Containerd, request: PullRequest<'_>) -> Result<ImageRecord, CapError> {
    let client = engine.client().await?;
    let pinned = request.reference.with_digest(request.digest.clone());
    let registry = request.registry;
    registry.prepare(&pinned).await;
    let top = registry.fetch_manifest(&pinned).await.map_err(oci_error)?;
    if Digest::of(&top) != *request.digest {
        return Err(CapError::Rejected(format!(
            "the registry's manifest is not {}",
            request.digest
        )));
    }
    let top_document = parse_document(&top, "the manifest")?;
    let (manifest_bytes, manifest_desc) = if top_document.config.is_none()
        && (!top_document.manifests.is_empty()
            || INDEX_TYPES.contains(&top_document.media_type.as_str()))
    {
        let chosen = pick_platform(&top_document.manifests)?.clone();
        size_of(&chosen, MAX_DOCUMENT)?;
        let digest = Digest::parse(&chosen.digest)
            .map_err(|_| CapError::Rejected(format!("`{}` is not a digest", chosen.digest)))?;
        let bytes = registry
            .fetch_manifest(&request.reference.with_digest(digest.clone()))
            .await
            .map_err(oci_error)?;
        if Digest::of(&bytes) != digest {
            return Err(CapError::Rejected(format!(
                "the registry's manifest is not {digest}"
            )));
        }
        (bytes, Some(chosen))
    } else {
        (top.clone(), None)
    };
    let manifest = parse_document(&manifest_bytes, "the manifest")?;
    let config_desc = manifest
        .config
        .clone()
        .ok_or_else(|| CapError::Rejected("the manifest names no config".into()))?;
    let config_size = size_of(&config_desc, MAX_DOCUMENT)?;
    let config_bytes = registry
        .download_blob(
            &pinned,
            &descriptor(&config_desc),
            "image config",
            config_size,
            &|_, _| {},
        )
        .await
        .map_err(oci_error)?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|err| CapError::Rejected(format!("the image config is malformed: {err}")))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() || manifest.layers.is_empty() {
        return Err(CapError::Rejected(format!(
            "the manifest has {} layers but the config names {} diff IDs",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    for diff_id in &config.rootfs.diff_ids {
        Digest::parse(diff_id).map_err(|_| {
            CapError::Rejected(format!("diff ID `{diff_id}` is not a sha256 digest"))
        })?;
    }

    let lease = super::engine::Lease::create(engine, &client).await?;
    let pull = Pull {
        engine,
        client: containerd_client::Client::from(client.channel()),
        lease: lease.id.clone(),
    };
    let stored = store_image(
        &pull,
        &request,
        &top,
        manifest_bytes,
        manifest_desc,
        &manifest,
        config_desc,
        config_bytes,
        &config,
    )
    .await;
    lease.end(engine, &client).await;
    stored
}

#[allow(clippy::too_many_arguments)]
async fn store_image(
    pull: &Pull<'_>,
    request: &PullRequest<'_>,
    top: &[u8],
    manifest_bytes: Vec<u8>,
    manifest_desc: Option<Desc>,
    manifest: &Document,
    config_desc: Desc,
    config_bytes: Vec<u8>,
    config: &ImageConfig,
) -> Result<ImageRecord, CapError> {
    let pinned = request.reference.with_digest(request.digest.clone());
    let mut total: u64 = 0;
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let size = size_of(layer, MAX_LAYER)?;
        total += size;
        let present = pull
            .client
            .content()
            .info(pull.engine.req(InfoRequest {
                digest: layer.digest.clone(),
            }))
            .await
            .is_ok();
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
        if present {
            pull.label(&layer.digest, labels).await?;
            continue;
        }
        // Large layers report their progress in the log, a line a quarter.
        let quarter = std::sync::atomic::AtomicU64::new(0);
        let digest = layer.digest.as_str();
        let progress = |done: u64, total: u64| {
            if total < 4 * 1024 * 1024 {
                return;
            }
            let reached = done * 4 / total;
            if quarter.fetch_max(reached, std::sync::atomic::Ordering::Relaxed) < reached {
                tracing::info!(layer = %digest, done, total, "pulling image layer");
            }
        };
        let bytes = request
            .registry
            .download_blob(&pinned, &descriptor(layer), "image layer", size, &progress)
            .await
            .map_err(oci_error)?;
        pull.store(&layer.digest, bytes, labels).await?;
    }
    let top_chain = pull
        .unpack(&manifest.layers, &config.rootfs.diff_ids)
        .await?;
    let snapshot_label = format!(
        "containerd.io/gc.ref.snapshot.{}",
        pull.engine.config.snapshotter
    );
    pull.store(
        &config_desc.digest,
        config_bytes,
        HashMap::from([(snapshot_label, top_chain)]),
    )
    .await?;
    let mut manifest_labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        config_desc.digest.clone(),
    )]);
    for (index, layer) in manifest.layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{index}"),
            layer.digest.clone(),
        );
    }
    let manifest_digest = Digest::of(&manifest_bytes).to_string();
    pull.store(&manifest_digest, manifest_bytes, manifest_labels)
        .await?;
    let (target_type, target_size) = match &manifest_desc {
        Some(chosen) => {
            let labels = HashMap::from([(
                "containerd.io/gc.ref.content.m.0".to_string(),
                chosen.digest.clone(),
            )]);
            pull.store(request.digest.as_str(), top.to_vec(), labels)
                .await?;
            let document = parse_document(top, "the index")?;
            (document.media_type, top.len())
        }
        None => (
            if manifest.media_type.is_empty() {
                "application/vnd.oci.image.manifest.v1+json".to_string()
            } else {
                manifest.media_type.clone()
            },
            top.len(),
        ),
    };
    let image = Image {
        name: request.name.clone(),
        labels: HashMap::from([
            (SIZE_LABEL.to_string(), total.to_string()),
            (SIGNED_BY_LABEL.to_string(), request.signed_by.join(",")),
        ]),
        target: Some(Descriptor {
            media_type: target_type,
            digest: request.digest.to_string(),
            size: target_size as i64,
            annotations: HashMap::new(),
        }),
        created_at: None,
        updated_at: None,
    };
    let mut images = pull.client.images();
    let created = images
        .create(pull.engine.leased(
            CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            },
            &pull.lease,
        ))
        .await;
    match created {
        Ok(_) => {}
        Err(status) if is_already_exists(&status) => {
            images
                .update(pull.engine.leased(
                    UpdateImageRequest {
                        image: Some(image.clone()),
                        update_mask: None,
                        source_date_epoch: None,
                    },
                    &pull.lease,
                ))
                .await
                .map_err(|status| status_error("updating the image record", status))?;
        }
        Err(status) => return Err(status_error("recording the image", status)),
    }
    Ok(record(&image))
}
