//! `echo`: reflects what it is sent.
//!
//! Events on `echo/in/<rest>` are republished unchanged on `echo/out/<rest>`.
//! It also listens to `counter/changed` (and to the patterns listed in
//! `[config] watch`, if any) and keeps the last events it received (including
//! its own timers), so the event bus can be watched from outside.
//!
//! Commands:
//! - `publish`, payload `{"topic":"echo/in/..","payload":<json>}` → publishes it
//! - `timer`, payload `{"after_ms":N,"topic":".."}` → sets a one-shot timer
//! - `events` → the last events received, newest last
//! - `echo` → the payload, unchanged
//! - `facts` → the device's system facts as JSON
//! - `relay`, payload `{"plugin":"..","command":"..","payload":<json>}` → calls
//!   that plugin's command with the JSON payload and returns its reply unchanged
//! - `version` → `{"version":"..."}`

use std::collections::VecDeque;
use std::time::Duration;

use cairn_sdk::{
    CommandError, Commands, Config, Event, Plugin, commands, events, parse_payload, system, timer,
};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const INPUT_PATTERN: &str = "echo/in/#";
const INPUT_PREFIX: &str = "echo/in";
const OUTPUT_PREFIX: &str = "echo/out";
const WATCHED: &str = "counter/changed";
const KEPT_EVENTS: usize = 16;

struct Echo {
    received: VecDeque<serde_json::Value>,
}

#[derive(Deserialize)]
struct Settings {
    /// Further patterns to subscribe to (the policy must allow them).
    #[serde(default)]
    watch: Vec<String>,
}

#[derive(Deserialize)]
struct PublishRequest {
    topic: String,
    #[serde(default)]
    payload: serde_json::Value,
}

#[derive(Deserialize)]
struct TimerRequest {
    after_ms: u64,
    topic: String,
}

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

/// A raw command: the reply is the other plugin's bytes, unchanged.
fn relay(_: &mut Echo, payload: &[u8]) -> Result<Vec<u8>, CommandError> {
    let request: RelayRequest = parse_payload(payload)?.ok_or(CommandError::invalid(
        r#"relay expects {"plugin":..,"command":..,"payload":..}"#,
    ))?;
    let forwarded = serde_json::to_vec(&request.payload)
        .map_err(|err| CommandError::internal(err.to_string()))?;
    Ok(commands::call(
        &request.plugin,
        &request.command,
        &forwarded,
    )?)
}

#[derive(Serialize)]
struct TimerReply {
    timer: u64,
}

impl Echo {
    fn publish(&mut self, request: Option<PublishRequest>) -> Result<Value, CommandError> {
        let request = request.ok_or(CommandError::invalid(
            r#"publish expects {"topic":..,"payload":..}"#,
        ))?;
        let bytes = serde_json::to_vec(&request.payload)
            .map_err(|err| CommandError::internal(err.to_string()))?;
        events::publish(&request.topic, &bytes)?;
        Ok(Value::Null)
    }

    fn timer(&mut self, request: Option<TimerRequest>) -> Result<TimerReply, CommandError> {
        let request = request.ok_or(CommandError::invalid(
            r#"timer expects {"after_ms":N,"topic":..}"#,
        ))?;
        let id = timer::once(Duration::from_millis(request.after_ms), &request.topic)?;
        Ok(TimerReply { timer: id.0 })
    }
}

impl Plugin for Echo {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        events::subscribe(INPUT_PATTERN)?;
        events::subscribe(WATCHED)?;
        for pattern in &settings.watch {
            events::subscribe(pattern)?;
        }
        cairn_sdk::info!("echo ready, relaying {INPUT_PATTERN} to {OUTPUT_PREFIX}/#");
        Ok(Echo {
            received: VecDeque::new(),
        })
    }

    fn commands() -> Commands<Self> {
        Commands::new()
            .raw("echo", |_, payload: &[u8]| {
                Ok::<_, CommandError>(payload.to_vec())
            })
            .command("facts", |_, _: IgnoredAny| {
                Ok::<_, CommandError>(system::facts()?)
            })
            .raw("relay", relay)
            .command("publish", Self::publish)
            .command("timer", Self::timer)
            .command("events", |this: &mut Self, _: IgnoredAny| {
                Ok::<_, CommandError>(this.received.clone())
            })
            .command("version", |_, _: IgnoredAny| {
                Ok::<_, CommandError>(json!({ "version": cairn_sdk::plugin_version!() }))
            })
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if self.received.len() == KEPT_EVENTS {
            self.received.pop_front();
        }
        let payload = serde_json::from_slice(&event.payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&event.payload).into_owned())
        });
        self.received.push_back(
            serde_json::json!({ "topic": event.topic, "source": event.source, "payload": payload }),
        );
        match output_topic(&event.topic) {
            Some(topic) => Ok(events::publish(&topic, &event.payload)?),
            None => Ok(()),
        }
    }
}

cairn_sdk::export_plugin!(Echo);
