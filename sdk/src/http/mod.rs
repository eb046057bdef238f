//! Sending HTTP requests (`wasi:http/outgoing-handler`) and serving them
//! ([`server`], `wasi:http/incoming-handler`).
//!
//! Sending needs `[grants.http-client]` in the plugin's policy; a request it
//! does not allow fails with [`HttpErrorKind::Denied`]. A plugin that never
//! calls [`Request::send`] does not import `wasi:http` at all.
//!
//! ```no_run
//! use std::io::Read;
//! use std::time::Duration;
//! use cairn_sdk::http::Request;
//!
//! # fn main() -> Result<(), cairn_sdk::http::HttpError> {
//! let response = Request::get("http://127.0.0.1:8080/status")
//!     .header("accept", "application/json")
//!     .timeout(Duration::from_secs(2))
//!     .send()?;
//! let body = response.bytes(64 * 1024)?;
//! # Ok(())
//! # }
//! ```
//!
//! [`resume`] continues a download from a byte offset with `Range`. Natively
//! (unit tests) requests go to the fake host of [`crate::testing`].

mod resume;
pub mod server;
#[cfg(target_arch = "wasm32")]
mod wasi;

use std::fmt;
use std::io::Read;
use std::time::Duration;

pub use resume::{ContentRange, Resumed, resume};

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Any other method, by name.
    Other(String),
}

impl Method {
    /// The method's name, e.g. `"GET"`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(name) => name,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long each phase of a request may take; `None` leaves it to the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Until the connection is established.
    pub connect: Option<Duration>,
    /// From sending the request until the response head arrives.
    pub first_byte: Option<Duration>,
    /// Between two chunks of the response body: a slow but moving download is fine.
    pub between_bytes: Option<Duration>,
}

/// An HTTP request to send, built step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values, in order (names as given).
    pub headers: Vec<(String, String)>,
    /// The body; empty sends none.
    pub body: Vec<u8>,
    /// Per-phase timeouts.
    pub timeouts: Timeouts,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new(Method::Get, url)
    }

    /// A `POST` request (add the body with [`Request::body`] or [`Request::json`]).
    pub fn post(url: impl Into<String>) -> Request {
        Request::new(Method::Post, url)
    }

    /// Adds a header (a repeated name adds another value).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets `value` as a JSON body, with `content-type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Request, HttpError> {
        let body = serde_json::to_vec(value)
            .map_err(|cause| HttpError::new(HttpErrorKind::InvalidRequest, cause.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Bounds connecting, waiting for the response and each wait for body
    /// bytes by the same `limit`.
    pub fn timeout(mut self, limit: Duration) -> Request {
        self.timeouts = Timeouts {
            connect: Some(limit),
            first_byte: Some(limit),
            between_bytes: Some(limit),
        };
        self
    }

    /// Bounds connecting.
    pub fn connect_timeout(mut self, limit: Duration) -> Request {
        self.timeouts.connect = Some(limit);
        self
    }

    /// Bounds the wait for the response head.
    pub fn first_byte_timeout(mut self, limit: Duration) -> Request {
        self.timeouts.first_byte = Some(limit);
        self
    }

    /// Bounds each wait for more body bytes.
    pub fn between_bytes_timeout(mut self, limit: Duration) -> Request {
        self.timeouts.between_bytes = Some(limit);
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Sends the request and waits for the response head; the body is read
    /// afterwards, as a stream, from [`Response::body`].
    pub fn send(self) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        return wasi::send(self);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::fake::http_send(self);
    }
}

/// A response: status and headers, with the body still to be read.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values that are UTF-8, in order.
    pub headers: Vec<(String, String)>,
    /// The body as a byte stream; reading fails with [`std::io::ErrorKind::TimedOut`]
    /// when no bytes arrive within the between-bytes timeout.
    pub body: Body,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// `Content-Length`, when the server sent a valid one.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Reads the whole body into memory, failing when it is longer than `max` bytes.
    pub fn bytes(self, max: u64) -> Result<Vec<u8>, HttpError> {
        let mut bytes = Vec::new();
        self.body
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|err| HttpError::from_io(&err))?;
        if bytes.len() as u64 > max {
            return Err(HttpError::new(
                HttpErrorKind::Protocol,
                format!("the body is longer than {max} bytes"),
            ));
        }
        Ok(bytes)
    }
}

/// A response body: bytes read from the host's stream as they arrive.
pub struct Body(Box<dyn Read>);

impl Body {
    /// A body that reads from `reader`: what fakes and tests hand out.
    pub fn from_reader(reader: impl Read + 'static) -> Body {
        Body(Box::new(reader))
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// What kind of failure an [`HttpError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// The policy's `[grants.http-client]` does not allow the request.
    Denied,
    /// The request itself is malformed (URL, method, header); retrying will not help.
    InvalidRequest,
    /// The connection could not be made (refused, DNS, unreachable).
    Connect,
    /// A timeout expired.
    Timeout,
    /// The server's answer broke the protocol, or the body stream failed.
    Protocol,
}

/// Why a request produced no (complete) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// What kind of failure.
    pub kind: HttpErrorKind,
    /// A one-line explanation.
    pub message: String,
}

impl HttpError {
    /// An error of `kind`.
    pub fn new(kind: HttpErrorKind, message: impl Into<String>) -> HttpError {
        HttpError {
            kind,
            message: message.into(),
        }
    }

    /// Whether another attempt may succeed: connection trouble and timeouts
    /// may pass, what the policy or the request itself got wrong will not.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Protocol
        )
    }

    /// The error a body read returned.
    pub fn from_io(err: &std::io::Error) -> HttpError {
        let kind = match err.kind() {
            std::io::ErrorKind::TimedOut => HttpErrorKind::Timeout,
            _ => HttpErrorKind::Protocol,
        };
        HttpError::new(kind, err.to_string())
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

/// Lets `?` turn an HTTP error into the `String` errors of [`Plugin`](crate::Plugin).
impl From<HttpError> for String {
    fn from(error: HttpError) -> Self {
        error.message
    }
}

/// An `http(s)://authority/path?query` URL split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub https: bool,
    pub authority: &'a str,
    pub path_with_query: String,
}

impl<'a> Target<'a> {
    pub(crate) fn parse(url: &'a str) -> Result<Target<'a>, HttpError> {
        let invalid = |why: &str| HttpError::new(HttpErrorKind::InvalidRequest, why.to_string());
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("the URL has no scheme"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => return Err(invalid(&format!("unsupported scheme `{other}`"))),
        };
        // The fragment never goes to the server.
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(invalid("the URL has no host"));
        }
        let path_with_query = match path.strip_prefix('?') {
            Some(_) => format!("/{path}"),
            None if path.is_empty() => "/".to_string(),
            None => path.to_string(),
        };
        Ok(Target {
            https,
            authority,
            path_with_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let target = Target::parse("https://example.com:8443/a/b?c=d").unwrap();
        assert!(target.https);
        assert_eq!(target.authority, "example.com:8443");
        assert_eq!(target.path_with_query, "/a/b?c=d");
        let bare = Target::parse("http://host").unwrap();
        assert_eq!(bare.path_with_query, "/");
        let query = Target::parse("http://host?x=1#top").unwrap();
        assert_eq!(query.path_with_query, "/?x=1");
        assert!(Target::parse("ftp://host/").is_err());
        assert!(Target::parse("http:///x").is_err());
        assert!(Target::parse("host/x").is_err());
    }

    #[test]
    fn the_builder_collects_headers_and_timeouts() {
        let request = Request::get("http://h/")
            .header("Range", "bytes=1-")
            .timeout(Duration::from_secs(3))
            .between_bytes_timeout(Duration::from_secs(9));
        assert_eq!(request.header_value("range"), Some("bytes=1-"));
        assert_eq!(request.timeouts.connect, Some(Duration::from_secs(3)));
        assert_eq!(request.timeouts.between_bytes, Some(Duration::from_secs(9)));
    }
}
