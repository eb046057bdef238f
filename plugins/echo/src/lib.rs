//! `echo`: reflects what it is sent.
//!
//! Events on `echo/in/<rest>` are republished unchanged on `echo/out/<rest>`.
//!
//! Commands:
//! - `echo` → the payload, unchanged
//! - `facts` → the device's system facts as JSON
//! - `relay`, payload `{"plugin":"..","command":"..","payload":<json>}` → calls
//!   that plugin's command with the JSON payload and returns its reply unchanged
//! - `version` → `{"version":"..."}`

use cairn_sdk::{Config, Event, Plugin, commands, events, parse_payload, system};
use serde::Deserialize;

const INPUT_PATTERN: &str = "echo/in/#";
const INPUT_PREFIX: &str = "echo/in";
const OUTPUT_PREFIX: &str = "echo/out";

struct Echo;

#[derive(Deserialize)]
struct RelayRequest {
    plugin: String,
    command: String,
    /// Forwarded as JSON; `null` when absent, as `cairn call` sends without an argument.
    #[serde(default)]
    payload: serde_json::Value,
}

/// Maps `echo/in/<rest>` to `echo/out/<rest>`, and `echo/in` itself (which
/// the `#` wildcard also matches) to `echo/out`.
fn output_topic(input: &str) -> Option<String> {
    let rest = input.strip_prefix(INPUT_PREFIX)?;
    (rest.is_empty() || rest.starts_with('/')).then(|| format!("{OUTPUT_PREFIX}{rest}"))
}

fn relay(payload: &[u8]) -> Result<Vec<u8>, String> {
    let request: RelayRequest = parse_payload(payload)?
        .ok_or(r#"relay expects {"plugin":..,"command":..,"payload":..}"#)?;
    let forwarded = serde_json::to_vec(&request.payload).map_err(|e| e.to_string())?;
    Ok(commands::call(
        &request.plugin,
        &request.command,
        &forwarded,
    )?)
}

impl Plugin for Echo {
    fn init(_config: Config) -> Result<Self, String> {
        events::subscribe(INPUT_PATTERN)?;
        cairn_sdk::info!("echo ready, relaying {INPUT_PATTERN} to {OUTPUT_PREFIX}/#");
        Ok(Echo)
    }

    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "echo" => Ok(payload.to_vec()),
            "facts" => serde_json::to_vec(&system::facts()?).map_err(|e| e.to_string()),
            "relay" => relay(payload),
            "version" => {
                serde_json::to_vec(&serde_json::json!({ "version": cairn_sdk::plugin_version!() }))
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        let topic = output_topic(&event.topic)
            .ok_or_else(|| format!("event on `{}` is outside {INPUT_PATTERN}", event.topic))?;
        Ok(events::publish(&topic, &event.payload)?)
    }
}

cairn_sdk::export_plugin!(Echo);
