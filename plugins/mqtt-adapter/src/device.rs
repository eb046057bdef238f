//! Commands addressed to the device itself (target `host`): the plugin
//! management operations and the device's health and metrics.

use cairn_sdk::plugins::{self, PluginInfo, Source};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::protocol::Failure;

/// How a device command went.
pub enum Outcome {
    Done(Result<Value, Failure>),
    /// Runs in the background; the reply comes with the install-finished event.
    Started,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallRequest {
    /// `oci://HOST/REPO:TAG`, `oci://HOST/REPO@sha256:..` or a cached `sha256:..` digest.
    source: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginRequest {
    plugin: String,
}

pub(crate) fn args<T: for<'de> Deserialize<'de>>(
    payload: Value,
    shape: &str,
) -> Result<T, Failure> {
    serde_json::from_value(payload)
        .map_err(|err| Failure::new("invalid", format!("expected a payload {shape}: {err}")))
}

pub fn info_json(info: &PluginInfo) -> Value {
    serde_json::to_value(info).unwrap_or(Value::Null)
}

pub fn state_json() -> Result<Value, Failure> {
    let plugins: Vec<Value> = plugins::list()?.iter().map(info_json).collect();
    Ok(json!({ "plugins": plugins }))
}

pub fn health_json() -> Result<Value, Failure> {
    let summary = plugins::health()?;
    serde_json::to_value(&summary).map_err(|err| Failure::new("internal", err.to_string()))
}

/// Runs `command` on the device; `tag` identifies a background install's reply.
pub fn run(command: &str, payload: Value, tag: &str) -> Outcome {
    let done = |result: Result<Value, Failure>| Outcome::Done(result);
    match command {
        "list" => done(state_json()),
        "health" => done(health_json()),
        "metrics" => done(plugins::metrics().map(Value::String).map_err(Failure::from)),
        "install" => {
            let request: InstallRequest =
                match args(payload, r#"{"source": "oci://..", "force": false}"#) {
                    Ok(request) => request,
                    Err(failure) => return done(Err(failure)),
                };
            let source = if request.source.starts_with("sha256:") {
                Source::Cached(request.source)
            } else {
                Source::Oci(request.source)
            };
            match plugins::start_install(source, request.force, tag) {
                Ok(()) => Outcome::Started,
                Err(err) => done(Err(err.into())),
            }
        }
        "rollback" | "remove" => {
            let request: PluginRequest = match args(payload, r#"{"plugin": "<name>"}"#) {
                Ok(request) => request,
                Err(failure) => return done(Err(failure)),
            };
            let result = if command == "rollback" {
                plugins::rollback(&request.plugin).map(|info| info_json(&info))
            } else {
                plugins::remove(&request.plugin).map(|()| Value::Null)
            };
            done(result.map_err(Failure::from))
        }
        other => done(Err(Failure::new(
            "not-found",
            format!(
                "unknown device command `{other}` (list, health, metrics, install, rollback, remove)"
            ),
        ))),
    }
}
