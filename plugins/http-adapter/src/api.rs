//! The handlers that read the device's state and reach other plugins.

use cairn_sdk::ErrorBody;
use cairn_sdk::commands::{self, CallError};
use cairn_sdk::plugins::{self, PluginInfo};
use serde_json::{Value, json};

use crate::errors::ApiError;
use cairn_sdk::http::server::Response;

/// `GET /healthz`: the summary status alone; 503 when failing (or unknown).
pub fn healthz() -> Response {
    match plugins::health() {
        Ok(summary) => {
            let status = if summary.status == "failing" {
                503
            } else {
                200
            };
            Response::json(status, &json!({ "status": summary.status }))
        }
        Err(err) => {
            cairn_sdk::warn!("healthz: reading health failed: {err}");
            Response::json(503, &json!({ "status": "failing" }))
        }
    }
}

/// `GET /metrics`: the host's Prometheus text, unchanged.
pub fn metrics() -> Result<Response, ApiError> {
    let text = plugins::metrics().map_err(ApiError::from_host)?;
    Ok(Response::bytes(
        200,
        "text/plain; version=0.0.4",
        text.into_bytes(),
    ))
}

/// `GET /v1/health`: every plugin's answer.
pub fn health() -> Result<Response, ApiError> {
    let summary = plugins::health().map_err(ApiError::from_host)?;
    Ok(Response::json(200, &to_json(&summary)))
}

/// A plugin as the API shows it (the same keys as `cairn --json plugin list`).
pub fn info_json(info: &PluginInfo) -> Value {
    to_json(info)
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `GET /v1/plugins`
pub fn list() -> Result<Response, ApiError> {
    let plugins = plugins::list().map_err(ApiError::from_host)?;
    let items: Vec<Value> = plugins.iter().map(info_json).collect();
    Ok(Response::json(200, &Value::Array(items)))
}

/// The installed plugin `name`, if any.
pub fn find(name: &str) -> Result<Option<PluginInfo>, ApiError> {
    let plugins = plugins::list().map_err(ApiError::from_host)?;
    Ok(plugins.into_iter().find(|p| p.name == name))
}

/// `GET /v1/plugins/{name}`
pub fn get(name: &str) -> Result<Response, ApiError> {
    match find(name)? {
        Some(info) => Ok(Response::json(200, &info_json(&info))),
        None => Err(ApiError::not_found(format!(
            "no plugin named `{name}` is installed"
        ))),
    }
}

/// `DELETE /v1/plugins/{name}`
pub fn remove(name: &str) -> Result<Response, ApiError> {
    plugins::remove(name).map_err(ApiError::from_host)?;
    Ok(Response::no_content())
}

/// `POST /v1/plugins/{name}/rollback`
pub fn rollback(name: &str) -> Result<Response, ApiError> {
    let info = plugins::rollback(name).map_err(ApiError::from_host)?;
    Ok(Response::json(200, &info_json(&info)))
}

/// `POST /v1/plugins/{name}/commands/{command}`: the body is the payload and
/// the reply is returned as it is. A command the plugin ran and refused
/// (including an unknown command) is `plugin-error`, 422; when the plugin
/// failed with an error body (the SDK's typed commands do), its message is
/// the reply's message and its code is kept as `plugin-code`.
pub fn command(name: &str, command: &str, payload: &[u8]) -> Result<Response, ApiError> {
    match commands::call(name, command, payload) {
        Ok(reply) => Ok(Response::bytes(200, "application/json", reply)),
        Err(CallError::Plugin(text)) => {
            let err = match ErrorBody::parse(&text) {
                Some(body) => {
                    let mut err = ApiError::new(422, "plugin-error", body.message);
                    err.plugin_code = Some(body.code);
                    err
                }
                None => ApiError::new(422, "plugin-error", text),
            };
            Err(err)
        }
        Err(CallError::Host(err)) => Err(ApiError::from_host(err)),
        Err(CallError::Json(message)) => Err(ApiError::new(500, "internal", message)),
    }
}
