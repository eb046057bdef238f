//! Which handler serves which method and path.
//!
//! `/healthz` is open; every other path needs the bearer token, checked
//! before the path is even looked at, so that an anonymous client learns
//! nothing about what exists.

use crate::api;
use crate::auth;
use crate::errors::ApiError;
use crate::http::{Method, Request, Response};
use crate::install;

/// Serves one request; every failure becomes a JSON error reply.
pub fn handle(request: &Request) -> Response {
    route(request).unwrap_or_else(ApiError::into_response)
}

fn route(request: &Request) -> Result<Response, ApiError> {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let method = request.method;
    if segments == ["healthz"] {
        allow(method, &[Method::Get])?;
        return Ok(api::healthz());
    }
    auth::check(request.authorization.as_deref())?;
    match segments.as_slice() {
        ["metrics"] => {
            allow(method, &[Method::Get])?;
            api::metrics()
        }
        ["v1", "health"] => {
            allow(method, &[Method::Get])?;
            api::health()
        }
        ["v1", "plugins"] => match method {
            Method::Get => api::list(),
            Method::Post => install::install(&request.body),
            _ => Err(not_allowed(method, &[Method::Get, Method::Post])),
        },
        ["v1", "plugins", name] => match method {
            Method::Get => api::get(name),
            Method::Delete => api::remove(name),
            _ => Err(not_allowed(method, &[Method::Get, Method::Delete])),
        },
        ["v1", "plugins", name, "rollback"] => {
            allow(method, &[Method::Post])?;
            api::rollback(name)
        }
        ["v1", "plugins", name, "commands", command] => {
            allow(method, &[Method::Post])?;
            api::command(name, command, &request.body)
        }
        _ => Err(ApiError::not_found(format!(
            "no such endpoint: {}",
            request.path
        ))),
    }
}

fn allow(method: Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(&method) {
        Ok(())
    } else {
        Err(not_allowed(method, allowed))
    }
}

fn not_allowed(method: Method, allowed: &[Method]) -> ApiError {
    let names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
    ApiError::method_not_allowed(method.as_str(), &names)
}
