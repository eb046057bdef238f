//! The two tasks behind each broker connection, and the outbox's courier.
//!
//! The *connection* task polls rumqttc's event loop: it reconnects with
//! exponential backoff, and on every connect publishes the birth message,
//! re-subscribes every filter in use and wakes the courier. Incoming publishes
//! go to the *router* task, which queues each one for every plugin instance
//! whose subscription matches and then acknowledges it (manual acks). The
//! *courier* sends what waits in the outbox, oldest first, while connected.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{
    ConnectReturnCode, ConnectionError, Event as MqttEvent, EventLoop, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;

use super::broker::{Broker, qos_from_number};
use crate::contract::bindings::Event;

/// How long the router waits for room in a busy plugin's queue (QoS ≥ 1).
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

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
pub(super) async fn connect(
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
                broker.publish_birth();
                broker.resubscribe();
                broker.courier.notify_one();
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
            Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                broker.sent.fetch_add(1, Ordering::Relaxed);
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
pub(super) async fn route(broker: Arc<Broker>, mut incoming: mpsc::Receiver<Publish>) {
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

/// Sends the outbox's messages in order whenever the broker is connected.
pub(super) async fn courier(broker: Arc<Broker>) {
    let Some(outbox) = &broker.outbox else {
        return;
    };
    loop {
        broker.courier.notified().await;
        while broker.is_connected() {
            let next = match outbox.lock() {
                Ok(outbox) => outbox.front(),
                Err(_) => return,
            };
            let (sequence, header, payload) = match next {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(err) => {
                    tracing::error!(broker = %broker.name, "mqtt outbox unreadable, delivery paused: {err}");
                    break;
                }
            };
            let qos = qos_from_number(header.qos);
            if broker
                .client
                .publish(header.topic, qos, header.retain, payload)
                .await
                .is_err()
            {
                return;
            }
            let removed = match outbox.lock() {
                Ok(mut outbox) => outbox.remove_front(sequence),
                Err(_) => return,
            };
            if let Err(err) = removed {
                tracing::error!(broker = %broker.name, "mqtt outbox: could not remove a sent message: {err}");
            }
        }
    }
}
