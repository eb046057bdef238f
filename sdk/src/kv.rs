//! A persistent key-value store private to the plugin (`cairn:host/kv`).
//!
//! Data survives daemon restarts and plugin swaps; each write is durable before
//! the call returns. Needs `[grants.kv]`, whose `quota` bounds the total bytes
//! of keys and values (1 MiB by default).

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(target_arch = "wasm32")]
use crate::bindings::cairn::host::kv as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::kv as host;
use crate::{Error, Result};

/// Returns the value stored under `key`, or `None`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    Ok(host::get(key)?)
}

/// Stores `value` under `key`, replacing any previous value.
///
/// Fails with [`Error::QuotaExceeded`] when the namespace would outgrow its quota.
pub fn set(key: &str, value: &[u8]) -> Result<()> {
    Ok(host::set(key, value)?)
}

/// Removes `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool> {
    Ok(host::delete(key)?)
}

/// Lists the keys starting with `prefix`, in lexicographic order. `""` lists every key.
pub fn list_keys(prefix: &str) -> Result<Vec<String>> {
    Ok(host::list_keys(prefix)?)
}

/// Reads `key` and deserializes it from JSON.
///
/// Fails with [`Error::Invalid`] when the stored bytes do not fit `T`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|cause| Error::invalid_json(&format!("the value under `{key}`"), cause)),
    }
}

/// Serializes `value` as JSON and stores it under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|cause| Error::Invalid(cause.to_string()))?;
    set(key, &bytes)
}
