//! Which handler serves which method and path.
//!
//! `/healthz` is open; every other path needs the bearer token, checked
//! before the path is even looked at, so that an anonymous client learns
//! nothing about what exists.

use cairn_sdk::http::server::{Params, Request, Response, Router};

use crate::api;
use crate::auth;
use crate::errors::ApiError;
use crate::install;

/// Serves one request; every failure becomes a JSON error reply.
pub fn handle(request: &Request) -> Response {
    route(request).unwrap_or_else(ApiError::into_response)
}

fn route(request: &Request) -> Result<Response, ApiError> {
    if request.path != "/healthz" {
        auth::check(request.header("authorization"))?;
    }
    router().dispatch(request)
}

/// A path parameter the pattern guarantees.
fn param<'a>(params: &'a Params, name: &str) -> &'a str {
    params.get(name).unwrap_or_default()
}

fn router() -> Router<ApiError> {
    Router::new()
        .get("/healthz", |_, _| Ok(api::healthz()))
        .get("/metrics", |_, _| api::metrics())
        .get("/v1/health", |_, _| api::health())
        .get("/v1/plugins", |_, _| api::list())
        .post("/v1/plugins", |request, _| install::install(&request.body))
        .get("/v1/plugins/{name}", |_, params| {
            api::get(param(params, "name"))
        })
        .delete("/v1/plugins/{name}", |_, params| {
            api::remove(param(params, "name"))
        })
        .post("/v1/plugins/{name}/rollback", |_, params| {
            api::rollback(param(params, "name"))
        })
        .post(
            "/v1/plugins/{name}/commands/{command}",
            |request, params| {
                api::command(
                    param(params, "name"),
                    param(params, "command"),
                    &request.body,
                )
            },
        )
}

#[cfg(test)]
mod tests {
    use cairn_sdk::http::Method;

    use super::*;

    fn status(method: Method, path: &str, token: Option<&str>) -> Response {
        let mut request = Request::new(method, path);
        if let Some(token) = token {
            request
                .headers
                .push(("authorization".into(), format!("Bearer {token}")));
        }
        handle(&request)
    }

    #[test]
    fn anonymous_clients_learn_nothing_about_paths() {
        // No token file is configured natively, so nobody gets past the check.
        let known = status(Method::Get, "/v1/plugins", None);
        let unknown = status(Method::Get, "/v1/nothing", None);
        assert_eq!(known.status, unknown.status);
        assert_ne!(known.status, 404);
    }
}
