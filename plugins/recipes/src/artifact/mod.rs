//! Artifacts: download, verification, cache and unpacking.
//!
//! # Cache directory
//!
//! ```text
//! <cache_dir>/
//!   index.json                 LRU index: digest -> size, last use (a logical clock)
//!   blobs/sha256-<hex>         verified artifacts, named by their content
//!   partial/<hex>              downloads in progress, resumed by later attempts
//!   sigs/<hex>-<uri hash>.sig  detached signatures last seen for a blob
//! ```
//!
//! A blob only appears in `blobs/` after its sha256 matched the spec (then it
//! is fsynced and renamed in), so anything there was verified once. Each use
//! re-hashes it ([`Limits::verify_cached`]) and a rotten blob is fetched anew.
//! Signatures are checked with the trusted keys on every use, cached or not.
//! If `index.json` is lost or disagrees with `blobs/`, it is rebuilt from it.
//! Leftover partial downloads count against the cache limit and are evicted
//! before blobs. One `Store` per cache directory at a time: there is no lock.
//!
//! # Safety rules for archives
//!
//! - Entry paths must be relative and free of `..`; backslashes count as
//!   separators. Anything else is refused as `Unsafe`.
//! - Symbolic links are allowed only with relative targets that stay inside
//!   the destination, checked for all links together (chains included), and
//!   are created after every other entry so nothing is written through one.
//! - Hard links become copies of a file extracted earlier from the archive.
//! - Devices, FIFOs and sockets are refused.
//! - Written bytes (not header sizes) count against `max_unpacked_bytes` and
//!   `max_ratio`; entries against `max_entries`: exceeding any is `TooLarge`.
//! - Executable bits become 0o755 (else 0o644) on Unix. WASI cannot set
//!   permissions, so [`Installed::executables`] lists them for the caller.
//! - Installs go through a staging directory next to `dest`; on any error
//!   `dest` is left as it was. Extracted files are not fsynced one by one
//!   (archives may hold thousands): a caller that must survive a power cut
//!   mid-install should record completion itself after `install` returns.

mod cache;
mod error;
mod extract;
mod fetch;
mod http;
mod install;
mod links;
#[cfg(test)]
mod test_support;
mod unpack;
mod url;
mod verify;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ArtifactError;
#[cfg(test)]
pub use error::ArtifactErrorKind;

use cache::Cache;
use error::Errs;
use fetch::{Downloader, Transport};
use install::Layout;
use unpack::Format;
use url::HttpUrl;
pub(crate) use verify::parse_sha256;
use verify::{MAX_SIGNATURE_BYTES, TrustedKeys};

/// What to fetch, how to check it and how to install it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSpec {
    /// `http://`, `https://` or `file:///absolute/path`.
    pub uri: String,
    /// 64 hex digits, optionally prefixed `sha256:`; any case.
    pub sha256: String,
    pub unpack: Unpack,
    /// A detached ECDSA P-256 signature over the artifact.
    pub sig_uri: Option<String>,
    /// Extra request headers (e.g. `Authorization`). Sent to the artifact's
    /// origin only: not across redirects to other hosts, and to `sig_uri`
    /// only if it has the same origin.
    pub headers: BTreeMap<String, String>,
}

/// How an installed artifact becomes files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unpack {
    /// A single file, named after the URI's last path segment.
    #[default]
    None,
    Tar,
    TarGz,
    Zip,
    /// By the URI's extension: `.tar`, `.tar.gz`/`.tgz`, `.zip`.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_download_bytes: u64,
    /// Total size of the files an archive unpacks to.
    pub max_unpacked_bytes: u64,
    pub max_entries: u64,
    /// Unpacked bytes per archive byte.
    pub max_ratio: u64,
    pub cache_limit_bytes: u64,
    /// Download attempts; later ones resume where the previous stopped.
    pub attempts: u32,
    /// Per request: connecting, the first byte, and each wait for more.
    pub timeout_ms: u64,
    /// Re-hash a cached blob before each use, so bit rot on flash storage is
    /// caught (and healed by downloading again) rather than installed.
    pub verify_cached: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_download_bytes: 1 << 30,
            max_unpacked_bytes: 4 << 30,
            max_entries: 100_000,
            max_ratio: 200,
            cache_limit_bytes: 2 << 30,
            attempts: 4,
            timeout_ms: 30_000,
            verify_cached: true,
        }
    }
}

/// What an install wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Regular files written (links and directories not counted).
    pub files: u64,
    pub bytes: u64,
    pub from_cache: bool,
    /// Files that should be executable, relative to `dest`. On Unix their
    /// mode is already 0o755; WASI has no way to set it, so the caller must
    /// (e.g. by running `chmod` through its process grant) before using them.
    pub executables: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUsage {
    pub entries: u64,
    pub bytes: u64,
    pub limit: u64,
}

/// The artifact cache and what is needed to fill it.
pub struct Store {
    cache: Cache,
    limits: Limits,
    keys: TrustedKeys,
    transport: Box<dyn Transport>,
    sleep: fn(Duration),
}

/// What [`Store::prune`] kept (with why) and deleted, by hex digest and size.
#[derive(Debug, Default)]
pub struct Pruned {
    pub kept: Vec<(String, u64, Vec<String>)>,
    pub deleted: Vec<(String, u64)>,
    pub bytes_freed: u64,
}

/// A verified blob ready to use.
struct Obtained {
    path: PathBuf,
    from_cache: bool,
}

impl Store {
    /// `cache_dir` is created if missing. `trusted_keys_pem`: PEM public keys
    /// (P-256 `PUBLIC KEY`); an unparsable one is an `Invalid` error.
    pub fn open(
        cache_dir: &Path,
        limits: Limits,
        trusted_keys_pem: &[String],
    ) -> Result<Store, ArtifactError> {
        let keys = TrustedKeys::parse(trusted_keys_pem)?;
        Store::with_transport(
            cache_dir,
            limits,
            keys,
            Box::new(http::SdkHttp),
            std::thread::sleep,
        )
    }

    fn with_transport(
        cache_dir: &Path,
        limits: Limits,
        keys: TrustedKeys,
        transport: Box<dyn Transport>,
        sleep: fn(Duration),
    ) -> Result<Store, ArtifactError> {
        Ok(Store {
            cache: Cache::open(cache_dir)?,
            limits,
            keys,
            transport,
            sleep,
        })
    }

    /// Makes the verified artifact available in the cache (downloading, with
    /// resume and retries, if needed) and returns the cached file's path.
    #[cfg(test)]
    pub fn fetch(&mut self, spec: &ArtifactSpec) -> Result<PathBuf, ArtifactError> {
        self.obtain(spec).map(|got| got.path)
    }

    /// Fetches, then installs into the directory `dest` (created if missing):
    /// archives are unpacked, a plain file is copied under the URI's last
    /// path segment. Top-level entries replace same-named ones already in
    /// `dest`; other contents of `dest` stay. All or nothing: on error `dest`
    /// is left as it was.
    pub fn install(
        &mut self,
        spec: &ArtifactSpec,
        dest: &Path,
    ) -> Result<Installed, ArtifactError> {
        let layout = layout(spec)?;
        let got = self.obtain(spec)?;
        let outcome = install::install(&spec.uri, &got.path, dest, &layout, &self.limits)?;
        Ok(Installed {
            files: outcome.files,
            bytes: outcome.bytes,
            from_cache: got.from_cache,
            executables: outcome.executables,
        })
    }

    /// Deletes the cached blobs `keep` does not name (hex digest → why it
    /// stays); with `dry_run`, only says which. The blobs with their reasons,
    /// kept then deleted.
    pub fn prune(
        &mut self,
        keep: &BTreeMap<String, Vec<String>>,
        dry_run: bool,
    ) -> Result<Pruned, ArtifactError> {
        let mut pruned = Pruned::default();
        for (hex, size) in self.cache.blobs() {
            match keep.get(&hex) {
                Some(reasons) => pruned.kept.push((hex, size, reasons.clone())),
                None => {
                    if !dry_run {
                        self.cache.remove(&hex);
                        pruned.bytes_freed += size;
                    }
                    pruned.deleted.push((hex, size));
                }
            }
        }
        if !dry_run && !pruned.deleted.is_empty() {
            self.cache.save()?;
        }
        Ok(pruned)
    }

    pub fn usage(&self) -> CacheUsage {
        CacheUsage {
            entries: self.cache.entries(),
            bytes: self.cache.total_bytes(),
            limit: self.limits.cache_limit_bytes,
        }
    }

    fn obtain(&mut self, spec: &ArtifactSpec) -> Result<Obtained, ArtifactError> {
        let uri = spec.uri.as_str();
        let errs = Errs(uri);
        let hex = verify::parse_sha256(uri, &spec.sha256)?;
        if spec.sig_uri.is_some() && self.keys.len() == 0 {
            return Err(errs.signature(
                "the spec has a signature but no trusted keys are configured to check it",
            ));
        }
        let mut cached = self.cache.lookup(&hex);
        if let Some(path) = cached.as_ref().filter(|_| self.limits.verify_cached) {
            let (actual, _) = verify::hash_file(path)
                .map_err(|e| errs.io(format_args!("hashing {}", path.display()), &e))?;
            if actual != hex {
                self.cache.remove(&hex);
                cached = None;
            }
        }
        let from_cache = cached.is_some();
        let path = match cached {
            Some(path) => {
                self.cache.touch(&hex);
                path
            }
            None => self.download(spec, &hex)?,
        };
        self.cache.save()?;
        if let Some(sig_uri) = &spec.sig_uri {
            self.check_signature(spec, &hex, sig_uri)?;
        }
        Ok(Obtained { path, from_cache })
    }

    /// Downloads (or copies a `file://`), verifies and caches; then evicts.
    fn download(&mut self, spec: &ArtifactSpec, hex: &str) -> Result<PathBuf, ArtifactError> {
        let uri = spec.uri.as_str();
        let partial = self.cache.partial_path(hex);
        let (actual, _) = match url::file_path(uri) {
            Some(source) => {
                fetch::copy_local(uri, &source, &partial, self.limits.max_download_bytes)?
            }
            None => self
                .downloader()
                .download(uri, &spec.headers, &partial, hex)?,
        };
        let blob = self.cache.blob_path(hex);
        let size = verify::verify_and_store(uri, &partial, hex, Some(actual), &blob)?;
        self.cache.insert(hex, size);
        self.cache.evict(self.limits.cache_limit_bytes, hex);
        Ok(blob)
    }

    /// Accepts the cached signature if the trusted keys still verify it;
    /// otherwise fetches it again. Either way a key must verify it now.
    fn check_signature(
        &mut self,
        spec: &ArtifactSpec,
        hex: &str,
        sig_uri: &str,
    ) -> Result<(), ArtifactError> {
        let uri = spec.uri.as_str();
        let digest = verify::from_hex(hex)
            .ok_or_else(|| Errs(uri).invalid(format!("`{hex}` is not a digest")))?;
        let sig_path = self.cache.sig_path(hex, sig_uri);
        if let Ok(bytes) = fs::read(&sig_path)
            && self.keys.verify(uri, &digest, &bytes).is_ok()
        {
            return Ok(());
        }
        let bytes = self
            .fetch_signature(spec, sig_uri)
            .map_err(|err| ArtifactError {
                message: format!("fetching the signature {sig_uri}: {}", err.message),
                uri: uri.to_string(),
                ..err
            })?;
        self.keys.verify(uri, &digest, &bytes)?;
        // Only a signature that verified is kept, through a temp file.
        let tmp = sig_path.with_extension("tmp");
        let kept = File::create(&tmp)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| fs::rename(&tmp, &sig_path));
        if kept.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(())
    }

    fn fetch_signature(
        &mut self,
        spec: &ArtifactSpec,
        sig_uri: &str,
    ) -> Result<Vec<u8>, ArtifactError> {
        let errs = Errs(sig_uri);
        if let Some(path) = url::file_path(sig_uri) {
            let too_big = fs::metadata(&path).is_ok_and(|m| m.len() > MAX_SIGNATURE_BYTES);
            if too_big {
                return Err(errs.too_large(format!("more than {MAX_SIGNATURE_BYTES} bytes")));
            }
            return fs::read(&path)
                .map_err(|e| errs.io(format_args!("reading {}", path.display()), &e));
        }
        let origin = |u: &str| HttpUrl::parse(u).map(|parsed| parsed.origin());
        let headers = if origin(sig_uri).is_some() && origin(sig_uri) == origin(&spec.uri) {
            spec.headers.clone()
        } else {
            BTreeMap::new()
        };
        self.downloader()
            .fetch_small(sig_uri, &headers, MAX_SIGNATURE_BYTES)
    }

    fn downloader(&mut self) -> Downloader<'_> {
        Downloader {
            transport: self.transport.as_mut(),
            limits: &self.limits,
            sleep: self.sleep,
        }
    }
}

/// Resolves `Unpack` before anything is downloaded, so a spec that can never
/// install fails fast.
fn layout(spec: &ArtifactSpec) -> Result<Layout, ArtifactError> {
    let uri = spec.uri.as_str();
    let segment = url::last_segment(uri);
    let format = match spec.unpack {
        Unpack::None => return install::file_name(uri, segment).map(Layout::File),
        Unpack::Tar => Format::Tar,
        Unpack::TarGz => Format::TarGz,
        Unpack::Zip => Format::Zip,
        Unpack::Auto => {
            let name = segment.unwrap_or_default().to_ascii_lowercase();
            if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
                Format::TarGz
            } else if name.ends_with(".tar") {
                Format::Tar
            } else if name.ends_with(".zip") {
                Format::Zip
            } else {
                return Err(Errs(uri).invalid(format!(
                    "cannot tell the archive format of `{name}` (expected .tar, .tar.gz, .tgz \
                     or .zip); set `unpack` explicitly"
                )));
            }
        }
    };
    Ok(Layout::Archive(format))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
