//! [`Request::send`] over the host's `wasi:http/outgoing-handler`.

use std::io::{self, Read};
use std::time::Duration;

use super::{Body, HttpError, HttpErrorKind, Method, Request, Response, Target};
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method as WasiMethod, OutgoingBody,
    OutgoingRequest, RequestOptions, Scheme, http_error_code,
};
use crate::bindings::wasi::io::poll;
use crate::bindings::wasi::io::streams::{InputStream, StreamError};

/// How much one body write hands to the host (its streams take small chunks).
const WRITE_CHUNK: usize = 4096;
/// How long to wait for the response head when no first-byte timeout is set.
const NO_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn invalid(message: impl Into<String>) -> HttpError {
    HttpError::new(HttpErrorKind::InvalidRequest, message)
}

fn method(method: &Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Patch => WasiMethod::Patch,
        Method::Options => WasiMethod::Options,
        Method::Other(name) => WasiMethod::Other(name.clone()),
    }
}

pub(super) fn send(request: Request) -> Result<Response, HttpError> {
    let target = Target::parse(&request.url)?;
    let fields = Fields::new();
    for (name, value) in &request.headers {
        fields
            .append(&name.to_ascii_lowercase(), value.as_bytes())
            .map_err(|err| invalid(format!("the header `{name}` is refused: {err:?}")))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let setup = |what: &str| invalid(format!("cannot build the request: invalid {what}"));
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    outgoing
        .set_method(&method(&request.method))
        .map_err(|()| setup("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| setup("scheme"))?;
    outgoing
        .set_authority(Some(target.authority))
        .map_err(|()| setup("host"))?;
    outgoing
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| setup("path"))?;
    let body = outgoing.body().map_err(|()| setup("body"))?;
    let options = RequestOptions::new();
    let timeouts = request.timeouts;
    // A host that does not support a timeout refuses to set it; the poll
    // below still bounds the wait for the head.
    let _ = options.set_connect_timeout(timeouts.connect.map(nanos));
    let _ = options.set_first_byte_timeout(timeouts.first_byte.map(nanos));
    let _ = options.set_between_bytes_timeout(timeouts.between_bytes.map(nanos));
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(|e| failure(&e))?;
    write_body(&body, &request.body)?;
    OutgoingBody::finish(body, None).map_err(|err| failure(&err))?;

    // The host enforces its own timeouts; this only stops a host without them
    // from keeping the plugin waiting for ever.
    let wait = match (timeouts.connect, timeouts.first_byte) {
        (Some(connect), Some(first)) => connect.max(first),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => NO_LIMIT,
    };
    {
        let ready = pending.subscribe();
        let deadline = monotonic_clock::subscribe_duration(nanos(wait));
        poll::poll(&[&ready, &deadline]);
    }
    let response = match pending.get() {
        None => {
            return Err(HttpError::new(
                HttpErrorKind::Timeout,
                format!("no response within {wait:?}"),
            ));
        }
        Some(Err(())) => return Err(invalid("the response was already taken")),
        Some(Ok(Err(err))) => return Err(failure(&err)),
        Some(Ok(Ok(response))) => response,
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .filter_map(|(name, value)| Some((name, String::from_utf8(value).ok()?)))
        .collect();
    let protocol = |what: &str| HttpError::new(HttpErrorKind::Protocol, what.to_string());
    let incoming = response
        .consume()
        .map_err(|()| protocol("the response body was already taken"))?;
    let stream = incoming
        .stream()
        .map_err(|()| protocol("the response body stream was already taken"))?;
    Ok(Response {
        status,
        headers,
        body: Body::from_reader(Stream {
            stream,
            _body: incoming,
            _response: response,
            idle: timeouts.between_bytes,
        }),
    })
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|()| invalid("the request body stream was already taken"))?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream.blocking_write_and_flush(chunk).map_err(|err| {
            HttpError::new(
                HttpErrorKind::Protocol,
                format!("sending the request body: {}", stream_error(err)),
            )
        })?;
    }
    Ok(())
}

/// A response body stream. Field order is drop order: the stream is a child
/// of the body, which belongs to the response.
struct Stream {
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
    idle: Option<Duration>,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.stream.read(buf.len() as u64) {
                Ok(bytes) if bytes.is_empty() => {
                    let ready = self.stream.subscribe();
                    let Some(idle) = self.idle else {
                        ready.block();
                        continue;
                    };
                    let deadline = monotonic_clock::subscribe_duration(nanos(idle));
                    poll::poll(&[&ready, &deadline]);
                    if !ready.ready() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no data for {idle:?}"),
                        ));
                    }
                }
                Ok(bytes) => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    return Ok(n);
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(err) => return Err(io::Error::other(stream_error(err))),
            }
        }
    }
}

/// One line about a failed stream: the HTTP error when there is one, else the
/// first line of the host's debug text (hosts may append a backtrace).
fn stream_error(err: StreamError) -> String {
    match err {
        StreamError::Closed => "the stream is closed".to_string(),
        StreamError::LastOperationFailed(err) => match http_error_code(&err) {
            Some(code) => failure(&code).message,
            None => err
                .to_debug_string()
                .lines()
                .next()
                .unwrap_or("stream error")
                .to_string(),
        },
    }
}

/// Sorts the host's error codes into the kinds callers act on.
fn failure(err: &ErrorCode) -> HttpError {
    use HttpErrorKind::*;
    let (kind, message) = match err {
        ErrorCode::HttpRequestDenied => (
            Denied,
            "the request is not allowed by [grants.http-client]".to_string(),
        ),
        ErrorCode::ConnectionRefused => (Connect, "connection refused".to_string()),
        ErrorCode::ConnectionTimeout => (Timeout, "connection timed out".to_string()),
        ErrorCode::ConnectionReadTimeout => {
            (Timeout, "timed out waiting for the response".to_string())
        }
        ErrorCode::DnsError(dns) => (
            Connect,
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
        | ErrorCode::HttpRequestHeaderSize(_) => (InvalidRequest, format!("HTTP error: {err:?}")),
        other => (Protocol, format!("HTTP error: {other:?}")),
    };
    HttpError::new(kind, message)
}
