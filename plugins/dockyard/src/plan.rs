//! `plan`: what installing a service would do, touching nothing but the
//! image store — the image is pulled (its tag resolved once to a digest) so
//! that its own, digest-checked labels are read; no container, profile,
//! binding or file is made. Secrets are shown as `<secret>`.

use std::collections::BTreeMap;

use cairn_sdk::CommandError;
use cairn_sdk::container::{self, ImageConfig, PullPolicy};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::device::{DeviceEnvironment, InstalledServices, TLS_DIR};
use crate::options::{self, Declared, ResolveError, Resolved};
use crate::seal::Sealer;
use crate::settings::{Settings, valid_service_name};

/// Where a service's non-secret options are, inside its container
/// (`NAME=value` lines), and where each secret is a file of its own.
pub const OPTIONS_FILE: &str = "/run/cairn/dockyard/options.env";
pub const SECRETS_DIR: &str = "/run/cairn/dockyard/secrets";

/// The payload of `plan` (and later `install`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    pub service: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Run this digest of the service's repository instead of resolving its
    /// tag (never from a payload: a service made again from its record).
    #[serde(skip)]
    pub pinned: Option<String>,
}

/// A service's image, declaration and resolution.
pub struct Planned {
    pub reference: String,
    pub image: ImageConfig,
    pub declared: Option<Declared>,
    pub resolved: Resolved,
}

/// Pulls the service's image, reads its labels and resolves its options.
pub fn prepare(
    settings: &Settings,
    sealer: &Sealer,
    request: &ServiceRequest,
) -> Result<Planned, CommandError> {
    if !valid_service_name(&request.service) {
        return Err(CommandError::invalid(format!(
            "`{}` is not a service name (lower-case letters, digits and `-`, at most 63)",
            request.service
        )));
    }
    let by_tag = settings.image_of(&request.service);
    let reference = match &request.pinned {
        Some(digest) => format!("{}@{digest}", repository_of(&by_tag)),
        None => by_tag.clone(),
    };
    let pulled = container::pull(&reference, PullPolicy::IfNotPresent).map_err(|err| {
        CommandError::new(
            err.code(),
            format!(
                "service {}: image {reference}: {}",
                request.service,
                err.message()
            ),
        )
    })?;
    let image = container::inspect_image(&pulled.reference)
        .map_err(|err| CommandError::new(err.code(), err.message().to_string()))?;
    let labels: BTreeMap<String, String> = image.labels.iter().cloned().collect();
    let declared = options::read_labels(&labels)
        .map_err(|err| CommandError::invalid(format!("service {}: {err}", request.service)))?;
    let empty = Declared::empty();
    let mut environment = DeviceEnvironment { settings };
    let resolved = options::resolve(
        declared.as_ref().unwrap_or(&empty),
        &request.options,
        &InstalledServices { sealer },
        &mut environment,
    )
    .map_err(|err| resolve_error(&request.service, &err))?;
    Ok(Planned {
        // What the record names: the tag, even when a digest was pulled.
        reference: if request.pinned.is_some() {
            by_tag
        } else {
            pulled.reference
        },
        image,
        declared,
        resolved,
    })
}

fn resolve_error(service: &str, err: &ResolveError) -> CommandError {
    let message = format!("service {service}: {err}");
    match err {
        ResolveError::MissingProvider { .. } => CommandError::not_found(message),
        _ => CommandError::invalid(message),
    }
}

/// The dry run's reply.
pub fn render(request: &ServiceRequest, planned: &Planned) -> Value {
    let resolved = &planned.resolved;
    let runtime = &resolved.runtime;
    let or_image = |chosen: &Vec<String>, image: &Vec<String>| {
        if chosen.is_empty() {
            image.clone()
        } else {
            chosen.clone()
        }
    };
    let secret_files: Vec<String> = resolved
        .options
        .iter()
        .filter(|option| option.secret)
        .map(|option| format!("{SECRETS_DIR}/{}", option.name))
        .collect();
    let mut plan = resolved.masked();
    plan["service"] = json!(request.service);
    plan["image"] = json!({
        "reference": planned.reference,
        "digest": planned.image.digest,
        "label": planned.declared.as_ref().map(|declared| declared.source.label()),
        "notes": planned.declared.as_ref().map(|declared| declared.notes.clone()).unwrap_or_default(),
    });
    plan["container"] = json!({
        "name": request.service,
        "image": format!("{}@{}", repository_of(&planned.reference), planned.image.digest),
        "command": or_image(&runtime.command, &planned.image.entrypoint),
        "args": or_image(&runtime.args, &planned.image.cmd),
        "env": planned.image.env,
        "options-file": OPTIONS_FILE,
        "secret-files": secret_files,
        "tls-dir": (!resolved.tls.is_empty()).then_some(TLS_DIR),
        "ready": planned.declared.as_ref().and_then(|declared| declared.ready.as_ref()),
    });
    plan
}

/// `registry/repository` of a reference by tag or digest.
pub fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_lose_their_tag_or_digest_but_keep_a_port() {
        assert_eq!(
            repository_of("127.0.0.1:5000/dockyard/db:latest"),
            "127.0.0.1:5000/dockyard/db"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/dockyard/db"),
            "127.0.0.1:5000/dockyard/db"
        );
        assert_eq!(repository_of("reg/db@sha256:00"), "reg/db");
        assert_eq!(repository_of("reg/db:1@sha256:00"), "reg/db");
    }
}
