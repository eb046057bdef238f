//! Artifacts: download, verification, cache and unpacking.
// Temporary stand-in until the artifact store lands.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct ArtifactSpec {
    pub uri: String,
    pub sha256: String,
    pub unpack: Unpack,
    pub sig_uri: Option<String>,
    pub headers: BTreeMap<String, String>,
}
pub enum Unpack {
    None,
    Tar,
    TarGz,
    Zip,
    Auto,
}
#[derive(Default)]
pub struct Limits {
    pub max_download_bytes: u64,
    pub max_unpacked_bytes: u64,
    pub cache_limit_bytes: u64,
}
pub struct Store;
pub struct Installed;
#[derive(Debug)]
pub struct ArtifactError(String);
impl std::fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl Store {
    pub fn open(_: &Path, _: Limits, _: &[String]) -> Result<Store, ArtifactError> {
        Ok(Store)
    }
    pub fn install(&mut self, _: &ArtifactSpec, _: &Path) -> Result<Installed, ArtifactError> {
        Err(ArtifactError("not yet".into()))
    }
    #[allow(dead_code)]
    pub fn fetch(&mut self, _: &ArtifactSpec) -> Result<PathBuf, ArtifactError> {
        Err(ArtifactError("not yet".into()))
    }
}
