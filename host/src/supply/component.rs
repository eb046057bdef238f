//! What a plugin file is: checks that it is a valid WebAssembly component and reads
//! its interface names and the `cairn-plugin` metadata it declares.

use serde::Deserialize;
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

/// Name of the custom section holding the plugin's JSON metadata.
pub const METADATA_SECTION: &str = "cairn-plugin";

/// What [`inspect`] learned about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Plugin name from the `cairn-plugin` section, if present.
    pub name: Option<String>,
    /// Plugin version from the `cairn-plugin` section, if present.
    pub version: Option<semver::Version>,
    /// Names of the top-level component's imports, e.g. `cairn:host/kv@0.1.0`.
    pub imports: Vec<String>,
    /// Names of the top-level component's exports, e.g. `cairn:plugin/lifecycle@0.1.0`.
    pub exports: Vec<String>,
    /// Size of the file in bytes.
    pub size: usize,
}

impl ComponentInfo {
    /// The plugin's name and version, when the component carries both.
    pub fn identity(&self) -> Option<(String, semver::Version)> {
        Some((self.name.clone()?, self.version.clone()?))
    }
}

/// Why a file is not an acceptable component.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ComponentError {
    /// The file does not start with the WebAssembly magic bytes.
    #[error("not a WebAssembly file (it does not start with the \\0asm header)")]
    NotWasm,
    /// A core module where a component is required.
    #[error(
        "this is a core WebAssembly module, not a component: build for wasm32-wasip2 or wrap \
         it with `wasm-tools component new`"
    )]
    CoreModule,
    /// The component fails to parse or validate; the message includes the offset.
    #[error("invalid WebAssembly component: {0}")]
    Malformed(String),
    /// The `cairn-plugin` section is present but unusable.
    #[error("invalid `cairn-plugin` metadata: {0}")]
    BadMetadata(String),
}

/// Contents of the `cairn-plugin` section. Unknown fields are ignored so newer build
/// tools can add some without breaking older hosts.
#[derive(Deserialize)]
struct Metadata {
    name: Option<String>,
    version: Option<String>,
}

/// Validates `bytes` as a component (with the component-model features wasmtime
/// accepts by default) and reads its metadata.
///
/// The `cairn-plugin` section may sit at the top level or inside any nested module or
/// component (toolchains usually leave it in the core module they wrapped).
pub fn inspect(bytes: &[u8]) -> Result<ComponentInfo, ComponentError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ComponentError::NotWasm);
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    if bytes[6..8] == [0, 0] {
        return Err(ComponentError::CoreModule);
    }
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(bytes)
        .map_err(|e| ComponentError::Malformed(e.to_string()))?;

    let malformed = |e: wasmparser::BinaryReaderError| ComponentError::Malformed(e.to_string());
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut metadata: Option<&[u8]> = None;
    // Nesting level: 1 is the top-level component, deeper levels are nested modules
    // and components, whose imports and exports are internal wiring.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    imports.push(import.map_err(malformed)?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    exports.push(export.map_err(malformed)?.name.name.to_owned());
                }
            }
            Payload::CustomSection(section) if section.name() == METADATA_SECTION => match metadata
            {
                Some(previous) if previous != section.data() => {
                    return Err(ComponentError::BadMetadata(format!(
                        "the component holds several different `{METADATA_SECTION}` sections"
                    )));
                }
                _ => metadata = Some(section.data()),
            },
            _ => {}
        }
    }

    let (name, version) = match metadata {
        Some(data) => parse_metadata(data)?,
        None => (None, None),
    };
    Ok(ComponentInfo {
        name,
        version,
        imports,
        exports,
        size: bytes.len(),
    })
}

fn parse_metadata(
    data: &[u8],
) -> Result<(Option<String>, Option<semver::Version>), ComponentError> {
    let meta: Metadata = serde_json::from_slice(data)
        .map_err(|e| ComponentError::BadMetadata(format!("not the expected JSON object: {e}")))?;
    if let Some(name) = &meta.name
        && !is_plugin_name(name)
    {
        return Err(ComponentError::BadMetadata(format!(
            "name {name:?} is not a plugin name (expected [a-z][a-z0-9-]*)"
        )));
    }
    let version = meta
        .version
        .map(|v| {
            semver::Version::parse(&v).map_err(|e| {
                ComponentError::BadMetadata(format!("version {v:?} is not semver: {e}"))
            })
        })
        .transpose()?;
    Ok((meta.name, version))
}

/// Plugin names double as key-value namespaces and file names, hence the strict shape.
fn is_plugin_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
#[path = "component_tests.rs"]
mod tests;
