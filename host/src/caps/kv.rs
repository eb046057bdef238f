//! `cairn:host/kv`: durable key-value storage, one namespace per plugin.

use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker};

use super::{Capability, blocking};
use crate::runtime::InstanceState;
use crate::runtime::bindings::CapError;
use crate::runtime::bindings::cairn::host::kv as wit;
use crate::state::kv::KvError;

pub struct Kv;

/// `[grants.kv]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KvGrant {
    /// Total bytes of keys and values the plugin may store.
    #[serde(
        default = "default_quota",
        deserialize_with = "crate::policy::serde_size::deserialize"
    )]
    pub quota: u64,
}

fn default_quota() -> u64 {
    1024 * 1024
}

impl Capability for Kv {
    const NAME: &'static str = "kv";
    const INTERFACE: &'static str = "cairn:host/kv";
    type Grant = KvGrant;

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |state| state)
    }
}

impl InstanceState {
    fn kv_quota(&self) -> Result<u64, CapError> {
        match &self.grants.kv {
            Some(grant) => Ok(grant.quota),
            None => Err(super::deny(self, Kv::NAME, "the policy has no [grants.kv]")),
        }
    }
}

fn storage_error(err: KvError) -> CapError {
    match err {
        KvError::QuotaExceeded { .. } => CapError::QuotaExceeded(err.to_string()),
        KvError::KeyTooLarge
        | KvError::ValueTooLarge
        | KvError::EmptyKey
        | KvError::InvalidNamespace(_) => CapError::Invalid(err.to_string()),
        other => CapError::Internal(other.to_string()),
    }
}

impl wit::Host for InstanceState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CapError> {
        self.kv_quota()?;
        // Reads never wait on the disk's fsync: they run inline, which keeps
        // them in the microsecond range instead of paying a thread hop.
        self.hub
            .kv
            .get(&self.identity.name, &key)
            .map_err(storage_error)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), CapError> {
        let quota = self.kv_quota()?;
        let (store, namespace) = (self.hub.kv.clone(), self.identity.name.clone());
        blocking(move || {
            store
                .set(&namespace, &key, &value, quota)
                .map_err(storage_error)
        })
        .await
    }

    async fn delete(&mut self, key: String) -> Result<bool, CapError> {
        self.kv_quota()?;
        let (store, namespace) = (self.hub.kv.clone(), self.identity.name.clone());
        blocking(move || store.delete(&namespace, &key).map_err(storage_error)).await
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, CapError> {
        self.kv_quota()?;
        self.hub
            .kv
            .list_keys(&self.identity.name, &prefix)
            .map_err(storage_error)
    }
}
