//! Glue between `wasi:http/incoming-handler` and a [`Handler`].
//!
//! Reached only through [`export_http_handler!`](crate::export_http_handler).

use std::marker::PhantomData;

use super::{Handler, Request, Response};
use crate::ErrorBody;
use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::http::Method;
use crate::http_bindings::exports::wasi::http::incoming_handler::Guest;

/// How much is read from the body stream at once.
const READ_CHUNK: u64 = 64 * 1024;
/// How much one write hands to the host (its streams take small chunks).
const WRITE_CHUNK: usize = 4096;

/// Implements the `incoming-handler` export for handler type `H`.
pub struct Exports<H>(PhantomData<H>);

impl<H: Handler> Guest for Exports<H> {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let response = match read(request) {
            Ok(request) => H::handle(request),
            Err(message) => {
                Response::error(400, &ErrorBody::new(crate::ErrorCode::Invalid, message))
            }
        };
        send(out, response);
    }
}

fn method(method: WasiMethod) -> Method {
    match method {
        WasiMethod::Get => Method::Get,
        WasiMethod::Head => Method::Head,
        WasiMethod::Post => Method::Post,
        WasiMethod::Put => Method::Put,
        WasiMethod::Delete => Method::Delete,
        WasiMethod::Patch => Method::Patch,
        WasiMethod::Options => Method::Options,
        WasiMethod::Connect => Method::Other("CONNECT".into()),
        WasiMethod::Trace => Method::Other("TRACE".into()),
        WasiMethod::Other(name) => Method::Other(name),
    }
}

fn read(incoming: IncomingRequest) -> Result<Request, String> {
    let target = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let mut request = Request::new(method(incoming.method()), &target);
    request.headers = incoming
        .headers()
        .entries()
        .into_iter()
        .filter_map(|(name, value)| Some((name, String::from_utf8(value).ok()?)))
        .collect();
    let body = incoming
        .consume()
        .map_err(|()| "the request body was already consumed".to_string())?;
    {
        let stream = body
            .stream()
            .map_err(|()| "the request body has no stream".to_string())?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => request.body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => {
                    return Err("the request body could not be read to its end".into());
                }
            }
        }
        // The stream is dropped here, before its body.
    }
    drop(body);
    Ok(request)
}

/// Sends `response`; write errors (the client went away) are ignored.
fn send(out: ResponseOutparam, response: Response) {
    let headers = Fields::new();
    for (name, value) in &response.headers {
        let _ = headers.append(&name.to_ascii_lowercase(), value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        for chunk in response.body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}
