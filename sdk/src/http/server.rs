//! Serving HTTP: the request and response a handler sees, a small router,
//! and [`export_http_handler!`](crate::export_http_handler) to plug a
//! [`Handler`] into the host's listener (`wasi:http/incoming-handler`).
//!
//! The host's listener serves the routes the plugin's policy grants
//! (`[grants.http-server]`). Requests run on pooled instances where
//! [`Plugin::init`](crate::Plugin::init) never ran, so a handler reads its
//! configuration with [`Config::from_env`](crate::Config::from_env).
//!
//! ```no_run
//! use cairn_sdk::http::server::{Handler, NoRoute, Params, Request, Response, Router};
//!
//! fn hello(_: &Request, params: &Params) -> Result<Response, NoRoute> {
//!     let name = params.get("name").unwrap_or("world");
//!     Ok(Response::text(200, format!("hello, {name}")))
//! }
//!
//! struct Api;
//!
//! impl Handler for Api {
//!     fn handle(request: Request) -> Response {
//!         let router = Router::new().get("/hello/{name}", hello);
//!         router.dispatch(&request).unwrap_or_else(|no_route| no_route.into_response())
//!     }
//! }
//!
//! cairn_sdk::export_http_handler!(Api);
//! ```

use serde::Serialize;

use super::Method;
use crate::ErrorBody;

mod wasi;

#[doc(hidden)]
pub use wasi::Exports;

/// An incoming request, its body read in full (the host bounds its size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query, without the `?`.
    pub query: Option<String>,
    /// Header names (lower case) and values that are UTF-8, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request without headers or body: what tests build.
    pub fn new(method: Method, path_with_query: &str) -> Request {
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path, Some(query.to_string())),
            None => (path_with_query, None),
        };
        Request {
            method,
            path: if path.is_empty() { "/" } else { path }.to_string(),
            query,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::first_header(&self.headers, name)
    }
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `body` of `content_type`.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::bytes(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }

    /// An `application/json` response.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::bytes(status, "application/json", body),
            Err(err) => Response::error(
                500,
                &ErrorBody::new(crate::ErrorCode::Internal, err.to_string()),
            ),
        }
    }

    /// The JSON error reply `{"error": {"code": .., "message": ..}}`, the
    /// shape of the host listener's own errors.
    pub fn error(status: u16, body: &ErrorBody) -> Response {
        Response::json(status, &serde_json::json!({ "error": body }))
    }

    /// `204 No Content`.
    pub fn no_content() -> Response {
        Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a plugin's HTTP side implements; export it with
/// [`export_http_handler!`](crate::export_http_handler).
pub trait Handler {
    /// Answers one request. Called once per request, on a pooled instance.
    fn handle(request: Request) -> Response;
}

/// The parts of a path that a route's `{name}` and `{*name}` segments matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why the router found no handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No route matches the path.
    NotFound {
        /// The request's path.
        path: String,
    },
    /// Routes match the path, but none for this method.
    MethodNotAllowed {
        /// The request's method.
        method: Method,
        /// The methods the path accepts, in route order.
        allowed: Vec<Method>,
    },
}

impl NoRoute {
    /// The standard reply: 404 `not-found`, or 405 `method-not-allowed` with `Allow`.
    pub fn into_response(self) -> Response {
        match self {
            NoRoute::NotFound { path } => Response::error(
                404,
                &ErrorBody::new(
                    crate::ErrorCode::NotFound,
                    format!("no such endpoint: {path}"),
                ),
            ),
            NoRoute::MethodNotAllowed { method, allowed } => {
                let allow = Router::<NoRoute>::allow_header(&allowed);
                let body = ErrorBody {
                    code: "method-not-allowed".into(),
                    message: format!("{method} is not allowed here (allowed: {allow})"),
                };
                Response::error(405, &body).with_header("allow", allow)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{*name}`: the rest of the path, possibly empty.
    Rest(String),
}

type RouteHandler<E> = Box<dyn Fn(&Request, &Params) -> Result<Response, E>>;

struct Route<E> {
    method: Method,
    pattern: Vec<Segment>,
    handler: RouteHandler<E>,
}

/// Routes requests by method and path pattern to handlers returning
/// `Result<Response, E>`.
///
/// Patterns are paths whose segments may be `{name}` (one segment) or, last,
/// `{*name}` (the rest of the path): `/v1/plugins/{name}/commands/{command}`,
/// `/files/{*path}`. Routes are tried in the order they were added. A path
/// no route matches is [`NoRoute::NotFound`]; one that matches only with other
/// methods is [`NoRoute::MethodNotAllowed`]; both turn into `E` through `From`.
pub struct Router<E = NoRoute> {
    routes: Vec<Route<E>>,
}

impl<E: From<NoRoute>> Default for Router<E> {
    fn default() -> Self {
        Router::new()
    }
}

impl<E: From<NoRoute>> Router<E> {
    /// A router without routes.
    pub fn new() -> Self {
        Router { routes: Vec::new() }
    }

    /// Adds a route for `method` and `pattern`.
    pub fn route(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Result<Response, E> + 'static,
    ) -> Self {
        let pattern = split(pattern)
            .map(|segment| {
                match segment
                    .strip_prefix('{')
                    .and_then(|inner| inner.strip_suffix('}'))
                {
                    Some(inner) => match inner.strip_prefix('*') {
                        Some(rest) => Segment::Rest(rest.to_string()),
                        None => Segment::Param(inner.to_string()),
                    },
                    None => Segment::Literal(segment.to_string()),
                }
            })
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a `GET` route.
    pub fn get(
        self,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Result<Response, E> + 'static,
    ) -> Self {
        self.route(Method::Get, pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post(
        self,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Result<Response, E> + 'static,
    ) -> Self {
        self.route(Method::Post, pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete(
        self,
        pattern: &str,
        handler: impl Fn(&Request, &Params) -> Result<Response, E> + 'static,
    ) -> Self {
        self.route(Method::Delete, pattern, handler)
    }

    /// Runs the handler of the first route matching the request.
    pub fn dispatch(&self, request: &Request) -> Result<Response, E> {
        let segments: Vec<&str> = split(&request.path).collect();
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(params) = matches(&route.pattern, &segments) else {
                continue;
            };
            if route.method == request.method {
                return (route.handler)(request, &params);
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
        }
        Err(E::from(if allowed.is_empty() {
            NoRoute::NotFound {
                path: request.path.clone(),
            }
        } else {
            NoRoute::MethodNotAllowed {
                method: request.method.clone(),
                allowed,
            }
        }))
    }

    /// The value of an `Allow` header for `methods`.
    pub fn allow_header(methods: &[Method]) -> String {
        let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
        names.join(", ")
    }
}

/// A path's segments; `/` alone has one empty segment, like `/a/` has a trailing one.
fn split(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

fn matches(pattern: &[Segment], segments: &[&str]) -> Option<Params> {
    let mut params = Vec::new();
    for (at, part) in pattern.iter().enumerate() {
        match part {
            Segment::Rest(name) => {
                let rest = segments.get(at..).unwrap_or_default().join("/");
                params.push((name.clone(), rest));
                return Some(Params(params));
            }
            Segment::Literal(literal) => {
                if segments.get(at) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                let value = segments.get(at).filter(|value| !value.is_empty())?;
                params.push((name.clone(), (*value).to_string()));
            }
        }
    }
    (pattern.len() == segments.len()).then_some(Params(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let echo = |label: &'static str| {
            move |_: &Request, params: &Params| -> Result<Response, NoRoute> {
                let name = params.get("name").unwrap_or("-");
                let rest = params.get("rest").unwrap_or("-");
                Ok(Response::text(200, format!("{label} {name} {rest}")))
            }
        };
        Router::new()
            .get("/healthz", echo("healthz"))
            .get("/v1/plugins/{name}", echo("get"))
            .delete("/v1/plugins/{name}", echo("delete"))
            .get("/files/{*rest}", echo("files"))
    }

    fn body(method: Method, path: &str) -> Result<String, NoRoute> {
        router()
            .dispatch(&Request::new(method, path))
            .map(|response| String::from_utf8(response.body).unwrap())
    }

    #[test]
    fn routes_match_by_method_and_pattern() {
        assert_eq!(body(Method::Get, "/healthz").unwrap(), "healthz - -");
        assert_eq!(body(Method::Get, "/v1/plugins/x?y=1").unwrap(), "get x -");
        assert_eq!(body(Method::Delete, "/v1/plugins/x").unwrap(), "delete x -");
        assert_eq!(
            body(Method::Get, "/files/a/b.txt").unwrap(),
            "files - a/b.txt"
        );
        assert_eq!(body(Method::Get, "/files/").unwrap(), "files - ");
    }

    #[test]
    fn misses_say_why() {
        assert_eq!(
            body(Method::Get, "/v1/plugins/"),
            Err(NoRoute::NotFound {
                path: "/v1/plugins/".into()
            })
        );
        assert!(matches!(
            body(Method::Get, "/v1/plugins/x/y"),
            Err(NoRoute::NotFound { .. })
        ));
        let Err(refused) = body(Method::Post, "/v1/plugins/x") else {
            panic!("POST has no route");
        };
        let response = refused.into_response();
        assert_eq!(response.status, 405);
        assert!(
            response
                .headers
                .contains(&("allow".into(), "GET, DELETE".into()))
        );
    }
}
