//! The host's MQTT connections: one per configured broker, started with the
//! daemon and independent of plugins.
//!
//! Each broker has two tasks. The *connection* task polls rumqttc's event
//! loop: it reconnects with exponential backoff, re-subscribes every filter in
//! use after a reconnect, and hands incoming publishes to the *router* task,
//! which queues each one for every plugin instance whose subscription matches
//! and then acknowledges it (manual acks).
//!
//! Acknowledging QoS 1/2 messages: the router acks once the message is in the
//! queue of every matching plugin (waiting up to [`DELIVERY_WAIT`] for room),
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event as MqttEvent, EventLoop, LastWill,
    MqttOptions, Packet, Publish, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::config::{BrokerConfig, MqttConfig};
use crate::policy::TopicPattern;
use crate::runtime::ActorLink;
use crate::runtime::bindings::{CapError, Event};

/// Largest MQTT packet sent or accepted (payload plus topic and header).
pub const MAX_PACKET: usize = 16 * 1024 * 1024 + 64 * 1024;
/// Subscriptions one instance may hold on one broker.
const MAX_SUBSCRIPTIONS: usize = 64;
/// How long the router waits for room in a busy plugin's queue (QoS ≥ 1).
const DELIVERY_WAIT: Duration = Duration::from_secs(10);
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
    /// Starts a connection per configured broker. Must run inside the tokio
    /// runtime. Fails on local problems (unreadable or insecure password file,
    /// bad certificates); an unreachable broker is retried in the background.
    pub fn start(config: &MqttConfig, device_id: &str) -> anyhow::Result<Brokers> {
        let mut brokers = Brokers::default();
        for (name, broker) in &config.brokers {
            let options = options(name, broker, device_id)
                .with_context(|| format!("[mqtt.brokers.{name}]"))?;
            let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
            let shared = Arc::new(Broker {
                name: name.clone(),
                address: format!("{}:{}", broker.host, broker.port),
                client,
                connected: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                routes: Mutex::default(),
            });
            let (to_router, from_connection) = mpsc::channel(ROUTE_QUEUE);
            let connection = tokio::spawn(connect(
                shared.clone(),
                eventloop,
                to_router,
                (broker.reconnect_min, broker.reconnect_max),
            ));
            let router = tokio::spawn(route(shared.clone(), from_connection));
            brokers.tasks.push(connection.abort_handle());
            brokers.tasks.push(router.abort_handle());
            brokers.brokers.insert(name.clone(), shared);
        }
        Ok(brokers)
    }

    /// The broker configured under `name`.
    /// Writes `cairn_mqtt_connected{broker}` (1 or 0) for every configured broker.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.brokers.is_empty() {
            return;
        }
        let name = "cairn_mqtt_connected";
        let _ = writeln!(
            out,
            "# HELP {name} Whether the broker connection is up.\n# TYPE {name} gauge"
        );
        for (broker, connection) in &self.brokers {
            let _ = writeln!(
                out,
                "{name}{{broker=\"{}\"}} {}",
                crate::caps::metrics::escape(broker),
                u8::from(connection.is_connected())
            );
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
    pub(in crate::caps) fn drop_instance(&self, instance: u64) {
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
    name: String,
    address: String,
    client: AsyncClient,
    connected: AtomicBool,
    /// Set by [`Brokers::disconnect`]: no reconnecting after that.
    stopping: AtomicBool,
    routes: Mutex<Routes>,
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
    link: ActorLink,
}

impl Broker {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Hands a message to the connection. Nothing is queued while disconnected.
    pub fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), CapError> {
        if !self.is_connected() {
            return Err(CapError::Unavailable(format!(
                "the broker `{}` is not connected",
                self.name
            )));
        }
        self.client
            .try_publish(topic, qos, retain, payload)
            .map_err(|_| {
                CapError::Unavailable(format!(
                    "the connection to broker `{}` is congested",
                    self.name
                ))
            })
    }

    /// Adds an instance's subscription; subscribes at the broker when the
    /// filter is new there (or needs a higher QoS).
    pub fn subscribe(
        &self,
        instance: u64,
        filter: &str,
        pattern: TopicPattern,
        qos: QoS,
        link: ActorLink,
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
    fn resubscribe(&self) {
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
    fn targets(&self, topic: &str) -> Vec<ActorLink> {
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
        let topic = TopicPattern::parse(&will.topic)
            .map_err(|err| anyhow::anyhow!("last-will topic: {err}"))?
            .resolve(device_id)
            .to_string();
        let payload = will.payload.replace(super::DEVICE_PLACEHOLDER, device_id);
        options.set_last_will(LastWill::new(
            topic,
            payload.into_bytes(),
            qos_from_number(will.qos),
            will.retain,
        ));
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

/// A connection error in words; never includes credentials.
fn describe(err: &ConnectionError) -> String {
    match err {
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword) => {
            "the broker refused the connection: bad user name or password".into()
        }
        ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
            "the broker refused the connection: not authorized (check username and password-file)"
                .into()
        }
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {code:?}")
        }
        other => other.to_string(),
    }
}

/// Polls the connection forever, reconnecting with exponential backoff.
async fn connect(
    broker: Arc<Broker>,
    mut eventloop: EventLoop,
    router: mpsc::Sender<Publish>,
    (backoff_min, backoff_max): (Duration, Duration),
) {
    let mut backoff = backoff_min;
    let mut last_error: Option<String> = None;
    loop {
        match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                broker.connected.store(true, Ordering::Release);
                backoff = backoff_min;
                last_error = None;
                tracing::info!(broker = %broker.name, address = %broker.address, session_present = ack.session_present, "connected to the mqtt broker");
                broker.resubscribe();
            }
            Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                if publish.qos == QoS::AtMostOnce {
                    if router.try_send(publish).is_err() {
                        tracing::debug!(broker = %broker.name, "mqtt message dropped: the router is behind");
                    }
                } else if router.send(publish).await.is_err() {
                    return;
                }
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, SubscribeReasonCode::Failure))
                {
                    tracing::warn!(broker = %broker.name, "the broker refused a subscription");
                }
            }
            Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                broker.connected.store(false, Ordering::Release);
                tracing::info!(broker = %broker.name, "disconnected from the mqtt broker");
                return;
            }
            Ok(_) => {}
            Err(_) if broker.stopping.load(Ordering::Acquire) => {
                broker.connected.store(false, Ordering::Release);
                return;
            }
            Err(err) => {
                let was_connected = broker.connected.swap(false, Ordering::AcqRel);
                let message = describe(&err);
                if was_connected || last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(broker = %broker.name, address = %broker.address, "mqtt broker unreachable: {message}; retrying in {backoff:?} (and backing off up to {backoff_max:?})");
                } else {
                    tracing::debug!(broker = %broker.name, "mqtt broker still unreachable: {message}");
                }
                last_error = Some(message);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(backoff_max);
            }
        }
    }
}

/// Queues each incoming message for its subscribers, then acknowledges it.
async fn route(broker: Arc<Broker>, mut incoming: mpsc::Receiver<Publish>) {
    let source = format!("mqtt:{}", broker.name);
    while let Some(publish) = incoming.recv().await {
        let targets = broker.targets(&publish.topic);
        for link in targets {
            let event = Event {
                topic: publish.topic.clone(),
                payload: publish.payload.to_vec(),
                source: source.clone(),
            };
            let queued = if publish.qos == QoS::AtMostOnce {
                link.deliver(event)
            } else {
                link.deliver_waiting(event, DELIVERY_WAIT).await
            };
            if !queued {
                tracing::warn!(broker = %broker.name, topic = %publish.topic, "mqtt message dropped for a plugin whose queue stayed full");
            }
        }
        if publish.qos != QoS::AtMostOnce && broker.client.ack(&publish).await.is_err() {
            tracing::debug!(broker = %broker.name, "could not acknowledge: the connection is gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::release::Job;

    fn broker() -> (Broker, EventLoop) {
        let (client, eventloop) =
            AsyncClient::new(MqttOptions::new("test", "127.0.0.1", 1), REQUEST_QUEUE);
        let broker = Broker {
            name: "local".into(),
            address: "127.0.0.1:1".into(),
            client,
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            routes: Mutex::default(),
        };
        (broker, eventloop)
    }

    fn pattern(text: &str) -> TopicPattern {
        TopicPattern::parse(text).unwrap()
    }

    fn filters(broker: &Broker) -> Vec<(String, QoS)> {
        let routes = broker.routes.lock().unwrap();
        routes
            .filters
            .iter()
            .map(|(filter, qos)| (filter.clone(), *qos))
            .collect()
    }

    #[test]
    fn instances_share_one_broker_subscription_per_filter() {
        let (broker, _eventloop) = broker();
        let (tx1, _rx1) = mpsc::channel::<Job>(4);
        let (tx2, _rx2) = mpsc::channel::<Job>(4);
        let (one, two) = (ActorLink::detached(&tx1), ActorLink::detached(&tx2));
        broker
            .subscribe(1, "a/#", pattern("a/#"), QoS::AtMostOnce, one.clone())
            .unwrap();
        broker
            .subscribe(2, "a/#", pattern("a/#"), QoS::AtLeastOnce, two.clone())
            .unwrap();
        broker
            .subscribe(2, "a/+/x", pattern("a/+/x"), QoS::AtMostOnce, two)
            .unwrap();
        // Subscribing again is a no-op.
        broker
            .subscribe(1, "a/#", pattern("a/#"), QoS::AtMostOnce, one)
            .unwrap();
        assert_eq!(
            filters(&broker),
            vec![
                ("a/#".to_string(), QoS::AtLeastOnce),
                ("a/+/x".to_string(), QoS::AtMostOnce)
            ]
        );
        // Each matching instance once, even with two matching filters.
        assert_eq!(broker.targets("a/b/x").len(), 2);
        assert_eq!(broker.targets("a").len(), 2);
        assert_eq!(broker.targets("b").len(), 0);

        assert!(broker.unsubscribe(2, "a/#").unwrap());
        assert!(!broker.unsubscribe(2, "a/#").unwrap());
        assert_eq!(filters(&broker).len(), 2, "instance 1 still uses a/#");
        broker.drop_instance(2);
        assert_eq!(
            filters(&broker),
            vec![("a/#".to_string(), QoS::AtLeastOnce)]
        );
        broker.drop_instance(1);
        assert!(filters(&broker).is_empty());
    }

    #[test]
    fn ended_instances_are_pruned_when_routing() {
        let (broker, _eventloop) = broker();
        let (tx, rx) = mpsc::channel::<Job>(4);
        broker
            .subscribe(
                1,
                "a/b",
                pattern("a/b"),
                QoS::AtMostOnce,
                ActorLink::detached(&tx),
            )
            .unwrap();
        assert_eq!(broker.targets("a/b").len(), 1);
        drop((tx, rx));
        assert!(broker.targets("a/b").is_empty());
        assert!(filters(&broker).is_empty());
    }

    #[test]
    fn a_subscription_quota_per_instance() {
        let (broker, _eventloop) = broker();
        let (tx, _rx) = mpsc::channel::<Job>(4);
        let link = ActorLink::detached(&tx);
        for n in 0..MAX_SUBSCRIPTIONS {
            let filter = format!("a/{n}");
            broker
                .subscribe(1, &filter, pattern(&filter), QoS::AtMostOnce, link.clone())
                .unwrap();
        }
        let refused = broker.subscribe(1, "b", pattern("b"), QoS::AtMostOnce, link.clone());
        assert!(matches!(refused, Err(CapError::QuotaExceeded(_))));
        // Repeating an existing subscription is still fine.
        broker
            .subscribe(1, "a/0", pattern("a/0"), QoS::AtMostOnce, link)
            .unwrap();
    }

    #[test]
    fn publishing_while_disconnected_is_unavailable() {
        let (broker, _eventloop) = broker();
        let refused = broker.publish("a", b"x".to_vec(), QoS::AtLeastOnce, false);
        assert!(matches!(refused, Err(CapError::Unavailable(_))));
    }

    #[test]
    fn password_files_must_be_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = read_password(&path).unwrap_err().to_string();
        assert!(error.contains("group or others"), "{error}");
        assert!(!error.contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password(&path).unwrap(), "hunter2");
    }
}
