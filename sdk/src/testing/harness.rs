//! Driving a plugin the way the host does, against the fake host.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FakeHost;
use crate::{Commands, Config, ErrorBody, ErrorCode, Event, Health, Plugin};

/// One plugin instance on the fake host.
pub struct Harness<P: Plugin> {
    plugin: P,
    commands: Commands<P>,
}

impl<P: Plugin> Harness<P> {
    /// Empties this thread's fake host and starts the plugin with the JSON
    /// `config` (what the policy's `[config]` would give).
    pub fn init(config: &str) -> Result<Self, String> {
        FakeHost::reset();
        Harness::start(config)
    }

    /// Starts the plugin on the fake host as it is: with the keys, timers and
    /// scripted replies an earlier instance or the test left (a restart).
    pub fn start(config: &str) -> Result<Self, String> {
        let plugin = P::init(Config::new(config))?;
        let commands = P::commands();
        crate::runtime::declare_commands(&commands);
        Ok(Harness { plugin, commands })
    }

    /// The fake host, to inspect and script.
    pub fn host(&self) -> FakeHost {
        FakeHost
    }

    /// The plugin itself.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// The plugin itself, mutably.
    pub fn plugin_mut(&mut self) -> &mut P {
        &mut self.plugin
    }

    /// Runs a command with raw payload bytes, as the host does.
    pub fn command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        crate::runtime::run_command(&mut self.plugin, &self.commands, command, payload)
    }

    /// Runs a command with `args` as its JSON payload and decodes the JSON reply.
    ///
    /// A failure comes back as the [`ErrorBody`] the caller would see (plain
    /// text errors of a plugin's own `on_command` get the code `invalid`).
    pub fn call<A, R>(&mut self, command: &str, args: &A) -> Result<R, ErrorBody>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let payload = serde_json::to_vec(args)
            .map_err(|err| ErrorBody::new(ErrorCode::Invalid, err.to_string()))?;
        let reply = self
            .command(command, &payload)
            .map_err(|text| ErrorBody::parse_or(&text, ErrorCode::Invalid.as_str()))?;
        serde_json::from_slice(&reply).map_err(|err| {
            ErrorBody::new(
                ErrorCode::Invalid,
                format!("the reply to {command} does not decode: {err}"),
            )
        })
    }

    /// Delivers an event.
    pub fn event(&mut self, topic: &str, payload: &[u8], source: &str) -> Result<(), String> {
        self.plugin.on_event(Event {
            topic: topic.into(),
            payload: payload.into(),
            source: source.into(),
        })
    }

    /// Moves the fake clock forward and delivers the timer events that fell
    /// due, stopping at the first that fails.
    pub fn advance(&mut self, by: Duration) -> Result<(), String> {
        for event in self.host().advance(by) {
            self.plugin.on_event(event)?;
        }
        Ok(())
    }

    /// The plugin's health.
    pub fn health(&self) -> Health {
        self.plugin.health()
    }

    /// Stops the plugin, as the host does before dropping an instance.
    pub fn shutdown(mut self) {
        self.plugin.shutdown();
    }
}
