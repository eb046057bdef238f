//! Publish/subscribe between plugins (`cairn:host/events`).
//!
//! Topics are `/`-separated levels such as `sensors/temp/kitchen`. Patterns use
//! MQTT wildcards: `+` matches one level, a trailing `#` matches any number of
//! remaining levels. The policy's `[grants.events]` table lists which topics
//! the plugin may publish and which patterns it may subscribe to. Matching
//! events arrive through [`Plugin::on_event`](crate::Plugin::on_event).

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(target_arch = "wasm32")]
use crate::bindings::cairn::host::events as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::events as host;
use crate::{Error, Result};

/// An event delivered to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The concrete topic the event was published on.
    pub topic: String,
    /// Opaque payload bytes, JSON by convention.
    pub payload: Vec<u8>,
    /// Who produced it: a plugin name, or `timer` for the plugin's own timers.
    pub source: String,
}

impl Event {
    /// Deserializes the payload as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|cause| Error::invalid_json("the event payload", cause))
    }

    /// Whether the event comes from one of the plugin's own timers.
    pub fn is_timer(&self) -> bool {
        self.source == "timer"
    }
}

/// Publishes `payload` on `topic` (no wildcards).
///
/// Delivery is asynchronous: this returns once the event is queued for every
/// matching subscriber. Fails with [`Error::Denied`] when no `publish` grant covers the topic.
pub fn publish(topic: &str, payload: &[u8]) -> Result<()> {
    Ok(host::publish(topic, payload)?)
}

/// Serializes `value` as JSON and publishes it on `topic`.
pub fn publish_json<T: Serialize + ?Sized>(topic: &str, value: &T) -> Result<()> {
    let payload = serde_json::to_vec(value).map_err(|cause| Error::Invalid(cause.to_string()))?;
    publish(topic, &payload)
}

/// Starts delivering events whose topic matches `pattern`.
///
/// Subscriptions end with the running instance, so subscribe in
/// [`Plugin::init`](crate::Plugin::init). Fails with [`Error::Denied`] unless
/// every topic the pattern can match is covered by a `subscribe` grant.
pub fn subscribe(pattern: &str) -> Result<()> {
    Ok(host::subscribe(pattern)?)
}

/// Stops the subscription made with exactly `pattern`; returns whether it existed.
pub fn unsubscribe(pattern: &str) -> Result<bool> {
    Ok(host::unsubscribe(pattern)?)
}
