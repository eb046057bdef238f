//! `registry`: a managed site registry.
//!
//! The plugin prepares and supervises `docker-registry serve`: storage at the
//! configured path with deletion enabled, a fixed `http.secret`, HTTPS with a
//! certificate it is given or one it issues from a device CA it makes, and
//! htpasswd auth with a `build` (push) and a `runtime` (pull) user whose
//! passwords it generates and keeps in its private state directory. Secrets
//! never reach a log line, an event, a reply or a process argument.
//!
//! After every start a smoke check (push with `build`, pull by digest with
//! `runtime`, delete) runs; the registry is `ready` once it passes.
//!
//! Artifacts are published by digest (`publish`, `artifacts`); retention keeps
//! the latest `keep` of each environment and whatever is in use (`report-in-use`),
//! and `retention` shows what a prune would delete and why each digest stays.
//!
//! Commands: `status`, `credentials-fingerprint`, `rotate`, `smoke`, `publish`,
//! `artifacts`, `report-in-use`, `retention`.
//! See `docs/registry.md`.

mod api;
mod artifacts;
mod retention;
mod secrets;
mod service;
mod settings;
mod smoke;
mod tls;

#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;

use std::fs;
use std::time::Duration;

use cairn_sdk::process::{self, Exited, ProcessId};
use cairn_sdk::{CommandError, Commands, Config, Event, Plugin, commands, metrics, timer};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use secrets::{Credentials, User};
use settings::{Settings, TlsMode};

const RESTART_TOPIC: &str = "registry/restart";
const SMOKE_TOPIC: &str = "registry/smoke";
/// Smoke attempts after a start before the registry is reported failing.
const SMOKE_ATTEMPTS: u32 = 20;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Registry {
    settings: Settings,
    credentials: Credentials,
    process: Option<ProcessId>,
    restarts: u32,
    last_exit: Option<String>,
    smoke: Option<smoke::Report>,
    smoke_attempts: u32,
    smoke_round: u64,
    ready: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    user: User,
}

impl Registry {
    /// Asks the health plugin to probe the registry's port; the smoke check
    /// is what proves it works. Without a health plugin it only warns.
    fn register_health_check(&self) {
        if self.settings.health_plugin.is_empty() {
            return;
        }
        let request = json!({
            "name": "registry",
            "target": format!("tcp://{}", self.settings.listen),
            "interval-ms": 30000,
            "timeout-ms": 2000,
            "failure-threshold": 3,
            "replace": true,
        });
        if let Err(err) =
            commands::call_json::<_, Value>(&self.settings.health_plugin, "add", &request)
        {
            cairn_sdk::warn!(
                "the registry's port is not probed by {}: {err}",
                self.settings.health_plugin
            );
        }
    }

    fn after_start(&mut self, id: ProcessId) -> Result<(), String> {
        self.process = Some(id);
        self.ready = false;
        self.smoke_attempts = 0;
        timer::once(Duration::from_millis(300), SMOKE_TOPIC).map_err(|err| err.to_string())?;
        Ok(())
    }

    fn run_smoke(&mut self) -> smoke::Report {
        self.smoke_round += 1;
        let report = smoke::run(&self.settings.url(), &self.credentials, self.smoke_round);
        self.ready = report.ok;
        self.smoke = Some(report.clone());
        let total_ms: u64 = report.steps.iter().map(|step| step.ms).sum();
        gauge("registry_ready", if report.ok { 1.0 } else { 0.0 });
        gauge("registry_smoke_duration_seconds", total_ms as f64 / 1000.0);
        report
    }

    fn on_smoke_timer(&mut self) -> Result<(), String> {
        let report = self.run_smoke();
        if report.ok {
            cairn_sdk::info!("registry ready at {}", self.settings.url());
            // Registered once the port answers, so the first probe passes.
            self.register_health_check();
            return Ok(());
        }
        self.smoke_attempts += 1;
        if self.smoke_attempts < SMOKE_ATTEMPTS {
            timer::once(Duration::from_millis(500), SMOKE_TOPIC).map_err(|err| err.to_string())?;
        } else {
            let failed = report.steps.iter().find(|step| !step.ok);
            cairn_sdk::warn!(
                "the registry's smoke check keeps failing: {}",
                failed.map_or("no step ran".to_string(), |step| format!(
                    "{}: {}",
                    step.step, step.detail
                ))
            );
        }
        Ok(())
    }

    fn on_exit(&mut self, exited: &Exited) -> Result<(), String> {
        if exited.name != service::PROCESS {
            return Ok(());
        }
        let how = match (&exited.code, &exited.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("killed by {signal}"),
            (None, None) => "exited".to_string(),
        };
        cairn_sdk::warn!("the registry {how}; restarting it");
        let _ = process::forget(ProcessId(exited.id));
        self.process = None;
        self.ready = false;
        self.last_exit = Some(how);
        self.restarts += 1;
        gauge("registry_ready", 0.0);
        if let Err(err) = metrics::counter_add("registry_restarts_total", &[], 1) {
            cairn_sdk::debug!("metric registry_restarts_total: {err}");
        }
        let backoff = Duration::from_millis(250 << self.restarts.min(7)).min(MAX_BACKOFF);
        timer::once(backoff, RESTART_TOPIC).map_err(|err| err.to_string())?;
        Ok(())
    }

    fn status(&mut self, _: IgnoredAny) -> Result<Value, CommandError> {
        let running = self
            .process
            .and_then(|id| process::info(id).ok())
            .filter(|info| info.running());
        Ok(json!({
            "url": self.settings.url(),
            "tls": match self.settings.tls {
                TlsMode::DeviceCa => "device-ca",
                TlsMode::Provided => "provided",
                TlsMode::PlainHttpDevelopment => "plain-http-development",
            },
            "ca": (self.settings.tls == TlsMode::DeviceCa).then(|| self.settings.path("tls/ca.pem")),
            "storage": self.settings.storage,
            "running": running.is_some(),
            "pid": running.map(|info| info.pid),
            "ready": self.ready,
            "restarts": self.restarts,
            "last-exit": self.last_exit,
            "smoke": self.smoke,
        }))
    }

    fn fingerprints(&mut self, _: IgnoredAny) -> Result<Value, CommandError> {
        Ok(json!({
            "build": self.credentials.build.fingerprint(),
            "runtime": self.credentials.runtime.fingerprint(),
        }))
    }

    fn rotate(&mut self, request: Option<RotateRequest>) -> Result<Value, CommandError> {
        let request = request
            .ok_or_else(|| CommandError::invalid(r#"rotate expects {"user":"build"|"runtime"}"#))?;
        self.credentials
            .rotate(&self.settings.state, request.user)
            .map_err(CommandError::internal)?;
        cairn_sdk::info!("rotated the registry's {} credential", request.user.name());
        self.fingerprints(IgnoredAny)
    }

    fn smoke(&mut self, _: IgnoredAny) -> Result<smoke::Report, CommandError> {
        Ok(self.run_smoke())
    }

    fn api(&self) -> api::Api<'_> {
        api::Api {
            base: self.settings.url(),
            credentials: &self.credentials,
        }
    }

    fn publish(
        &mut self,
        request: Option<artifacts::PublishRequest>,
    ) -> Result<retention::Artifact, CommandError> {
        let request = request.ok_or_else(|| {
            CommandError::invalid(
                r#"publish expects {"repository":..,"tag":..,"environment":..,"revision":..}"#,
            )
        })?;
        let artifact = artifacts::publish(&self.api(), &self.settings.environments, request)?;
        if let Err(err) = metrics::counter_add(
            "registry_published_total",
            &[("environment", &artifact.environment)],
            1,
        ) {
            cairn_sdk::debug!("metric registry_published_total: {err}");
        }
        cairn_sdk::info!(
            "published {}:{} as {} for {}",
            artifact.repository,
            artifact.tag,
            artifact.digest,
            artifact.environment
        );
        Ok(artifact)
    }

    fn retention(&mut self, _: IgnoredAny) -> Result<retention::Plan, CommandError> {
        let recorded = artifacts::list()?;
        let inventory = self
            .api()
            .inventory(&recorded)
            .map_err(CommandError::internal)?;
        let in_use = artifacts::in_use()?;
        retention::plan(&recorded, &inventory, &in_use, self.settings.keep)
            .map_err(CommandError::invalid)
    }
}

/// Sets a gauge; a refused metric (over the policy's series limit) is logged.
fn gauge(name: &str, value: f64) {
    if let Err(err) = metrics::gauge_set(name, &[], value) {
        cairn_sdk::debug!("metric {name}: {err}");
    }
}

impl Plugin for Registry {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        settings.check()?;
        // The storage directory is the registry's own: it creates it.
        fs::create_dir_all(&settings.state)
            .map_err(|err| format!("cannot create {}: {err}", settings.state))?;
        if settings.tls == TlsMode::PlainHttpDevelopment {
            cairn_sdk::warn!(
                "the registry serves plain HTTP (tls = \"plain-http-development\"): for development only"
            );
        }
        let credentials = Credentials::load_or_create(&settings.state)?;
        let tls = service::tls_files(&settings)?;
        let text = service::render_config(&settings, &credentials, tls.as_ref());
        let changed = service::write_config(&settings, &text)?;
        let mut registry = Registry {
            settings,
            credentials,
            process: None,
            restarts: 0,
            last_exit: None,
            smoke: None,
            smoke_attempts: 0,
            smoke_round: 0,
            ready: false,
        };
        let id = service::start(&registry.settings, changed)?;
        registry.after_start(id)?;
        Ok(registry)
    }

    fn commands() -> Commands<Self> {
        Commands::new()
            .command("status", Self::status)
            .command("credentials-fingerprint", Self::fingerprints)
            .command("rotate", Self::rotate)
            .command("smoke", Self::smoke)
            .command("publish", Self::publish)
            .command("artifacts", |_, _: IgnoredAny| artifacts::list())
            .command(
                "report-in-use",
                |_, report: Option<artifacts::InUseReport>| {
                    let report = report.ok_or_else(|| {
                        CommandError::invalid(
                            r#"report-in-use expects {"device":..,"digests":{..}}"#,
                        )
                    })?;
                    artifacts::report_in_use(report)
                },
            )
            .command("retention", Self::retention)
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if let Some(exited) = Exited::from_event(&event) {
            return self.on_exit(&exited);
        }
        match event.topic.as_str() {
            SMOKE_TOPIC => self.on_smoke_timer(),
            RESTART_TOPIC => {
                let id = service::spawn(&self.settings)?;
                self.after_start(id)
            }
            _ => Ok(()),
        }
    }
}

cairn_sdk::export_plugin!(Registry);
