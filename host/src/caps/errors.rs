//! How a capability error is written in JSON replies and events.

use crate::contract::bindings::CapError;

/// The error's variant name as written in the WIT (`quota-exceeded`…), for JSON replies.
pub fn error_code(err: &CapError) -> &'static str {
    match err {
        CapError::Denied(_) => "denied",
        CapError::NotFound(_) => "not-found",
        CapError::Invalid(_) => "invalid",
        CapError::QuotaExceeded(_) => "quota-exceeded",
        CapError::Unavailable(_) => "unavailable",
        CapError::Timeout(_) => "timeout",
        CapError::Internal(_) => "internal",
        CapError::Conflict(_) => "conflict",
        CapError::Rejected(_) => "rejected",
        CapError::NotReady(_) => "not-ready",
    }
}

/// The explanation an error carries.
pub fn error_message(err: &CapError) -> &str {
    match err {
        CapError::Denied(text)
        | CapError::NotFound(text)
        | CapError::Invalid(text)
        | CapError::QuotaExceeded(text)
        | CapError::Unavailable(text)
        | CapError::Timeout(text)
        | CapError::Internal(text)
        | CapError::Conflict(text)
        | CapError::Rejected(text)
        | CapError::NotReady(text) => text,
    }
}
