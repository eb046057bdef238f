//! The content-addressed blob cache and its LRU index.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::{ArtifactError, Errs};
use super::verify::{sync_dir, to_hex};

const INDEX: &str = "index.json";
const INDEX_TMP: &str = "index.json.tmp";
const INDEX_VERSION: u32 = 1;
const BLOB_PREFIX: &str = "sha256-";

/// What the index knows of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub size: u64,
    /// A logical clock rather than wall time: edge devices often boot without
    /// a correct clock, and LRU only needs an order.
    pub last_used: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    next_tick: u64,
    entries: BTreeMap<String, Entry>,
}

/// The cache directory: `blobs/`, `partial/`, `sigs/` and `index.json`.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    index: IndexFile,
}

impl Cache {
    /// Creates the layout if missing and loads the index, rebuilding it from
    /// `blobs/` when it is missing, unreadable or disagrees with the disk.
    pub fn open(dir: &Path) -> Result<Cache, ArtifactError> {
        let errs = Errs("");
        for sub in ["blobs", "partial", "sigs"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path)
                .map_err(|e| errs.io(format_args!("creating {}", path.display()), &e))?;
        }
        let loaded = fs::read(dir.join(INDEX))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<IndexFile>(&bytes).ok())
            .filter(|index| index.version == INDEX_VERSION);
        let rebuilt = loaded.is_none();
        let mut cache = Cache {
            dir: dir.to_path_buf(),
            index: loaded.unwrap_or(IndexFile {
                version: INDEX_VERSION,
                next_tick: 1,
                entries: BTreeMap::new(),
            }),
        };
        if cache.reconcile()? || rebuilt {
            cache.save()?;
        }
        Ok(cache)
    }

    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{BLOB_PREFIX}{hex}"))
    }

    pub fn partial_path(&self, hex: &str) -> PathBuf {
        self.dir.join("partial").join(hex)
    }

    /// One signature file per (blob, signature URI): a spec that moves to a
    /// new signature must not be satisfied by the old one's cached copy.
    pub fn sig_path(&self, hex: &str, sig_uri: &str) -> PathBuf {
        let uri_hash = to_hex(&Sha256::digest(sig_uri.as_bytes()));
        self.dir
            .join("sigs")
            .join(format!("{hex}-{}.sig", &uri_hash[..16]))
    }

    /// The blob's path if it is cached with the size the index recorded; a
    /// blob that lost or changed bytes is dropped so it is fetched anew.
    pub fn lookup(&mut self, hex: &str) -> Option<PathBuf> {
        let entry = *self.index.entries.get(hex)?;
        let path = self.blob_path(hex);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == entry.size => Some(path),
            _ => {
                self.remove(hex);
                None
            }
        }
    }

    pub fn touch(&mut self, hex: &str) {
        let tick = self.tick();
        if let Some(entry) = self.index.entries.get_mut(hex) {
            entry.last_used = tick;
        }
    }

    pub fn insert(&mut self, hex: &str, size: u64) {
        let last_used = self.tick();
        self.index
            .entries
            .insert(hex.to_string(), Entry { size, last_used });
    }

    /// Forgets a blob and deletes it with its cached signatures.
    pub fn remove(&mut self, hex: &str) {
        self.index.entries.remove(hex);
        let _ = fs::remove_file(self.blob_path(hex));
        if let Ok(sigs) = fs::read_dir(self.dir.join("sigs")) {
            let prefix = format!("{hex}-");
            for sig in sigs.flatten() {
                if sig.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(sig.path());
                }
            }
        }
    }

    /// Removes least-recently-used blobs until the total fits `limit`; `keep`
    /// (the blob being handed out) stays even if it alone is over the limit.
    /// Leftover partial downloads count too and go first: they only matter
    /// if the same artifact is tried again. Returns the evicted digests,
    /// oldest first.
    pub fn evict(&mut self, limit: u64, keep: &str) -> Vec<String> {
        let mut total = self.total_bytes();
        let mut partials: Vec<(SystemTime, PathBuf, u64)> = fs::read_dir(self.dir.join("partial"))
            .map(|listing| {
                listing
                    .flatten()
                    .filter(|item| item.file_name().to_str() != Some(keep))
                    .filter_map(|item| {
                        let meta = item.metadata().ok()?;
                        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        Some((modified, item.path(), meta.len()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        partials.sort();
        total += partials.iter().map(|(_, _, size)| size).sum::<u64>();
        for (_, path, size) in partials {
            if total <= limit {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
        let mut by_age: Vec<(u64, String, u64)> = self
            .index
            .entries
            .iter()
            .filter(|(hex, _)| hex.as_str() != keep)
            .map(|(hex, entry)| (entry.last_used, hex.clone(), entry.size))
            .collect();
        by_age.sort();
        let mut evicted = Vec::new();
        for (_, hex, size) in by_age {
            if total <= limit {
                break;
            }
            self.remove(&hex);
            total = total.saturating_sub(size);
            evicted.push(hex);
        }
        evicted
    }

    /// Every cached blob (hex digest) with its size.
    pub fn blobs(&self) -> Vec<(String, u64)> {
        self.index
            .entries
            .iter()
            .map(|(hex, entry)| (hex.clone(), entry.size))
            .collect()
    }

    pub fn entries(&self) -> u64 {
        self.index.entries.len() as u64
    }

    pub fn total_bytes(&self) -> u64 {
        self.index.entries.values().map(|entry| entry.size).sum()
    }

    #[cfg(test)]
    pub fn entry(&self, hex: &str) -> Option<Entry> {
        self.index.entries.get(hex).copied()
    }

    /// Writes the index through a temp file, fsync and rename, so a crash
    /// leaves the old or the new index, never half of one.
    pub fn save(&self) -> Result<(), ArtifactError> {
        let errs = Errs("");
        let tmp = self.dir.join(INDEX_TMP);
        let json = serde_json::to_vec_pretty(&self.index)
            .map_err(|e| errs.invalid(format!("encoding the cache index: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, self.dir.join(INDEX))
        };
        write().map_err(|e| errs.io(format_args!("writing {}", tmp.display()), &e))?;
        sync_dir(&self.dir);
        Ok(())
    }

    fn tick(&mut self) -> u64 {
        let tick = self.index.next_tick.max(1);
        self.index.next_tick = tick + 1;
        tick
    }

    /// Makes the index match `blobs/`: entries without a (same-sized) blob go,
    /// blobs without an entry come in as least recently used, ordered by
    /// their modification time. Returns whether anything changed.
    fn reconcile(&mut self) -> Result<bool, ArtifactError> {
        let blobs_dir = self.dir.join("blobs");
        let listing = fs::read_dir(&blobs_dir)
            .map_err(|e| Errs("").io(format_args!("listing {}", blobs_dir.display()), &e))?;
        let mut on_disk: BTreeMap<String, (u64, SystemTime)> = BTreeMap::new();
        for item in listing.flatten() {
            let name = item.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_prefix(BLOB_PREFIX)) else {
                continue;
            };
            let is_digest = hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            match item.metadata() {
                Ok(meta) if is_digest && meta.is_file() => {
                    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    on_disk.insert(hex.to_string(), (meta.len(), modified));
                }
                _ => {}
            }
        }
        let mut changed = false;
        let stale: Vec<String> = self
            .index
            .entries
            .iter()
            .filter(|(hex, entry)| on_disk.get(*hex).map(|(size, _)| *size) != Some(entry.size))
            .map(|(hex, _)| hex.clone())
            .collect();
        for hex in stale {
            self.remove(&hex);
            changed = true;
        }
        let mut unknown: Vec<(SystemTime, String, u64)> = on_disk
            .into_iter()
            .filter(|(hex, _)| !self.index.entries.contains_key(hex))
            .map(|(hex, (size, modified))| (modified, hex, size))
            .collect();
        unknown.sort();
        // Older than anything already indexed: existing ticks move up to make
        // room for ticks 1..=count below them.
        let count = unknown.len() as u64;
        if count > 0 {
            for entry in self.index.entries.values_mut() {
                entry.last_used += count;
            }
            self.index.next_tick = self.index.next_tick.max(1) + count;
        }
        for (i, (_, hex, size)) in unknown.into_iter().enumerate() {
            let last_used = i as u64 + 1;
            self.index.entries.insert(hex, Entry { size, last_used });
            changed = true;
        }
        Ok(changed)
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
