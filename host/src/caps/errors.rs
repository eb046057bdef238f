//! How a capability error is written in JSON replies and events: the shared
//! [`ErrorCode`] names and [`ErrorBody`] of `cairn-types`.

use cairn_types::{ErrorBody, ErrorCode};

use crate::contract::bindings::CapError;

/// The error's code, named as in the WIT (`quota-exceeded`…).
pub fn error_code(err: &CapError) -> ErrorCode {
    match err {
        CapError::Denied(_) => ErrorCode::Denied,
        CapError::NotFound(_) => ErrorCode::NotFound,
        CapError::Invalid(_) => ErrorCode::Invalid,
        CapError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
        CapError::Unavailable(_) => ErrorCode::Unavailable,
        CapError::Timeout(_) => ErrorCode::Timeout,
        CapError::Internal(_) => ErrorCode::Internal,
        CapError::Conflict(_) => ErrorCode::Conflict,
        CapError::Rejected(_) => ErrorCode::Rejected,
        CapError::NotReady(_) => ErrorCode::NotReady,
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

/// The error as the JSON body replies and events carry.
pub fn error_body(err: &CapError) -> ErrorBody {
    ErrorBody::new(error_code(err), error_message(err))
}
