//! Error codes and the JSON error body.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an operation failed, by the variant names of the WIT `error` type.
///
/// The names (`not-found`, `quota-exceeded`…) are part of the wire format of
/// command errors, install events and the adapters' replies: renaming one is
/// a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The caller's policy does not allow it.
    Denied,
    /// What the call names does not exist.
    NotFound,
    /// An argument is malformed.
    Invalid,
    /// It would exceed a limit from the policy.
    QuotaExceeded,
    /// The target exists but cannot serve now.
    Unavailable,
    /// It did not complete within its deadline.
    Timeout,
    /// Something failed that the caller cannot fix.
    Internal,
    /// It conflicts with what is installed or running.
    Conflict,
    /// The artifact is refused for this device (signature or policy).
    Rejected,
    /// A new release did not start or become ready.
    NotReady,
}

impl ErrorCode {
    /// Every code, in WIT order.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::Denied,
        ErrorCode::NotFound,
        ErrorCode::Invalid,
        ErrorCode::QuotaExceeded,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::Conflict,
        ErrorCode::Rejected,
        ErrorCode::NotReady,
    ];

    /// The kebab-case name as written in the WIT, e.g. `"quota-exceeded"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Denied => "denied",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::QuotaExceeded => "quota-exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Rejected => "rejected",
            ErrorCode::NotReady => "not-ready",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the [`ErrorCode`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown error code `{}`", self.0)
    }
}

impl std::error::Error for UnknownErrorCode {}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
            .ok_or_else(|| UnknownErrorCode(name.to_string()))
    }
}

/// The JSON body of an error: `{"code": "not-found", "message": "..."}`.
///
/// A plugin command that fails through the SDK's command router returns this
/// JSON as its error string; the host's HTTP listener, its install-finished
/// event and the adapters wrap the same two keys in `{"error": ..}`.
///
/// `code` is a string rather than an [`ErrorCode`] because adapters add codes
/// of their own (`unauthorized`, `plugin-error`…); [`ErrorBody::error_code`]
/// reads it back as an [`ErrorCode`] when it is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine name, usually an [`ErrorCode`].
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ErrorBody {
    /// A body with one of the shared codes.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.as_str().to_string(),
            message: message.into(),
        }
    }

    /// The code as an [`ErrorCode`], or `None` for a code of an adapter's own.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code.parse().ok()
    }

    /// The body as compact JSON text.
    pub fn to_json(&self) -> String {
        // Two string fields always serialize; the fallback only keeps this total.
        serde_json::to_string(self)
            .unwrap_or_else(|_| format!(r#"{{"code":"internal","message":"{}"}}"#, self.code))
    }

    /// Reads a body from JSON text, e.g. the error string of a command;
    /// `None` when the text is not such a body (a plugin that fails with plain text).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Reads an error string that may or may not be a body: plain text
    /// becomes a body with `fallback` as its code and the text as message.
    pub fn parse_or(text: &str, fallback: &str) -> Self {
        ErrorBody::parse(text).unwrap_or_else(|| ErrorBody {
            code: fallback.to_string(),
            message: text.to_string(),
        })
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wit_names() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(
            "quota-exceeded".parse::<ErrorCode>(),
            Ok(ErrorCode::QuotaExceeded)
        );
        assert!("nope".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn bodies_have_the_wire_shape() {
        let body = ErrorBody::new(ErrorCode::NotFound, "unknown command `x`");
        let json: serde_json::Value = serde_json::from_str(&body.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "not-found", "message": "unknown command `x`"})
        );
        assert_eq!(ErrorBody::parse(&body.to_json()), Some(body.clone()));
        assert_eq!(body.error_code(), Some(ErrorCode::NotFound));
    }

    #[test]
    fn plain_text_errors_get_a_fallback_code() {
        let body = ErrorBody::parse_or("it broke", "plugin-error");
        assert_eq!(body.code, "plugin-error");
        assert_eq!(body.message, "it broke");
        assert_eq!(body.error_code(), None);
        assert_eq!(ErrorBody::parse("\"a string\""), None);
    }
}
