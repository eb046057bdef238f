//! How much the registry stores: its blobs, counted on disk (the policy
//! grants the storage directory read-only). docker-registry's filesystem
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
