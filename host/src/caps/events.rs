//! `cairn:host/events`: publish/subscribe between plugins, scoped by topic patterns.

use std::sync::RwLock;

use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceCtx, InstanceSetup, ViewOf};
use crate::contract::InstanceLink;
use crate::contract::bindings::cairn::host::events as wit;
use crate::contract::bindings::{CapError, Event};
use crate::policy::{TopicPattern, validate_topic};

const MAX_PAYLOAD: usize = 1024 * 1024;
const MAX_SUBSCRIPTIONS: usize = 64;

pub struct Events;

/// `[grants.events]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventsGrant {
    /// Topics the plugin may publish on.
    #[serde(default)]
    pub publish: Vec<TopicPattern>,
    /// Patterns the plugin's subscriptions must fall within.
    #[serde(default)]
    pub subscribe: Vec<TopicPattern>,
}

impl Capability for Events {
    const NAME: &'static str = "events";
    const INTERFACES: &'static [&'static str] = &["cairn:host/events"];
    type Grant = EventsGrant;
    type Shared = Bus;
    type Local = ();

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Events>>(linker, |state| state.caps().view())
    }

    fn build(_: &HostSetup) -> anyhow::Result<Bus> {
        Ok(Bus::default())
    }

    fn prepare(_: &Bus, _: Option<&EventsGrant>, _: &mut InstanceSetup<'_>) {}

    fn instance_ended(bus: &Bus, _: &mut (), ctx: &InstanceCtx) {
        bus.drop_instance(ctx.instance);
    }
}

struct Subscription {
    instance: u64,
    pattern: TopicPattern,
    text: String,
    link: InstanceLink,
}

/// Every live subscription. Delivery goes only to instances of the release
/// currently serving each plugin, so a swap never delivers an event twice.
#[derive(Default)]
pub struct Bus {
    subscriptions: RwLock<Vec<Subscription>>,
}

impl Bus {
    /// Queues the event for every matching subscriber; returns how many took it.
    pub fn publish(&self, source: &str, topic: &str, payload: &[u8]) -> usize {
        let Ok(subscriptions) = self.subscriptions.read() else {
            return 0;
        };
        subscriptions
            .iter()
            .filter(|sub| sub.link.is_active() && sub.pattern.matches(topic))
            .filter(|sub| {
                sub.link.deliver(Event {
                    topic: topic.to_string(),
                    payload: payload.to_vec(),
                    source: source.to_string(),
                })
            })
            .count()
    }

    fn drop_instance(&self, instance: u64) {
        if let Ok(mut subscriptions) = self.subscriptions.write() {
            subscriptions.retain(|sub| sub.instance != instance);
        }
    }
}

impl wit::Host for CapView<'_, Events> {
    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), CapError> {
        validate_topic(&topic)
            .map_err(|err| CapError::Invalid(format!("topic `{topic}`: {err}")))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(CapError::Invalid(format!(
                "payload of {} bytes exceeds {MAX_PAYLOAD}",
                payload.len()
            )));
        }
        let grant = self.grant()?;
        let device = &self.ctx.device_id;
        if !grant
            .publish
            .iter()
            .any(|allowed| allowed.resolve(device).matches(&topic))
        {
            return Err(self.deny(format!("publishing on `{topic}` is outside the grant")));
        }
        self.shared.publish(self.plugin(), &topic, &payload);
        Ok(())
    }

    async fn subscribe(&mut self, pattern: String) -> Result<(), CapError> {
        let device = self.ctx.device_id.clone();
        let parsed = TopicPattern::parse(&pattern)
            .map_err(|err| CapError::Invalid(format!("pattern `{pattern}`: {err}")))?
            .resolve(&device);
        let grant = self.grant()?;
        if !grant
            .subscribe
            .iter()
            .any(|allowed| allowed.resolve(&device).covers(&parsed))
        {
            return Err(self.deny(format!("subscribing to `{pattern}` is outside the grant")));
        }
        let mut subscriptions = self
            .shared
            .subscriptions
            .write()
            .map_err(|_| CapError::Internal("event bus poisoned".into()))?;
        let id = self.ctx.instance;
        if subscriptions
            .iter()
            .any(|sub| sub.instance == id && sub.text == pattern)
        {
            return Ok(());
        }
        if subscriptions
            .iter()
            .filter(|sub| sub.instance == id)
            .count()
            >= MAX_SUBSCRIPTIONS
        {
            return Err(CapError::QuotaExceeded(format!(
                "at most {MAX_SUBSCRIPTIONS} subscriptions per plugin"
            )));
        }
        subscriptions.push(Subscription {
            instance: id,
            pattern: parsed,
            text: pattern,
            link: self.ctx.link.clone(),
        });
        Ok(())
    }

    async fn unsubscribe(&mut self, pattern: String) -> Result<bool, CapError> {
        self.grant()?;
        let mut subscriptions = self
            .shared
            .subscriptions
            .write()
            .map_err(|_| CapError::Internal("event bus poisoned".into()))?;
        let before = subscriptions.len();
        let id = self.ctx.instance;
        subscriptions.retain(|sub| !(sub.instance == id && sub.text == pattern));
        Ok(subscriptions.len() != before)
    }
}
