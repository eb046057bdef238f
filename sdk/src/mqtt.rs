//! MQTT brokers the daemon is connected to (`cairn:host/mqtt`).
//!
//! The daemon owns the connections (its `[mqtt.brokers.<name>]` settings); a
//! plugin names a broker. The policy's `[grants.mqtt]` table lists the topics
//! the plugin may publish and the filters it may subscribe to; `{device}` in a
//! topic or filter stands for the device's id. Messages arrive through
//! [`Plugin::on_event`](crate::Plugin::on_event) with `source` `mqtt:<broker>`.

use crate::Result;
use crate::bindings::cairn::host::mqtt as host;

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoS {
    /// QoS 0: sent once, never acknowledged.
    AtMostOnce,
    /// QoS 1: acknowledged, may arrive more than once.
    AtLeastOnce,
    /// QoS 2: arrives once.
    ExactlyOnce,
}

impl From<QoS> for host::Qos {
    fn from(qos: QoS) -> Self {
        match qos {
            QoS::AtMostOnce => host::Qos::AtMostOnce,
            QoS::AtLeastOnce => host::Qos::AtLeastOnce,
            QoS::ExactlyOnce => host::Qos::ExactlyOnce,
        }
    }
}

/// Publishes `payload` on `topic` at `broker`; `{device}` in the topic stands
/// for the device's id.
///
/// QoS 1 and 2 messages published while the broker is unreachable wait in the
/// host's persisted outbox and go out in order once it is back; QoS 0 messages
/// fail with `unavailable` then.
pub fn publish(broker: &str, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Result<()> {
    Ok(host::publish(broker, topic, payload, qos.into(), retain)?)
}

/// Subscribes this instance to `filter` at `broker`; it survives reconnections.
pub fn subscribe(broker: &str, filter: &str, qos: QoS) -> Result<()> {
    Ok(host::subscribe(broker, filter, qos.into())?)
}

/// Ends the subscription made with exactly `filter`; returns whether it existed.
pub fn unsubscribe(broker: &str, filter: &str) -> Result<bool> {
    Ok(host::unsubscribe(broker, filter)?)
}
