//! How calls into plugins fail.

use std::time::Duration;

use super::instance::{DeadlineExceeded, InstanceState};

/// Why an instance stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access...).
    Trap,
    /// A call used more CPU time than the policy's `call-timeout`.
    Deadline,
    /// The guest needed more memory than the policy's `memory` limit.
    OutOfMemory,
}

/// A fault: the instance is discarded and restarted with backoff.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

impl Fault {
    /// Works out what happened from the error and the store's limit flags, and
    /// appends the last thing the plugin printed (its panic message, typically).
    pub fn classify(state: &InstanceState, err: &wasmtime::Error) -> Fault {
        let (kind, mut message) = if state.budget.exceeded || err.is::<DeadlineExceeded>() {
            (
                FaultKind::Deadline,
                "exceeded its CPU time limit".to_string(),
            )
        } else if state.limiter.denied {
            (
                FaultKind::OutOfMemory,
                "ran out of memory (policy limit reached)".to_string(),
            )
        } else if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            (FaultKind::Trap, format!("trapped: {trap}"))
        } else {
            (FaultKind::Trap, format!("failed: {}", err.root_cause()))
        };
        let output = state.output.tail();
        if let Some(last) = output.lines().rev().find(|line| !line.trim().is_empty()) {
            message.push_str(&format!(" (plugin output: {})", last.trim()));
        }
        Fault { kind, message }
    }
}

/// Why a call into a plugin did not return a reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin ran and returned this error.
    #[error("{0}")]
    Plugin(String),
    /// The instance faulted while serving the call.
    #[error("the plugin {0}")]
    Fault(Fault),
    /// The plugin is restarting, stopped, or not running.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No reply within the caller's wait.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// Why a release could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    #[error("init failed: {0}")]
    Init(String),
    #[error("faulted while starting: {0}")]
    Fault(Fault),
    #[error("no free instance slot (the runtime's max-instances is reached)")]
    PoolExhausted,
}
