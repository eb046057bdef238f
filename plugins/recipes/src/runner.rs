//! Running one component: installing its artifacts, running its scripts,
//! spawning and stopping its process, and its health check in the `health`
//! plugin.

use std::time::{Duration, Instant};

use cairn_sdk::process::{self, ProcessId, Spec};
use cairn_sdk::{Error, commands};
use serde_json::{Value, json};

use crate::artifact;
use crate::plan::Component;
use crate::recipe::{Recipe, Script, Unpack};
use crate::state::Record;
use crate::units;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SHELL: &str = "/bin/sh";
const CHMOD: &str = "/bin/chmod";
const DEFAULT_HEALTH_INTERVAL_MS: u64 = 2_000;
const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;

/// How a starting component is doing.
pub enum Readiness {
    Ready,
    NotYet,
    Failed(String),
}

pub struct Runner {
    /// Directory under which each component gets `components/<name>`.
    pub root: String,
    /// Name of the plugin running health checks.
    pub health_plugin: String,
    pub store: artifact::Store,
}

/// The health check name of a component, in the `health` plugin.
pub fn check_name(component: &str) -> String {
    format!("recipes.{component}")
}

impl Runner {
    pub fn component_dir(&self, name: &str) -> String {
        format!("{}/components/{name}", self.root)
    }

    /// Makes sure the component's artifacts and install script ran for its
    /// current recipe, then spawns its process. On success the record holds
    /// the process and is `starting`.
    pub fn launch(&mut self, component: &Component, record: &mut Record) -> Result<(), String> {
        let recipe = &component.recipe;
        let dir = self.component_dir(&component.name);
        if record.installed.as_deref() != Some(component.fingerprint.as_str()) {
            std::fs::create_dir_all(&dir).map_err(|err| format!("cannot create {dir}: {err}"))?;
            for artifact in &recipe.artifacts {
                let spec = artifact_spec(artifact);
                let installed = self
                    .store
                    .install(&spec, std::path::Path::new(&dir))
                    .map_err(|err| err.to_string())?;
                let executables: Vec<String> = installed
                    .executables
                    .iter()
                    .map(|path| format!("{dir}/{}", path.display()))
                    .collect();
                make_executable(&component.name, &executables)?;
                if let Ok(hex) = artifact::parse_sha256(&artifact.uri, &artifact.sha256) {
                    record.used_artifact(&hex);
                }
            }
            if let Some(install) = &recipe.lifecycle.install {
                self.run_script(component, "install", install, Duration::from_secs(120))?;
            }
            record.installed = Some(component.fingerprint.clone());
        }
        let Some(run) = recipe.run() else {
            return Ok(());
        };
        match &run.container {
            Some(container) => self.launch_container(component, container, record)?,
            None => self.launch_process(component, &dir, record)?,
        }
        record.health = None;
        let timing = recipe.timing();
        let started = record.started_at_ms;
        match &run.health {
            // Probed by this plugin inside the container (see container_runner).
            Some(health)
                if record.container.is_some()
                    && crate::container_runner::exec_check(Some(health)).is_some() =>
            {
                record.due_ms = started + units::millis(timing.start_timeout);
            }
            Some(health) => {
                self.register_health(component, health)?;
                record.due_ms = started + units::millis(timing.start_timeout);
            }
            None => record.due_ms = started + units::millis(timing.grace),
        }
        Ok(())
    }

    /// Spawns the component's process; fills the record.
    fn launch_process(
        &mut self,
        component: &Component,
        dir: &str,
        record: &mut Record,
    ) -> Result<(), String> {
        let recipe = &component.recipe;
        let dir = dir.to_string();
        if let Ok(Some(stale)) = process::find(&component.name)
            && stale.running()
        {
            // A process from an interrupted start; this launch replaces it.
            let _ = process::stop(stale.id, Duration::from_secs(2));
        }
        let spec = self.spawn_spec(component, &dir)?;
        let id = match process::spawn(&spec) {
            Ok(id) => id,
            Err(Error::Unavailable(message))
                if recipe.resources.cpu_millis().ok().flatten().is_none() =>
            {
                // No cgroup v2 here: the memory limit falls back to an
                // address-space limit, which setrlimit always enforces.
                let fallback = self.fallback_spec(component, &dir)?;
                let id = process::spawn(&fallback).map_err(|err| spawn_error(component, &err))?;
                record.limits_note = Some(format!(
                    "memory_limit enforced as an address-space limit (RLIMIT_AS): {message}"
                ));
                id
            }
            Err(Error::Unavailable(message)) => {
                return Err(format!(
                    "resources.cpu_quota cannot be enforced on this device: {message}"
                ));
            }
            Err(err) => return Err(spawn_error(component, &err)),
        };
        let info =
            process::info(id).map_err(|err| format!("process of {}: {err}", component.name))?;
        if record.limits_note.is_none() {
            record.limits_note = info.limits_note.clone();
        }
        record.process = Some(id.0);
        record.pid = Some(info.pid);
        record.started_at_ms = info.started_at_ms;
        Ok(())
    }

    fn spawn_spec(&self, component: &Component, dir: &str) -> Result<Spec, String> {
        let recipe = &component.recipe;
        let mut spec = self.base_spec(component, dir)?;
        let resources = &recipe.resources;
        if let Some(bytes) = resources.memory_bytes() {
            spec = spec.memory_max(bytes);
        }
        if let Some(millis) = resources.cpu_millis()? {
            spec = spec.cpu_max(millis);
        }
        Ok(spec)
    }

    fn fallback_spec(&self, component: &Component, dir: &str) -> Result<Spec, String> {
        let mut spec = self.base_spec(component, dir)?;
        if let Some(bytes) = component.recipe.resources.memory_bytes() {
            spec = spec.memory_bytes(bytes);
        }
        Ok(spec)
    }

    fn base_spec(&self, component: &Component, dir: &str) -> Result<Spec, String> {
        let recipe = &component.recipe;
        let run = recipe
            .run()
            .ok_or_else(|| format!("{} has no [lifecycle.run]", component.name))?;
        let exec = run
            .exec
            .as_ref()
            .ok_or_else(|| format!("{} has no [lifecycle.run.exec]", component.name))?;
        let exe = resolve(dir, &exec.command);
        let cwd = exec
            .working_dir
            .as_deref()
            .map_or_else(|| dir.to_string(), |wd| resolve(dir, wd));
        let mut spec = Spec::new(&component.name, &exe)
            .args(&exec.args)
            .cwd(&cwd)
            .no_new_privs(run.security.no_new_privileges);
        for (key, value) in self.environment(component, &exec.env) {
            spec = spec.env(&key, &value);
        }
        if let Some(user) = &run.security.user {
            spec = spec.user(user);
        }
        if let Some(group) = &run.security.group {
            spec = spec.group(group);
        }
        for capability in &run.security.capabilities {
            spec = spec.keep_capability(capability);
        }
        if let Some(limit) = recipe.resources.open_files {
            spec = spec.open_files(limit);
        }
        Ok(spec)
    }

    fn environment(
        &self,
        component: &Component,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        let mut env = std::collections::BTreeMap::new();
        env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        env.insert("CAIRN_COMPONENT".to_string(), component.name.clone());
        env.insert(
            "CAIRN_COMPONENT_DIR".to_string(),
            self.component_dir(&component.name),
        );
        env.extend(extra.clone());
        env.into_iter().collect()
    }

    /// Runs a lifecycle script with `/bin/sh -c` and waits for it (bounded by
    /// its timeout): a non-zero exit is an error carrying its last output.
    pub fn run_script(
        &self,
        component: &Component,
        stage: &str,
        script: &Script,
        default_timeout: Duration,
    ) -> Result<(), String> {
        let recipe = &component.recipe;
        let timeout = script
            .timeout
            .as_deref()
            .and_then(|text| units::duration(text).ok())
            .unwrap_or(default_timeout);
        let dir = self.component_dir(&component.name);
        let empty = std::collections::BTreeMap::new();
        let exec_env = recipe
            .run()
            .and_then(|run| run.exec.as_ref())
            .map_or(&empty, |exec| &exec.env);
        let mut spec = Spec::new(&format!("{}.{stage}", component.name), SHELL)
            .args(["-c", script.script.as_str()])
            .cwd(&dir)
            .no_new_privs(true);
        for (key, value) in self.environment(component, exec_env) {
            spec = spec.env(&key, &value);
        }
        if let Some(user) = recipe.run().and_then(|run| run.security.user.as_ref()) {
            spec = spec.user(user);
        }
        let id = process::spawn(&spec)
            .map_err(|err| format!("{stage} script of {}: {err}", component.name))?;
        let (outcome, tail) = run_to_end(id, timeout);
        match outcome {
            Ok(Some(0)) => Ok(()),
            Ok(code) => Err(format!(
                "{stage} script of {} failed ({}){}",
                component.name,
                code.map_or("killed by a signal".to_string(), |code| format!(
                    "exit code {code}"
                )),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )),
            Err(err) => Err(format!("{stage} script of {}: {err}", component.name)),
        }
    }

    /// Stops the component's process (shutdown script first, then SIGTERM,
    /// then SIGKILL after its stop grace) and removes its health check.
    pub fn stop(&mut self, component: Option<&Component>, record: &mut Record) {
        let recipe = component.map(|component| &component.recipe);
        if let (Some(component), Some(shutdown)) = (
            component,
            recipe.and_then(|recipe| recipe.lifecycle.shutdown.as_ref()),
        ) && record.has_workload()
            && let Err(err) =
                self.run_script(component, "shutdown", shutdown, Duration::from_secs(30))
        {
            cairn_sdk::warn!("{err}");
        }
        let grace = recipe.map_or(Duration::from_secs(10), |recipe| recipe.timing().stop_grace);
        self.stop_container(record, grace);
        if let Some(id) = record.process.take() {
            match process::stop(ProcessId(id), grace) {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(err) => cairn_sdk::warn!("cannot stop {}: {err}", record.name),
            }
            let _ = process::forget(ProcessId(id));
        }
        record.pid = None;
        record.health = None;
        if component.is_some_and(|component| has_health(&component.recipe)) {
            self.unregister_health(&record.name);
        }
    }

    /// Whether a starting component became ready.
    pub fn readiness(&self, component: &Component, record: &mut Record, now_ms: u64) -> Readiness {
        let Some(run) = component.recipe.run() else {
            return Readiness::Ready;
        };
        if record.container.is_some()
            && crate::container_runner::exec_check(run.health.as_ref()).is_some()
        {
            return self.container_readiness(component, record, now_ms);
        }
        if let Some(health) = &run.health {
            match self.health_state(&component.name) {
                Ok((state, error)) => {
                    record.health = Some(state.clone());
                    if state == "healthy" {
                        return Readiness::Ready;
                    }
                    if now_ms >= record.due_ms {
                        return Readiness::Failed(format!(
                            "health check {} did not pass within {}{}",
                            health.check,
                            health.start_timeout.as_deref().unwrap_or("60s"),
                            error.map(|err| format!(": {err}")).unwrap_or_default()
                        ));
                    }
                    Readiness::NotYet
                }
                Err(err) => Readiness::Failed(err),
            }
        } else if now_ms >= record.due_ms {
            Readiness::Ready
        } else {
            Readiness::NotYet
        }
    }

    fn register_health(
        &self,
        component: &Component,
        health: &crate::recipe::HealthCheck,
    ) -> Result<(), String> {
        let name = check_name(&component.name);
        let millis = |value: &Option<String>, default: u64| {
            value
                .as_deref()
                .and_then(|text| units::duration(text).ok())
                .map_or(default, units::millis)
        };
        let request = json!({
            "name": name,
            "target": health.check,
            "interval-ms": millis(&health.interval, DEFAULT_HEALTH_INTERVAL_MS),
            "timeout-ms": millis(&health.timeout, DEFAULT_HEALTH_TIMEOUT_MS),
            "failure-threshold": health.failure_threshold.unwrap_or(3),
            // A check left from an earlier start of the component.
            "replace": true,
        });
        commands::call_json::<_, Value>(&self.health_plugin, "add", &request)
            .map(|_| ())
            .map_err(|err| format!("health check of {}: {err}", component.name))
    }

    pub fn unregister_health(&self, component: &str) {
        let name = check_name(component);
        if let Err(err) =
            commands::call_json::<_, Value>(&self.health_plugin, "remove", &json!({ "name": name }))
        {
            cairn_sdk::debug!("removing health check {name}: {err}");
        }
    }

    /// `(state, last error)` of the component's check.
    fn health_state(&self, component: &str) -> Result<(String, Option<String>), String> {
        let name = check_name(component);
        let view: Value = commands::call_json(&self.health_plugin, "get", &json!({ "name": name }))
            .map_err(|err| format!("health check of {component}: {err}"))?;
        let state = view["state"].as_str().unwrap_or("unknown").to_string();
        let error = view["last-error"].as_str().map(str::to_string);
        Ok((state, error))
    }
}

pub fn has_health(recipe: &Recipe) -> bool {
    recipe.run().is_some_and(|run| run.health.is_some())
}

fn spawn_error(component: &Component, err: &Error) -> String {
    match err {
        Error::Denied(message) => format!(
            "{} may not run: the policy's [grants.process] does not allow it ({message})",
            component.name
        ),
        other => format!("cannot start {}: {other}", component.name),
    }
}

/// Absolute paths stay; others are relative to the component's directory.
fn resolve(dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{dir}/{}", path.trim_start_matches("./"))
    }
}

/// WASI cannot set file modes, so executables from artifacts get theirs
/// from `chmod`, which the policy must allow (`args = ["0755", "**"]`).
fn make_executable(component: &str, paths: &[String]) -> Result<(), String> {
    if paths.is_empty() {
        return Ok(());
    }
    let spec = Spec::new(&format!("{component}.chmod"), CHMOD)
        .arg("0755")
        .args(paths)
        .no_new_privs(true);
    let id = process::spawn(&spec).map_err(|err| {
        format!("cannot make the artifact's executables executable ({CHMOD} 0755 must be in [grants.process]): {err}")
    })?;
    match run_to_end(id, Duration::from_secs(30)).0 {
        Ok(Some(0)) => Ok(()),
        Ok(code) => Err(format!("{CHMOD} 0755 failed ({code:?})")),
        Err(err) => Err(format!("{CHMOD} 0755: {err}")),
    }
}

/// Waits for a short-lived process (a script, `chmod`), then forgets it:
/// its exit code, or why it did not finish, and the end of its stderr.
fn run_to_end(id: ProcessId, timeout: Duration) -> (Result<Option<i32>, String>, String) {
    let outcome = wait(id, timeout);
    let tail = process::output(id, 512)
        .map(|out| String::from_utf8_lossy(&out.stderr).trim().to_string())
        .unwrap_or_default();
    let _ = process::forget(id);
    (outcome, tail)
}

/// Waits for a process to exit; on timeout it is killed.
fn wait(id: ProcessId, timeout: Duration) -> Result<Option<i32>, String> {
    let started = Instant::now();
    loop {
        let info = process::info(id).map_err(|err| err.to_string())?;
        if !info.running() {
            return Ok(info.exit_code);
        }
        if started.elapsed() >= timeout {
            let _ = process::stop(id, Duration::from_secs(1));
            return Err(format!("did not finish within {}s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn artifact_spec(artifact: &crate::recipe::Artifact) -> artifact::ArtifactSpec {
    let unpack = match &artifact.unpack {
        Unpack::Flag(false) => artifact::Unpack::None,
        Unpack::Flag(true) => artifact::Unpack::Auto,
        Unpack::Format(format) => match format.as_str() {
            "tar" => artifact::Unpack::Tar,
            "zip" => artifact::Unpack::Zip,
            _ => artifact::Unpack::TarGz,
        },
    };
    artifact::ArtifactSpec {
        uri: artifact.uri.clone(),
        sha256: artifact.sha256.clone(),
        unpack,
        sig_uri: artifact.sig_uri.clone(),
        headers: artifact.headers.clone(),
    }
}
