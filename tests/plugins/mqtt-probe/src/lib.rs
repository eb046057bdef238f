//! Test plugin `mqtt-probe`: calls `cairn:host/mqtt` on command and records
//! every event it receives, so end-to-end tests can read them back.
//!
//! Commands (JSON payloads):
//! - `publish` `{"broker","topic","payload","qos","retain"}` (payload a string,
//!   or `"size"` for that many bytes of `x`) → `{"ok":true}`
//! - `subscribe` `{"broker","filter","qos"}` → `{"ok":true}`
//! - `unsubscribe` `{"broker","filter"}` → `{"existed":bool}`
//! - `received` → `[{"topic","payload","source"}]`
//! - `version` → `{"version"}`
//!
//! `init` makes the subscriptions listed in the policy's `[config]` as
//! `subscribe = [{broker, filter, qos}]`, as a real plugin would.
//!
//! A refused call fails with `<kind>: <message>` (e.g. `denied: ...`).

use cairn_sdk::mqtt::{self, QoS};
use cairn_sdk::{Config, Event, Plugin};
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Probe {
    received: Vec<Received>,
}

#[derive(Serialize)]
struct Received {
    topic: String,
    payload: String,
    source: String,
}

#[derive(Deserialize)]
struct PublishRequest {
    broker: String,
    topic: String,
    #[serde(default)]
    payload: String,
    /// Sends this many bytes instead of `payload`.
    size: Option<usize>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

#[derive(Deserialize, Default)]
struct ProbeConfig {
    #[serde(default)]
    subscribe: Vec<SubscribeRequest>,
}

#[derive(Deserialize)]
struct SubscribeRequest {
    broker: String,
    filter: String,
    #[serde(default)]
    qos: u8,
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|err| format!("bad request: {err}"))
}

fn ok() -> Result<Vec<u8>, String> {
    Ok(br#"{"ok":true}"#.to_vec())
}

impl Plugin for Probe {
    fn init(config: Config) -> Result<Self, String> {
        let config: ProbeConfig = config.parse()?;
        for request in config.subscribe {
            mqtt::subscribe(&request.broker, &request.filter, qos(request.qos))?;
        }
        Ok(Probe::default())
    }

    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "publish" => {
                let request: PublishRequest = parse(payload)?;
                let body = match request.size {
                    Some(size) => vec![b'x'; size],
                    None => request.payload.into_bytes(),
                };
                mqtt::publish(
                    &request.broker,
                    &request.topic,
                    &body,
                    qos(request.qos),
                    request.retain,
                )?;
                ok()
            }
            "subscribe" => {
                let request: SubscribeRequest = parse(payload)?;
                mqtt::subscribe(&request.broker, &request.filter, qos(request.qos))?;
                ok()
            }
            "unsubscribe" => {
                let request: SubscribeRequest = parse(payload)?;
                let existed = mqtt::unsubscribe(&request.broker, &request.filter)?;
                serde_json::to_vec(&serde_json::json!({ "existed": existed }))
                    .map_err(|err| err.to_string())
            }
            "version" => {
                serde_json::to_vec(&serde_json::json!({ "version": cairn_sdk::plugin_version!() }))
                    .map_err(|err| err.to_string())
            }
            "received" => serde_json::to_vec(&self.received).map_err(|err| err.to_string()),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        self.received.push(Received {
            topic: event.topic,
            payload: String::from_utf8_lossy(&event.payload).into_owned(),
            source: event.source,
        });
        Ok(())
    }
}

cairn_sdk::export_plugin!(Probe);
