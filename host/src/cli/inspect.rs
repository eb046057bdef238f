//! `cairn plugin inspect FILE|oci://REF`: what a plugin is, who signed it, and
//! what its policy would have to grant. Runs without the daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use super::block_on;
use super::output::Outcome;
use super::publish::{RegistryArgs, parse_reference, registry_failure, registry_for};
use super::{failure, io_failure};
use crate::admin::api::{AdminError, ErrorCode};
use crate::caps::{GrantNeed, grant_needed};
use crate::config::{ConfigOverrides, DaemonConfig};
use crate::state::digest::Digest;
use crate::supply::component::{self, ComponentInfo};
use crate::supply::oci::{SignatureLayer, SimpleSigning, verify_signatures};
use crate::supply::signing::TrustStore;

/// Arguments of `cairn plugin inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// A component file, or an artifact in a registry (oci://HOST/REPO:TAG or @sha256:…)
    pub target: String,
    /// Detached signature of a file [default: FILE.sig when it exists]
    #[arg(long, value_name = "SIG")]
    pub signature: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// One signature and the trusted keys (from the daemon config) that verify it.
#[derive(Debug, serde::Serialize)]
struct SignatureReport {
    verified_by: Vec<String>,
    annotations: BTreeMap<String, String>,
}

pub(crate) fn inspect(args: &InspectArgs, config: Option<&Path>) -> Result<Outcome, AdminError> {
    let trust = trusted_keys(config)?;
    let (bytes, manifest, signatures) = if args.target.starts_with("oci://") {
        let reference = parse_reference(&args.target)?;
        let registry = registry_for(&reference, &args.registry)?;
        block_on(async {
            let digest = registry
                .resolve(&reference)
                .await
                .map_err(registry_failure)?;
            let layers = registry
                .signatures(&reference, &digest)
                .await
                .map_err(registry_failure)?;
            let pulled = registry
                .pull_plugin(&reference, &digest, &|_, _| {})
                .await
                .map_err(registry_failure)?;
            let reports = layers
                .iter()
                .map(|layer| registry_report(layer, &digest, &trust))
                .collect();
            Ok((pulled.wasm, Some(digest), reports))
        })?
    } else {
        let file = PathBuf::from(&args.target);
        let bytes = std::fs::read(&file)
            .map_err(|error| io_failure(format!("cannot read {}", file.display()), &error))?;
        let reports = detached_report(&file, args.signature.as_deref(), &bytes, &trust)?;
        (bytes, None, reports)
    };
    let info = component::inspect(&bytes)
        .map_err(|error| failure(ErrorCode::Invalid, format!("{}: {error}", args.target)))?;
    Ok(render(&args.target, &bytes, manifest, &info, &signatures))
}

/// The daemon's trusted keys, when a config is given (they name the signers).
fn trusted_keys(config: Option<&Path>) -> Result<TrustStore, AdminError> {
    let keys = match config {
        Some(path) => {
            DaemonConfig::resolve(Some(path), &ConfigOverrides::default())
                .map_err(|error| failure(ErrorCode::Invalid, format!("{error:#}")))?
                .trust_keys
        }
        None => BTreeMap::new(),
    };
    TrustStore::load(&keys).map_err(|error| failure(ErrorCode::Invalid, error.to_string()))
}

fn verifying_keys(trust: &TrustStore, verify: impl Fn(&[String]) -> bool) -> Vec<String> {
    trust
        .names()
        .into_iter()
        .map(str::to_string)
        .filter(|name| verify(std::slice::from_ref(name)))
        .collect()
}

fn registry_report(layer: &SignatureLayer, digest: &Digest, trust: &TrustStore) -> SignatureReport {
    let annotations = serde_json::from_slice::<SimpleSigning>(&layer.payload)
        .ok()
        .and_then(|payload| serde_json::to_value(payload.optional).ok())
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default();
    let single = std::slice::from_ref(layer);
    SignatureReport {
        verified_by: verifying_keys(trust, |names| {
            verify_signatures(single, digest, trust, names, &BTreeMap::new()).is_ok()
        }),
        annotations,
    }
}

fn detached_report(
    file: &Path,
    explicit: Option<&Path>,
    bytes: &[u8],
    trust: &TrustStore,
) -> Result<Vec<SignatureReport>, AdminError> {
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| super::plugin::signature_path_for(file));
    let signature = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_string(),
        Err(error) if explicit.is_none() && error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new());
        }
        Err(error) => {
            return Err(io_failure(
                format!("cannot read {}", path.display()),
                &error,
            ));
        }
    };
    let verified_by = verifying_keys(trust, |names| {
        trust.verify_by_any(names, bytes, Some(&signature)).is_ok()
    });
    Ok(vec![SignatureReport {
        verified_by,
        annotations: BTreeMap::new(),
    }])
}

fn render(
    target: &str,
    bytes: &[u8],
    manifest: Option<Digest>,
    info: &ComponentInfo,
    signatures: &[SignatureReport],
) -> Outcome {
    let mut grants: Vec<&str> = Vec::new();
    let mut unavailable: Vec<&str> = Vec::new();
    for import in &info.imports {
        match grant_needed(import) {
            GrantNeed::Capability(name) if !grants.contains(&name) => grants.push(name),
            GrantNeed::Unavailable => unavailable.push(import),
            _ => {}
        }
    }
    let name = info
        .name
        .clone()
        .unwrap_or_else(|| "(no plugin metadata)".into());
    let version = info
        .version
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into());
    let component_digest = Digest::of(bytes);
    let mut human = format!(
        "{target}\n  plugin     {name} {version}\n  component  {component_digest} ({} bytes)\n",
        bytes.len()
    );
    if let Some(manifest) = &manifest {
        human.push_str(&format!("  manifest   {manifest}\n"));
    }
    human.push_str(&format!(
        "  needs      {}\n",
        if grants.is_empty() {
            "no grants".to_string()
        } else {
            grants
                .iter()
                .map(|g| format!("[grants.{g}]"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    ));
    if !unavailable.is_empty() {
        human.push_str(&format!(
            "  refused    imports no host grants: {}\n",
            unavailable.join(", ")
        ));
    }
    if signatures.is_empty() {
        human.push_str("  signatures none\n");
    }
    for (index, signature) in signatures.iter().enumerate() {
        let by = if signature.verified_by.is_empty() {
            "no trusted key (pass --config to use the daemon's keys)".to_string()
        } else {
            signature.verified_by.join(", ")
        };
        human.push_str(&format!("  signature  #{} verified by {by}\n", index + 1));
    }
    human.push_str(&format!(
        "  imports    {}\n  exports    {}",
        info.imports.join(", "),
        info.exports.join(", ")
    ));
    let json = serde_json::json!({
        "target": target,
        "name": info.name,
        "version": info.version.as_ref().map(ToString::to_string),
        "component_digest": component_digest.to_string(),
        "manifest_digest": manifest.map(|digest| digest.to_string()),
        "size": bytes.len(),
        "imports": info.imports,
        "exports": info.exports,
        "grants_needed": grants,
        "unavailable_imports": unavailable,
        "signatures": signatures,
    });
    Outcome::new(json, human)
}
