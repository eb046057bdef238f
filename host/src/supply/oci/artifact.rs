//! The CNCF Wasm OCI artifact: a manifest with a Wasm config and exactly one
//! `application/wasm` layer, built and checked here without any network access.

use std::collections::BTreeMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::{Deserialize, Serialize};

use super::error::OciError;
use crate::state::digest::Digest;

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the CNCF Wasm config blob.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the component layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// Standard annotation keys written on plugin manifests.
pub mod annotation {
    /// The plugin's name.
    pub const TITLE: &str = "org.opencontainers.image.title";
    /// The plugin's version.
    pub const VERSION: &str = "org.opencontainers.image.version";
    /// A human-readable description.
    pub const DESCRIPTION: &str = "org.opencontainers.image.description";
    /// Where the source lives.
    pub const SOURCE: &str = "org.opencontainers.image.source";
    /// When the artifact was built (RFC 3339).
    pub const CREATED: &str = "org.opencontainers.image.created";
}

/// What a plugin artifact says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginMeta {
    /// Plugin name (`org.opencontainers.image.title`).
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Optional description.
    pub description: Option<String>,
    /// Optional source URL.
    pub source: Option<String>,
    /// The component's imported interfaces.
    pub imports: Vec<String>,
    /// The component's exported interfaces.
    pub exports: Vec<String>,
    /// Creation time, RFC 3339. Callers pin it: it enters the config and annotations,
    /// so the same value gives the same manifest digest.
    pub created: String,
}

/// The `component` section of the Wasm config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ComponentSection {
    /// Imported interfaces.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Exported interfaces.
    #[serde(default)]
    pub exports: Vec<String>,
    /// The WIT world targeted, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The Wasm config blob (`application/vnd.wasm.config.v0+json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmConfig {
    /// Creation time, RFC 3339.
    pub created: String,
    /// Optional author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip2` for components.
    pub os: String,
    /// Digests of the manifest's layers, in order.
    #[serde(rename = "layerDigests")]
    pub layer_digests: Vec<String>,
    /// Component imports and exports, absent for core modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentSection>,
}

/// A built artifact: the exact bytes to upload.
pub(crate) struct BuiltArtifact {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layer_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
}

/// Builds the config and manifest for `wasm`. Serialisation is deterministic (struct
/// field order, sorted annotation map), so equal inputs give equal digests.
pub(crate) fn build(wasm: &[u8], meta: &PluginMeta) -> Result<BuiltArtifact, OciError> {
    let layer_digest = Digest::of(wasm);
    let config = WasmConfig {
        created: meta.created.clone(),
        author: None,
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![layer_digest.to_string()],
        component: Some(ComponentSection {
            imports: meta.imports.clone(),
            exports: meta.exports.clone(),
            target: None,
        }),
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| OciError::ConfigInvalid(e.to_string()))?;
    let config_digest = Digest::of(&config_bytes);
    let mut annotations = BTreeMap::from([
        (annotation::TITLE.to_owned(), meta.name.clone()),
        (annotation::VERSION.to_owned(), meta.version.clone()),
        (annotation::CREATED.to_owned(), meta.created.clone()),
    ]);
    if let Some(description) = &meta.description {
        annotations.insert(annotation::DESCRIPTION.to_owned(), description.clone());
    }
    if let Some(source) = &meta.source {
        annotations.insert(annotation::SOURCE.to_owned(), source.clone());
    }
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: descriptor(WASM_CONFIG_MEDIA_TYPE, &config_digest, config_bytes.len()),
        layers: vec![descriptor(WASM_LAYER_MEDIA_TYPE, &layer_digest, wasm.len())],
        subject: None,
        artifact_type: None,
        annotations: Some(annotations),
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| OciError::ManifestInvalid(e.to_string()))?;
    Ok(BuiltArtifact {
        config: config_bytes,
        config_digest,
        layer_digest,
        manifest_digest: Digest::of(&manifest_bytes),
        manifest: manifest_bytes,
    })
}

pub(crate) fn descriptor(media_type: &str, digest: &Digest, size: usize) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
        artifact_type: None,
    }
}

/// Parses an OCI image manifest, insisting on the OCI manifest media type.
pub(crate) fn parse_manifest(body: &[u8]) -> Result<OciImageManifest, OciError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| OciError::ManifestInvalid(e.to_string()))?;
    let media_type = probe.media_type.unwrap_or_default();
    if media_type != MANIFEST_MEDIA_TYPE {
        return Err(OciError::ManifestMediaType { found: media_type });
    }
    serde_json::from_slice(body).map_err(|e| OciError::ManifestInvalid(e.to_string()))
}

/// The descriptors of a valid Wasm artifact manifest: `(config, layer)`.
pub(crate) fn wasm_descriptors(
    manifest: &OciImageManifest,
) -> Result<(&OciDescriptor, &OciDescriptor), OciError> {
    let [layer] = manifest.layers.as_slice() else {
        return Err(OciError::LayerCount {
            found: manifest.layers.len(),
        });
    };
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(OciError::ConfigMediaType {
            found: manifest.config.media_type.clone(),
        });
    }
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(OciError::LayerMediaType {
            found: layer.media_type.clone(),
        });
    }
    Ok((&manifest.config, layer))
}

/// Parses the config blob and checks that it describes exactly `layer_digest`.
pub(crate) fn check_config(bytes: &[u8], layer_digest: &str) -> Result<WasmConfig, OciError> {
    let config: WasmConfig =
        serde_json::from_slice(bytes).map_err(|e| OciError::ConfigInvalid(e.to_string()))?;
    if config.layer_digests.len() != 1 || config.layer_digests[0] != layer_digest {
        return Err(OciError::ConfigLayerDigests {
            found: config.layer_digests,
            layer: layer_digest.to_owned(),
        });
    }
    Ok(config)
}

/// A descriptor's declared size, refusing negative values.
pub(crate) fn declared_size(desc: &OciDescriptor, what: &str) -> Result<u64, OciError> {
    u64::try_from(desc.size)
        .map_err(|_| OciError::ManifestInvalid(format!("{what} has negative size {}", desc.size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> PluginMeta {
        PluginMeta {
            name: "counter".into(),
            version: "1.2.3".into(),
            description: Some("counts".into()),
            source: None,
            imports: vec!["wasi:clocks/monotonic-clock@0.2.0".into()],
            exports: vec!["cairn:plugin/handler@0.1.0".into()],
            created: "2024-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn build_is_deterministic_and_self_consistent() {
        let a = build(b"\0asm", &meta()).unwrap();
        let b = build(b"\0asm", &meta()).unwrap();
        assert_eq!(a.manifest, b.manifest);
        let manifest = parse_manifest(&a.manifest).unwrap();
        let (config, layer) = wasm_descriptors(&manifest).unwrap();
        assert_eq!(config.digest, a.config_digest.to_string());
        assert_eq!(layer.digest, a.layer_digest.to_string());
        let cfg = check_config(&a.config, &layer.digest).unwrap();
        assert_eq!(
            (cfg.architecture.as_str(), cfg.os.as_str()),
            ("wasm", "wasip2")
        );
        let annotations = manifest.annotations.unwrap();
        assert_eq!(annotations[annotation::TITLE], "counter");
        assert!(!annotations.contains_key(annotation::SOURCE));
        let json: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert!(json["layerDigests"].is_array() && json["component"]["exports"].is_array());
        let other = build(
            b"\0asm",
            &PluginMeta {
                created: "2025-01-01T00:00:00Z".into(),
                ..meta()
            },
        );
        assert_ne!(other.unwrap().manifest_digest, a.manifest_digest);
    }
}
