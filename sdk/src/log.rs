//! Structured logging into the host's log (`cairn:host/log`).
//!
//! Records are tagged with the plugin's name by the host. Usually reached
//! through the [`info!`](crate::info), [`warn!`](crate::warn),
//! [`error!`](crate::error), [`debug!`](crate::debug) and
//! [`trace!`](crate::trace) macros, which take `format!` arguments.
//! Needs `[grants.log]`; without it records are dropped.

use crate::bindings::cairn::host::log as host;

/// Severity of a log record, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing, normally filtered out.
    Trace,
    /// Diagnostic detail for developers.
    Debug,
    /// Normal operational messages.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

impl From<Level> for host::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        }
    }
}

/// Writes one record. The host truncates messages longer than 8 KiB.
pub fn write(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::write(level.into(), message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::fake::log::write(level, message);
}

/// Logs at [`Level::Trace`] with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Debug`] with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Info`] with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Warn`] with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs at [`Level::Error`] with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}
