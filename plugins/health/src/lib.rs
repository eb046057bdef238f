//! `health`: health checks of HTTP, TCP and command targets.
//!
//! Checks come from the policy's `[[config.checks]]` and from other plugins'
//! `add` commands (kept in the key-value store, so they survive restarts and
//! swaps). One periodic timer (`tick-ms`) runs the checks that are due, one
//! after the other: the plugin does one thing at a time, so a slow probe delays
//! the others, by at most its `timeout-ms`.
//!
//! Each probe's outcome moves the check between `unknown`, `healthy` and
//! `unhealthy` (after `success-threshold` consecutive successes or
//! `failure-threshold` consecutive failures). A change is published on
//! `health/changed/<name>`; the metrics `check_up{check}` and
//! `check_failures_total{check}` follow every probe. See `docs/health.md`.
//!
//! Commands: `add`, `remove`, `status`, `get`.

mod check;
mod probe;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_sdk::timer::now_ms;

use cairn_sdk::{
    CommandError, Commands, Config, Event, Health, Plugin, events, kv, metrics, timer,
};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use check::{CheckSpec, State, Status, Target};

const TICK_TOPIC: &str = "health/tick";
const KV_PREFIX: &str = "check/";
const DEFAULT_TICK_MS: u64 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    #[serde(default = "default_tick")]
    tick_ms: u64,
    #[serde(default)]
    checks: Vec<CheckSpec>,
}

fn default_tick() -> u64 {
    DEFAULT_TICK_MS
}

struct Entry {
    spec: CheckSpec,
    target: Target,
    /// Defined in the policy's `[config]` (cannot be removed by a command).
    from_config: bool,
    status: Status,
    due: Instant,
}

struct HealthPlugin {
    tick_ms: u64,
    checks: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    name: String,
}

/// What `snapshot` hands to the next release: each check's status.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    statuses: BTreeMap<String, Status>,
}

impl Entry {
    fn new(spec: CheckSpec, target: Target, from_config: bool) -> Entry {
        Entry {
            spec,
            target,
            from_config,
            status: Status::default(),
            due: Instant::now(),
        }
    }

    fn view(&self) -> Value {
        let spec = &self.spec;
        let status = &self.status;
        json!({
            "name": spec.name,
            "target": spec.target,
            "source": if self.from_config { "config" } else { "runtime" },
            "interval-ms": spec.interval_ms,
            "timeout-ms": spec.timeout_ms,
            "failure-threshold": spec.failure_threshold,
            "success-threshold": spec.success_threshold,
            "expect-status": spec.expect_status,
            "state": status.state.as_str(),
            "consecutive-failures": status.consecutive_failures,
            "consecutive-successes": status.consecutive_successes,
            "last-error": status.last_error,
            "last-latency-ms": status.last_latency_ms,
            "last-checked-ms": status.last_checked_ms,
        })
    }

    /// Probes once and records the outcome (state, metrics, change event).
    fn probe(&mut self) -> Result<(), probe::Failure> {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.spec.timeout_ms);
        let outcome = probe::run(
            &self.spec.name,
            &self.target,
            timeout,
            self.spec.expect_status,
        );
        let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.due = started + Duration::from_millis(self.spec.interval_ms);
        let result = outcome.as_ref().map(|_| ()).map_err(|f| f.message.clone());
        let changed = self.status.record(&self.spec, &result, latency, now_ms());
        self.publish_metrics(result.is_err());
        if let Some(previous) = changed {
            self.announce(previous);
        }
        outcome
    }

    fn publish_metrics(&self, failed: bool) {
        let labels = [("check", self.spec.name.as_str())];
        let up = if self.status.state == State::Healthy {
            1.0
        } else {
            0.0
        };
        if let Err(err) = metrics::gauge_set("check_up", &labels, up) {
            cairn_sdk::debug!("check_up for {}: {err}", self.spec.name);
        }
        if failed && let Err(err) = metrics::counter_add("check_failures_total", &labels, 1) {
            cairn_sdk::debug!("check_failures_total for {}: {err}", self.spec.name);
        }
    }

    fn announce(&self, previous: State) {
        let name = &self.spec.name;
        let state = self.status.state;
        let event = json!({
            "name": name,
            "state": state.as_str(),
            "previous": previous.as_str(),
            "error": self.status.last_error,
        });
        match state {
            State::Unhealthy => cairn_sdk::warn!(
                "check {name} is unhealthy: {}",
                self.status.last_error.as_deref().unwrap_or("")
            ),
            _ => cairn_sdk::info!("check {name} is {}", state.as_str()),
        }
        if let Err(err) = events::publish_json(&format!("health/changed/{name}"), &event) {
            cairn_sdk::warn!("cannot publish the change of {name}: {err}");
        }
    }
}

impl HealthPlugin {
    fn entry(&self, name: &str) -> Result<&Entry, CommandError> {
        self.checks
            .get(name)
            .ok_or_else(|| CommandError::not_found(format!("unknown check `{name}`")))
    }

    /// The name a `get` or `remove` is about.
    fn name_request(request: Option<NameRequest>, command: &str) -> Result<String, CommandError> {
        request
            .map(|request| request.name)
            .ok_or_else(|| CommandError::invalid(format!(r#"{command} expects {{"name": ".."}}"#)))
    }

    fn add(&mut self, spec: Option<CheckSpec>) -> Result<Value, CommandError> {
        let spec = spec.ok_or(CommandError::invalid(
            r#"add expects {"name": .., "target": .., "interval-ms": .., "timeout-ms": .., "failure-threshold": ..}"#,
        ))?;
        let target = spec.validate(self.tick_ms)?;
        // `replace` only ever replaces checks added by commands.
        if let Some(existing) = self.checks.get(&spec.name)
            && (!spec.replace || existing.from_config)
        {
            return Err(CommandError::conflict(format!(
                "a check named `{}` exists already; remove it first",
                spec.name
            )));
        }
        let mut entry = Entry::new(spec, target, false);
        // The first probe runs now, so a target the policy does not allow is
        // refused here rather than failing quietly later.
        if let Err(failure) = entry.probe()
            && failure.denied
        {
            return Err(CommandError::denied(format!(
                "target `{}` is not allowed by this plugin's policy: {}",
                entry.spec.target, failure.message
            )));
        }
        kv::set_json(&format!("{KV_PREFIX}{}", entry.spec.name), &entry.spec).map_err(|err| {
            CommandError::new(err.code(), format!("cannot store the check: {err}"))
        })?;
        cairn_sdk::info!("check {} added: {}", entry.spec.name, entry.spec.target);
        let view = entry.view();
        self.checks.insert(entry.spec.name.clone(), entry);
        Ok(view)
    }

    fn remove(&mut self, request: Option<NameRequest>) -> Result<Value, CommandError> {
        let name = Self::name_request(request, "remove")?;
        if self.entry(&name)?.from_config {
            return Err(CommandError::conflict(format!(
                "check `{name}` is defined in the policy's [config]; change the policy to remove it"
            )));
        }
        kv::delete(&format!("{KV_PREFIX}{name}")).map_err(|err| {
            CommandError::new(err.code(), format!("cannot delete the check: {err}"))
        })?;
        self.checks.remove(&name);
        if let Err(err) = metrics::gauge_set("check_up", &[("check", &name)], 0.0) {
            cairn_sdk::debug!("check_up for {name}: {err}");
        }
        cairn_sdk::info!("check {name} removed");
        Ok(json!({ "removed": name }))
    }

    fn status(&mut self, _: IgnoredAny) -> Result<Value, CommandError> {
        let all: Vec<Value> = self.checks.values().map(Entry::view).collect();
        Ok(json!({ "checks": all }))
    }

    fn get(&mut self, request: Option<NameRequest>) -> Result<Value, CommandError> {
        let name = Self::name_request(request, "get")?;
        Ok(self.entry(&name)?.view())
    }

    fn run_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .checks
            .iter()
            .filter(|(_, entry)| entry.due <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            if let Some(entry) = self.checks.get_mut(&name) {
                let _ = entry.probe();
            }
        }
    }
}

impl Plugin for HealthPlugin {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config
            .parse()
            .map_err(|err| format!("invalid [config]: {}", err.message()))?;
        if !(100..=60_000).contains(&settings.tick_ms) {
            return Err("[config] tick-ms must be from 100 to 60000".into());
        }
        let mut checks = BTreeMap::new();
        for spec in settings.checks {
            let target = spec
                .validate(settings.tick_ms)
                .map_err(|err| format!("[[config.checks]]: {err}"))?;
            if checks.contains_key(&spec.name) {
                return Err(format!(
                    "[[config.checks]]: `{}` is defined twice",
                    spec.name
                ));
            }
            checks.insert(spec.name.clone(), Entry::new(spec, target, true));
        }
        for key in kv::list_keys(KV_PREFIX).map_err(|err| err.to_string())? {
            let spec = match kv::get_json::<CheckSpec>(&key) {
                Ok(Some(spec)) => spec,
                Ok(None) => continue,
                Err(err) => {
                    cairn_sdk::warn!("ignoring the stored check {key}: {err}");
                    continue;
                }
            };
            if checks.contains_key(&spec.name) {
                cairn_sdk::warn!(
                    "ignoring the stored check {}: [config] defines one with that name",
                    spec.name
                );
                continue;
            }
            match spec.validate(settings.tick_ms) {
                Ok(target) => {
                    checks.insert(spec.name.clone(), Entry::new(spec, target, false));
                }
                Err(err) => cairn_sdk::warn!("ignoring the stored check {key}: {err}"),
            }
        }
        timer::interval(Duration::from_millis(settings.tick_ms), TICK_TOPIC)?;
        cairn_sdk::info!(
            "health ready with {} checks, ticking every {} ms",
            checks.len(),
            settings.tick_ms
        );
        Ok(HealthPlugin {
            tick_ms: settings.tick_ms,
            checks,
        })
    }

    fn commands() -> Commands<Self> {
        Commands::new()
            .command("add", Self::add)
            .command("remove", Self::remove)
            .command("status", Self::status)
            .command("get", Self::get)
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if event.is_timer() && event.topic == TICK_TOPIC {
            self.run_due();
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        let statuses = self
            .checks
            .iter()
            .map(|(name, entry)| (name.clone(), entry.status.clone()))
            .collect();
        serde_json::to_vec(&Snapshot { statuses }).ok()
    }

    fn restore(&mut self, state: &[u8]) -> Result<bool, String> {
        let Ok(snapshot) = serde_json::from_slice::<Snapshot>(state) else {
            return Ok(false);
        };
        for (name, status) in snapshot.statuses {
            if let Some(entry) = self.checks.get_mut(&name) {
                entry.status = status;
            }
        }
        Ok(true)
    }

    fn health(&self) -> Health {
        let unhealthy: Vec<&str> = self
            .checks
            .values()
            .filter(|entry| entry.status.state == State::Unhealthy)
            .map(|entry| entry.spec.name.as_str())
            .collect();
        if unhealthy.is_empty() {
            Health::Ok
        } else {
            Health::Degraded(format!("unhealthy checks: {}", unhealthy.join(", ")))
        }
    }
}

cairn_sdk::export_plugin!(HealthPlugin);

#[cfg(test)]
mod plugin_tests {
    use std::time::Duration;

    use cairn_sdk::http::{HttpError, HttpErrorKind};
    use cairn_sdk::testing::{Harness, response};
    use serde_json::{Value, json};

    use super::*;

    fn add(plugin: &mut Harness<HealthPlugin>, name: &str, target: &str) -> Result<Value, String> {
        let spec = json!({
            "name": name, "target": target, "interval-ms": 1000,
            "timeout-ms": 500, "failure-threshold": 1,
        });
        plugin.call("add", &spec).map_err(|err| err.to_string())
    }

    #[test]
    fn http_checks_follow_the_server() {
        let mut plugin = Harness::<HealthPlugin>::init("{}").unwrap();
        let host = plugin.host();
        host.on_http(|_| Ok(response(200, &[], "")));
        let view = add(&mut plugin, "web", "http://127.0.0.1:8080/health").unwrap();
        assert_eq!(view["state"], "healthy");
        assert_eq!(host.kv_keys(), vec!["check/web".to_string()]);
        assert_eq!(host.gauge("check_up{check=web}"), Some(1.0));

        host.on_http(|_| Ok(response(503, &[], "")));
        // `due` follows the real clock; the tick only runs what is due.
        plugin.plugin_mut().checks.get_mut("web").unwrap().due = Instant::now();
        plugin
            .advance(Duration::from_millis(DEFAULT_TICK_MS))
            .unwrap();
        let view: Value = plugin.call("get", &json!({"name": "web"})).unwrap();
        assert_eq!(view["state"], "unhealthy", "{view}");
        assert_eq!(view["last-error"], "HTTP status 503, expected 2xx or 3xx");
        let changed = host.published();
        assert_eq!(changed.last().unwrap().topic, "health/changed/web");
    }

    #[test]
    fn refused_targets_and_bad_calls_have_codes() {
        let mut plugin = Harness::<HealthPlugin>::init("{}").unwrap();
        plugin.host().on_http(|_| {
            Err(HttpError::new(
                HttpErrorKind::Denied,
                "the request is not allowed by [grants.http-client]",
            ))
        });
        let err = add(&mut plugin, "web", "http://10.0.0.1/").unwrap_err();
        assert!(err.starts_with("denied: "), "{err}");
        let err = plugin
            .call::<_, Value>("get", &json!({"name": "nope"}))
            .unwrap_err();
        assert_eq!(err.code, "not-found");
        let err = plugin.call::<_, Value>("frobnicate", &()).unwrap_err();
        assert!(err.message.contains("expected add, remove, status or get"));
    }
}
