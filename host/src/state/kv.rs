//! Persistent key-value store offered to plugins, one namespace per plugin.
//!
//! All namespaces share one redb file. Entries are keyed by `namespace \0 key`; plugin
//! names never contain a NUL byte, so one namespace's keys can never be spelled as
//! another's. A second table holds each namespace's byte usage, updated in the same
//! transaction as the entries so the quota can never drift from the data.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use redb::{Builder, Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::atomic::fsync_dir;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;
/// Most keys returned by one [`KvStore::list_keys`].
pub const LIST_CAP: usize = 10_000;
/// redb's page cache; its 1 GiB default would dwarf the daemon's memory budget.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("kv_usage");

/// Why a key-value operation failed.
#[derive(thiserror::Error, Debug)]
pub enum KvError {
    /// The write would take the namespace over its quota.
    #[error(
        "namespace {namespace:?} is over quota: {used} bytes in use, writing {requested} \
         bytes would exceed its quota of {quota} bytes"
    )]
    QuotaExceeded {
        /// The namespace.
        namespace: String,
        /// Bytes in use, including any value the write would replace.
        used: u64,
        /// Bytes of the new entry (key plus value).
        requested: u64,
        /// The namespace's quota.
        quota: u64,
    },
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("key is longer than {MAX_KEY_LEN} bytes")]
    KeyTooLarge,
    /// The key is empty.
    #[error("key must not be empty")]
    EmptyKey,
    /// The value is longer than [`MAX_VALUE_LEN`].
    #[error("value is longer than {MAX_VALUE_LEN} bytes")]
    ValueTooLarge,
    /// The namespace is not a plugin name (`[a-z][a-z0-9-]*`).
    #[error("invalid namespace {0:?}: expected a plugin name matching [a-z][a-z0-9-]*")]
    InvalidNamespace(String),
    /// The database failed; the message names the file and the operation.
    #[error("{0}")]
    Storage(String),
}

/// The plugin key-value store. Cheap to share behind an `Arc`; every method is a
/// complete, durable transaction.
pub struct KvStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").field("path", &self.path).finish()
    }
}

// Used from many tokio tasks through spawn_blocking.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<KvStore>();
};

impl KvStore {
    /// Opens the database file at `path`, creating it if absent. The parent directory
    /// must exist. A database left open by a crash is repaired by redb here.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let existed = path.exists();
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| storage("opening", path, e))?;
        let store = KvStore {
            db,
            path: path.to_path_buf(),
        };
        // Creating the tables up front lets readers assume they exist.
        let txn = store.begin_write()?;
        txn.open_table(ENTRIES)
            .map_err(|e| store.err("creating table", e))?;
        txn.open_table(USAGE)
            .map_err(|e| store.err("creating table", e))?;
        store.commit(txn)?;
        if !existed {
            // The commit synced the file's contents, not its directory entry.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            fsync_dir(dir).map_err(|e| KvError::Storage(e.to_string()))?;
        }
        Ok(store)
    }

    /// The value of `key` in namespace `ns`, if set.
    pub fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_ns(ns)?;
        check_key(key)?;
        let txn = self.db.begin_read().map_err(|e| self.err("reading", e))?;
        let table = txn
            .open_table(ENTRIES)
            .map_err(|e| self.err("reading", e))?;
        let value = table
            .get(entry_key(ns, key).as_slice())
            .map_err(|e| self.err("reading", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Sets `key` to `value` in namespace `ns`, durably.
    ///
    /// `quota` bounds the namespace's total key plus value bytes; the size of the value
    /// being replaced is subtracted before checking, so rewriting a key with a value of
    /// the same size always fits.
    pub fn set(&self, ns: &str, key: &str, value: &[u8], quota: u64) -> Result<(), KvError> {
        check_ns(ns)?;
        check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(KvError::ValueTooLarge);
        }
        let ekey = entry_key(ns, key);
        let requested = (key.len() + value.len()) as u64;
        let txn = self.begin_write()?;
        {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(|e| self.err("writing", e))?;
            let mut usage = txn.open_table(USAGE).map_err(|e| self.err("writing", e))?;
            let used = read_usage(&usage, ns).map_err(|e| self.err("writing", e))?;
            let replaced = entries
                .get(ekey.as_slice())
                .map_err(|e| self.err("writing", e))?
                .map_or(0, |v| (key.len() + v.value().len()) as u64);
            let new_used = used.saturating_sub(replaced) + requested;
            if new_used > quota {
                return Err(KvError::QuotaExceeded {
                    namespace: ns.to_owned(),
                    used,
                    requested,
                    quota,
                });
            }
            entries
                .insert(ekey.as_slice(), value)
                .map_err(|e| self.err("writing", e))?;
            usage
                .insert(ns, new_used)
                .map_err(|e| self.err("writing", e))?;
        }
        self.commit(txn)
    }

    /// Deletes `key` from namespace `ns`; returns whether it was present.
    pub fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        check_ns(ns)?;
        check_key(key)?;
        let txn = self.begin_write()?;
        let removed = {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(|e| self.err("deleting", e))?;
            let mut usage = txn.open_table(USAGE).map_err(|e| self.err("deleting", e))?;
            let old = entries
                .remove(entry_key(ns, key).as_slice())
                .map_err(|e| self.err("deleting", e))?
                .map(|v| (key.len() + v.value().len()) as u64);
            if let Some(freed) = old {
                let used = read_usage(&usage, ns).map_err(|e| self.err("deleting", e))?;
                set_usage(&mut usage, ns, used.saturating_sub(freed))
                    .map_err(|e| self.err("deleting", e))?;
            }
            old.is_some()
        };
        if removed {
            self.commit(txn)?;
        } else {
            // Nothing changed: skip the fsync a commit would cost.
            txn.abort().map_err(|e| self.err("deleting", e))?;
        }
        Ok(removed)
    }

    /// Keys of namespace `ns` starting with `prefix`, sorted bytewise, at most
    /// [`LIST_CAP`].
    pub fn list_keys(&self, ns: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        check_ns(ns)?;
        let start = entry_key(ns, prefix);
        let ns_len = ns.len() + 1;
        let txn = self.db.begin_read().map_err(|e| self.err("listing", e))?;
        let table = txn
            .open_table(ENTRIES)
            .map_err(|e| self.err("listing", e))?;
        let mut keys = Vec::new();
        for item in table
            .range(start.as_slice()..)
            .map_err(|e| self.err("listing", e))?
        {
            let (k, _) = item.map_err(|e| self.err("listing", e))?;
            let k = k.value();
            if !k.starts_with(&start) || keys.len() == LIST_CAP {
                break;
            }
            let key = std::str::from_utf8(&k[ns_len..]).map_err(|e| self.err("listing", e))?;
            keys.push(key.to_owned());
        }
        Ok(keys)
    }

    /// Bytes (keys plus values) used by namespace `ns`.
    pub fn usage(&self, ns: &str) -> Result<u64, KvError> {
        check_ns(ns)?;
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.err("reading usage", e))?;
        let table = txn
            .open_table(USAGE)
            .map_err(|e| self.err("reading usage", e))?;
        read_usage(&table, ns).map_err(|e| self.err("reading usage", e))
    }

    /// Deletes every key of namespace `ns` (when its plugin is removed); returns the
    /// number of bytes freed.
    pub fn clear_namespace(&self, ns: &str) -> Result<u64, KvError> {
        check_ns(ns)?;
        let start = entry_key(ns, "");
        let txn = self.begin_write()?;
        let freed = {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(|e| self.err("clearing", e))?;
            let mut usage = txn.open_table(USAGE).map_err(|e| self.err("clearing", e))?;
            entries
                .retain_in(start.as_slice().., |k, _| !k.starts_with(&start))
                .map_err(|e| self.err("clearing", e))?;
            let freed = read_usage(&usage, ns).map_err(|e| self.err("clearing", e))?;
            set_usage(&mut usage, ns, 0).map_err(|e| self.err("clearing", e))?;
            freed
        };
        self.commit(txn)?;
        Ok(freed)
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, KvError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| self.err("starting write", e))?;
        // Immediate is redb's default; stated here because acknowledging a plugin's write
        // before it is on disk would break the store's contract.
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err("starting write", e))?;
        Ok(txn)
    }

    fn commit(&self, txn: redb::WriteTransaction) -> Result<(), KvError> {
        txn.commit().map_err(|e| {
            KvError::Storage(format!(
                "committing to {}: {e} (redb accepts no further writes until the store is reopened)",
                self.path.display()
            ))
        })
    }

    fn err(&self, what: &str, e: impl Display) -> KvError {
        storage(what, &self.path, e)
    }
}

fn storage(what: &str, path: &Path, e: impl Display) -> KvError {
    KvError::Storage(format!("{what} key-value store {}: {e}", path.display()))
}

fn entry_key(ns: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 1 + key.len());
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn read_usage(
    table: &impl ReadableTable<&'static str, u64>,
    ns: &str,
) -> Result<u64, redb::StorageError> {
    Ok(table.get(ns)?.map_or(0, |v| v.value()))
}

fn set_usage(
    table: &mut redb::Table<'_, &'static str, u64>,
    ns: &str,
    used: u64,
) -> Result<(), redb::StorageError> {
    // Dropping zero counters keeps the table from growing with every plugin ever seen.
    if used == 0 {
        table.remove(ns)?;
    } else {
        table.insert(ns, used)?;
    }
    Ok(())
}

fn check_ns(ns: &str) -> Result<(), KvError> {
    let mut bytes = ns.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KvError::InvalidNamespace(ns.chars().take(100).collect()))
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    match key.len() {
        0 => Err(KvError::EmptyKey),
        len if len > MAX_KEY_LEN => Err(KvError::KeyTooLarge),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "kv_tests.rs"]
mod tests;
