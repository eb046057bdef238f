//! One-shot and periodic timers, delivered as events (`cairn:host/timer`).
//!
//! When a timer fires, [`Plugin::on_event`](crate::Plugin::on_event) receives
//! an [`Event`](crate::Event) with the given topic and source `timer`. Timer
//! events are private to the plugin and need no events grant. Timers end with
//! the running instance. Needs `[grants.timer]` (`max-timers`, `min-interval`).

use std::time::Duration;

use crate::Result;
#[cfg(target_arch = "wasm32")]
use crate::bindings::cairn::host::timer as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::timer as host;

/// Milliseconds since the Unix epoch by the wall clock (0 if it reads
/// before 1970): for timestamps in records and replies.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Handle of a pending timer, unique within the running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u64);

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Fires once after `delay` (millisecond precision), with an event on `topic`.
pub fn once(delay: Duration, topic: &str) -> Result<TimerId> {
    Ok(TimerId(host::once(millis(delay), topic)?))
}

/// Fires every `period` (millisecond precision) until cancelled, with an event on `topic`.
///
/// Fails with [`Error::Invalid`](crate::Error::Invalid) or
/// [`Error::QuotaExceeded`](crate::Error::QuotaExceeded) when the period is
/// below the policy's `min-interval` or too many timers are pending.
pub fn interval(period: Duration, topic: &str) -> Result<TimerId> {
    Ok(TimerId(host::interval(millis(period), topic)?))
}

/// Cancels a timer; returns whether it was still pending.
pub fn cancel(id: TimerId) -> Result<bool> {
    Ok(host::cancel(id.0)?)
}
