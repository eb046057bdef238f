//! `install` and `uninstall`: a service's container, run from the digest its
//! tag resolved to, with its options in a file and each secret in a file of
//! its own, and its record (what the user gave, what it resolved to) kept so
//! that a restart, a swap or a re-install brings back exactly the same
//! configuration — generated secrets are never generated again.
//!

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_sdk::container::{self, Network, PullPolicy, Spec};
use cairn_sdk::fs::write_atomic;
use cairn_sdk::{CommandError, kv};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bindings;
use crate::dependents;
use crate::device::PROFILE_PREFIX;
use crate::options::{MASK, OnRestart, Origin, ReadyCheck, Resolved};
use crate::plan::{self, OPTIONS_FILE, Planned, SECRETS_DIR, ServiceRequest};
use crate::ready;
use crate::seal::Sealer;
use crate::settings::Settings;
use crate::tls;

/// What a service is, as installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub service: String,
    /// The reference by tag it was installed from, and the digest that runs.
    pub reference: String,
    pub digest: String,
    /// What the user gave, secret values masked: what `list` shows.
    pub shown: BTreeMap<String, String>,
    /// [`Given`], sealed: it may hold secrets.
    pub sealed: String,
    /// Providers it uses.
    pub providers: Vec<String>,
    /// How it shows it is ready, if its label says.
    #[serde(default)]
    pub ready: Option<ReadyCheck>,
    /// What happens to it when one of them restarts (absent: restart).
    #[serde(default)]
    pub on_restart: BTreeMap<String, OnRestart>,
    pub installed_ms: u64,
}

/// What the user gave, apart from what it resolved to, and the values
/// macros generated (`!rand`...), given back at every re-install so that
/// they are never generated again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Given {
    pub input: BTreeMap<String, String>,
    pub frozen: BTreeMap<String, String>,
    /// The steps that undo its bindings, run when it is uninstalled.
    #[serde(default)]
    pub undo: Vec<bindings::Undo>,
}

const RECORD_PREFIX: &str = "service/";
pub const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn record(service: &str) -> Result<Option<Record>, CommandError> {
    Ok(kv::get_json(&format!("{RECORD_PREFIX}{service}"))?)
}

/// Stores a service's record (an install, an import).
pub fn save(record: &Record) -> Result<(), CommandError> {
    Ok(kv::set_json(
        &format!("{RECORD_PREFIX}{}", record.service),
        record,
    )?)
}

pub fn records() -> Result<Vec<Record>, CommandError> {
    let mut all = Vec::new();
    for key in kv::list_keys(RECORD_PREFIX)? {
        if let Some(record) = kv::get_json::<Record>(&key)? {
            all.push(record);
        }
    }
    Ok(all)
}

/// A service's resolution from its record, with `options` given now.
pub struct Rehydrated {
    pub previous: Option<Record>,
    /// What the user had given before.
    pub before_input: BTreeMap<String, String>,
    /// What the user gave, before and now.
    pub input: BTreeMap<String, String>,
    pub previously_frozen: BTreeMap<String, String>,
    pub planned: Planned,
}

/// Resolves `service` again: what macros generated comes back as given, so
/// nothing is generated twice; what the user gives (now or before) wins.
/// With `pinned`, that digest is read instead of what the tag names.
pub fn rehydrate(
    settings: &Settings,
    sealer: &Sealer,
    service: &str,
    options: &BTreeMap<String, String>,
    pinned: Option<&str>,
) -> Result<Rehydrated, CommandError> {
    let previous = record(service)?;
    let before: Given = match &previous {
        Some(record) => sealer.open_json(&record.sealed).map_err(|err| {
            CommandError::internal(format!("the record of service {service}: {err}"))
        })?,
        None => Given::default(),
    };
    let previously_frozen = before.frozen;
    let mut input = before.input;
    let before_input = input.clone();
    input.extend(options.clone());
    let mut given = previously_frozen.clone();
    given.extend(input.clone());
    let request = ServiceRequest {
        service: service.to_string(),
        options: given,
        pinned: pinned.map(str::to_string),
    };
    let planned = plan::prepare(settings, sealer, &request)?;
    Ok(Rehydrated {
        previous,
        before_input,
        input,
        previously_frozen,
        planned,
    })
}

/// Installs `request.service`, or brings it to the options given: its
/// providers must run; its pending binding steps run in them first.
pub fn install(
    settings: &Settings,
    sealer: &Sealer,
    request: &ServiceRequest,
) -> Result<Value, CommandError> {
    let Rehydrated {
        previous,
        before_input,
        input,
        previously_frozen,
        planned,
    } = rehydrate(
        settings,
        sealer,
        &request.service,
        &request.options,
        request.pinned.as_deref(),
    )?;
    for provider in &planned.resolved.services {
        let not_ready = match record(&provider.service)? {
            Some(installed) => ready::readiness(settings, &installed).err(),
            None => Some("it is not installed".to_string()),
        };
        if let Some(why) = not_ready {
            return Err(CommandError::new(
                cairn_sdk::ErrorCode::Unavailable,
                format!(
                    "service {} needs {}, which is not ready: {why}",
                    request.service, provider.service
                ),
            ));
        }
    }
    let ready_check = planned
        .declared
        .as_ref()
        .and_then(|declared| declared.ready.clone());
    if ready_check.is_some() {
        ready::available(settings, &request.service)?;
    }
    let profile = planned.resolved.profile();
    let frozen: BTreeMap<String, String> = planned
        .resolved
        .options
        .iter()
        .filter(|option| {
            option.origin == Origin::Macro
                || (previously_frozen.contains_key(&option.name)
                    && !input.contains_key(&option.name))
        })
        .map(|option| (option.name.clone(), option.value.clone()))
        .collect();
    let unchanged = previous
        .as_ref()
        .is_some_and(|record| record.digest == planned.image.digest && before_input == input)
        && container::info(&request.service).is_ok_and(|info| info.running);
    if unchanged {
        return Ok(
            json!({"service": request.service, "changed": false, "digest": planned.image.digest}),
        );
    }
    let bound = bindings::run_pending(settings, &request.service, &planned.resolved, &|_| false)?;
    let files = write_files(settings, &request.service, &planned.resolved)?;
    if !planned.resolved.tls.is_empty() {
        tls::ensure(settings, &request.service)?;
    }
    let spec = container_spec(settings, &request.service, &planned, &files)?;
    if container::info(&request.service).is_ok() {
        let _ = container::stop(&request.service, STOP_GRACE);
        container::remove(&request.service)?;
    }
    // What runs is the digest: an image record by digest, from the content
    // the plan's pull already fetched.
    container::pull(&spec_image(&planned), PullPolicy::IfNotPresent)?;
    let started = container::run(&spec)?;
    let record = Record {
        service: request.service.clone(),
        reference: planned.reference.clone(),
        digest: planned.image.digest.clone(),
        shown: input
            .iter()
            .map(|(name, value)| {
                let secret = planned
                    .resolved
                    .option(name)
                    .is_some_and(|option| option.secret);
                (
                    name.clone(),
                    if secret {
                        MASK.to_string()
                    } else {
                        value.clone()
                    },
                )
            })
            .collect(),
        sealed: sealer
            .seal_json(&Given {
                input,
                frozen,
                undo: bindings::undo_steps(&planned.resolved),
            })
            .map_err(CommandError::internal)?,
        providers: planned
            .resolved
            .services
            .iter()
            .map(|s| s.service.clone())
            .collect(),
        ready: ready_check.clone(),
        on_restart: planned
            .resolved
            .services
            .iter()
            .map(|s| (s.service.clone(), s.on_restart))
            .collect(),
        installed_ms: cairn_sdk::timer::now_ms(),
    };
    // The profile first: a record always has the values it was made from.
    let profile = sealer.seal_json(&profile).map_err(CommandError::internal)?;
    kv::set_json(&format!("{PROFILE_PREFIX}{}", request.service), &profile)?;
    save(&record)?;
    cairn_sdk::info!(
        "installed service {} from {}@{}",
        request.service,
        planned.reference,
        planned.image.digest
    );
    let readiness = match &ready_check {
        Some(check) => ready::register(settings, &request.service, check)
            .and_then(|()| ready::wait(settings, &request.service, check)),
        None => Ok(()),
    };
    if previous.is_some() {
        // Its container was replaced: what uses it may need to know.
        dependents::provider_restarted(settings, sealer, &request.service);
    }
    readiness?;
    Ok(json!({
        "service": request.service,
        "changed": true,
        "digest": record.digest,
        "container": {"running": started.running, "ip": started.ip},
        "bindings": bound.iter().map(|step| json!({"id": step.id, "provider": step.provider, "outcome": step.outcome})).collect::<Vec<_>>(),
    }))
}

/// Removes a service nothing else uses: runs the steps that undo its
/// bindings, then removes its container, files and record.
pub fn uninstall(
    settings: &Settings,
    sealer: &Sealer,
    service: &str,
) -> Result<Value, CommandError> {
    let Some(installed) = record(service)? else {
        return Err(CommandError::not_found(format!(
            "service {service} is not installed"
        )));
    };
    let users: Vec<String> = records()?
        .into_iter()
        .filter(|other| other.providers.iter().any(|provider| provider == service))
        .map(|other| other.service)
        .collect();
    if !users.is_empty() {
        return Err(CommandError::conflict(format!(
            "service {service} is used by {}: uninstall them first",
            users.join(", ")
        )));
    }
    let given: Given = sealer
        .open_json(&installed.sealed)
        .map_err(|err| CommandError::internal(format!("the record of service {service}: {err}")))?;
    bindings::run_undo(settings, service, &given.undo)?;
    ready::forget(settings, &installed);
    if container::info(service).is_ok() {
        let _ = container::stop(service, STOP_GRACE);
        container::remove(service)?;
    }
    let dir = service_dir(settings, service);
    if let Err(err) = std::fs::remove_dir_all(&dir)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        return Err(CommandError::internal(format!(
            "cannot remove {dir}: {err}"
        )));
    }
    bindings::forget(service)?;
    kv::delete(&format!("{RECORD_PREFIX}{service}"))?;
    kv::delete(&format!("{PROFILE_PREFIX}{service}"))?;
    cairn_sdk::info!("uninstalled service {service}");
    Ok(json!({"service": service, "removed": true}))
}

fn service_dir(settings: &Settings, service: &str) -> String {
    format!("{}/services/{service}", settings.state)
}

/// The host directory mounted at `/run/cairn/dockyard`.
struct Files {
    dir: String,
}

/// Writes the options file and one file per secret, each atomically.
fn write_files(
    settings: &Settings,
    service: &str,
    resolved: &Resolved,
) -> Result<Files, CommandError> {
    let dir = service_dir(settings, service);
    let secrets = format!("{dir}/secrets");
    std::fs::create_dir_all(&secrets)
        .map_err(|err| CommandError::internal(format!("cannot create {secrets}: {err}")))?;
    let mut options = String::new();
    for option in &resolved.options {
        if option.secret {
            write_atomic(
                &format!("{secrets}/{}", option.name),
                option.value.as_bytes(),
            )?;
        } else if !option.value.contains('\n') {
            options.push_str(&format!("{}={}\n", option.name, option.value));
        }
    }
    write_atomic(&format!("{dir}/options.env"), options.as_bytes())?;
    Ok(Files { dir })
}

/// The service's image, pinned: `registry/repository@digest`.
fn spec_image(planned: &Planned) -> String {
    format!(
        "{}@{}",
        plan::repository_of(&planned.reference),
        planned.image.digest
    )
}

fn container_spec(
    settings: &Settings,
    service: &str,
    planned: &Planned,
    files: &Files,
) -> Result<Spec, CommandError> {
    let runtime = &planned.resolved.runtime;
    let image = spec_image(planned);
    let mount_dir = OPTIONS_FILE.rsplit_once('/').map_or("/run", |(dir, _)| dir);
    debug_assert!(SECRETS_DIR.starts_with(mount_dir));
    let mut spec = Spec::new(service, &image)
        .bind(&files.dir, mount_dir, true)
        .label("dev.cairn.dockyard.service", service);
    if !runtime.command.is_empty() {
        spec = spec.command(&runtime.command);
    }
    if !runtime.args.is_empty() {
        spec = spec.args(&runtime.args);
    }
    for volume in &runtime.volumes {
        let host = format!("{}/volumes/{service}/{}", settings.state, volume.name);
        std::fs::create_dir_all(&host)
            .map_err(|err| CommandError::internal(format!("cannot create {host}: {err}")))?;
        spec = spec.bind(&host, &volume.path, false);
    }
    if !runtime.ports.is_empty() {
        spec = spec.network(Network::Bridge);
        for port in &runtime.ports {
            let udp = port.protocol.name() == "udp";
            spec = spec.port_on(
                port.host_ip.map(|ip| ip.to_string()).as_deref(),
                port.host_port,
                port.container_port,
                udp,
            );
        }
    }
    Ok(spec)
}
