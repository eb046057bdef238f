//! The host's MQTT connections: one per configured broker, started with the
//! daemon and independent of plugins (their tasks are in [`super::connection`]).
//!
//! Publishing: QoS 0 messages go straight to the connection and fail with
//! `unavailable` while it is down. QoS 1/2 messages go straight to the
//! connection when it is up and nothing waits in the broker's [`Outbox`];
//! otherwise they join the outbox (durably) and are sent in order later.
//!
//! Acknowledging incoming QoS 1/2 messages: the router acks once the message is in the
//! queue of every matching plugin (waiting a while for room),
//! not after each `on-event` returned. Waiting for the handlers would make one
//! slow plugin hold back every other subscriber of the broker, and acks would
//! leave the order the broker sent the messages in (MQTT expects them in
//! order). The price: a message acknowledged and queued is lost if the daemon
//! dies before the plugin handled it.
//!
//! Several plugins subscribing to the same filter share one subscription at
//! the broker (at the highest QoS any of them asked for); it is dropped at the
//! broker once no instance uses it. MQTT 3.1.1 has no subscription ids, so a
//! message matching two different filters in use may arrive twice; each
//! instance still gets each arriving copy only once.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

use super::config::{BrokerConfig, MqttConfig};
use super::connection::{connect, courier, route};
use super::outbox::{Header, Outbox};
use crate::contract::InstanceLink;
use crate::contract::bindings::CapError;
use crate::policy::TopicPattern;

/// Largest MQTT packet sent or accepted (payload plus topic and header).
pub const MAX_PACKET: usize = 16 * 1024 * 1024 + 64 * 1024;
/// Subscriptions one instance may hold on one broker.
const MAX_SUBSCRIPTIONS: usize = 64;
/// Requests (publish, subscribe, ack) waiting for the connection.
const REQUEST_QUEUE: usize = 256;
/// Incoming publishes waiting for the router.
const ROUTE_QUEUE: usize = 1024;

/// Every broker connection, by configured name.
#[derive(Default)]
pub struct Brokers {
    brokers: BTreeMap<String, Arc<Broker>>,
    tasks: Vec<AbortHandle>,
}

impl Brokers {
    /// Starts a connection per configured broker, with its outbox under
    /// `state_dir`. Must run inside the tokio runtime. Fails on local problems
    /// (unreadable or insecure password file, bad certificates, an outbox that
    /// cannot be opened); an unreachable broker is retried in the background.
    pub fn start(
        config: &MqttConfig,
        device_id: &str,
        state_dir: &Path,
    ) -> anyhow::Result<Brokers> {
        let mut brokers = Brokers::default();
        for (name, broker) in &config.brokers {
            let options = options(name, broker, device_id)
                .with_context(|| format!("[mqtt.brokers.{name}]"))?;
            let outbox = match broker.outbox {
                Some(bounds) => {
                    let dir = state_dir.join(name);
                    let outbox = Outbox::open(&dir, bounds)
                        .with_context(|| format!("opening the mqtt outbox {}", dir.display()))?;
                    if !outbox.is_empty() {
                        tracing::info!(broker = %name, "{} mqtt messages from an earlier run wait in the outbox", outbox.len());
                    }
                    Some(Mutex::new(outbox))
                }
                None => None,
            };
            let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
            // Control messages are small: waiting to coalesce them only adds latency.
            eventloop.network_options.set_tcp_nodelay(true);
            let shared = Arc::new(Broker {
                name: name.clone(),
                address: format!("{}:{}", broker.host, broker.port),
                client,
                connected: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                routes: Mutex::default(),
                birth: broker
                    .birth
                    .as_ref()
                    .map(|birth| birth.resolve(device_id))
                    .transpose()?,
                outbox,
                courier: Notify::new(),
                sent: AtomicU64::new(0),
            });
            let (to_router, from_connection) = mpsc::channel(ROUTE_QUEUE);
            let connection = tokio::spawn(connect(
                shared.clone(),
                eventloop,
                to_router,
                (broker.reconnect_min, broker.reconnect_max),
            ));
            let router = tokio::spawn(route(shared.clone(), from_connection));
            let courier = tokio::spawn(courier(shared.clone()));
            brokers.tasks.push(connection.abort_handle());
            brokers.tasks.push(router.abort_handle());
            brokers.tasks.push(courier.abort_handle());
            brokers.brokers.insert(name.clone(), shared);
        }
        Ok(brokers)
    }

    /// The broker configured under `name`.
    /// Writes, per configured broker: `cairn_mqtt_connected` (1 or 0),
    /// `cairn_mqtt_published_total`, and the outbox's `cairn_mqtt_outbox_messages`
    /// and `cairn_mqtt_outbox_dropped_total`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.brokers.is_empty() {
            return;
        }
        type Reading = fn(&Broker) -> u64;
        let series: [(&str, &str, &str, Reading); 4] = [
            (
                "cairn_mqtt_connected",
                "gauge",
                "Whether the broker connection is up.",
                |b| u64::from(b.is_connected()),
            ),
            (
                "cairn_mqtt_published_total",
                "counter",
                "Publish packets written to the broker (birth and outbox deliveries included).",
                |b| b.sent.load(Ordering::Relaxed),
            ),
            (
                "cairn_mqtt_outbox_messages",
                "gauge",
                "QoS 1/2 messages waiting in the outbox for the broker.",
                |b| b.outbox_reading(|outbox| outbox.len() as u64),
            ),
            (
                "cairn_mqtt_outbox_dropped_total",
                "counter",
                "Messages dropped from a full outbox (oldest first).",
                |b| b.outbox_reading(|outbox| outbox.dropped.load(Ordering::Relaxed)),
            ),
        ];
        for (name, kind, help, reading) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (broker, connection) in &self.brokers {
                let _ = writeln!(
                    out,
                    "{name}{{broker=\"{}\"}} {}",
                    crate::caps::metrics::escape(broker),
                    reading(connection)
                );
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Broker>> {
        self.brokers.get(name)
    }

    /// Disconnects cleanly from every connected broker (so none publishes the
    /// last will), waiting at most `wait` in all; connections end for good.
    pub async fn disconnect(&self, wait: Duration) {
        for broker in self.brokers.values() {
            broker.stopping.store(true, Ordering::Release);
            if broker.is_connected() && broker.client.try_disconnect().is_err() {
                tracing::debug!(broker = %broker.name, "could not queue the disconnect");
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline
            && self.brokers.values().any(|broker| broker.is_connected())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends every subscription of a dropped instance.
    pub(super) fn drop_instance(&self, instance: u64) {
        for broker in self.brokers.values() {
            broker.drop_instance(instance);
        }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One broker connection and the plugin subscriptions routed through it.
pub struct Broker {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) client: AsyncClient,
    pub(super) connected: AtomicBool,
    /// Set by [`Brokers::disconnect`]: no reconnecting after that.
    pub(super) stopping: AtomicBool,
    routes: Mutex<Routes>,
    /// Published on every connect: `(topic, payload, qos, retain)`.
    birth: Option<(String, Vec<u8>, QoS, bool)>,
    /// QoS 1/2 messages waiting for the connection; `None` when disabled.
    pub(super) outbox: Option<Mutex<Outbox>>,
    /// Wakes the courier (on connect, and when a message joins the outbox).
    pub(super) courier: Notify,
    /// Publish packets written to the broker.
    pub(super) sent: AtomicU64,
}

#[derive(Default)]
struct Routes {
    subscriptions: Vec<Subscription>,
    /// Filters subscribed at the broker, with the QoS they were subscribed at.
    filters: BTreeMap<String, QoS>,
}

struct Subscription {
    instance: u64,
    filter: String,
    pattern: TopicPattern,
    link: InstanceLink,
}

impl Broker {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Hands a message to the connection, or (QoS 1/2, while the connection
    /// is down or earlier messages still wait) stores it in the outbox.
    pub fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), CapError> {
        let unavailable =
            |why: &str| CapError::Unavailable(format!("the broker `{}` {why}", self.name));
        let outbox = match (&self.outbox, qos) {
            (Some(outbox), QoS::AtLeastOnce | QoS::ExactlyOnce) => outbox,
            _ => {
                if !self.is_connected() {
                    return Err(unavailable("is not connected"));
                }
                self.client
                    .try_publish(topic, qos, retain, payload)
                    .map_err(|_| unavailable("connection is congested"))?;
                return Ok(());
            }
        };
        let mut outbox = outbox
            .lock()
            .map_err(|_| CapError::Internal("the mqtt outbox lock is poisoned".into()))?;
        if self.is_connected() && outbox.is_empty() {
            // Sent directly under the lock, so nothing queued later can overtake it.
            match self.client.try_publish(topic, qos, retain, payload.clone()) {
                Ok(()) => return Ok(()),
                Err(_) => {
                    tracing::debug!(broker = %self.name, "connection congested: the message waits in the outbox")
                }
            }
        }
        let header = Header {
            topic: topic.to_string(),
            qos: qos as u8,
            retain,
        };
        outbox.push(header, &payload).map_err(|err| {
            CapError::Internal(format!("storing the message in the mqtt outbox: {err}"))
        })?;
        drop(outbox);
        self.courier.notify_one();
        Ok(())
    }

    fn outbox_reading(&self, read: impl FnOnce(&Outbox) -> u64) -> u64 {
        self.outbox
            .as_ref()
            .and_then(|outbox| outbox.lock().ok().map(|outbox| read(&outbox)))
            .unwrap_or(0)
    }

    /// Publishes the configured birth message (on every connect).
    pub(super) fn publish_birth(&self) {
        if let Some((topic, payload, qos, retain)) = &self.birth
            && self
                .client
                .try_publish(topic, *qos, *retain, payload.clone())
                .is_err()
        {
            tracing::warn!(broker = %self.name, "could not queue the birth message");
        }
    }

    /// Adds an instance's subscription; subscribes at the broker when the
    /// filter is new there (or needs a higher QoS).
    pub fn subscribe(
        &self,
        instance: u64,
        filter: &str,
        pattern: TopicPattern,
        qos: QoS,
        link: InstanceLink,
    ) -> Result<(), CapError> {
        let mut routes = self.lock()?;
        if routes
            .subscriptions
            .iter()
            .filter(|sub| sub.instance == instance)
            .count()
            >= MAX_SUBSCRIPTIONS
            && !routes
                .subscriptions
                .iter()
                .any(|sub| sub.instance == instance && sub.filter == filter)
        {
            return Err(CapError::QuotaExceeded(format!(
                "at most {MAX_SUBSCRIPTIONS} subscriptions per plugin and broker"
            )));
        }
        let current = routes.filters.get(filter).copied();
        if current.is_none_or(|current| current < qos) {
            self.client.try_subscribe(filter, qos).map_err(|_| {
                CapError::Unavailable(format!(
                    "the connection to broker `{}` is congested",
                    self.name
                ))
            })?;
            routes.filters.insert(filter.to_string(), qos);
        }
        if !routes
            .subscriptions
            .iter()
            .any(|sub| sub.instance == instance && sub.filter == filter)
        {
            routes.subscriptions.push(Subscription {
                instance,
                filter: filter.to_string(),
                pattern,
                link,
            });
        }
        Ok(())
    }

    /// Removes an instance's subscription; returns whether it existed.
    pub fn unsubscribe(&self, instance: u64, filter: &str) -> Result<bool, CapError> {
        let mut routes = self.lock()?;
        let before = routes.subscriptions.len();
        routes
            .subscriptions
            .retain(|sub| !(sub.instance == instance && sub.filter == filter));
        let existed = routes.subscriptions.len() != before;
        self.release_unused(&mut routes);
        Ok(existed)
    }

    fn drop_instance(&self, instance: u64) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.subscriptions.retain(|sub| sub.instance != instance);
            self.release_unused(&mut routes);
        }
    }

    /// Unsubscribes at the broker from filters no instance uses any more.
    fn release_unused(&self, routes: &mut Routes) {
        let used: HashSet<&str> = routes
            .subscriptions
            .iter()
            .map(|sub| sub.filter.as_str())
            .collect();
        let unused: Vec<String> = routes
            .filters
            .keys()
            .filter(|filter| !used.contains(filter.as_str()))
            .cloned()
            .collect();
        for filter in unused {
            routes.filters.remove(&filter);
            if self.client.try_unsubscribe(filter.clone()).is_err() {
                tracing::debug!(broker = %self.name, %filter, "could not queue an unsubscribe");
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Routes>, CapError> {
        self.routes
            .lock()
            .map_err(|_| CapError::Internal("mqtt routes poisoned".into()))
    }

    /// After (re)connecting: subscribe again to every filter in use.
    pub(super) fn resubscribe(&self) {
        let Ok(routes) = self.routes.lock() else {
            return;
        };
        let filters: Vec<rumqttc::SubscribeFilter> = routes
            .filters
            .iter()
            .map(|(filter, qos)| rumqttc::SubscribeFilter::new(filter.clone(), *qos))
            .collect();
        if filters.is_empty() {
            return;
        }
        let count = filters.len();
        match self.client.try_subscribe_many(filters) {
            Ok(()) => tracing::debug!(broker = %self.name, count, "re-subscribing"),
            Err(err) => {
                tracing::warn!(broker = %self.name, "could not re-subscribe: {err}");
            }
        }
    }

    /// The live, serving instances whose subscriptions match `topic`, each once.
    pub(super) fn targets(&self, topic: &str) -> Vec<InstanceLink> {
        let Ok(mut routes) = self.routes.lock() else {
            return Vec::new();
        };
        // Instances whose actor ended before their store was dropped leave stale links.
        let before = routes.subscriptions.len();
        routes.subscriptions.retain(|sub| !sub.link.is_gone());
        if routes.subscriptions.len() != before {
            self.release_unused(&mut routes);
        }
        let mut seen = HashSet::new();
        routes
            .subscriptions
            .iter()
            .filter(|sub| sub.link.is_active() && sub.pattern.matches(topic))
            .filter(|sub| seen.insert(sub.instance))
            .map(|sub| sub.link.clone())
            .collect()
    }
}

/// Builds the connection options; reads the password file.
fn options(name: &str, config: &BrokerConfig, device_id: &str) -> anyhow::Result<MqttOptions> {
    let client_id = config
        .client_id
        .replace(super::DEVICE_PLACEHOLDER, device_id);
    let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_session(config.clean_session)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some(username) = &config.username {
        let password = match &config.password_file {
            Some(path) => read_password(path)?,
            None => String::new(),
        };
        options.set_credentials(username.clone(), password);
    }
    if let Some(will) = &config.last_will {
        let (topic, payload, qos, retain) = will.resolve(device_id)?;
        options.set_last_will(LastWill::new(topic, payload, qos, retain));
    }
    if config.tls {
        let tls = super::tls::client_config(config)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    tracing::debug!(broker = name, address = %format!("{}:{}", config.host, config.port), tls = config.tls, "mqtt broker configured");
    Ok(options)
}

/// Reads a password file, refusing one that group or others can access.
/// Errors name the file, never its contents.
fn read_password(path: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("password-file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "password-file {} is accessible by group or others (mode {mode:03o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("password-file {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

pub(super) fn qos_from_number(qos: u8) -> QoS {
    match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

#[cfg(test)]
#[path = "broker_tests.rs"]
mod tests;
