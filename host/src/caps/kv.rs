//! `cairn:host/kv`: durable key-value storage, one namespace per plugin.

use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf, blocking};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::kv as wit;
use crate::state::kv::{KvError, KvStore};

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
    const INTERFACES: &'static [&'static str] = &["cairn:host/kv"];
    type Grant = KvGrant;
    /// The daemon's one store (`<state>/kv.redb`), a namespace per plugin.
    type Shared = Arc<KvStore>;
    type Local = ();

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Kv>>(linker, |state| state.caps().view())
    }

    fn build(setup: &HostSetup) -> anyhow::Result<Arc<KvStore>> {
        let store =
            KvStore::open(&setup.state_dir.join("kv.redb")).context("opening the kv store")?;
        Ok(Arc::new(store))
    }

    fn prepare(_: &Arc<KvStore>, _: Option<&KvGrant>, _: &mut InstanceSetup<'_>) {}
}

impl CapView<'_, Kv> {
    fn quota(&self) -> Result<u64, CapError> {
        self.grant().map(|grant| grant.quota)
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

impl wit::Host for CapView<'_, Kv> {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CapError> {
        self.quota()?;
        // Reads never wait on the disk's fsync: they run inline, which keeps
        // them in the microsecond range instead of paying a thread hop.
        self.shared
            .get(&self.ctx.plugin, &key)
            .map_err(storage_error)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), CapError> {
        let quota = self.quota()?;
        let (store, namespace) = (self.shared.clone(), self.ctx.plugin.clone());
        blocking(move || {
            store
                .set(&namespace, &key, &value, quota)
                .map_err(storage_error)
        })
        .await
    }

    async fn delete(&mut self, key: String) -> Result<bool, CapError> {
        self.quota()?;
        let (store, namespace) = (self.shared.clone(), self.ctx.plugin.clone());
        blocking(move || store.delete(&namespace, &key).map_err(storage_error)).await
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, CapError> {
        self.quota()?;
        self.shared
            .list_keys(&self.ctx.plugin, &prefix)
            .map_err(storage_error)
    }
}
