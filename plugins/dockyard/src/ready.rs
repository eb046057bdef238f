//! Readiness, gated by the `health` plugin: a service whose label declares
//! `ready` gets a check there (named `dockyard-<service>`, its target's
//! `{ip}` the container's bridge address, registered again whenever the
//! container starts); an install waits for its first healthy probe, and a
//! consumer is installed only while its providers' checks are healthy.
//! A service without `ready` is ready while its container runs.

use std::time::{Duration, Instant};

use cairn_sdk::{CommandError, ErrorCode, commands, container};
use serde::Deserialize;
use serde_json::json;

use crate::install::Record;
use crate::options::ReadyCheck;
use crate::settings::Settings;

/// How often an install asks whether the check passed yet.
const POLL: Duration = Duration::from_millis(100);

/// The check's name in the health plugin (1 to 56 characters there).
pub fn check_name(service: &str) -> String {
    let name = format!("dockyard-{service}");
    if name.len() <= 56 {
        return name;
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(service.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("dockyard-{}-{tag}", &service[..37])
}

/// The probe's target with `{ip}` replaced.
pub fn target(service: &str, check: &ReadyCheck, ip: Option<&str>) -> Result<String, CommandError> {
    if !check.check.contains("{ip}") {
        return Ok(check.check.clone());
    }
    let ip = ip.ok_or_else(|| {
        CommandError::invalid(format!(
            "service {service}: its ready check uses {{ip}}, but its container has no bridge address (it declares no port)"
        ))
    })?;
    Ok(check.check.replace("{ip}", ip))
}

/// Fails unless the health plugin answers: checked before anything of a
/// service that declares `ready` is made.
pub fn available(settings: &Settings, service: &str) -> Result<(), CommandError> {
    commands::call(&settings.health_plugin, "status", b"null")
        .map(|_| ())
        .map_err(|err| {
            CommandError::new(
                ErrorCode::Unavailable,
                format!(
                    "service {service} declares a ready check, but the {} plugin cannot be asked: {err}",
                    settings.health_plugin
                ),
            )
        })
}

/// Adds (or replaces) the service's check, for the container as it runs now.
pub fn register(
    settings: &Settings,
    service: &str,
    check: &ReadyCheck,
) -> Result<(), CommandError> {
    let ip = container::info(service).ok().and_then(|info| info.ip);
    let target = target(service, check, ip.as_deref())?;
    let request = json!({
        "name": check_name(service),
        "target": target,
        "interval-ms": check.interval_ms,
        "timeout-ms": check.timeout_ms,
        "replace": true,
    });
    commands::call_json::<_, serde_json::Value>(&settings.health_plugin, "add", &request)
        .map(|_| ())
        .map_err(|err| {
            CommandError::new(
                ErrorCode::Unavailable,
                format!("service {service}: its ready check was not added: {err}"),
            )
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CheckStatus {
    state: String,
    #[serde(default)]
    last_error: Option<String>,
}

fn status(settings: &Settings, service: &str) -> Result<CheckStatus, String> {
    commands::call_json(
        &settings.health_plugin,
        "get",
        &json!({"name": check_name(service)}),
    )
    .map_err(|err| err.to_string())
}

/// Waits for the first healthy probe, up to the check's start timeout.
pub fn wait(settings: &Settings, service: &str, check: &ReadyCheck) -> Result<(), CommandError> {
    let deadline = Instant::now() + Duration::from_millis(check.start_timeout_ms);
    loop {
        let last = match status(settings, service) {
            Ok(status) if status.state == "healthy" => return Ok(()),
            Ok(status) => status.last_error.unwrap_or(status.state),
            Err(err) => err,
        };
        if Instant::now() >= deadline {
            return Err(CommandError::new(
                ErrorCode::Unavailable,
                format!(
                    "service {service} is installed but not ready after {:?}: {last} (`cairn service list` shows it)",
                    Duration::from_millis(check.start_timeout_ms)
                ),
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether an installed service is ready, and if not, why.
pub fn readiness(settings: &Settings, record: &Record) -> Result<(), String> {
    if !container::info(&record.service).is_ok_and(|info| info.running) {
        return Err("its container is not running".into());
    }
    if record.ready.is_none() {
        return Ok(());
    }
    match status(settings, &record.service) {
        Ok(status) if status.state == "healthy" => Ok(()),
        Ok(status) => Err(format!(
            "its ready check is {}{}",
            status.state,
            status
                .last_error
                .map(|error| format!(": {error}"))
                .unwrap_or_default()
        )),
        Err(err) => Err(format!("its ready check cannot be read: {err}")),
    }
}

/// After the service's container started again: its check follows it.
pub fn refresh(settings: &Settings, record: &Record) {
    if let Some(check) = &record.ready
        && let Err(err) = register(settings, &record.service, check)
    {
        cairn_sdk::warn!("{err}");
    }
}

/// Removes the service's check, if it had one.
pub fn forget(settings: &Settings, record: &Record) {
    if record.ready.is_some()
        && let Err(err) = commands::call_json::<_, serde_json::Value>(
            &settings.health_plugin,
            "remove",
            &json!({"name": check_name(&record.service)}),
        )
    {
        cairn_sdk::warn!("the ready check of service {} stays: {err}", record.service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_fit_the_health_plugin() {
        assert_eq!(check_name("db"), "dockyard-db");
        let long = "a".repeat(63);
        let name = check_name(&long);
        assert!(name.len() <= 56, "{name}");
        assert_ne!(name, check_name(&"a".repeat(62)));
    }

    #[test]
    fn targets_get_the_containers_address() {
        let check = ReadyCheck {
            check: "tcp://{ip}:5432".into(),
            interval_ms: 1000,
            timeout_ms: 1000,
            start_timeout_ms: 1000,
        };
        assert_eq!(
            target("db", &check, Some("10.1.0.2")).unwrap(),
            "tcp://10.1.0.2:5432"
        );
        let error = target("db", &check, None).unwrap_err();
        assert!(error.to_string().contains("no bridge address"), "{error}");
    }
}
