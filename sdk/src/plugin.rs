//! The trait a plugin implements, and the values the host hands to it.

use serde::de::DeserializeOwned;

use crate::{Commands, Error, Event};

/// A Cairn plugin.
///
/// Implement this for your plugin's state and export it with
/// [`export_plugin!`](crate::export_plugin). The host creates one instance per
/// running release through [`Plugin::init`] and then calls the other methods
/// one at a time; there is never concurrent access.
///
/// Every method except `init` has a default, so a plugin overrides only what it needs.
pub trait Plugin: Sized + 'static {
    /// Creates the plugin. Called once, before anything else.
    ///
    /// `config` is the `[config]` table of the plugin's policy. Subscriptions
    /// and timers belong to the running instance, so set them up here.
    /// An error aborts the start, or the hot swap when this is a new release.
    fn init(config: Config) -> Result<Self, String>;

    /// Declares the plugin's typed commands (see [`Commands`]).
    ///
    /// Called once, right after a successful `init`. Commands declared here
    /// are routed by name with their arguments decoded; anything else goes
    /// to [`Plugin::on_command`]. The default declares none.
    fn commands() -> Commands<Self> {
        Commands::new()
    }

    /// Handles a command that [`Plugin::commands`] does not declare, with
    /// raw payload and reply bytes (JSON by convention).
    ///
    /// The default fails with the JSON [`ErrorBody`](crate::ErrorBody) of a
    /// `not-found` error naming the command and listing the declared ones.
    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        let _ = payload;
        Err(crate::runtime::unknown_command(command))
    }

    /// Handles an event from a subscription or one of the plugin's timers.
    ///
    /// An error is logged and counted by the host; the publisher never sees it.
    fn on_event(&mut self, event: Event) -> Result<(), String> {
        let _ = event;
        Ok(())
    }

    /// Returns in-memory state to hand to the next release during a hot swap.
    ///
    /// `None` (the default) means there is nothing worth handing over.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// Receives the previous release's [`snapshot`](Plugin::snapshot), after `init`.
    ///
    /// Return `Ok(false)` when the state is not understood; the swap then
    /// continues without it. An error aborts the swap.
    fn restore(&mut self, state: &[u8]) -> Result<bool, String> {
        let _ = state;
        Ok(false)
    }

    /// Reports readiness: polled after `init` until it is not `Unhealthy`, before
    /// the release starts serving (at install, on a swap and at boot).
    fn health(&self) -> Health {
        Health::Ok
    }

    /// Called before the instance is dropped: daemon stop, swap or removal.
    fn shutdown(&mut self) {}
}

/// How healthy a running plugin reports itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving normally.
    Ok,
    /// Serving, but something is wrong; the string says what.
    Degraded(String),
    /// Not able to serve. A new release that stays unhealthy during a swap is
    /// abandoned and the previous one keeps serving.
    Unhealthy(String),
}

/// The plugin's configuration: the JSON rendering of its policy's `[config]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    json: String,
}

impl Config {
    /// Wraps a JSON document. The host passes `{}` when the policy has no `[config]`.
    pub fn new(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The configuration as the host hands it to every instance through the
    /// `CAIRN_CONFIG` environment variable: how code that runs without `init`
    /// (a `wasi:http` handler, say) reads it. `{}` when the variable is absent.
    pub fn from_env() -> Self {
        Config::new(std::env::var("CAIRN_CONFIG").unwrap_or_else(|_| "{}".into()))
    }

    /// The JSON text exactly as the host passed it.
    pub fn raw(&self) -> &str {
        &self.json
    }

    /// Deserializes the configuration into `T`.
    ///
    /// Fails with [`Error::Invalid`] when the JSON does not fit `T`; the
    /// error converts into `String`, so `config.parse()?` works inside `init`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.json)
            .map_err(|cause| Error::invalid_json("the plugin config", cause))
    }
}

/// Deserializes an optional JSON command payload.
///
/// An empty payload and JSON `null` (what `cairn call PLUGIN COMMAND` sends
/// without an argument) both give `None`; anything else must be valid JSON
/// for `T`, or the result is [`Error::Invalid`].
pub fn parse_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<Option<T>, Error> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Option<T>>(payload)
        .map_err(|cause| Error::invalid_json("the command payload", cause))
}
