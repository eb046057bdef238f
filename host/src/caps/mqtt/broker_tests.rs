//! Unit tests of the broker's subscription bookkeeping and publishing rules.
use super::*;
use crate::contract::testing::QueueLink;
use rumqttc::EventLoop;

fn broker() -> (Broker, EventLoop) {
    broker_with_outbox(None)
}

fn broker_with_outbox(outbox: Option<Outbox>) -> (Broker, EventLoop) {
    let (client, eventloop) =
        AsyncClient::new(MqttOptions::new("test", "127.0.0.1", 1), REQUEST_QUEUE);
    let broker = Broker {
        name: "local".into(),
        address: "127.0.0.1:1".into(),
        client,
        connected: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        routes: Mutex::default(),
        birth: None,
        outbox: outbox.map(Mutex::new),
        courier: Notify::new(),
        sent: AtomicU64::new(0),
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
    let ((one, _rx1), (two, _rx2)) = (QueueLink::new(4), QueueLink::new(4));
    let (one, two): (InstanceLink, InstanceLink) = (Arc::new(one), Arc::new(two));
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
    let (link, rx) = QueueLink::new(4);
    broker
        .subscribe(1, "a/b", pattern("a/b"), QoS::AtMostOnce, Arc::new(link))
        .unwrap();
    assert_eq!(broker.targets("a/b").len(), 1);
    drop(rx);
    assert!(broker.targets("a/b").is_empty());
    assert!(filters(&broker).is_empty());
}

#[test]
fn a_subscription_quota_per_instance() {
    let (broker, _eventloop) = broker();
    let (link, _rx) = QueueLink::new(4);
    let link: InstanceLink = Arc::new(link);
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
fn publishing_while_disconnected_is_unavailable_without_an_outbox() {
    let (broker, _eventloop) = broker();
    let refused = broker.publish("a", b"x".to_vec(), QoS::AtLeastOnce, false);
    assert!(matches!(refused, Err(CapError::Unavailable(_))));
}

#[test]
fn while_disconnected_qos1_waits_in_the_outbox_and_qos0_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bounds = super::super::outbox::Bounds {
        messages: 10,
        bytes: 1024,
    };
    let outbox = Outbox::open(dir.path(), bounds).unwrap();
    let (broker, _eventloop) = broker_with_outbox(Some(outbox));
    broker
        .publish("a", b"one".to_vec(), QoS::AtLeastOnce, false)
        .unwrap();
    broker
        .publish("b", b"two".to_vec(), QoS::ExactlyOnce, true)
        .unwrap();
    let refused = broker.publish("c", b"x".to_vec(), QoS::AtMostOnce, false);
    assert!(matches!(refused, Err(CapError::Unavailable(_))));
    assert_eq!(broker.outbox_reading(|outbox| outbox.len() as u64), 2);
    let reopened = Outbox::open(dir.path(), bounds).unwrap();
    let (_, header, payload) = reopened.front().unwrap().unwrap();
    assert_eq!(
        (header.topic.as_str(), payload.as_slice()),
        ("a", &b"one"[..])
    );
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
