//! `cairn plugin push` and `cairn plugin sign oci://…`: publishing signed
//! plugins to an OCI registry. These run in the CLI, not the daemon: a
//! publisher's machine needs no daemon.

use std::path::{Path, PathBuf};

use clap::Args;

use super::output::Outcome;
use super::progress::ProgressView;
use super::{block_on, failure, io_failure};
use crate::admin::api::{AdminError, ErrorCode};
use crate::progress::{Phase, Progress};
use crate::state::digest::Digest;
use crate::supply::component;
use crate::supply::oci::{
    Credentials, PluginMeta, Reference, Registry, RegistryOptions, plugin_annotations,
};
use crate::supply::signing::SigningKey;

/// Creation time written into artifacts unless one is given, so pushing the same
/// component twice gives the same digest.
const PINNED_CREATED: &str = "1970-01-01T00:00:00Z";

/// How to reach the registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Reach the reference's registry over plain HTTP (only for registries you control)
    #[arg(long)]
    pub insecure: bool,
    /// Owner-only TOML file with registry credentials
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// PEM certificates to trust besides the system's (e.g. a site registry's CA)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Arguments of `cairn plugin push`.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The component (.wasm), built with cairn-sdk (it carries its name and version)
    pub file: PathBuf,
    /// Where to push it: oci://HOST[:PORT]/REPO:TAG
    pub reference: String,
    /// Private key (PEM) that signs the pushed artifact
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Description recorded in the artifact's annotations
    #[arg(long)]
    pub description: Option<String>,
    /// Source URL recorded in the artifact's annotations
    #[arg(long)]
    pub source: Option<String>,
    /// Creation time (RFC 3339) [default: pinned, for reproducible digests]
    #[arg(long)]
    pub created: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The name and version to publish a component as, when it carries none of its
/// own (a plain `wasi:http` component, say); the signature binds them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IdentityArgs {
    /// Plugin name, for a component without one of its own (needs --version)
    #[arg(long, requires = "version")]
    pub name: Option<String>,
    /// Plugin version, for a component without one of its own (needs --name)
    #[arg(long, requires = "name")]
    pub version: Option<semver::Version>,
}

impl IdentityArgs {
    /// The component's own identity, or the one given; both must agree when present.
    fn resolve(
        &self,
        own: Option<(String, semver::Version)>,
        what: &str,
    ) -> Result<(String, semver::Version), AdminError> {
        let given = self.name.clone().zip(self.version.clone());
        match (own, given) {
            (Some(own), Some(given)) if own != given => Err(failure(
                ErrorCode::Invalid,
                format!(
                    "{what} says it is {} {}, not {} {}",
                    own.0, own.1, given.0, given.1
                ),
            )),
            (Some(own), _) => Ok(own),
            (None, Some((name, version))) => {
                crate::policy::validate_plugin_name(&name).map_err(|error| {
                    failure(ErrorCode::Invalid, format!("--name `{name}`: {error}"))
                })?;
                Ok((name, version))
            }
            (None, None) => Err(failure(
                ErrorCode::Invalid,
                format!(
                    "{what} carries no plugin name and version: build it with cairn-sdk, or give --name and --version"
                ),
            )),
        }
    }
}

fn load_key(path: &Path) -> Result<SigningKey, AdminError> {
    SigningKey::load(path).map_err(|error| {
        failure(
            ErrorCode::Invalid,
            format!("cannot load the signing key {}: {error:#}", path.display()),
        )
    })
}

pub(super) fn registry_for(
    reference: &Reference,
    args: &RegistryArgs,
) -> Result<Registry, AdminError> {
    let credentials = match &args.credentials {
        Some(path) => Some(
            Credentials::load(path)
                .map_err(|error| failure(ErrorCode::Invalid, error.to_string()))?,
        ),
        None => None,
    };
    let insecure = if args.insecure {
        vec![reference.registry().to_string()]
    } else {
        Vec::new()
    };
    let extra_roots_der = match &args.ca_file {
        Some(path) => crate::caps::pem::read_certs(path)
            .map_err(|error| failure(ErrorCode::Invalid, format!("--ca-file: {error:#}")))?
            .into_iter()
            .map(|cert| cert.to_vec())
            .collect(),
        None => Vec::new(),
    };
    Registry::new(RegistryOptions {
        insecure,
        credentials,
        extra_roots_der,
        ..RegistryOptions::default()
    })
    .map_err(|error| failure(ErrorCode::Invalid, error.to_string()))
}

pub(super) fn parse_reference(text: &str) -> Result<Reference, AdminError> {
    Reference::parse(text).map_err(|error| failure(ErrorCode::Invalid, error.to_string()))
}

pub(super) fn registry_failure(error: impl std::fmt::Display) -> AdminError {
    failure(ErrorCode::Unavailable, error.to_string())
}

/// Signs `digest`, binding the plugin's name and version as signed annotations.
async fn sign_release(
    registry: &Registry,
    reference: &Reference,
    digest: &Digest,
    key: &SigningKey,
    name: &str,
    version: &semver::Version,
) -> Result<(), AdminError> {
    let annotations = plugin_annotations(name, &version.to_string());
    registry
        .sign(reference, digest, key, &annotations)
        .await
        .map_err(registry_failure)
}

/// `cairn plugin push FILE REF --key KEY`: pushes the component as a CNCF Wasm
/// artifact and signs its digest, binding the plugin's name and version.
pub(crate) fn push(args: &PushArgs, quiet: bool) -> Result<Outcome, AdminError> {
    let wasm = std::fs::read(&args.file)
        .map_err(|error| io_failure(format!("cannot read {}", args.file.display()), &error))?;
    let info = component::inspect(&wasm).map_err(|error| {
        failure(
            ErrorCode::Invalid,
            format!("{}: {error}", args.file.display()),
        )
    })?;
    let (name, version) = args
        .identity
        .resolve(info.identity(), &args.file.display().to_string())?;
    let key = load_key(&args.key)?;
    let reference = parse_reference(&args.reference)?;
    let registry = registry_for(&reference, &args.registry)?;
    let meta = PluginMeta {
        name: name.clone(),
        version: version.to_string(),
        description: args.description.clone(),
        source: args.source.clone(),
        imports: info.imports,
        exports: info.exports,
        created: args
            .created
            .clone()
            .unwrap_or_else(|| PINNED_CREATED.to_string()),
    };
    let view = ProgressView::new(quiet);
    let digest = block_on(async {
        let digest = registry
            .push_plugin(&reference, &wasm, &meta, &|done, total| {
                view.report(Progress {
                    phase: Phase::Upload,
                    done,
                    total,
                })
            })
            .await
            .map_err(registry_failure)?;
        sign_release(&registry, &reference, &digest, &key, &name, &version).await?;
        Ok(digest)
    })?;
    let pinned = reference.with_digest(digest.clone());
    let human = format!(
        "pushed {name} {version} to {reference}\n  digest {digest}\n  signed by key {}\n  install with: cairn plugin install {pinned}",
        key.fingerprint()
    );
    let json = serde_json::json!({
        "name": name,
        "version": version.to_string(),
        "reference": reference.to_string(),
        "digest": digest.to_string(),
        "key_fingerprint": key.fingerprint(),
    });
    Ok(Outcome::new(json, human))
}

/// `cairn plugin sign oci://REF --key KEY`: adds a signature to an artifact
/// already in a registry (keeping the existing ones), binding the name and
/// version its manifest declares.
pub(crate) fn sign_reference(
    reference: &str,
    key_path: &Path,
    identity: &IdentityArgs,
    registry_args: &RegistryArgs,
) -> Result<Outcome, AdminError> {
    let key = load_key(key_path)?;
    let reference = parse_reference(reference)?;
    let registry = registry_for(&reference, registry_args)?;
    let (digest, name, version) = block_on(async {
        let digest = registry
            .resolve(&reference)
            .await
            .map_err(registry_failure)?;
        let pulled = registry
            .pull_plugin(&reference, &digest, &|_, _| {})
            .await
            .map_err(registry_failure)?;
        let info = component::inspect(&pulled.wasm)
            .map_err(|error| failure(ErrorCode::Invalid, error.to_string()))?;
        let (name, version) = identity.resolve(info.identity(), "the artifact's component")?;
        sign_release(&registry, &reference, &digest, &key, &name, &version).await?;
        Ok((digest, name, version))
    })?;
    let human = format!(
        "signed {name} {version} at {reference} ({digest}) with key {}",
        key.fingerprint()
    );
    let json = serde_json::json!({
        "name": name,
        "version": version.to_string(),
        "digest": digest.to_string(),
        "key_fingerprint": key.fingerprint(),
    });
    Ok(Outcome::new(json, human))
}
