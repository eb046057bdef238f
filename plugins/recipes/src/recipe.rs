//! The recipe format: how to fetch, install, run, check and stop one
//! component. Keys follow Keystone's recipes (snake_case); see docs/recipes.md.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units;

/// A parsed recipe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Recipe {
    pub metadata: Metadata,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub publisher: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Artifact {
    pub uri: String,
    pub sha256: String,
    /// `true` (by the file extension), `false`, or `"tar"`, `"tar.gz"`, `"zip"`.
    #[serde(default)]
    pub unpack: Unpack,
    pub sig_uri: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Unpack {
    Flag(bool),
    Format(String),
}

impl Default for Unpack {
    fn default() -> Self {
        Unpack::Flag(false)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Lifecycle {
    pub install: Option<Script>,
    pub run: Option<Run>,
    pub reload: Option<Reload>,
    pub shutdown: Option<Script>,
}

/// A shell script (run with `/bin/sh -c`, so the policy must allow the shell).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Script {
    pub script: String,
    /// Default 2m for install, 30s for shutdown.
    pub timeout: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Run {
    #[serde(rename = "type", default)]
    pub kind: RunKind,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Restarts allowed before the component is marked failed (default 5).
    pub max_retries: Option<u32>,
    /// Without a health check, how long the process must stay up to count as ready (default 2s).
    pub grace: Option<String>,
    /// First restart delay, doubled on each further restart (default 1s).
    pub backoff: Option<String>,
    /// Cap of the restart delay (default 60s).
    pub backoff_max: Option<String>,
    /// How long SIGTERM has before SIGKILL when stopping (default 10s).
    pub stop_grace: Option<String>,
    pub exec: Option<Exec>,
    #[serde(default)]
    pub security: Security,
    pub health: Option<HealthCheck>,
    /// The container of a `type = "container"` run.
    pub container: Option<crate::container::ContainerRun>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    #[default]
    Process,
    Container,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    #[default]
    OnFailure,
    Always,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Exec {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Security {
    pub user: Option<String>,
    pub group: Option<String>,
    #[serde(default = "yes")]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            user: None,
            group: None,
            no_new_privileges: true,
            capabilities: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HealthCheck {
    /// `http://…`, `https://…`, `tcp://host:port` or `cmd:/path/to/exe args`.
    pub check: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub failure_threshold: Option<u32>,
    /// How long the first healthy probe may take after the start (default 60s).
    pub start_timeout: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Reload {
    /// Signal sent to the process (`HUP`, `USR1`…).
    pub signal: Option<String>,
    /// Or a shell script.
    pub script: Option<String>,
    pub grace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Resources {
    pub open_files: Option<u64>,
    /// Size, e.g. `"256MiB"`.
    pub memory_limit: Option<String>,
    /// CPUs: a number (`0.5`) or a percentage of one CPU (`"50%"`).
    pub cpu_quota: Option<CpuQuota>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum CpuQuota {
    Cpus(f64),
    Text(String),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Dependency {
    pub name: String,
    /// A semver requirement on the dependency's recipe version (`">=1.2"`).
    pub version: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: DependencyKind,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    /// Required; starts after it is ready; restarts and stops cascade.
    #[default]
    Hard,
    /// Starts after it is ready when it is in the plan; no cascade.
    Soft,
    /// Only orders the starts when both are in the plan.
    Ordering,
}

impl DependencyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyKind::Hard => "hard",
            DependencyKind::Soft => "soft",
            DependencyKind::Ordering => "ordering",
        }
    }
}

/// Timing and limits of a run section, with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub grace: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub stop_grace: Duration,
    pub start_timeout: Duration,
    pub max_retries: u32,
}

impl Recipe {
    /// Parses and checks a recipe; `source` names it in messages.
    pub fn parse(source: &str, text: &str) -> Result<Recipe, String> {
        let recipe: Recipe = crate::strict_toml::parse(source, text)?;
        recipe
            .validate()
            .map_err(|err| format!("{source}: {err}"))?;
        Ok(recipe)
    }

    /// Semantic checks the TOML schema cannot express.
    pub fn validate(&self) -> Result<(), String> {
        let meta = &self.metadata;
        if meta.name.trim().is_empty() {
            return Err("metadata.name is empty".into());
        }
        semver::Version::parse(&meta.version).map_err(|err| {
            format!(
                "metadata.version `{}` is not a semantic version: {err}",
                meta.version
            )
        })?;
        for (index, artifact) in self.artifacts.iter().enumerate() {
            artifact
                .validate()
                .map_err(|err| format!("artifacts[{index}]: {err}"))?;
        }
        for (section, script) in [
            ("lifecycle.install", &self.lifecycle.install),
            ("lifecycle.shutdown", &self.lifecycle.shutdown),
        ] {
            if let Some(script) = script {
                if script.script.trim().is_empty() {
                    return Err(format!("{section}.script is empty"));
                }
                if let Some(timeout) = &script.timeout {
                    units::duration(timeout).map_err(|err| format!("{section}.timeout: {err}"))?;
                }
            }
        }
        if let Some(run) = &self.lifecycle.run {
            run.validate()?;
        }
        if let Some(reload) = &self.lifecycle.reload {
            if reload.signal.is_some() == reload.script.is_some() {
                return Err("lifecycle.reload: give either signal or script".into());
            }
            if let Some(grace) = &reload.grace {
                units::duration(grace).map_err(|err| format!("lifecycle.reload.grace: {err}"))?;
            }
        }
        self.resources.validate()?;
        for dependency in &self.dependencies {
            if dependency.name.trim().is_empty() {
                return Err("dependencies: a dependency has an empty name".into());
            }
            if let Some(requirement) = &dependency.version {
                semver::VersionReq::parse(requirement).map_err(|err| {
                    format!(
                        "dependencies `{}`: version `{requirement}` is not a semver requirement: {err}",
                        dependency.name
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The run section (recipes without one only install).
    pub fn run(&self) -> Option<&Run> {
        self.lifecycle.run.as_ref()
    }

    pub fn timing(&self) -> Timing {
        let run = self.run();
        let pick = |value: Option<&String>, default: u64| {
            value
                .and_then(|text| units::duration(text).ok())
                .unwrap_or(Duration::from_millis(default))
        };
        Timing {
            grace: pick(run.and_then(|run| run.grace.as_ref()), 2_000),
            backoff: pick(run.and_then(|run| run.backoff.as_ref()), 1_000),
            backoff_max: pick(run.and_then(|run| run.backoff_max.as_ref()), 60_000),
            stop_grace: pick(run.and_then(|run| run.stop_grace.as_ref()), 10_000),
            start_timeout: pick(
                run.and_then(|run| run.health.as_ref())
                    .and_then(|health| health.start_timeout.as_ref()),
                60_000,
            ),
            max_retries: run.and_then(|run| run.max_retries).unwrap_or(5),
        }
    }
}

impl Artifact {
    fn validate(&self) -> Result<(), String> {
        if !(self.uri.starts_with("http://") || self.uri.starts_with("https://")) {
            return Err(format!("uri `{}` must be http:// or https://", self.uri));
        }
        let digest = self.sha256.strip_prefix("sha256:").unwrap_or(&self.sha256);
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "sha256 `{}` is not 64 hexadecimal digits",
                self.sha256
            ));
        }
        if let Unpack::Format(format) = &self.unpack
            && !matches!(format.as_str(), "tar" | "tar.gz" | "tgz" | "zip")
        {
            return Err(format!(
                "unpack `{format}`: expected true, false, \"tar\", \"tar.gz\" or \"zip\""
            ));
        }
        Ok(())
    }
}

impl Run {
    fn validate(&self) -> Result<(), String> {
        match (self.kind, &self.container, &self.exec) {
            (RunKind::Container, Some(container), None) => container.validate()?,
            (RunKind::Container, None, _) => {
                return Err(
                    "lifecycle.run type \"container\" needs [lifecycle.run.container] with an image"
                        .into(),
                );
            }
            (RunKind::Container, Some(_), Some(_)) => {
                return Err(
                    "lifecycle.run type \"container\" runs [lifecycle.run.container]; [lifecycle.run.exec] belongs to type \"process\""
                        .into(),
                );
            }
            (RunKind::Process, Some(_), _) => {
                return Err(
                    "[lifecycle.run.container] needs lifecycle.run type = \"container\"".into(),
                );
            }
            (RunKind::Process, None, None) => {
                return Err("lifecycle.run needs [lifecycle.run.exec] with a command".into());
            }
            (RunKind::Process, None, Some(exec)) if exec.command.trim().is_empty() => {
                return Err("lifecycle.run.exec.command is empty".into());
            }
            (RunKind::Process, None, Some(_)) => {}
        }
        for (key, value) in [
            ("grace", &self.grace),
            ("backoff", &self.backoff),
            ("backoff_max", &self.backoff_max),
            ("stop_grace", &self.stop_grace),
        ] {
            if let Some(value) = value {
                units::duration(value).map_err(|err| format!("lifecycle.run.{key}: {err}"))?;
            }
        }
        if let Some(health) = &self.health {
            let check = health.check.as_str();
            if !["http://", "https://", "tcp://", "cmd:"]
                .iter()
                .any(|scheme| check.starts_with(scheme))
            {
                return Err(format!(
                    "lifecycle.run.health.check `{check}`: expected http://, https://, tcp:// or cmd:"
                ));
            }
            for (key, value) in [
                ("interval", &health.interval),
                ("timeout", &health.timeout),
                ("start_timeout", &health.start_timeout),
            ] {
                if let Some(value) = value {
                    units::duration(value)
                        .map_err(|err| format!("lifecycle.run.health.{key}: {err}"))?;
                }
            }
            if health.failure_threshold == Some(0) {
                return Err("lifecycle.run.health.failure_threshold must be at least 1".into());
            }
        }
        Ok(())
    }
}

impl Resources {
    fn validate(&self) -> Result<(), String> {
        if self.open_files == Some(0) {
            return Err("resources.open_files must be at least 1".into());
        }
        if let Some(memory) = &self.memory_limit {
            units::size(memory).map_err(|err| format!("resources.memory_limit: {err}"))?;
        }
        self.cpu_millis()?;
        Ok(())
    }

    /// `cpu_quota` in thousandths of one CPU.
    pub fn cpu_millis(&self) -> Result<Option<u32>, String> {
        let cpus = match &self.cpu_quota {
            None => return Ok(None),
            Some(CpuQuota::Cpus(cpus)) => *cpus,
            Some(CpuQuota::Text(text)) => {
                let number = text.trim().strip_suffix('%').ok_or_else(|| {
                    format!(
                        "resources.cpu_quota `{text}`: expected a number of CPUs or a percentage"
                    )
                })?;
                number.trim().parse::<f64>().map_err(|_| {
                    format!(
                        "resources.cpu_quota `{text}`: expected a number of CPUs or a percentage"
                    )
                })? / 100.0
            }
        };
        if !(0.001..=1024.0).contains(&cpus) {
            return Err(format!("resources.cpu_quota {cpus} CPUs is out of range"));
        }
        Ok(Some((cpus * 1000.0).round() as u32))
    }

    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory_limit
            .as_ref()
            .and_then(|text| units::size(text).ok())
    }
}
