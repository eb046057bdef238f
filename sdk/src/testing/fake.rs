//! The fake host behind the capability modules on native targets: the same
//! signatures as the generated `cairn:host` imports, served from one
//! thread-local [`State`] that [`FakeHost`](super::FakeHost) inspects and scripts.
//!
//! Each test thread has its own state, so tests running in parallel do not see
//! each other's keys, logs or timers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::bindings::cairn::host::types::Error as WireError;
use crate::http::{HttpError, HttpErrorKind, Request, Response};
use crate::net::ConnectError;

type CommandReply = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, String>>;
type HttpHandler = Box<dyn FnMut(&Request) -> Result<Response, HttpError>>;
type Connector = Box<dyn FnMut(SocketAddr) -> Result<(), ConnectError>>;

/// A timer the plugin set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The id the host returned.
    pub id: u64,
    /// The topic its events carry.
    pub topic: String,
    /// When it fires next, on the fake clock.
    pub due: Duration,
    /// The period of an interval timer; `None` for a one-shot timer.
    pub period: Option<Duration>,
}

#[derive(Default)]
pub(crate) struct State {
    pub kv: BTreeMap<String, Vec<u8>>,
    pub logs: Vec<(crate::log::Level, String)>,
    pub published: Vec<(String, Vec<u8>)>,
    pub subscriptions: Vec<String>,
    pub now: Duration,
    pub next_timer: u64,
    pub timers: Vec<Timer>,
    pub commands: BTreeMap<(String, String), CommandReply>,
    pub calls: Vec<(String, String, Vec<u8>)>,
    pub counters: BTreeMap<String, u64>,
    pub gauges: BTreeMap<String, f64>,
    pub http: Option<HttpHandler>,
    pub requests: Vec<Request>,
    pub connector: Option<Connector>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Runs `action` on this thread's fake host.
///
/// Handlers a test installs (HTTP, command replies) run while the state is
/// borrowed, so they must not call capabilities themselves.
pub(crate) fn with<R>(action: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| action(&mut state.borrow_mut()))
}

/// A metric series key: `name{k=v,..}`.
pub(crate) fn series(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

pub(crate) mod kv {
    use super::{WireError, with};

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, WireError> {
        Ok(with(|state| state.kv.get(key).cloned()))
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), WireError> {
        with(|state| state.kv.insert(key.to_string(), value.to_vec()));
        Ok(())
    }

    pub fn delete(key: &str) -> Result<bool, WireError> {
        Ok(with(|state| state.kv.remove(key).is_some()))
    }

    pub fn list_keys(prefix: &str) -> Result<Vec<String>, WireError> {
        Ok(with(|state| {
            state
                .kv
                .keys()
                .filter(|key| key.starts_with(prefix))
                .cloned()
                .collect()
        }))
    }
}

pub(crate) mod log {
    pub fn write(level: crate::log::Level, message: &str) {
        super::with(|state| state.logs.push((level, message.to_string())));
    }
}

pub(crate) mod events {
    use super::{WireError, with};

    pub fn publish(topic: &str, payload: &[u8]) -> Result<(), WireError> {
        with(|state| state.published.push((topic.to_string(), payload.to_vec())));
        Ok(())
    }

    pub fn subscribe(pattern: &str) -> Result<(), WireError> {
        with(|state| {
            if !state.subscriptions.iter().any(|p| p == pattern) {
                state.subscriptions.push(pattern.to_string());
            }
        });
        Ok(())
    }

    pub fn unsubscribe(pattern: &str) -> Result<bool, WireError> {
        Ok(with(|state| {
            let before = state.subscriptions.len();
            state.subscriptions.retain(|p| p != pattern);
            state.subscriptions.len() != before
        }))
    }
}

pub(crate) mod timer {
    use std::time::Duration;

    use super::{Timer, WireError, with};

    fn add(delay_ms: u64, topic: &str, repeat: bool) -> Result<u64, WireError> {
        if repeat && delay_ms == 0 {
            return Err(WireError::Invalid("an interval must be positive".into()));
        }
        Ok(with(|state| {
            state.next_timer += 1;
            let delay = Duration::from_millis(delay_ms);
            state.timers.push(Timer {
                id: state.next_timer,
                topic: topic.to_string(),
                due: state.now + delay,
                period: repeat.then_some(delay),
            });
            state.next_timer
        }))
    }

    pub fn once(delay_ms: u64, topic: &str) -> Result<u64, WireError> {
        add(delay_ms, topic, false)
    }

    pub fn interval(period_ms: u64, topic: &str) -> Result<u64, WireError> {
        add(period_ms, topic, true)
    }

    pub fn cancel(id: u64) -> Result<bool, WireError> {
        Ok(with(|state| {
            let before = state.timers.len();
            state.timers.retain(|timer| timer.id != id);
            state.timers.len() != before
        }))
    }
}

pub(crate) mod commands {
    pub use crate::bindings::cairn::host::commands::CallError;
    use crate::bindings::cairn::host::types::Error as WireError;

    pub fn call(plugin: &str, command: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        super::with(|state| {
            state
                .calls
                .push((plugin.to_string(), command.to_string(), payload.to_vec()));
            let key = (plugin.to_string(), command.to_string());
            match state.commands.get_mut(&key) {
                Some(reply) => reply(payload).map_err(CallError::Plugin),
                None => Err(CallError::Host(WireError::NotFound(format!(
                    "the fake host has no reply for {plugin}/{command}"
                )))),
            }
        })
    }
}

pub(crate) mod metrics {
    pub use crate::bindings::cairn::host::metrics::Label;
    use crate::bindings::cairn::host::types::Error as WireError;

    pub fn counter_add(name: &str, labels: &[Label], delta: u64) -> Result<(), WireError> {
        super::with(|state| {
            *state
                .counters
                .entry(super::series(name, labels))
                .or_default() += delta;
        });
        Ok(())
    }

    pub fn gauge_set(name: &str, labels: &[Label], value: f64) -> Result<(), WireError> {
        super::with(|state| state.gauges.insert(super::series(name, labels), value));
        Ok(())
    }
}

/// [`Request::send`] natively: the test's handler answers, or the request is refused.
pub(crate) fn http_send(request: Request) -> Result<Response, HttpError> {
    crate::http::Target::parse(&request.url)?;
    with(|state| {
        state.requests.push(request.clone());
        match state.http.as_mut() {
            Some(handler) => handler(&request),
            None => Err(HttpError::new(
                HttpErrorKind::Denied,
                "the fake host has no HTTP handler (FakeHost::on_http)",
            )),
        }
    })
}

/// [`crate::net::connect`] natively: the test's connector decides.
pub(crate) fn connect(address: SocketAddr, _timeout: Duration) -> Result<(), ConnectError> {
    with(|state| match state.connector.as_mut() {
        Some(connector) => connector(address),
        None => Err(ConnectError {
            denied: false,
            message: format!("connecting to {address}: refused"),
        }),
    })
}
