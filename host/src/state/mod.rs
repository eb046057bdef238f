//! Durable host state: crash-safe files, the blob store, the journal of installed
//! plugins and the plugins' key-value store.

pub mod atomic;
pub mod blobs;
pub mod digest;
pub mod journal;
pub mod kv;

#[cfg(test)]
mod crash_test;

pub use blobs::{BlobError, BlobStore};
pub use digest::{Digest, DigestParseError};
pub use journal::{
    HistoryEntry, InstalledSet, Journal, JournalError, PluginRecord, RegistryOrigin, Release,
};
pub use kv::{KvError, KvStore};
