//! `recipes`: Keystone-style recipes and deployment plans of supervised
//! native processes.
//!
//! A plan lists components, each run from a recipe; recipes declare their
//! artifacts, lifecycle, health check, resources and dependencies. Applying a
//! plan starts it layer by layer along the dependency graph, each layer gated
//! on readiness (the `health` plugin's checks, or a grace period), and rolls
//! back to the previous plan when a component fails. Afterwards components
//! are supervised: restarted per their policy with backoff, hard dependents
//! following their dependency.
//!
//! Mechanism lives in the host (processes, HTTP, files, key-value store);
//! everything here is policy. State is kept in the key-value store, so a
//! restart of the daemon or a new release of this plugin carries on without
//! restarting healthy components. See docs/recipes.md.

// The caller (recipe installs) is still being written.
mod artifact;
mod commands;
mod container;
mod container_runner;
mod engine;
mod plan;
mod prune;
mod recipe;
mod runner;
mod state;
mod strict_toml;
mod supervise;
mod units;
mod vars;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use cairn_sdk::process::Exited;
use cairn_sdk::{Config, Event, Health, Plugin, events, timer};
use serde::Deserialize;

use engine::Engine;
use runner::Runner;
use state::{Phase, PlanPhase};
use vars::Vars;

const TICK_TOPIC: &str = "recipes/tick";
const HEALTH_EVENTS: &str = "health/changed/+";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    /// Components live in `<root>/components/<name>`, the artifact cache in
    /// `<root>/cache`; the policy must grant it in `[grants.files] write`.
    root: String,
    #[serde(default = "default_tick")]
    tick_ms: u64,
    #[serde(default = "default_health_plugin")]
    health_plugin: String,
    cache_limit: Option<String>,
    max_download: Option<String>,
    max_unpacked: Option<String>,
    #[serde(default)]
    artifact_keys: Vec<String>,
    #[serde(default)]
    vars: Vars,
}

fn default_tick() -> u64 {
    200
}

fn default_health_plugin() -> String {
    "health".into()
}

struct Recipes {
    engine: Engine,
    vars: Vars,
}

fn open_store(settings: &Settings) -> Result<artifact::Store, String> {
    let mut limits = artifact::Limits::default();
    let size = |value: &Option<String>, key: &str| -> Result<Option<u64>, String> {
        value
            .as_deref()
            .map(units::size)
            .transpose()
            .map_err(|err| format!("[config] {key}: {err}"))
    };
    if let Some(bytes) = size(&settings.cache_limit, "cache-limit")? {
        limits.cache_limit_bytes = bytes;
    }
    if let Some(bytes) = size(&settings.max_download, "max-download")? {
        limits.max_download_bytes = bytes;
    }
    if let Some(bytes) = size(&settings.max_unpacked, "max-unpacked")? {
        limits.max_unpacked_bytes = bytes;
    }
    let cache = format!("{}/cache", settings.root);
    artifact::Store::open(Path::new(&cache), limits, &settings.artifact_keys)
        .map_err(|err| format!("artifact cache {cache}: {err}"))
}

impl Plugin for Recipes {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config
            .parse()
            .map_err(|err| format!("invalid [config]: {}", err.message()))?;
        if !settings.root.starts_with('/') || settings.root.contains("..") {
            return Err("[config] root must be an absolute path".into());
        }
        if !(50..=10_000).contains(&settings.tick_ms) {
            return Err("[config] tick-ms must be from 50 to 10000".into());
        }
        std::fs::create_dir_all(format!("{}/components", settings.root)).map_err(|err| {
            format!(
                "cannot create {}/components (is it in [grants.files] write?): {err}",
                settings.root
            )
        })?;
        let store = open_store(&settings)?;
        let stored = state::load()?;
        let mut engine = Engine {
            runner: Runner {
                root: settings.root.clone(),
                health_plugin: settings.health_plugin.clone(),
                store,
            },
            applied: stored.applied,
            operation: stored.operation,
            status: stored.status,
            records: stored.records,
        };
        engine.resume();
        if let Err(err) = events::subscribe(HEALTH_EVENTS) {
            cairn_sdk::warn!("no health events ({err}); readiness is polled only");
        }
        timer::interval(Duration::from_millis(settings.tick_ms), TICK_TOPIC)?;
        cairn_sdk::info!(
            "recipes ready: {} components recorded, plan {}",
            engine.records.len(),
            engine.status.phase.as_str()
        );
        Ok(Recipes {
            engine,
            vars: settings.vars,
        })
    }

    fn commands() -> cairn_sdk::Commands<Self> {
        commands::declare()
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if event.is_timer() && event.topic == TICK_TOPIC {
            self.engine.drive();
            self.engine.supervise();
        } else if let Some(exited) = Exited::from_event(&event) {
            self.engine.on_exit(&exited);
        } else if let Some(exited) = cairn_sdk::container::Exited::from_event(&event) {
            self.engine.on_container_exit(&exited);
        } else if let Some(check) = event.topic.strip_prefix("health/changed/") {
            let Some(component) = check.strip_prefix("recipes.") else {
                return Ok(());
            };
            let change: serde_json::Value = event.json().map_err(|err| err.to_string())?;
            let state = change["state"].as_str().unwrap_or("unknown");
            let error = change["error"].as_str().map(str::to_string);
            self.engine.on_health(component, state, error);
        }
        Ok(())
    }

    fn health(&self) -> Health {
        let troubled: Vec<String> = self
            .engine
            .records
            .values()
            .filter(|record| {
                matches!(
                    record.phase,
                    Phase::Failed | Phase::Backoff | Phase::Waiting
                )
            })
            .map(|record| format!("{} {}", record.name, record.phase.as_str()))
            .collect();
        if self.engine.status.phase == PlanPhase::Failed {
            let error = self.engine.status.error.clone().unwrap_or_default();
            return Health::Degraded(format!("last operation failed: {error}"));
        }
        if troubled.is_empty() {
            Health::Ok
        } else {
            Health::Degraded(troubled.join(", "))
        }
    }
}

cairn_sdk::export_plugin!(Recipes);
