//! The API's errors: a stable code, an HTTP status and a message, always sent
//! as `{"error": {"code": "...", "message": "..."}}`.
//!
//! Every code is listed in `docs/http-api.md` and in the `ErrorCode` schema of
//! `docs/openapi.json`; renaming one is a breaking change of the API.

use cairn_sdk::Error;
use cairn_sdk::http::server::{NoRoute, Response, Router};
use serde_json::json;

/// An error reply.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// For `not-ready`: the version still serving (`None` inside: nothing serves).
    pub serving: Option<Option<String>>,
    /// For `plugin-error`: the code the plugin's own error body carried.
    pub plugin_code: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            serving: None,
            plugin_code: None,
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

    /// The error a capability call returned, by its kind.
    pub fn from_host(error: Error) -> ApiError {
        let message = error.message().to_string();
        match error {
            Error::Denied(_) => ApiError::new(403, "denied", message),
            Error::NotFound(_) => ApiError::not_found(message),
            Error::Invalid(_) => ApiError::new(400, "invalid", message),
            Error::QuotaExceeded(_) => ApiError::new(429, "quota-exceeded", message),
            Error::Unavailable(_) => ApiError::new(503, "unavailable", message),
            Error::Timeout(_) => ApiError::new(504, "timeout", message),
            Error::Internal(_) => ApiError::new(500, "internal", message),
            Error::Conflict(_) => ApiError::new(409, "conflict", message),
            Error::Rejected(_) => ApiError::new(422, "rejected", message),
            Error::NotReady(_) => ApiError::new(422, "not-ready", message),
        }
    }

    pub fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(serving) = self.serving {
            error["serving"] = json!(serving);
        }
        if let Some(code) = self.plugin_code {
            error["plugin-code"] = json!(code);
        }
        let mut response = Response::json(self.status, &json!({ "error": error }));
        let headers = self.headers.into_iter();
        response
            .headers
            .extend(headers.map(|(name, value)| (name.to_string(), value)));
        response
    }
}

/// A path no route serves is `not-found`; a method it does not take is
/// `method-not-allowed`, with `Allow`.
impl From<NoRoute> for ApiError {
    fn from(miss: NoRoute) -> Self {
        match miss {
            NoRoute::NotFound { path } => ApiError::not_found(format!("no such endpoint: {path}")),
            NoRoute::MethodNotAllowed { method, allowed } => {
                let allowed = Router::<ApiError>::allow_header(&allowed);
                let names: Vec<&str> = allowed.split(", ").collect();
                ApiError::method_not_allowed(method.as_str(), &names)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_error_kinds_map_to_codes_and_statuses() {
        let mapped = |error: Error| {
            let err = ApiError::from_host(error);
            (err.status, err.code)
        };
        assert_eq!(mapped(Error::NotReady("x".into())), (422, "not-ready"));
        assert_eq!(mapped(Error::Conflict("x".into())), (409, "conflict"));
        assert_eq!(mapped(Error::Rejected("x".into())), (422, "rejected"));
        assert_eq!(mapped(Error::Invalid("x".into())), (400, "invalid"));
        assert_eq!(mapped(Error::Denied("x".into())), (403, "denied"));
    }
}
