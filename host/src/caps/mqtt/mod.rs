//! `cairn:host/mqtt`: publish and subscribe on the MQTT brokers the daemon is
//! connected to, scoped by topic patterns.
//!
//! The connections belong to the host ([`broker`]), configured in the daemon's
//! `[mqtt.brokers.<name>]` tables ([`config`]); a plugin only names a broker.
//! Incoming messages reach plugins through `handlers.on-event` with the MQTT
//! topic and `source = "mqtt:<broker>"`.

use std::collections::BTreeMap;

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceCtx, InstanceSetup, ViewOf};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::mqtt::{self as wit, Qos};
use crate::policy::{TopicPattern, validate_topic};

pub mod broker;
pub mod config;
mod connection;
mod outbox;
mod tls;

pub use broker::Brokers;

/// The placeholder for the device id in grants and broker settings.
pub const DEVICE_PLACEHOLDER: &str = crate::policy::DEVICE_PLACEHOLDER;
/// Default `max-payload`.
pub const DEFAULT_MAX_PAYLOAD: u64 = 256 * 1024;
/// Largest `max-payload` a grant may set (the connections accept a bit more,
/// for the topic and headers).
pub const MAX_PAYLOAD_LIMIT: u64 = 16 * 1024 * 1024;

pub struct Mqtt;

/// `[grants.mqtt]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MqttGrant {
    /// Topics the plugin may publish on, at every broker.
    #[serde(default)]
    pub publish: Vec<TopicPattern>,
    /// Filters the plugin's subscriptions must fall within, at every broker.
    #[serde(default)]
    pub subscribe: Vec<TopicPattern>,
    /// Largest payload the plugin may publish.
    #[serde(
        default = "default_max_payload",
        deserialize_with = "crate::policy::serde_size::deserialize"
    )]
    pub max_payload: u64,
    /// Additional patterns for one broker: `[grants.mqtt.brokers.<name>]`.
    #[serde(default)]
    pub brokers: BTreeMap<String, BrokerGrant>,
}

/// `[grants.mqtt.brokers.<name>]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerGrant {
    #[serde(default)]
    pub publish: Vec<TopicPattern>,
    #[serde(default)]
    pub subscribe: Vec<TopicPattern>,
}

fn default_max_payload() -> u64 {
    DEFAULT_MAX_PAYLOAD
}

impl MqttGrant {
    fn publish_patterns<'a>(&'a self, broker: &str) -> impl Iterator<Item = &'a TopicPattern> {
        let extra = self.brokers.get(broker).map(|grant| grant.publish.iter());
        self.publish.iter().chain(extra.into_iter().flatten())
    }

    fn subscribe_patterns<'a>(&'a self, broker: &str) -> impl Iterator<Item = &'a TopicPattern> {
        let extra = self.brokers.get(broker).map(|grant| grant.subscribe.iter());
        self.subscribe.iter().chain(extra.into_iter().flatten())
    }

    /// Whether `topic` (concrete) may be published at `broker` on `device`.
    pub fn may_publish(&self, broker: &str, topic: &str, device: &str) -> bool {
        self.publish_patterns(broker)
            .any(|allowed| allowed.resolve(device).matches(topic))
    }

    /// Whether `filter` (device already substituted) may be subscribed at `broker`.
    pub fn may_subscribe(&self, broker: &str, filter: &TopicPattern, device: &str) -> bool {
        self.subscribe_patterns(broker)
            .any(|allowed| allowed.resolve(device).covers(filter))
    }
}

impl Capability for Mqtt {
    const NAME: &'static str = "mqtt";
    const INTERFACES: &'static [&'static str] = &["cairn:host/mqtt"];
    type Grant = MqttGrant;
    /// The daemon's broker connections (`[mqtt.brokers.*]` in its config).
    type Shared = Brokers;
    type Local = ();

    fn validate(grant: &MqttGrant) -> Result<(), String> {
        if grant.max_payload == 0 || grant.max_payload > MAX_PAYLOAD_LIMIT {
            return Err(format!(
                "max-payload must be between 1B and {}",
                crate::policy::format_size(MAX_PAYLOAD_LIMIT)
            ));
        }
        Ok(())
    }

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Mqtt>>(linker, |state| state.caps().view())
    }

    fn build(setup: &HostSetup) -> anyhow::Result<Brokers> {
        Brokers::start(
            &setup.config.mqtt,
            &setup.device_id,
            &setup.state_dir.join("mqtt-outbox"),
        )
        .context("starting the mqtt connections")
    }

    fn prepare(_: &Brokers, _: Option<&MqttGrant>, _: &mut InstanceSetup<'_>) {}

    fn instance_ended(brokers: &Brokers, _: &mut (), ctx: &InstanceCtx) {
        brokers.drop_instance(ctx.instance);
    }

    /// After the plugins, whose shutdown may still publish.
    fn shutdown(brokers: &Brokers) -> impl std::future::Future<Output = ()> + Send {
        brokers.disconnect(Duration::from_secs(2))
    }

    fn render_metrics(brokers: &Brokers, out: &mut String) {
        brokers.render_metrics(out);
    }
}

fn qos(qos: Qos) -> rumqttc::QoS {
    match qos {
        Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

impl CapView<'_, Mqtt> {
    fn mqtt_broker(&self, name: &str) -> Result<&broker::Broker, CapError> {
        self.shared
            .get(name)
            .map(|broker| &**broker)
            .ok_or_else(|| {
                CapError::NotFound(format!("no mqtt broker named `{name}` is configured"))
            })
    }
}

impl wit::Host for CapView<'_, Mqtt> {
    async fn publish(
        &mut self,
        broker: String,
        topic: String,
        payload: Vec<u8>,
        qos_level: Qos,
        retain: bool,
    ) -> Result<(), CapError> {
        let topic = topic.replace(DEVICE_PLACEHOLDER, &self.ctx.device_id);
        validate_topic(&topic)
            .map_err(|err| CapError::Invalid(format!("topic `{topic}`: {err}")))?;
        let grant = self.grant()?;
        if !grant.may_publish(&broker, &topic, &self.ctx.device_id) {
            return Err(self.deny(format!(
                "publishing on `{topic}` at broker `{broker}` is outside the grant"
            )));
        }
        if payload.len() as u64 > grant.max_payload {
            return Err(CapError::QuotaExceeded(format!(
                "payload of {} bytes exceeds the grant's max-payload of {} bytes",
                payload.len(),
                grant.max_payload
            )));
        }
        self.mqtt_broker(&broker)?
            .publish(&topic, payload, qos(qos_level), retain)
    }

    async fn subscribe(
        &mut self,
        broker: String,
        filter: String,
        qos_level: Qos,
    ) -> Result<(), CapError> {
        let device = &self.ctx.device_id;
        let pattern = TopicPattern::parse(&filter)
            .map_err(|err| CapError::Invalid(format!("filter `{filter}`: {err}")))?
            .resolve(device);
        let grant = self.grant()?;
        if !grant.may_subscribe(&broker, &pattern, device) {
            return Err(self.deny(format!(
                "subscribing to `{filter}` at broker `{broker}` is outside the grant"
            )));
        }
        let resolved = pattern.to_string();
        self.mqtt_broker(&broker)?.subscribe(
            self.ctx.instance,
            &resolved,
            pattern,
            qos(qos_level),
            self.ctx.link.clone(),
        )
    }

    async fn unsubscribe(&mut self, broker: String, filter: String) -> Result<bool, CapError> {
        self.grant()?;
        let resolved = match TopicPattern::parse(&filter) {
            Ok(pattern) => pattern.resolve(&self.ctx.device_id).to_string(),
            Err(_) => return Ok(false),
        };
        self.mqtt_broker(&broker)?
            .unsubscribe(self.ctx.instance, &resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> Result<MqttGrant, String> {
        let grant: MqttGrant = toml::from_str(text).map_err(|err| err.to_string())?;
        Mqtt::validate(&grant)?;
        Ok(grant)
    }

    #[test]
    fn global_and_per_broker_patterns_with_the_device_id() {
        let grant = grant(
            r#"
publish = ["devices/{device}/status"]
subscribe = ["devices/{device}/cmd/#"]
[brokers.cloud]
publish = ["telemetry/#"]
subscribe = ["fleet/+/announce"]
"#,
        )
        .unwrap();
        assert_eq!(grant.max_payload, DEFAULT_MAX_PAYLOAD);
        assert!(grant.may_publish("local", "devices/pump-7/status", "pump-7"));
        assert!(!grant.may_publish("local", "devices/pump-8/status", "pump-7"));
        assert!(!grant.may_publish("local", "telemetry/x", "pump-7"));
        assert!(grant.may_publish("cloud", "telemetry/x", "pump-7"));
        assert!(grant.may_publish("cloud", "devices/pump-7/status", "pump-7"));

        let filter = |text: &str| TopicPattern::parse(text).unwrap().resolve("pump-7");
        assert!(grant.may_subscribe("local", &filter("devices/{device}/cmd/#"), "pump-7"));
        assert!(grant.may_subscribe("local", &filter("devices/pump-7/cmd/+"), "pump-7"));
        assert!(!grant.may_subscribe("local", &filter("devices/+/cmd/#"), "pump-7"));
        assert!(!grant.may_subscribe("local", &filter("fleet/+/announce"), "pump-7"));
        assert!(grant.may_subscribe("cloud", &filter("fleet/a/announce"), "pump-7"));
    }

    #[test]
    fn strict_keys_and_payload_bounds() {
        assert!(grant("publsh = []").is_err());
        assert!(grant("[brokers.x]\nmax-payload = \"1KiB\"").is_err());
        assert_eq!(grant("max-payload = \"1KiB\"").unwrap().max_payload, 1024);
        assert!(grant("max-payload = \"0B\"").is_err());
        assert!(grant("max-payload = \"17MiB\"").is_err());
        assert!(grant("publish = [\"a/#/b\"]").is_err());
    }
}
