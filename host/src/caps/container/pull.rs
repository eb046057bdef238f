//! A pull: the host's own registry client fetches an image by digest and
//! streams it into containerd's content store and snapshotter (containerd 1.6
//! has no server-side pull).
//!
//! Everything is written under a lease and carries the garbage-collection
//! labels containerd's own client writes, so that once the lease ends the
//! image record keeps exactly what it needs alive. A pull that fails leaves
//! its lease to expire instead, so that the next one resumes its layers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use containerd_client::services::v1::Info as ContentInfo;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, Image, UpdateImageRequest, UpdateRequest,
};
use containerd_client::types::Descriptor;

use super::engine::{Containerd, is_already_exists, status_error};
use super::image::{
    Desc, Document, INDEX_TYPES, ImageConfig, ImageRecord, MAX_DOCUMENT, MAX_LAYER,
    SIGNED_BY_LABEL, SIZE_LABEL, chain_ids, descriptor, oci_error, parse_document, pick_platform,
    record, size_of,
};
use super::ingest::{CommitError, Committed, Ingest, Opened, abort};
use crate::contract::bindings::CapError;
use crate::state::digest::Digest;
use crate::supply::oci::{BlobSink as _, Reference, Registry};

/// One pull, holding the lease everything it writes is kept under.
struct Pull<'a> {
    engine: &'a Containerd,
    client: containerd_client::Client,
    lease: String,
}

impl Pull<'_> {
    /// Stores `bytes` (already verified to be `digest`) with `labels`; a blob
    /// containerd has gets the labels added.
    async fn store(
        &self,
        digest: &str,
        bytes: Vec<u8>,
        labels: HashMap<String, String>,
    ) -> Result<(), CapError> {
        let what = format!("storing {digest}");
        let opened = Ingest::open(
            self.engine,
            &self.client,
            &self.lease,
            digest,
            bytes.len() as u64,
        )
        .await
        .map_err(|status| status_error(&what, status))?;
        let mut ingest = match opened {
            Opened::Present => return self.label(digest, labels).await,
            Opened::Writing(ingest) => *ingest,
        };
        let written = async {
            // Small and whole in hand: written from the start, whatever is there.
            ingest.restart().await?;
            ingest.append(&bytes).await
        }
        .await;
        if written.is_err() {
            let failure = ingest.failure();
            ingest.suspend().await;
            return Err(failure.map_or_else(
                || CapError::Internal(format!("{what}: the write failed")),
                |status| status_error(&what, status),
            ));
        }
        match ingest.commit(labels.clone()).await {
            Ok(Committed::Stored) => Ok(()),
            Ok(Committed::Present) => self.label(digest, labels).await,
            Err(CommitError::Mismatch(detail)) => Err(CapError::Internal(format!(
                "{what}: containerd does not accept it as {digest}: {detail}"
            ))),
            Err(CommitError::Store(status)) => Err(status_error(&what, status)),
        }
    }

    /// Streams `layer` (`size` bytes) from the registry into the content
    /// store, resuming after the bytes an interrupted pull left there.
    async fn store_layer(
        &self,
        request: &PullRequest<'_>,
        layer: &Desc,
        size: u64,
        labels: HashMap<String, String>,
    ) -> Result<(), CapError> {
        let what = format!("storing layer {}", layer.digest);
        let pinned = request.reference.with_digest(request.digest.clone());
        // Large layers report their progress in the log, a line a quarter.
        let quarter = AtomicU64::new(0);
        let digest = layer.digest.as_str();
        let progress = |done: u64, total: u64| {
            if total < 4 * 1024 * 1024 {
                return;
            }
            let reached = done * 4 / total;
            if quarter.fetch_max(reached, Ordering::Relaxed) < reached {
                tracing::info!(layer = %digest, done, total, "pulling image layer");
            }
        };
        let mut retried = false;
        loop {
            let opened = Ingest::open(self.engine, &self.client, &self.lease, digest, size)
                .await
                .map_err(|status| status_error(&what, status))?;
            let mut ingest = match opened {
                Opened::Present => return self.label(digest, labels).await,
                Opened::Writing(ingest) => *ingest,
            };
            let resumed = ingest.held();
            if resumed > 0 {
                tracing::info!(layer = %digest, resumed, size, "resuming an interrupted layer download");
            }
            let downloaded = request
                .registry
                .download_into(
                    &pinned,
                    &descriptor(layer),
                    "image layer",
                    size,
                    &mut ingest,
                    &progress,
                )
                .await;
            if let Err(err) = downloaded {
                let reference = ingest.reference().to_string();
                let failure = ingest.failure();
                ingest.suspend().await;
                return Err(match failure {
                    // containerd refused the bytes (a full disk): what it holds
                    // goes, so that the space is free again.
                    Some(status) => {
                        abort(self.engine, &self.client, &reference).await;
                        status_error(&what, status)
                    }
                    // The registry went away: the bytes stay for the next pull.
                    None => oci_error(err),
                });
            }
            let reference = ingest.reference().to_string();
            match ingest.commit(labels.clone()).await {
                Ok(Committed::Stored) => return Ok(()),
                Ok(Committed::Present) => return self.label(digest, labels).await,
                Err(CommitError::Mismatch(detail)) => {
                    abort(self.engine, &self.client, &reference).await;
                    // The bytes an earlier pull left may be what is wrong.
                    if resumed > 0 && !retried {
                        tracing::warn!(layer = %digest, %detail,
                            "a resumed layer does not match its digest; downloading it whole");
                        retried = true;
                        continue;
                    }
                    return Err(CapError::Rejected(format!(
                        "image layer {digest} does not match its digest: {detail}"
                    )));
                }
                Err(CommitError::Store(status)) => return Err(status_error(&what, status)),
            }
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
    if stored.is_ok() {
        lease.end(engine, &client).await;
    } else {
        // What the pull wrote stays until the lease expires, for the next pull.
        tracing::debug!(lease = %lease.id, "pull failed; its lease is left to expire");
    }
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
    let mut total: u64 = 0;
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let size = size_of(layer, MAX_LAYER)?;
        total += size;
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
        pull.store_layer(request, layer, size, labels).await?;
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
