//! Stand-ins for the kernel and an instance's queue, for capability unit tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::bindings::cairn::host::commands::CallError;
use super::bindings::cairn::host::plugins::{HealthSummary, PluginInfo};
use super::bindings::{CapError, Event};
use super::{EventQueue, HostFuture, InstallRequest, InstanceLink, PluginHost};

/// An instance's event queue that a test reads from.
pub struct QueueLink {
    tx: mpsc::Sender<Event>,
    /// Whether the instance counts as the serving release.
    pub active: AtomicBool,
}

impl QueueLink {
    /// A queue of `depth` events and its receiving end.
    pub fn new(depth: usize) -> (QueueLink, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(depth);
        let link = QueueLink {
            tx,
            active: AtomicBool::new(true),
        };
        (link, rx)
    }
}

impl EventQueue for QueueLink {
    fn deliver(&self, event: Event) -> bool {
        self.tx.try_send(event).is_ok()
    }

    fn deliver_waiting(&self, event: Event, wait: Duration) -> HostFuture<'_, bool> {
        Box::pin(async move {
            matches!(
                tokio::time::timeout(wait, self.tx.send(event)).await,
                Ok(Ok(()))
            )
        })
    }

    fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn is_gone(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What a [`FakeHost`] was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    Call { plugin: String, command: String },
    Notify { plugin: String, topic: String },
    Install { authorized: Result<(), String> },
    Rollback { plugin: String },
    Remove { plugin: String },
}

/// A kernel that records what it is asked and answers from fixed replies.
#[derive(Default)]
pub struct FakeHost {
    /// Every request, in order.
    pub calls: Mutex<Vec<HostCall>>,
    /// The plugins `list` returns.
    pub plugins: Vec<PluginInfo>,
    /// The name the component of every install claims to be.
    pub install_name: String,
    /// Where events notified to a plugin are delivered, by plugin name (the
    /// bench puts its instance's queue here).
    pub queues: Mutex<Vec<(String, InstanceLink)>>,
}

impl FakeHost {
    fn record(&self, call: HostCall) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    /// The requests recorded so far.
    pub fn recorded(&self) -> Vec<HostCall> {
        self.calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default()
    }

    fn info(name: &str) -> PluginInfo {
        PluginInfo {
            name: name.to_string(),
            version: "1.0.0".into(),
            digest: "sha256:00".into(),
            state: "running".into(),
            previous_version: None,
            restarts: 0,
        }
    }
}

impl PluginHost for FakeHost {
    fn call<'a>(
        &'a self,
        plugin: &'a str,
        command: &'a str,
        payload: Vec<u8>,
    ) -> HostFuture<'a, Result<Vec<u8>, CallError>> {
        self.record(HostCall::Call {
            plugin: plugin.into(),
            command: command.into(),
        });
        Box::pin(async move { Ok(payload) })
    }

    fn notify<'a>(
        &'a self,
        plugin: &'a str,
        event: Event,
        _wait: Duration,
    ) -> HostFuture<'a, bool> {
        self.record(HostCall::Notify {
            plugin: plugin.into(),
            topic: event.topic.clone(),
        });
        let queue = self.queues.lock().ok().and_then(|queues| {
            queues
                .iter()
                .find(|(name, _)| name == plugin)
                .map(|(_, queue)| queue.clone())
        });
        Box::pin(async move { queue.is_none_or(|queue| queue.deliver(event)) })
    }

    fn install(&self, request: InstallRequest) -> HostFuture<'_, Result<PluginInfo, CapError>> {
        let authorized = (request.authorize)(&self.install_name);
        self.record(HostCall::Install {
            authorized: authorized.clone(),
        });
        Box::pin(async move {
            authorized.map_err(CapError::Denied)?;
            Ok(FakeHost::info(&self.install_name))
        })
    }

    fn rollback<'a>(
        &'a self,
        plugin: &'a str,
        _reason: &'a str,
    ) -> HostFuture<'a, Result<PluginInfo, CapError>> {
        self.record(HostCall::Rollback {
            plugin: plugin.into(),
        });
        Box::pin(async move { Ok(FakeHost::info(plugin)) })
    }

    fn remove<'a>(&'a self, plugin: &'a str) -> HostFuture<'a, Result<(), CapError>> {
        self.record(HostCall::Remove {
            plugin: plugin.into(),
        });
        Box::pin(async { Ok(()) })
    }

    fn list(&self) -> Vec<PluginInfo> {
        self.plugins.clone()
    }

    fn health<'a>(&'a self, _asking: &'a str) -> HostFuture<'a, HealthSummary> {
        Box::pin(async {
            HealthSummary {
                status: "ok".into(),
                uptime_secs: 1,
                plugins: Vec::new(),
            }
        })
    }

    fn metrics(&self) -> String {
        "# fake\n".into()
    }
}
