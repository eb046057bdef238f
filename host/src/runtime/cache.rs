//! Precompiled components, keyed by component digest and engine compatibility.
//!
//! Deserialising native code is `unsafe`: it is only ever done from this cache's
//! own directory, which the host writes itself (never from the network).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::state::atomic::write_atomic;
use crate::state::digest::Digest;

/// Directory of `<digest-hex>-<engine-hash>.cwasm` files.
pub struct CompiledCache {
    dir: PathBuf,
    engine: Engine,
    engine_hash: String,
}

impl CompiledCache {
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        crate::state::atomic::create_private_dir(dir)
            .with_context(|| format!("creating compiled cache {}", dir.display()))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompiledCache {
            dir: dir.to_path_buf(),
            engine: engine.clone(),
            engine_hash: format!("{:016x}", hasher.finish()),
        })
    }

    fn path_for(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.engine_hash))
    }

    /// Deletes the precompiled code of `digest` (for every engine version);
    /// the bytes freed.
    pub fn remove(&self, digest: &Digest) -> u64 {
        let prefix = format!("{}-", digest.hex());
        let mut freed = 0;
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let ours = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(&prefix));
            let size = entry.metadata().map_or(0, |meta| meta.len());
            if ours && std::fs::remove_file(entry.path()).is_ok() {
                freed += size;
            }
        }
        freed
    }

    /// Whether a precompiled artifact for `digest` exists for this engine.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path_for(digest).exists()
    }

    /// Loads the precompiled component, compiling `wasm` and storing the result
    /// first if it is missing or unreadable.
    pub fn load_or_compile(&self, digest: &Digest, wasm: &[u8]) -> anyhow::Result<Component> {
        let path = self.path_for(digest);
        if path.exists() {
            match self.deserialize(&path) {
                Ok(component) => return Ok(component),
                Err(err) => {
                    tracing::warn!(
                        "discarding unreadable precompiled {}: {err:#}",
                        path.display()
                    );
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let native = self
            .engine
            .precompile_component(wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the component")?;
        write_atomic(&path, &native).with_context(|| format!("writing {}", path.display()))?;
        drop(native);
        release_freed_heap();
        self.deserialize(&path)
    }

    /// Loads a precompiled component that must already be cached.
    pub fn load(&self, digest: &Digest) -> anyhow::Result<Component> {
        self.deserialize(&self.path_for(digest))
    }

    fn deserialize(&self, path: &Path) -> anyhow::Result<Component> {
        // SAFETY: `path` lies in the host's private cache directory and was written
        // by `precompile_component` of an engine with the same compatibility hash.
        unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("loading precompiled {}", path.display()))
    }
}

/// Compiling allocates tens of MiB that are freed afterwards; glibc keeps them
/// mapped unless asked, which would leave a small device's daemon bloated
/// after every install.
fn release_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
