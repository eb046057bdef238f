//! `cairn:host/events`: publish/subscribe between plugins, scoped by topic patterns.

use std::sync::RwLock;

use serde::Deserialize;
use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::policy::{TopicPattern, validate_topic};
use crate::runtime::bindings::cairn::host::events as wit;
use crate::runtime::bindings::{CapError, Event};
use crate::runtime::{ActorLink, InstanceState};

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
    const INTERFACE: &'static str = "cairn:host/events";
    type Grant = EventsGrant;

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |state| state)
    }
}

struct Subscription {
    instance: u64,
    pattern: TopicPattern,
    text: String,
    link: ActorLink,
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

    pub(super) fn drop_instance(&self, instance: u64) {
        if let Ok(mut subscriptions) = self.subscriptions.write() {
            subscriptions.retain(|sub| sub.instance != instance);
        }
    }
}

impl InstanceState {
    fn events_grant(&self) -> Result<&EventsGrant, CapError> {
        self.grants
            .events
            .as_ref()
            .ok_or_else(|| super::deny(self, Events::NAME, "the policy has no [grants.events]"))
    }
}

impl wit::Host for InstanceState {
    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), CapError> {
        validate_topic(&topic)
            .map_err(|err| CapError::Invalid(format!("topic `{topic}`: {err}")))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(CapError::Invalid(format!(
                "payload of {} bytes exceeds {MAX_PAYLOAD}",
                payload.len()
            )));
        }
        let grant = self.events_grant()?;
        let device = &self.hub.device_id;
        if !grant
            .publish
            .iter()
            .any(|allowed| allowed.resolve(device).matches(&topic))
        {
            return Err(super::deny(
                self,
                Events::NAME,
                format!("publishing on `{topic}` is outside the grant"),
            ));
        }
        self.hub.events.publish(self.plugin(), &topic, &payload);
        Ok(())
    }

    async fn subscribe(&mut self, pattern: String) -> Result<(), CapError> {
        let device = self.hub.device_id.clone();
        let parsed = TopicPattern::parse(&pattern)
            .map_err(|err| CapError::Invalid(format!("pattern `{pattern}`: {err}")))?
            .resolve(&device);
        let grant = self.events_grant()?;
        if !grant
            .subscribe
            .iter()
            .any(|allowed| allowed.resolve(&device).covers(&parsed))
        {
            return Err(super::deny(
                self,
                Events::NAME,
                format!("subscribing to `{pattern}` is outside the grant"),
            ));
        }
        let mut subscriptions = self
            .hub
            .events
            .subscriptions
            .write()
            .map_err(|_| CapError::Internal("event bus poisoned".into()))?;
        let id = self.local.id;
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
            link: self.local.link.clone(),
        });
        Ok(())
    }

    async fn unsubscribe(&mut self, pattern: String) -> Result<bool, CapError> {
        self.events_grant()?;
        let mut subscriptions = self
            .hub
            .events
            .subscriptions
            .write()
            .map_err(|_| CapError::Internal("event bus poisoned".into()))?;
        let before = subscriptions.len();
        let id = self.local.id;
        subscriptions.retain(|sub| !(sub.instance == id && sub.text == pattern));
        Ok(subscriptions.len() != before)
    }
}
