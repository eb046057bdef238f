//! Unit-testing plugin logic natively (`cargo test -p <plugin>`), against a
//! fake host.
//!
//! On every target but `wasm32` the capability modules ([`kv`](crate::kv),
//! [`log`](crate::log), [`events`](crate::events), [`timer`](crate::timer),
//! [`commands`](crate::commands), [`metrics`](crate::metrics),
//! [`http`](crate::http), [`net`](crate::net)) talk to an in-memory host
//! instead of the real one: keys live in a map, log lines and published events
//! are captured, timers run on a fake clock, and other plugins' commands and
//! HTTP servers answer with what the test scripted. The remaining
//! capabilities (`process`, `container`, `mqtt`, `plugins`, `system`) have no fake; calling
//! them natively panics.
//!
//! [`Harness`] drives a [`Plugin`](crate::Plugin) the way the host does:
//!
//! ```
//! use cairn_sdk::testing::Harness;
//! # use cairn_sdk::{Commands, CommandError, Config, Plugin, kv};
//! # struct Counter(u64);
//! # impl Plugin for Counter {
//! #     fn init(_: Config) -> Result<Self, String> { Ok(Counter(0)) }
//! #     fn commands() -> Commands<Self> {
//! #         Commands::new().command("increment", |c: &mut Counter, (): ()| {
//! #             c.0 += 1;
//! #             kv::set_json("count", &c.0)?;
//! #             Ok::<_, CommandError>(c.0)
//! #         })
//! #     }
//! # }
//! let mut counter = Harness::<Counter>::init("{}").unwrap();
//! let count: u64 = counter.call("increment", &()).unwrap();
//! assert_eq!(count, 1);
//! assert_eq!(counter.host().kv_get("count").as_deref(), Some(&b"1"[..]));
//! ```
//!
//! Every test thread has its own fake host; [`FakeHost::reset`] (which
//! [`Harness::init`] calls) empties it.

pub(crate) mod fake;
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

pub use fake::Timer;
pub use harness::Harness;

use crate::Event;
use crate::http::{Body, HttpError, Request, Response};
use crate::log::Level;
use crate::net::ConnectError;

/// A handle on this thread's fake host: inspect what the plugin did, script
/// what the outside world answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct FakeHost;

impl FakeHost {
    /// Empties the fake host: no keys, logs, events, timers or scripted replies,
    /// and the clock back at zero.
    pub fn reset() -> FakeHost {
        fake::with(|state| *state = fake::State::default());
        FakeHost
    }

    /// The value stored under `key`.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        fake::with(|state| state.kv.get(key).cloned())
    }

    /// Stores `value` under `key`, as if an earlier run had.
    pub fn kv_set(&self, key: &str, value: &[u8]) {
        fake::with(|state| state.kv.insert(key.to_string(), value.to_vec()));
    }

    /// Every key, sorted.
    pub fn kv_keys(&self) -> Vec<String> {
        fake::with(|state| state.kv.keys().cloned().collect())
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        fake::with(|state| state.logs.clone())
    }

    /// Whether a log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        fake::with(|state| state.logs.iter().any(|(_, line)| line.contains(text)))
    }

    /// The events published so far, oldest first; `source` is `"self"`.
    pub fn published(&self) -> Vec<Event> {
        fake::with(|state| {
            state
                .published
                .iter()
                .map(|(topic, payload)| Event {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    source: "self".into(),
                })
                .collect()
        })
    }

    /// Forgets the events published so far.
    pub fn clear_published(&self) {
        fake::with(|state| state.published.clear());
    }

    /// The topic patterns the plugin subscribes to.
    pub fn subscriptions(&self) -> Vec<String> {
        fake::with(|state| state.subscriptions.clone())
    }

    /// The timers that are set.
    pub fn timers(&self) -> Vec<Timer> {
        fake::with(|state| state.timers.clone())
    }

    /// How far the fake clock has advanced.
    pub fn now(&self) -> Duration {
        fake::with(|state| state.now)
    }

    /// Moves the fake clock forward by `by` and returns the timer events that
    /// fell due, in the order they fire (an interval may fire several times).
    /// [`Harness::advance`] also delivers them to the plugin.
    pub fn advance(&self, by: Duration) -> Vec<Event> {
        fake::with(|state| {
            let until = state.now + by;
            let mut fired = Vec::new();
            loop {
                let next = state
                    .timers
                    .iter_mut()
                    .filter(|timer| timer.due <= until)
                    .min_by_key(|timer| (timer.due, timer.id));
                let Some(timer) = next else { break };
                state.now = timer.due;
                fired.push(Event {
                    topic: timer.topic.clone(),
                    payload: Vec::new(),
                    source: "timer".into(),
                });
                match timer.period {
                    Some(period) => timer.due += period,
                    None => {
                        let id = timer.id;
                        state.timers.retain(|timer| timer.id != id);
                    }
                }
            }
            state.now = until;
            fired
        })
    }

    /// Answers calls of `plugin`'s `command` with `reply` (a `String` error is
    /// what the target plugin failed with). Unscripted calls fail with `not-found`.
    pub fn on_command(
        &self,
        plugin: &str,
        command: &str,
        reply: impl FnMut(&[u8]) -> Result<Vec<u8>, String> + 'static,
    ) {
        fake::with(|state| {
            state
                .commands
                .insert((plugin.into(), command.into()), Box::new(reply))
        });
    }

    /// The command calls made so far: plugin, command, payload.
    pub fn calls(&self) -> Vec<(String, String, Vec<u8>)> {
        fake::with(|state| state.calls.clone())
    }

    /// Answers every HTTP request the plugin sends with `handler`. Without
    /// one, requests fail as [`HttpErrorKind::Denied`](crate::http::HttpErrorKind::Denied).
    pub fn on_http(&self, handler: impl FnMut(&Request) -> Result<Response, HttpError> + 'static) {
        fake::with(|state| state.http = Some(Box::new(handler)));
    }

    /// The HTTP requests sent so far.
    pub fn requests(&self) -> Vec<Request> {
        fake::with(|state| state.requests.clone())
    }

    /// Decides how [`net::connect`](crate::net::connect) answers; without a
    /// connector every connection is refused.
    pub fn on_connect(
        &self,
        connector: impl FnMut(SocketAddr) -> Result<(), ConnectError> + 'static,
    ) {
        fake::with(|state| state.connector = Some(Box::new(connector)));
    }

    /// A counter's value; `series` is `name` or `name{key=value,..}`.
    pub fn counter(&self, series: &str) -> Option<u64> {
        fake::with(|state| state.counters.get(series).copied())
    }

    /// A gauge's value; `series` is `name` or `name{key=value,..}`.
    pub fn gauge(&self, series: &str) -> Option<f64> {
        fake::with(|state| state.gauges.get(series).copied())
    }
}

/// A scripted HTTP response with `status`, `headers` and an in-memory body.
pub fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
            .collect(),
        body: Body::from_reader(std::io::Cursor::new(body.into())),
    }
}
