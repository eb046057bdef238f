//! `mqtt-adapter`: the device's control plane over MQTT.
//!
//! - Commands arrive on `cairn/{device}/cmd/{target}/{command}` and their
//!   replies leave on `cairn/{device}/resp/{target}/{command}`, carrying the
//!   request's correlation id (see [`protocol`] for the payloads). The target
//!   `host` is the device itself (see [`device`]); any other target is a
//!   plugin, reached through its `on-command`.
//! - A command whose id was seen before is not run again: its first reply is
//!   sent again ([`dedupe`]).
//! - Installs run in the background; their reply is sent when they end, by
//!   whichever release of this adapter then serves — the new one when the
//!   adapter replaced itself.
//! - Every `report-interval` the device's state (installed plugins) and health
//!   go out, retained, on `cairn/{device}/events/state` and `.../events/health`.
//!
//! Replies and reports are published at QoS 1, so while the broker is away
//! they wait in the host's outbox and arrive in order later.

mod dedupe;
mod device;
mod protocol;

use std::time::Duration;

use cairn_sdk::mqtt::{self, QoS};
use cairn_sdk::plugins::{INSTALL_FINISHED, InstallFinished};
use cairn_sdk::{Config, ErrorBody, Event, Plugin, commands, timer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use dedupe::{Remembered, Verdict};
use device::Outcome;
use protocol::{Failure, as_json, parse_request, parse_topic, reply, reply_topic};

const COMMANDS: &str = "cairn/{device}/cmd/#";
const STATE_TOPIC: &str = "cairn/{device}/events/state";
const HEALTH_TOPIC: &str = "cairn/{device}/events/health";
const REPORT_TIMER: &str = "report";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    /// The `[mqtt.brokers.<name>]` to serve on.
    #[serde(default = "default_broker")]
    broker: String,
    #[serde(default = "default_report_interval")]
    report_interval_secs: u64,
    /// How many recent correlation ids are remembered.
    #[serde(default = "default_remember")]
    remember: usize,
    /// Larger command payloads are refused with `too-large`.
    #[serde(default = "default_max_command_bytes")]
    max_command_bytes: usize,
}

fn default_broker() -> String {
    "local".into()
}
fn default_report_interval() -> u64 {
    30
}
fn default_remember() -> usize {
    256
}
fn default_max_command_bytes() -> usize {
    64 * 1024
}

/// What a background install needs to reply: carried as its tag.
#[derive(Serialize, Deserialize)]
struct ReplyTo {
    id: String,
    topic: String,
}

struct Adapter {
    settings: Settings,
    seen: Remembered,
}

impl Adapter {
    fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        if let Err(err) = mqtt::publish(
            &self.settings.broker,
            topic,
            payload,
            QoS::AtLeastOnce,
            retain,
        ) {
            cairn_sdk::warn!("publishing on {topic}: {err}");
        }
    }

    fn send_reply(&mut self, id: Option<&str>, topic: &str, outcome: Result<Value, Failure>) {
        let payload = reply(id, outcome);
        self.publish(topic, &payload, false);
        if let Some(id) = id
            && let Err(err) = self.seen.finish(id, topic, &payload)
        {
            cairn_sdk::warn!("remembering command {id}: {err}");
        }
    }

    fn report(&self) {
        for (topic, body) in [
            (STATE_TOPIC, device::state_json()),
            (HEALTH_TOPIC, device::health_json()),
        ] {
            match body {
                Ok(body) => self.publish(topic, body.to_string().as_bytes(), true),
                Err(failure) => cairn_sdk::warn!("report {topic}: {}", failure.message),
            }
        }
    }

    fn on_mqtt_command(&mut self, topic: &str, payload: &[u8]) {
        let reply_to = reply_topic(topic);
        if payload.len() > self.settings.max_command_bytes {
            let message = format!(
                "the command is {} bytes; at most {} are accepted",
                payload.len(),
                self.settings.max_command_bytes
            );
            return self.send_reply(None, &reply_to, Err(Failure::new("too-large", message)));
        }
        let request = match parse_request(payload) {
            Ok(request) => request,
            Err((id, failure)) => return self.send_reply(id.as_deref(), &reply_to, Err(failure)),
        };
        let id = request.id;
        let Some(route) = parse_topic(topic) else {
            let message = "command topics are cairn/{device}/cmd/{plugin or host}/{command}";
            return self.send_reply(Some(&id), &reply_to, Err(Failure::new("invalid", message)));
        };
        match self.seen.check(&id) {
            Ok(Verdict::New) => {}
            Ok(Verdict::Replay(topic, payload)) => return self.publish(&topic, &payload, false),
            Ok(Verdict::Running) => return,
            Err(err) => cairn_sdk::warn!("looking up command {id}: {err}"),
        }
        let outcome = if route.target == "host" {
            let tag = serde_json::to_string(&ReplyTo {
                id: id.clone(),
                topic: reply_to.clone(),
            })
            .unwrap_or_default();
            if route.command == "install" {
                cairn_sdk::info!("command {id}: install {}", request.payload);
            }
            device::run(route.command, request.payload, &tag)
        } else {
            Outcome::Done(call_plugin(route.target, route.command, &request.payload))
        };
        match outcome {
            Outcome::Done(result) => self.send_reply(Some(&id), &reply_to, result),
            Outcome::Started => {
                if let Err(err) = self.seen.running(&id) {
                    cairn_sdk::warn!("remembering command {id}: {err}");
                }
            }
        }
    }

    fn on_install_finished(&mut self, payload: &[u8]) -> Result<(), String> {
        let finished = InstallFinished::parse(payload)?;
        let to: ReplyTo = serde_json::from_str(&finished.tag).map_err(|e| e.to_string())?;
        let outcome = match (finished.ok, finished.plugin, finished.error) {
            (true, Some(plugin), _) => Ok(plugin),
            (_, _, Some(error)) => Err(Failure::new(error.code, error.message)),
            _ => Err(Failure::new(
                "internal",
                "the host's install report is incomplete",
            )),
        };
        self.send_reply(Some(&to.id), &to.topic, outcome);
        self.report();
        Ok(())
    }
}

fn call_plugin(plugin: &str, command: &str, payload: &Value) -> Result<Value, Failure> {
    let bytes = serde_json::to_vec(payload).map_err(|e| Failure::new("invalid", e.to_string()))?;
    match commands::call(plugin, command, &bytes) {
        Ok(reply) => Ok(as_json(&reply)),
        Err(commands::CallError::Host(err)) => Err(err.into()),
        // A typed command's error is an error body: its message is what
        // people need, its code what programs branch on.
        Err(commands::CallError::Plugin(text)) => match ErrorBody::parse(&text) {
            Some(body) => Err(Failure {
                plugin_code: Some(body.code),
                ..Failure::new("plugin-error", body.message)
            }),
            None => Err(Failure::new("plugin-error", text)),
        },
        Err(commands::CallError::Json(message)) => Err(Failure::new("invalid", message)),
    }
}

impl Plugin for Adapter {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.report_interval_secs == 0 {
            return Err("report-interval-secs must be at least 1".into());
        }
        let seen = Remembered::load(settings.remember)?;
        mqtt::subscribe(&settings.broker, COMMANDS, QoS::AtLeastOnce)?;
        timer::interval(
            Duration::from_secs(settings.report_interval_secs),
            REPORT_TIMER,
        )?;
        let adapter = Adapter { settings, seen };
        adapter.report();
        cairn_sdk::info!(
            "mqtt-adapter {} serving commands on broker `{}`",
            protocol::SERVED_BY,
            adapter.settings.broker
        );
        Ok(adapter)
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if event.is_timer() {
            self.report();
        } else if event.source == "host" && event.topic == INSTALL_FINISHED {
            self.on_install_finished(&event.payload)?;
        } else if event.source.starts_with("mqtt:") {
            self.on_mqtt_command(&event.topic, &event.payload);
        }
        Ok(())
    }
}

cairn_sdk::export_plugin!(Adapter);
