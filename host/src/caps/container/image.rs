//! Images in containerd: their manifests and configs as the capability reads
//! them, the records of pulled images, and files read from their layers.
//!
//! A pull (see `pull.rs`) resolves the tag once, then fetches by digest and
//! checks every digest (manifest, config, each layer, each unpacked layer's
//! diff ID).

use std::collections::BTreeMap;

use containerd_client::services::v1::{
    DeleteImageRequest, GetImageRequest, Image, ListImagesRequest, ReadContentRequest,
    ReadContentResponse,
};
use containerd_client::tonic::Streaming;
use oci_client::manifest::OciDescriptor;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::engine::{Containerd, is_not_found, status_error};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::ImageConfig as WitImageConfig;
use crate::state::digest::Digest;
use crate::supply::oci::{OciError, Reference};

/// Largest manifest or config read.
pub const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;
/// Largest layer accepted: layers stream to disk, so this only refuses
/// sizes no device has room for.
pub const MAX_LAYER: u64 = 64 * 1024 * 1024 * 1024;
/// Label on the image record: the keys whose signatures verified.
pub const SIGNED_BY_LABEL: &str = "cairn.signed-by";
/// Label on the image record: bytes of its compressed layers.
pub const SIZE_LABEL: &str = "cairn.size";

pub const INDEX_TYPES: &[&str] = &[
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
pub struct Document {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Option<Desc>,
    #[serde(default)]
    pub layers: Vec<Desc>,
    #[serde(default)]
    pub manifests: Vec<Desc>,
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
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Keys such as `5432/tcp`; the values are empty objects.
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
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

pub fn oci_error(err: OciError) -> CapError {
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

pub fn descriptor(desc: &Desc) -> OciDescriptor {
    OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size,
        urls: None,
        annotations: None,
        artifact_type: None,
    }
}

pub fn size_of(desc: &Desc, limit: u64) -> Result<u64, CapError> {
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

pub fn parse_document(bytes: &[u8], what: &str) -> Result<Document, CapError> {
    serde_json::from_slice(bytes)
        .map_err(|err| CapError::Rejected(format!("{what} is not an image manifest: {err}")))
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

/// The blob `digest` of the content store, as containerd streams it.
async fn content_stream(
    engine: &Containerd,
    digest: &str,
) -> Result<Streaming<ReadContentResponse>, CapError> {
    let client = engine.client().await?;
    Ok(client
        .content()
        .read(engine.req(ReadContentRequest {
            digest: digest.into(),
            offset: 0,
            size: 0,
        }))
        .await
        .map_err(|status| status_error(&format!("reading {digest}"), status))?
        .into_inner())
}

/// Reads a whole document (at most [`MAX_DOCUMENT`] bytes) from the content
/// store; layers are streamed instead (see `file_of`).
async fn read_blob(engine: &Containerd, digest: &str) -> Result<Vec<u8>, CapError> {
    let limit = MAX_DOCUMENT;
    let mut stream = content_stream(engine, digest).await?;
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

/// What the `inspect-image` call answers of the config of `digest`.
pub fn describe(digest: String, config: RunConfig) -> WitImageConfig {
    let listed = |list: Option<Vec<String>>| list.unwrap_or_default();
    WitImageConfig {
        digest,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        entrypoint: listed(config.entrypoint),
        cmd: listed(config.cmd),
        env: listed(config.env),
        working_dir: config.working_dir.unwrap_or_default(),
        user: config.user.unwrap_or_default(),
        exposed_ports: config
            .exposed_ports
            .unwrap_or_default()
            .into_keys()
            .collect(),
    }
}

/// The file at `path` (relative, e.g. `etc/passwd`, at most 1 MiB) in the
/// image `target`, read from its layers, the topmost first; `None` when no
/// layer has it or one deleted it. Layers are streamed, never whole in memory.
pub async fn file_of(
    engine: &Containerd,
    target: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, CapError> {
    let document = manifest_of(engine, target).await?;
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let whiteout = if dir.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{dir}/.wh.{name}")
    };
    for layer in document.layers.iter().rev() {
        let gzipped = if layer.media_type.ends_with("gzip") {
            true
        } else if layer.media_type.ends_with(".tar") || layer.media_type.ends_with("diff.tar") {
            false
        } else {
            return Err(CapError::Unavailable(format!(
                "cannot read {path} from a layer of type {}",
                layer.media_type
            )));
        };
        let reader = open_blob(engine, &layer.digest).await?;
        let (path, whiteout) = (path.to_string(), whiteout.clone());
        let found = tokio::task::spawn_blocking(move || {
            if gzipped {
                find_in_layer(flate2::read::GzDecoder::new(reader), &path, &whiteout)
            } else {
                find_in_layer(reader, &path, &whiteout)
            }
        })
        .await
        .map_err(|err| CapError::Internal(format!("reading layer {}: {err}", layer.digest)))?
        .map_err(|err| CapError::Rejected(format!("layer {}: {err}", layer.digest)))?;
        match found {
            InLayer::File(bytes) => return Ok(Some(bytes)),
            InLayer::Deleted => return Ok(None),
            InLayer::Absent => {}
        }
    }
    Ok(None)
}

/// What a layer says about a file.
enum InLayer {
    File(Vec<u8>),
    Deleted,
    Absent,
}

fn find_in_layer(
    layer: impl std::io::Read,
    path: &str,
    whiteout: &str,
) -> std::io::Result<InLayer> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let entry_path = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            .unwrap_or_default();
        if entry_path == whiteout {
            return Ok(InLayer::Deleted);
        }
        if entry_path == path && entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            (&mut entry).take(1024 * 1024).read_to_end(&mut bytes)?;
            return Ok(InLayer::File(bytes));
        }
    }
    Ok(InLayer::Absent)
}

/// A blob of the content store as a blocking reader, fed chunk by chunk by a
/// task reading it from containerd.
struct BlobReader {
    chunks: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    current: Vec<u8>,
    position: usize,
}

impl std::io::Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.current.len() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Some(Err(message)) => return Err(std::io::Error::other(message)),
                None => return Ok(0),
            }
        }
        let count = buf.len().min(self.current.len() - self.position);
        buf[..count].copy_from_slice(&self.current[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

async fn open_blob(engine: &Containerd, digest: &str) -> Result<BlobReader, CapError> {
    let mut stream = content_stream(engine, digest).await?;
    let (sender, chunks) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let next = match stream.message().await {
                Ok(Some(chunk)) => Ok(chunk.data),
                Ok(None) => break,
                Err(status) => Err(status.message().to_string()),
            };
            let failed = next.is_err();
            // A closed channel: the reader found what it looked for.
            if sender.send(next).await.is_err() || failed {
                break;
            }
        }
    });
    Ok(BlobReader {
        chunks,
        current: Vec::new(),
        position: 0,
    })
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

pub fn pick_platform(manifests: &[Desc]) -> Result<&Desc, CapError> {
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
