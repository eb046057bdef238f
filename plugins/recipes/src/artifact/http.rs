//! The `Transport` over the host's `wasi:http/outgoing-handler`.
//!
//! Kept thin on purpose: one GET, its status and three headers, and a body
//! stream with an idle timeout. Natively (unit tests) the imports are stubs,
//! so this only runs inside the component.

use std::io::{self, Read};
use std::time::Duration;

use super::fetch::{Response, Transport, TransportError};
use super::url::HttpUrl;
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme, http_error_code,
};
use crate::bindings::wasi::io::poll;
use crate::bindings::wasi::io::streams::{InputStream, StreamError};

pub(crate) struct WasiHttp;

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn fatal(message: impl Into<String>) -> TransportError {
    TransportError {
        retryable: false,
        message: message.into(),
    }
}

impl Transport for WasiHttp {
    fn get(
        &mut self,
        url: &HttpUrl,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let fields = Fields::new();
        for (name, value) in headers {
            fields
                .append(&name.to_ascii_lowercase(), value.as_bytes())
                .map_err(|err| fatal(format!("the header `{name}` is refused: {err:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let setup = |what: &str| fatal(format!("cannot build the request: invalid {what}"));
        let scheme = if url.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        request
            .set_method(&Method::Get)
            .map_err(|()| setup("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| setup("scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| setup("host"))?;
        request
            .set_path_with_query(Some(&url.path_and_query))
            .map_err(|()| setup("path"))?;
        let body = request.body().map_err(|()| setup("body"))?;
        OutgoingBody::finish(body, None).map_err(|err| failure(&err))?;
        let options = RequestOptions::new();
        let _ = options.set_connect_timeout(Some(nanos(timeout)));
        let _ = options.set_first_byte_timeout(Some(nanos(timeout)));
        let _ = options.set_between_bytes_timeout(Some(nanos(timeout)));
        let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| failure(&e))?;
        let ready = pending.subscribe();
        let deadline = monotonic_clock::subscribe_duration(nanos(timeout));
        poll::poll(&[&ready, &deadline]);
        drop(deadline);
        drop(ready);
        let response = match pending.get() {
            None => {
                return Err(TransportError {
                    retryable: true,
                    message: format!("no response within {timeout:?}"),
                });
            }
            Some(Err(())) => return Err(fatal("the response was already taken")),
            Some(Ok(Err(err))) => return Err(failure(&err)),
            Some(Ok(Ok(response))) => response,
        };
        let status = response.status();
        let (location, content_range, content_length) = {
            let headers = response.headers();
            let first = |name: &str| {
                headers
                    .get(name)
                    .into_iter()
                    .next()
                    .and_then(|value| String::from_utf8(value).ok())
            };
            (
                first("location"),
                first("content-range"),
                first("content-length").and_then(|len| len.trim().parse().ok()),
            )
        };
        let body = response
            .consume()
            .map_err(|()| fatal("the response body was already taken"))?;
        let stream = body
            .stream()
            .map_err(|()| fatal("the response body stream was already taken"))?;
        Ok(Response {
            status,
            location,
            content_range,
            content_length,
            body: Box::new(Body {
                stream,
                _body: body,
                _response: response,
                timeout,
            }),
        })
    }
}

/// A response body as `Read`. Field order is drop order: the stream is a
/// child of the body, which belongs to the response.
struct Body {
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
    /// How long to wait for the next bytes; a slow but moving download is fine.
    timeout: Duration,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.stream.read(buf.len() as u64) {
                Ok(bytes) if bytes.is_empty() => {
                    let ready = self.stream.subscribe();
                    let deadline = monotonic_clock::subscribe_duration(nanos(self.timeout));
                    poll::poll(&[&ready, &deadline]);
                    if !ready.ready() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no data for {:?}", self.timeout),
                        ));
                    }
                }
                Ok(bytes) => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    return Ok(n);
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(StreamError::LastOperationFailed(err)) => {
                    // Hosts may append a backtrace to the debug string;
                    // errors here are one line.
                    let message = match http_error_code(&err) {
                        Some(code) => failure(&code).message,
                        None => err
                            .to_debug_string()
                            .lines()
                            .next()
                            .unwrap_or("stream error")
                            .to_string(),
                    };
                    return Err(io::Error::other(message));
                }
            }
        }
    }
}

/// Connection trouble is retried; what the policy or the request itself got
/// wrong is not.
fn failure(err: &ErrorCode) -> TransportError {
    let (retryable, message) = match err {
        ErrorCode::HttpRequestDenied => (
            false,
            "the request is not allowed by [grants.http-client]".to_string(),
        ),
        ErrorCode::ConnectionRefused => (true, "connection refused".to_string()),
        ErrorCode::ConnectionTimeout => (true, "connection timed out".to_string()),
        ErrorCode::ConnectionReadTimeout => {
            (true, "timed out waiting for the response".to_string())
        }
        ErrorCode::DnsError(dns) => (
            true,
            format!(
                "DNS error: {}",
                dns.rcode.clone().unwrap_or_else(|| "lookup failed".into())
            ),
        ),
        ErrorCode::DestinationIpProhibited
        | ErrorCode::TlsCertificateError
        | ErrorCode::ConfigurationError
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_) => (false, format!("HTTP error: {err:?}")),
        other => (true, format!("HTTP error: {other:?}")),
    };
    TransportError { retryable, message }
}
