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
//! `prune` deletes it under a maintenance lock (see [`prune`]), on command and
//! every `prune-interval`.
//!
//! Commands: `status`, `credentials-fingerprint`, `rotate`, `smoke`, `publish`,
//! `artifacts`, `report-in-use`, `retention`, `prune`.
//! See `docs/registry.md`.

mod api;
mod artifacts;
mod device;
mod login;
mod prune;
mod retention;
mod secrets;
mod served;
mod service;
mod settings;
mod smoke;
mod tls;
mod token;
mod usage;

#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use cairn_sdk::process::{self, Exited, ProcessId};
use cairn_sdk::timer::TimerId;
use cairn_sdk::{CommandError, Commands, Config, Event, Plugin, commands, metrics, timer};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use secrets::{Credentials, User};
use service::Mode;
use settings::{Settings, TlsMode};

const RESTART_TOPIC: &str = "registry/restart";
const SMOKE_TOPIC: &str = "registry/smoke";
const SCHEDULE_TOPIC: &str = "registry/prune-schedule";
/// A scheduled prune that finds the registry busy or not ready tries again after this.
const SCHEDULE_RETRY: Duration = Duration::from_secs(60);
/// Smoke attempts after a start before the registry is reported failing.
const SMOKE_ATTEMPTS: u32 = 20;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Registry {
    settings: Settings,
    credentials: Credentials,
    /// With token auth (`token-realm`): the key tokens are signed with.
    signer: Option<token::Signer>,
    process: Option<ProcessId>,
    /// A restart timer is set (the registry exited).
    restart_pending: bool,
    /// The timer of the next scheduled prune.
    next_prune: Option<TimerId>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PruneRequest {
    /// Only show what would be deleted.
    #[serde(default)]
    dry_run: bool,
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
        let report = smoke::run(&self.settings.url(), &self.login(), self.smoke_round);
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
        // Stopped on purpose (a mode switch) or garbage-collect: not a crash.
        if exited.name != service::PROCESS || self.process != Some(ProcessId(exited.id)) {
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
        self.restart_pending = true;
        Ok(())
    }

    /// The mode the registry must serve in: read-only while a prune collects garbage.
    fn wanted_mode() -> Mode {
        match prune::current() {
            Ok(Some(job)) => job.step.mode(),
            _ => Mode::ReadWrite,
        }
    }

    fn on_restart_timer(&mut self) -> Result<(), String> {
        self.restart_pending = false;
        if self.process.is_some() {
            // A prune step started it meanwhile.
            return Ok(());
        }
        let mode = Self::wanted_mode();
        let id = self.spawn_in(mode)?;
        if mode == Mode::ReadWrite {
            self.after_start(id)?;
        }
        Ok(())
    }

    /// Arms the next scheduled prune, `prune-interval` after the last one.
    fn schedule_next_prune(&mut self) {
        let Some(interval) = self.settings.prune_interval() else {
            return;
        };
        if let Some(old) = self.next_prune.take() {
            let _ = timer::cancel(old);
        }
        let last = prune::last().ok().flatten().map(|last| last.finished_ms);
        let now = prune::now_ms();
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let due = last.map_or(now.saturating_add(interval_ms), |last| {
            last.saturating_add(interval_ms)
        });
        // An overdue prune waits for the registry to settle after a start.
        let delay = Duration::from_millis(due.saturating_sub(now)).max(SCHEDULE_RETRY);
        match timer::once(delay, SCHEDULE_TOPIC) {
            Ok(id) => self.next_prune = Some(id),
            Err(err) => cairn_sdk::warn!("scheduled pruning is off: {err}"),
        }
    }

    fn on_schedule_timer(&mut self) -> Result<(), String> {
        self.next_prune = None;
        let started = self
            .retention_plan()
            .and_then(|plan| self.start_prune(&plan, "schedule"));
        if let Err(err) = started {
            cairn_sdk::warn!("the scheduled prune did not start: {}", err.message);
            if let Ok(id) = timer::once(SCHEDULE_RETRY, SCHEDULE_TOPIC) {
                self.next_prune = Some(id);
            }
        }
        Ok(())
    }

    fn status(&mut self, _: IgnoredAny) -> Result<Value, CommandError> {
        let running = self
            .process
            .and_then(|id| process::info(id).ok())
            .filter(|info| info.running());
        let maintenance = prune::current().map_err(CommandError::internal)?;
        let last_prune = prune::last().map_err(CommandError::internal)?;
        Ok(json!({
            "url": self.settings.url(),
            "auth": if self.signer.is_some() { "token" } else { "htpasswd" },
            "token-realm": self.settings.token_realm,
            "tls": match self.settings.tls {
                TlsMode::DeviceCa => "device-ca",
                TlsMode::Provided => "provided",
                TlsMode::PlainHttpDevelopment => "plain-http-development",
            },
            "ca": (self.settings.tls == TlsMode::DeviceCa).then(|| self.settings.path("tls/ca.pem")),
            "storage": self.settings.storage,
            "running": running.is_some(),
            "pid": running.as_ref().map(|info| info.pid),
            "mode": running.as_ref().map(|info| match service::mode_of(info) {
                Mode::ReadWrite => "read-write",
                Mode::ReadOnly => "read-only",
            }),
            "maintenance": maintenance.map(|job| json!({
                "step": job.step,
                "started-ms": job.started_ms,
                "trigger": job.trigger,
                "deleting": job.delete.len(),
            })),
            "last-prune": last_prune,
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

    /// How the plugin's own requests log in.
    fn login(&self) -> login::Login<'_> {
        login::Login {
            credentials: &self.credentials,
            tokens: self
                .signer
                .as_ref()
                .map(|signer| (signer, self.settings.service())),
        }
    }

    fn api(&self) -> api::Api<'_> {
        api::Api {
            base: self.settings.url(),
            login: self.login(),
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
        if let Some(job) = prune::current().map_err(CommandError::internal)? {
            return Err(prune::locked_error(&job));
        }
        let artifact = artifacts::publish(&self.api(), &self.settings.environments, request)?;
        record_artifact_count();
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
        self.retention_plan()
    }

    fn prune(&mut self, request: Option<PruneRequest>) -> Result<Value, CommandError> {
        let request = request.unwrap_or_default();
        let plan = self.retention_plan()?;
        if request.dry_run {
            return Ok(json!({ "dry-run": true, "plan": plan }));
        }
        let job = self.start_prune(&plan, "command")?;
        Ok(json!({
            "started-ms": job.started_ms,
            "deleting": job.delete.len(),
            "keeping": job.keep.len(),
            "plan": plan,
        }))
    }

    fn retention_plan(&self) -> Result<retention::Plan, CommandError> {
        let recorded = artifacts::list()?;
        let inventory = self
            .api()
            .inventory(&recorded)
            .map_err(CommandError::internal)?;
        let mut in_use = artifacts::in_use()?;
        add_manifests_of_blobs(&inventory, &mut in_use);
        add_local_plugins(&inventory, &mut in_use);
        retention::plan(&recorded, &inventory, &in_use, self.settings.keep)
            .map_err(CommandError::invalid)
    }
}

/// Devices report what they run by the digest they know: a container's
/// manifest, but a plugin's component or a recipe's artifact is a blob. A
/// manifest holding a reported blob is in use by the blob's users.
fn add_manifests_of_blobs(
    inventory: &retention::Inventory,
    in_use: &mut BTreeMap<String, Vec<String>>,
) {
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    for (digest, users) in in_use.iter() {
        for (_, manifest) in inventory.manifests_with_blob(digest) {
            found.push((manifest.clone(), users.clone()));
        }
    }
    for (manifest, users) in found {
        in_use.entry(manifest).or_default().extend(users);
    }
}

/// The plugins installed on this gateway are in use: each one's component
/// is the layer of the plugin manifest it was published as. Without the
/// `plugins` grant (`read`) there is nothing to add.
fn add_local_plugins(inventory: &retention::Inventory, in_use: &mut BTreeMap<String, Vec<String>>) {
    let installed = match cairn_sdk::plugins::list() {
        Ok(installed) => installed,
        Err(err) => {
            cairn_sdk::debug!("not counting this gateway's plugins: {err}");
            return;
        }
    };
    for plugin in installed {
        for (_, manifest) in inventory.manifests_with_blob(&plugin.digest) {
            in_use.entry(manifest.clone()).or_default().push(format!(
                "plugin {} {} on this gateway",
                plugin.name, plugin.version
            ));
        }
    }
}

/// `registry_artifacts`: the recorded artifacts.
fn record_artifact_count() {
    if let Ok(artifacts) = artifacts::list() {
        gauge("registry_artifacts", artifacts.len() as f64);
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
        let signer = match settings.token_realm {
            Some(_) => Some(token::Signer::load_or_create(&settings.path("token"))?),
            None => None,
        };
        let changed =
            service::write_configs(&settings, &credentials, tls.as_ref(), signer.as_ref())?;
        let mut registry = Registry {
            settings,
            credentials,
            signer,
            process: None,
            restart_pending: false,
            next_prune: None,
            restarts: 0,
            last_exit: None,
            smoke: None,
            smoke_attempts: 0,
            smoke_round: 0,
            ready: false,
        };
        // A prune interrupted by a crash goes on where it was.
        let job = prune::current()?;
        let mode = job.as_ref().map_or(Mode::ReadWrite, |job| job.step.mode());
        let id = service::start(&registry.settings, changed, mode)?;
        if mode == Mode::ReadWrite {
            registry.after_start(id)?;
        } else {
            registry.process = Some(id);
        }
        if let Some(job) = job {
            cairn_sdk::info!(
                "resuming the prune started at {} ms at step {:?}",
                job.started_ms,
                job.step
            );
            registry.schedule_prune(Duration::ZERO)?;
        }
        prune::record_usage(usage::measure(&registry.settings.storage));
        record_artifact_count();
        registry.schedule_next_prune();
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
            .command("prune", Self::prune)
            .command("device-config", |registry, _: IgnoredAny| {
                device::write(&registry.settings, &registry.credentials)
                    .map_err(CommandError::internal)
            })
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if let Some(exited) = Exited::from_event(&event) {
            return self.on_exit(&exited);
        }
        match event.topic.as_str() {
            SMOKE_TOPIC => self.on_smoke_timer(),
            RESTART_TOPIC => self.on_restart_timer(),
            prune::TOPIC => self.on_prune_timer(),
            SCHEDULE_TOPIC => self.on_schedule_timer(),
            _ => Ok(()),
        }
    }
}

cairn_sdk::export_plugin!(Registry);
cairn_sdk::export_http_handler!(served::Served);
