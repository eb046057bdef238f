//! The API's errors: a stable code, an HTTP status and a message, always sent
//! as `{"error": {"code": "...", "message": "..."}}`.
//!
//! Every code is listed in `docs/http-api.md` and in the `ErrorCode` schema of
//! `docs/openapi.json`; renaming one is a breaking change of the API.

use cairn_sdk::Error;
use serde_json::json;

use crate::http::Response;

/// An error reply.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// For `not-ready`: the version still serving (`None` inside: nothing serves).
    pub serving: Option<Option<String>>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            serving: None,
            headers: Vec::new(),
        }
    }

    /// 401: no or wrong bearer token.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        let mut err = ApiError::new(401, "unauthorized", message);
        err.headers
            .push(("www-authenticate", "Bearer realm=\"cairn\"".into()));
        err
    }

    /// 503: the adapter cannot check tokens, so it lets nobody in.
    pub fn misconfigured(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "misconfigured", message)
    }

    /// 400: the request itself is malformed (body not JSON, wrong fields, bad base64).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad-request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not-found", message)
    }

    /// 405 with the `Allow` header listing what the path accepts.
    pub fn method_not_allowed(method: &str, allowed: &[&str]) -> ApiError {
        let allow = allowed.join(", ");
        let mut err = ApiError::new(
            405,
            "method-not-allowed",
            format!("{method} is not allowed here (allowed: {allow})"),
        );
        err.headers.push(("allow", allow));
        err
    }

    /// The error a capability call returned, by its kind. Host refusals that
    /// arrive as `invalid` are told apart by their text (see [`classify_invalid`]).
    pub fn from_host(error: Error) -> ApiError {
        let message = error.message().to_string();
        match error {
            Error::Denied(_) => ApiError::new(403, "denied", message),
            Error::NotFound(_) => ApiError::not_found(message),
            Error::Invalid(_) => classify_invalid(message),
            Error::QuotaExceeded(_) => ApiError::new(429, "quota-exceeded", message),
            Error::Unavailable(_) => ApiError::new(503, "unavailable", message),
            Error::Timeout(_) => ApiError::new(504, "timeout", message),
            Error::Internal(_) => ApiError::new(500, "internal", message),
        }
    }

    pub fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(serving) = self.serving {
            error["serving"] = json!(serving);
        }
        let mut response = Response::json(self.status, &json!({ "error": error }));
        response.headers.extend(self.headers);
        response
    }
}

/// Whether a host message says a new release was started but did not become
/// ready (init failed, state handover refused, readiness timed out): the
/// previous release, if any, keeps serving.
pub fn is_start_failure(message: &str) -> bool {
    message.contains(": the new release ")
        || message.contains(": readiness check failed")
        || message.contains(": restoring state into the new release")
}

/// The host reports several refusals as `invalid`, each with a recognisable text.
fn classify_invalid(message: String) -> ApiError {
    if is_start_failure(&message) {
        ApiError::new(422, "not-ready", message)
    } else if message.contains("refusing to downgrade")
        || message.contains("already installed with different contents")
        || message.contains("is served by")
    {
        ApiError::new(409, "conflict", message)
    } else if message.starts_with("signature:") || message.starts_with("policy:") {
        ApiError::new(422, "rejected", message)
    } else {
        ApiError::new(400, "invalid", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_errors_are_told_apart() {
        let code = |text: &str| ApiError::from_host(Error::Invalid(text.into())).code;
        assert_eq!(
            code("versioned: the new release is not ready: unhealthy"),
            "not-ready"
        );
        assert_eq!(
            code("versioned: the new release failed to start: init failed: x"),
            "not-ready"
        );
        assert_eq!(
            code("refusing to downgrade from 0.2.0 to 0.1.0 (use --force)"),
            "conflict"
        );
        assert_eq!(code("signature: no signature"), "rejected");
        assert_eq!(code("not a component"), "invalid");
    }
}
