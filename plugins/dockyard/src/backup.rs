//! `export` and `import`: a service's record for backup — what the user
//! gave, what macros generated, its profile and its TLS certificate and
//! key (when it uses `!tls`), all still sealed under the
//! device key (named by its id), plus its binding steps' records. Nothing in
//! an export is a secret in the clear; it imports only where that key is
//! (the same device, or one restored with `<state>/keys/data.key`), and
//! `install` then brings the service back with exactly that configuration.

use cairn_sdk::{CommandError, kv};
use serde::{Deserialize, Serialize};

use crate::bindings::{self, StepRecord};
use crate::device::PROFILE_PREFIX;
use crate::install::{self, Record};
use crate::seal::Sealer;
use crate::settings::{Settings, valid_service_name};
use crate::tls;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Export {
    pub key_id: String,
    pub record: Record,
    /// The sealed profile its consumers import.
    pub profile: String,
    pub bindings: Vec<StepRecord>,
    /// Its TLS certificate and key, sealed.
    #[serde(default)]
    pub tls: Option<String>,
}

pub fn export(settings: &Settings, sealer: &Sealer, service: &str) -> Result<Export, CommandError> {
    let record = install::record(service)?
        .ok_or_else(|| CommandError::not_found(format!("service {service} is not installed")))?;
    let profile: String = kv::get_json(&format!("{PROFILE_PREFIX}{service}"))?
        .ok_or_else(|| CommandError::internal(format!("service {service} has no profile")))?;
    Ok(Export {
        key_id: sealer.key_id.clone(),
        record,
        profile,
        bindings: bindings::records(service)?,
        tls: tls::read(settings, service)
            .map(|material| sealer.seal_json(&material))
            .transpose()
            .map_err(CommandError::internal)?,
    })
}

pub fn import(
    settings: &Settings,
    sealer: &Sealer,
    export: Export,
) -> Result<serde_json::Value, CommandError> {
    let service = export.record.service.clone();
    if !valid_service_name(&service) {
        return Err(CommandError::invalid(format!(
            "`{service}` is not a service name"
        )));
    }
    if export.key_id != sealer.key_id {
        return Err(CommandError::invalid(format!(
            "the export of {service} was sealed under device key {}, this device's is {}: restore keys/data.key first",
            export.key_id, sealer.key_id
        )));
    }
    // Everything must open before anything is written.
    sealer
        .open(&export.record.sealed)
        .and_then(|_| sealer.open(&export.profile))
        .map_err(|err| CommandError::invalid(format!("the export of {service}: {err}")))?;
    let material: Option<tls::Material> = export
        .tls
        .as_deref()
        .map(|sealed| sealer.open_json(sealed))
        .transpose()
        .map_err(|err| CommandError::invalid(format!("the export of {service}: {err}")))?;
    if export.bindings.iter().any(|step| step.consumer != service) {
        return Err(CommandError::invalid(format!(
            "the export of {service} holds another service's binding steps"
        )));
    }
    if install::record(&service)?.is_some() {
        return Err(CommandError::conflict(format!(
            "service {service} is installed: uninstall it before importing"
        )));
    }
    if let Some(material) = &material {
        tls::restore(settings, &service, material)?;
    }
    for step in &export.bindings {
        bindings::save(step)?;
    }
    kv::set_json(&format!("{PROFILE_PREFIX}{service}"), &export.profile)?;
    install::save(&export.record)?;
    cairn_sdk::info!("imported service {service}: install it to run it");
    Ok(serde_json::json!({"service": service, "imported": true}))
}
