//! Content-addressed blob store: plugin binaries keyed by their SHA-256 digest.
//!
//! Blobs live at `<root>/sha256/<hex>`. Because the name is the hash of the contents,
//! a blob is verified on every read, and a torn or bit-rotted file is detected instead
//! of being executed.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::atomic::{
    create_private_dir, fsync_dir, io_context, remove_tmp_files, write_atomic_mode,
};
use super::digest::Digest;

/// Blobs are never modified in place, only replaced or removed, so they are read-only.
const BLOB_MODE: u32 = 0o444;

/// Why a blob could not be read.
#[derive(thiserror::Error, Debug)]
pub enum BlobError {
    /// No blob with that digest is stored.
    #[error("blob {digest} is not in the store (expected at {})", .path.display())]
    NotFound {
        /// The requested digest.
        digest: Digest,
        /// Where the blob would be.
        path: PathBuf,
    },
    /// The stored bytes do not hash to their name; the file has been removed.
    #[error(
        "blob {} is corrupt: its contents hash to {actual}; it was removed so it can be fetched again",
        .path.display()
    )]
    Corrupt {
        /// The requested digest.
        digest: Digest,
        /// The digest of what was actually on disk.
        actual: Digest,
        /// The removed file.
        path: PathBuf,
    },
    /// Reading or removing failed; the message names the path.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A directory of immutable blobs named by their digest.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed, mode 0700) the store under `root`, and removes
    /// temporary files left by writes that were interrupted.
    pub fn open(root: &Path) -> io::Result<Self> {
        let store = BlobStore {
            root: root.to_path_buf(),
        };
        let dir = store.dir();
        create_private_dir(&dir)?;
        remove_tmp_files(&dir, None)?;
        Ok(store)
    }

    /// Stores `bytes` atomically and returns their digest.
    ///
    /// If the blob is already present and intact nothing is written; a present but
    /// corrupt copy is replaced.
    pub fn put(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.path(&digest);
        match hash_file(&path) {
            Ok(actual) if actual == digest => return Ok(digest),
            Ok(actual) => {
                tracing::warn!(path = %path.display(), %actual, "replacing corrupt blob");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        write_atomic_mode(&path, bytes, BLOB_MODE)?;
        Ok(digest)
    }

    /// Reads a blob and verifies its hash.
    ///
    /// A blob whose contents do not match its digest is removed (so the next install
    /// fetches it again) and reported as [`BlobError::Corrupt`].
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound {
                    digest: digest.clone(),
                    path,
                });
            }
            Err(e) => return Err(io_context(e, "reading blob", &path).into()),
        };
        let actual = Digest::of(&bytes);
        if &actual != digest {
            tracing::warn!(path = %path.display(), %actual, "removing corrupt blob");
            self.remove(digest)?;
            return Err(BlobError::Corrupt {
                digest: digest.clone(),
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    /// Whether a file for `digest` exists. Its contents are not verified: use
    /// [`BlobStore::get`] for that.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The file that holds (or would hold) `digest`.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir().join(digest.hex())
    }

    /// Removes a blob durably. Removing an absent blob is not an error.
    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_context(e, "removing blob", &path)),
        }
    }

    /// Digests of all stored blobs, sorted. Files that are not blobs are ignored.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let dir = self.dir();
        let mut digests = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_context(e, "listing", &dir))? {
            let entry = entry.map_err(|e| io_context(e, "listing", &dir))?;
            if let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|name| Digest::from_hex(name).ok())
            {
                digests.push(digest);
            }
        }
        digests.sort();
        Ok(digests)
    }

    fn dir(&self) -> PathBuf {
        self.root.join("sha256")
    }
}

/// Hashes a file in chunks, so checking a large blob does not hold it in memory.
fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path).map_err(|e| io_context(e, "opening blob", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| io_context(e, "reading blob", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Digest::from_hex(&hex::encode(hasher.finalize()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::crash_test;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.put(b"alpha").unwrap();
        let b = store.put(b"beta").unwrap();
        assert_eq!(store.put(b"alpha").unwrap(), a);
        assert_eq!(a, Digest::of(b"alpha"));
        assert_eq!(store.get(&a).unwrap(), b"alpha");
        assert!(store.contains(&b));
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort();
        assert_eq!(store.list().unwrap(), expected);
        store.remove(&a).unwrap();
        store.remove(&a).unwrap();
        assert!(!store.contains(&a));
        assert!(matches!(store.get(&a), Err(BlobError::NotFound { .. })));
        assert_eq!(store.list().unwrap(), vec![b]);
    }

    #[test]
    fn corrupt_blob_is_removed_and_replaced_by_put() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put(b"payload").unwrap();
        let path = store.path(&d);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"payloaX").unwrap();
        let err = store.get(&d).unwrap_err();
        assert!(matches!(err, BlobError::Corrupt { .. }));
        assert!(err.to_string().contains(&d.hex()[..16]), "{err}");
        assert!(!store.contains(&d));

        fs::write(&path, b"payloaX").unwrap();
        store.put(b"payload").unwrap();
        assert_eq!(store.get(&d).unwrap(), b"payload");
    }

    #[test]
    fn open_cleans_tmp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let tmp = dir.path().join("sha256/.abc.cairn-tmp.1.2");
        fs::write(&tmp, b"half").unwrap();
        BlobStore::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        assert!(store.list().unwrap().is_empty());
    }

    /// Deterministic, distinct, fairly large contents so a write spans many syscalls.
    fn blob_bytes(round: u64, i: u64) -> Vec<u8> {
        let len = 128 * 1024 + ((round * 7919 + i * 104_729) % (512 * 1024)) as usize;
        let seed = Digest::of(format!("{round}/{i}").as_bytes());
        seed.hex().bytes().cycle().take(len).collect()
    }

    #[test]
    fn put_survives_sigkill() {
        if let Some((dir, round)) = crash_test::child() {
            let store = BlobStore::open(&dir).unwrap();
            crash_test::say(crash_test::READY);
            for i in 0.. {
                let d = store.put(&blob_bytes(round, i)).unwrap();
                crash_test::say(&format!("{}{d}", crash_test::ACK));
            }
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let name = crash_test::test_name(module_path!(), "put_survives_sigkill");
        let mut acked = Vec::new();
        let mut verified = std::collections::BTreeSet::new();
        crash_test::kill_rounds(
            &name,
            dir.path(),
            60,
            Duration::from_millis(60),
            |_, acks| {
                let store = BlobStore::open(dir.path()).unwrap();
                // Every file under a blob name must be intact: absent or complete. Blobs are
                // immutable, so each needs checking once.
                for d in store.list().unwrap() {
                    if !verified.contains(&d) {
                        store.get(&d).unwrap();
                        verified.insert(d);
                    }
                }
                for a in acks {
                    let d = Digest::parse(&a).unwrap();
                    assert!(store.contains(&d), "acknowledged blob {d} is missing");
                    acked.push(d);
                }
                let leftovers = fs::read_dir(dir.path().join("sha256"))
                    .unwrap()
                    .filter(|e| {
                        e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .starts_with('.')
                    })
                    .count();
                assert_eq!(leftovers, 0, "temporary files survived open");
            },
        );
        assert!(
            acked.len() >= 10,
            "children completed too few writes: {}",
            acked.len()
        );
    }
}
