//! The error every capability call can return.

use std::fmt;

use crate::bindings::cairn::host::types::Error as WireError;

/// Why a capability call did not succeed.
///
/// Mirrors the host's `error` variant one to one; the string is the host's
/// human-readable explanation. Use [`Error::kind`] for a stable machine name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The plugin's policy does not grant this call (or this scope of it).
    Denied(String),
    /// The key, plugin, command or timer named in the call does not exist.
    NotFound(String),
    /// An argument (or a JSON value handled by the SDK) is malformed.
    Invalid(String),
    /// The call would exceed a limit from the plugin's policy.
    QuotaExceeded(String),
    /// The target exists but cannot serve now.
    Unavailable(String),
    /// The call did not complete within its deadline.
    Timeout(String),
    /// The host failed in a way the plugin cannot fix.
    Internal(String),
    /// The request conflicts with what is installed (a lower version without
    /// `force`, a route or name another plugin owns).
    Conflict(String),
    /// The artifact is refused for this device (signature or policy).
    Rejected(String),
    /// A new release did not start or become ready; the running one keeps serving.
    NotReady(String),
}

impl Error {
    /// The kebab-case name of the variant as written in the WIT, e.g. `"quota-exceeded"`.
    pub fn kind(&self) -> &'static str {
        self.code().as_str()
    }

    /// The variant as the shared [`ErrorCode`](crate::ErrorCode).
    pub fn code(&self) -> crate::ErrorCode {
        use crate::ErrorCode as Code;
        match self {
            Error::Denied(_) => Code::Denied,
            Error::NotFound(_) => Code::NotFound,
            Error::Invalid(_) => Code::Invalid,
            Error::QuotaExceeded(_) => Code::QuotaExceeded,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Timeout(_) => Code::Timeout,
            Error::Internal(_) => Code::Internal,
            Error::Conflict(_) => Code::Conflict,
            Error::Rejected(_) => Code::Rejected,
            Error::NotReady(_) => Code::NotReady,
        }
    }

    /// The host's explanation.
    pub fn message(&self) -> &str {
        match self {
            Error::Denied(message)
            | Error::NotFound(message)
            | Error::Invalid(message)
            | Error::QuotaExceeded(message)
            | Error::Unavailable(message)
            | Error::Timeout(message)
            | Error::Internal(message)
            | Error::Conflict(message)
            | Error::Rejected(message)
            | Error::NotReady(message) => message,
        }
    }

    pub(crate) fn invalid_json(what: &str, cause: serde_json::Error) -> Self {
        Error::Invalid(format!(
            "{what} is not valid JSON for the expected type: {cause}"
        ))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

/// Lets `?` turn a capability error into the `String` errors the [`Plugin`](crate::Plugin)
/// methods return.
impl From<Error> for String {
    fn from(error: Error) -> Self {
        error.to_string()
    }
}

impl From<WireError> for Error {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Denied(message) => Error::Denied(message),
            WireError::NotFound(message) => Error::NotFound(message),
            WireError::Invalid(message) => Error::Invalid(message),
            WireError::QuotaExceeded(message) => Error::QuotaExceeded(message),
            WireError::Unavailable(message) => Error::Unavailable(message),
            WireError::Timeout(message) => Error::Timeout(message),
            WireError::Internal(message) => Error::Internal(message),
            WireError::Conflict(message) => Error::Conflict(message),
            WireError::Rejected(message) => Error::Rejected(message),
            WireError::NotReady(message) => Error::NotReady(message),
        }
    }
}

/// The wire form of a capability error, e.g. for an adapter's JSON reply.
impl From<Error> for crate::ErrorBody {
    fn from(error: Error) -> Self {
        crate::ErrorBody::new(error.code(), error.message())
    }
}

/// Shorthand for results of capability calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
