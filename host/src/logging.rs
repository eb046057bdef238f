//! Logging: tracing to stderr, plus an in-memory ring of recent records that
//! `cairn logs` reads through the admin socket.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::admin::api::LogRecord;

/// Records kept by the ring that [`init`] installs.
pub const DEFAULT_RING_CAPACITY: usize = 2000;

/// A bounded, shareable buffer of the most recent log records; the oldest
/// record is dropped when a new one arrives and the ring is full.
#[derive(Debug, Clone)]
pub struct LogRing {
    records: Arc<Mutex<VecDeque<LogRecord>>>,
    capacity: usize,
}

impl LogRing {
    /// An empty ring holding at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        LogRing {
            records: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// Appends a record, evicting the oldest when full.
    pub fn push(&self, record: LogRecord) {
        let mut records = self.lock();
        if records.len() == self.capacity {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// The newest `limit` records (of `plugin` only, when given), oldest first.
    pub fn recent(&self, plugin: Option<&str>, limit: usize) -> Vec<LogRecord> {
        let records = self.lock();
        let mut newest_first: Vec<LogRecord> = records
            .iter()
            .rev()
            .filter(|record| plugin.is_none() || record.plugin.as_deref() == plugin)
            .take(limit)
            .cloned()
            .collect();
        newest_first.reverse();
        newest_first
    }

    /// Records currently held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing has been logged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic while logging must not silence logging for good: ignore poisoning.
    fn lock(&self) -> MutexGuard<'_, VecDeque<LogRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A tracing layer that copies every event it sees into a [`LogRing`].
#[derive(Debug, Clone)]
pub struct RingLayer {
    ring: LogRing,
}

impl RingLayer {
    /// A layer that records into `ring`.
    pub fn new(ring: LogRing) -> Self {
        RingLayer { ring }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = RecordFields::default();
        event.record(&mut fields);
        let (message, plugin) = fields.finish();
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        self.ring.push(LogRecord {
            at_ms,
            level: event.metadata().level().to_string(),
            plugin,
            message,
        });
    }
}

/// Collects an event's message and `plugin` field; other fields are appended
/// to the message as `key=value`, the way the human formatter shows them.
#[derive(Default)]
struct RecordFields {
    message: String,
    plugin: Option<String>,
    extra: String,
}

impl Visit for RecordFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = Some(value.to_string()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.extra, " {name}={value:?}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // `plugin = %name` arrives here; its Debug form is the Display form.
            "plugin" => self.plugin = Some(format!("{value:?}")),
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.extra, " {name}={value:?}");
            }
        }
    }
}

impl RecordFields {
    /// The message with the other fields after it, and the plugin.
    fn finish(self) -> (String, Option<String>) {
        let RecordFields {
            mut message,
            plugin,
            extra,
        } = self;
        message.push_str(&extra);
        (message, plugin)
    }
}

/// Installs the global subscriber: `level` is a tracing filter (`info`,
/// `warn,cairn::kernel=debug`; `info` when invalid), output goes to stderr as
/// human-readable lines or, with `json`, one JSON object per line. Every event
/// that passes the filter is also kept in the returned ring.
///
/// Calling it again leaves the first subscriber in place (and returns a ring
/// that stays empty), which keeps tests that share a process simple.
pub fn init(level: &str, json: bool) -> LogRing {
    let ring = LogRing::new(DEFAULT_RING_CAPACITY);
    let (filter, invalid_level) = match EnvFilter::try_new(level) {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new("info"), Some(error)),
    };
    // Colours only for a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let human = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
    });
    let machine = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(human)
        .with(machine)
        .with(RingLayer::new(ring.clone()))
        .try_init();
    if installed.is_ok()
        && let Some(error) = invalid_level
    {
        tracing::warn!(%error, level, "invalid log level; logging at info");
    }
    ring
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn record(message: &str, plugin: Option<&str>) -> LogRecord {
        LogRecord {
            at_ms: 0,
            level: "INFO".to_string(),
            plugin: plugin.map(str::to_string),
            message: message.to_string(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_records_in_order() {
        let ring = LogRing::new(3);
        for index in 0..5 {
            ring.push(record(&index.to_string(), None));
        }
        let messages: Vec<_> = ring
            .recent(None, 10)
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(messages, ["2", "3", "4"]);
        let newest: Vec<_> = ring
            .recent(None, 2)
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(newest, ["3", "4"]);
    }

    #[test]
    fn recent_filters_by_plugin() {
        let ring = LogRing::new(10);
        ring.push(record("a", Some("counter")));
        ring.push(record("b", None));
        ring.push(record("c", Some("echo")));
        ring.push(record("d", Some("counter")));
        let counter: Vec<_> = ring
            .recent(Some("counter"), 10)
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(counter, ["a", "d"]);
        assert_eq!(ring.recent(Some("counter"), 1)[0].message, "d");
        assert!(ring.recent(Some("absent"), 10).is_empty());
    }

    #[test]
    fn the_layer_fills_plugin_message_and_fields() {
        let ring = LogRing::new(10);
        let subscriber = tracing_subscriber::registry().with(RingLayer::new(ring.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let name = String::from("counter");
            tracing::warn!(plugin = %name, calls = 3, "trapped: {}", "unreachable");
            tracing::info!(plugin = "echo", "started");
            tracing::error!(path = "/x", "host problem");
        });
        let records = ring.recent(None, 10);
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].plugin.as_deref(), Some("counter"));
        assert_eq!(records[0].level, "WARN");
        assert_eq!(records[0].message, "trapped: unreachable calls=3");
        assert_eq!(records[1].plugin.as_deref(), Some("echo"));
        assert_eq!(records[2].plugin, None);
        assert_eq!(records[2].message, "host problem path=\"/x\"");
        assert!(records[2].at_ms > 0);
    }
}
