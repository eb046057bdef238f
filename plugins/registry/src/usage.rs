//! How much the registry stores: its blobs, counted on disk (the policy
//! grants the storage directory as private). docker-registry's filesystem
//! driver keeps each blob at `docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data`.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Blobs and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub blobs: u64,
    pub bytes: u64,
}

/// What the registry at `storage` holds; an empty or missing store is zero.
pub fn measure(storage: &str) -> Usage {
    let mut usage = Usage::default();
    let root = Path::new(storage).join("docker/registry/v2/blobs");
    for algorithm in entries(&root) {
        for prefix in entries(&algorithm) {
            for blob in entries(&prefix) {
                if let Ok(meta) = fs::metadata(blob.join("data")) {
                    usage.blobs += 1;
                    usage.bytes += meta.len();
                }
            }
        }
    }
    usage
}

/// Removes every upload in progress (`<repository>/_uploads/<id>`): what
/// they held. Only safe while the registry refuses writes.
pub fn remove_uploads(storage: &str) -> Usage {
    let mut freed = Usage::default();
    let mut pending = vec![Path::new(storage).join("docker/registry/v2/repositories")];
    while let Some(dir) = pending.pop() {
        for entry in entries(&dir).filter(|path| path.is_dir()) {
            match entry.file_name().and_then(|name| name.to_str()) {
                Some("_uploads") => {
                    for upload in entries(&entry) {
                        let size = tree_size(&upload);
                        if fs::remove_dir_all(&upload).is_ok() {
                            freed.blobs += 1;
                            freed.bytes += size;
                        }
                    }
                }
                // Links to blobs, never uploads.
                Some("_layers" | "_manifests") => {}
                _ => pending.push(entry),
            }
        }
    }
    freed
}

fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => entries(path).map(|entry| tree_size(&entry)).sum(),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}

fn entries(dir: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
}

impl Usage {
    /// What went away between `self` and `after` (never negative: the smoke
    /// check adds a few bytes back).
    pub fn freed_by(self, after: Usage) -> Usage {
        Usage {
            blobs: self.blobs.saturating_sub(after.blobs),
            bytes: self.bytes.saturating_sub(after.bytes),
        }
    }
}
