//! The registry client: push, resolve and pull Wasm plugin artifacts, and store and
//! fetch their cosign signatures.

use std::collections::BTreeMap;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use super::artifact::{
    self, MANIFEST_MEDIA_TYPE, PluginMeta, WasmConfig, declared_size, wasm_descriptors,
};
use super::auth::Credentials;
use super::error::{OciError, chain};
use super::reference::Reference;
use crate::state::digest::Digest;

/// Largest config blob accepted; real ones are a few hundred bytes.
const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

/// Manifest media types asked for: the ones we accept plus the common others, so that a
/// foreign artifact is refused with a message naming its type rather than a 404.
const ACCEPTED_MANIFESTS: &[&str] = &[
    MANIFEST_MEDIA_TYPE,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How to talk to registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (`HOST:PORT`, matched exactly) that may be reached over plain HTTP.
    /// Every other registry is reached over HTTPS only.
    pub insecure: Vec<String>,
    /// Logins; registries without an entry are accessed anonymously.
    pub credentials: Option<Credentials>,
    /// Attempts per request (at least 1) for connection failures and 5xx/429 answers.
    pub retries: u32,
    /// Delay before the first retry; it doubles on each further retry.
    pub backoff: Duration,
    /// Largest Wasm layer accepted, checked before downloading.
    pub max_layer_size: u64,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Longest silence tolerated while reading a response, so a stalled registry
    /// fails (and is retried) instead of hanging.
    pub read_timeout: Duration,
    /// Upstream registry (`HOST[:PORT]`) → the registry that serves it instead,
    /// e.g. a site gateway. Every fetch for the upstream goes to the mirror.
    pub mirrors: BTreeMap<String, String>,
    /// DER certificates trusted besides the system's roots (a site CA).
    pub extra_roots_der: Vec<Vec<u8>>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            credentials: None,
            retries: 4,
            backoff: Duration::from_millis(200),
            max_layer_size: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            mirrors: BTreeMap::new(),
            extra_roots_der: Vec::new(),
        }
    }
}

/// A plugin fetched by digest and fully verified.
#[derive(Clone, Debug)]
pub struct PulledPlugin {
    /// The manifest digest it was pulled by.
    pub manifest_digest: Digest,
    /// The component bytes (their digest matched the manifest and the config).
    pub wasm: Vec<u8>,
    /// The Wasm config.
    pub config: WasmConfig,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A client for OCI registries. Holds no global state; cheap to share by reference.
pub struct Registry {
    pub(crate) client: oci_client::Client,
    pub(crate) options: RegistryOptions,
}

impl Registry {
    /// Builds a client. HTTPS is used for every registry not listed in
    /// [`RegistryOptions::insecure`].
    pub fn new(options: RegistryOptions) -> Result<Self, OciError> {
        let config = ClientConfig {
            protocol: if options.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(options.insecure.clone())
            },
            connect_timeout: Some(options.connect_timeout),
            read_timeout: Some(options.read_timeout),
            platform_resolver: None,
            extra_root_certificates: options
                .extra_roots_der
                .iter()
                .map(|der| Certificate {
                    encoding: CertificateEncoding::Der,
                    data: der.clone(),
                })
                .collect(),
            ..ClientConfig::default()
        };
        let client =
            oci_client::Client::try_from(config).map_err(|e| OciError::Config(chain(&e)))?;
        Ok(Registry { client, options })
    }

    /// Where `reference` is fetched from: the same repository on its registry's
    /// mirror when one is configured, otherwise `reference` itself. Digests are
    /// verified as for any registry, so a mirror can only serve what was asked.
    pub fn route(&self, reference: &Reference) -> Reference {
        match self.options.mirrors.get(reference.registry()) {
            Some(mirror) => reference.on_registry(mirror),
            None => reference.clone(),
        }
    }

    /// The options the client was built with.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// Uploads `wasm` as a CNCF Wasm artifact to `reference` (its tag, or its digest
    /// when it has none) and returns the manifest digest. Blobs the repository has
    /// already are not sent again. `progress(done, total)` hears about layer bytes.
    pub async fn push_plugin(
        &self,
        reference: &Reference,
        wasm: &[u8],
        meta: &PluginMeta,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Digest, OciError> {
        let built = artifact::build(wasm, meta)?;
        if let Some(pinned) = reference.digest()
            && *pinned != built.manifest_digest
        {
            return Err(OciError::ManifestDigestMismatch {
                expected: pinned.to_string(),
                actual: built.manifest_digest.to_string(),
            });
        }
        let target = match reference.tag() {
            Some(_) => reference.clone(),
            None => reference.with_digest(built.manifest_digest.clone()),
        };
        self.prepare(&target).await;
        tracing::debug!(reference = %target, size = wasm.len(), "pushing plugin");
        self.upload_blob(&target, "layer", wasm, &built.layer_digest, progress)
            .await?;
        self.upload_blob(
            &target,
            "config",
            &built.config,
            &built.config_digest,
            &|_, _| {},
        )
        .await?;
        self.push_manifest(&target, &built.manifest).await?;
        Ok(built.manifest_digest)
    }

    /// The manifest digest `reference` points at. A digest reference is returned as is
    /// after checking that the registry has it.
    pub async fn resolve(&self, reference: &Reference) -> Result<Digest, OciError> {
        self.prepare(reference).await;
        let oref = reference.to_oci();
        let auth = self.auth(reference);
        let found = self
            .retry(reference, "manifest", || {
                self.client.fetch_manifest_digest(&oref, &auth)
            })
            .await?;
        let digest = Digest::parse(&found).map_err(|_| OciError::Registry {
            registry: reference.registry().to_owned(),
            detail: format!("returned manifest digest {found:?}, expected a sha256 digest"),
        })?;
        if let Some(pinned) = reference.digest()
            && *pinned != digest
        {
            return Err(OciError::ManifestDigestMismatch {
                expected: pinned.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(digest)
    }

    /// Downloads and verifies the plugin with manifest `manifest_digest` from the
    /// repository of `repository` (its tag or digest is ignored: pulls are always by
    /// digest). `progress(done, total)` is called as layer bytes arrive.
    pub async fn pull_plugin(
        &self,
        repository: &Reference,
        manifest_digest: &Digest,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<PulledPlugin, OciError> {
        let pinned = repository.with_digest(manifest_digest.clone());
        self.prepare(&pinned).await;
        let body = self.fetch_manifest(&pinned).await?;
        let actual = Digest::of(&body);
        if actual != *manifest_digest {
            return Err(OciError::ManifestDigestMismatch {
                expected: manifest_digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let manifest = artifact::parse_manifest(&body)?;
        let (config_desc, layer_desc) = wasm_descriptors(&manifest)?;
        let layer_size = declared_size(layer_desc, "layer")?;
        if layer_size > self.options.max_layer_size {
            return Err(OciError::TooLarge {
                what: "Wasm layer".into(),
                size: layer_size,
                limit: self.options.max_layer_size,
            });
        }
        let config_size = declared_size(config_desc, "config")?;
        if config_size > MAX_CONFIG_SIZE {
            return Err(OciError::TooLarge {
                what: "config".into(),
                size: config_size,
                limit: MAX_CONFIG_SIZE,
            });
        }
        // The small config first: a mismatch is refused before the large download.
        let config_bytes = self
            .download_blob(&pinned, config_desc, "config", config_size, &|_, _| {})
            .await?;
        let config = artifact::check_config(&config_bytes, &layer_desc.digest)?;
        let wasm = self
            .download_blob(&pinned, layer_desc, "Wasm layer", layer_size, progress)
            .await?;
        Ok(PulledPlugin {
            manifest_digest: manifest_digest.clone(),
            wasm,
            config,
            annotations: manifest.annotations.clone().unwrap_or_default(),
        })
    }

    /// The raw manifest at `reference`.
    pub(crate) async fn fetch_manifest(&self, reference: &Reference) -> Result<Vec<u8>, OciError> {
        let oref = reference.to_oci();
        let auth = self.auth(reference);
        let (body, _) = self
            .retry(reference, "manifest", || {
                self.client
                    .pull_manifest_raw(&oref, &auth, ACCEPTED_MANIFESTS)
            })
            .await?;
        Ok(body.to_vec())
    }

    /// Like [`Self::fetch_manifest`], with `None` when the registry does not have it.
    pub(crate) async fn fetch_manifest_opt(
        &self,
        reference: &Reference,
    ) -> Result<Option<Vec<u8>>, OciError> {
        self.prepare(reference).await;
        match self.fetch_manifest(reference).await {
            Ok(body) => Ok(Some(body)),
            Err(OciError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn push_manifest(
        &self,
        reference: &Reference,
        body: &[u8],
    ) -> Result<(), OciError> {
        let oref = reference.to_oci();
        // Parsed rather than named so the host needs no direct `http` dependency.
        let content_type = MANIFEST_MEDIA_TYPE
            .parse()
            .map_err(|e| OciError::Config(format!("manifest content type: {e}")))?;
        self.retry(reference, "manifest", || {
            self.client
                .push_manifest_raw(&oref, body.to_vec(), Clone::clone(&content_type))
        })
        .await?;
        Ok(())
    }

    /// The oci-client login for `reference`'s registry.
    pub(crate) fn auth(&self, reference: &Reference) -> RegistryAuth {
        self.options
            .credentials
            .as_ref()
            .and_then(|c| c.get(reference.registry()))
            .map_or(RegistryAuth::Anonymous, |c| c.to_oci())
    }

    /// Registers the login for the registry with the oci-client, which looks it up by
    /// registry for operations (blob pushes and pulls) that take no login argument.
    pub(crate) async fn prepare(&self, reference: &Reference) {
        self.client
            .store_auth_if_needed(reference.registry(), &self.auth(reference))
            .await;
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn a_mirrored_registry_is_fetched_from_its_mirror_and_others_are_not() {
        let registry = Registry::new(RegistryOptions {
            mirrors: BTreeMap::from([("ghcr.io".to_string(), "gw.site:5000".to_string())]),
            ..RegistryOptions::default()
        })
        .unwrap();
        let pinned = format!("ghcr.io/acme/web@sha256:{}", "a".repeat(64));
        let routed = registry.route(&Reference::parse(&pinned).unwrap());
        assert_eq!(
            routed.to_string(),
            format!("oci://{}", pinned.replace("ghcr.io", "gw.site:5000"))
        );
        let tagged = registry.route(&Reference::parse("ghcr.io/acme/web:1").unwrap());
        assert_eq!(tagged.to_string(), "oci://gw.site:5000/acme/web:1");
        let other = Reference::parse("quay.io/acme/web:1").unwrap();
        assert_eq!(registry.route(&other), other);
    }
}
