//! Reading a `wasi:http` request into plain values, and writing a response.

use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::errors::ApiError;

/// How much is read from the body stream at once. The host bounds the whole
/// body (`max-body-size`, 413 before the adapter sees it).
const READ_CHUNK: u64 = 64 * 1024;
const WRITE_CHUNK: usize = 4096;

/// The request methods the API knows; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
    Other,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }
}

/// A request as the routes see it.
pub struct Request {
    pub method: Method,
    /// The path without the query.
    pub path: String,
    /// The first `Authorization` header, if it is UTF-8.
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// A response to send.
pub struct Response {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::bytes(status, "application/json", value.to_string().into_bytes())
    }

    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: Some(content_type),
            headers: Vec::new(),
            body,
        }
    }

    pub fn no_content() -> Response {
        Response {
            status: 204,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// Reads the method, path, `Authorization` and the whole body.
pub fn read(request: IncomingRequest) -> Result<Request, ApiError> {
    let method = match request.method() {
        WasiMethod::Get => Method::Get,
        WasiMethod::Post => Method::Post,
        WasiMethod::Delete => Method::Delete,
        _ => Method::Other,
    };
    let target = request.path_with_query().unwrap_or_else(|| "/".into());
    let path = match target.split_once('?') {
        Some((path, _query)) => path.to_string(),
        None => target,
    };
    let authorization = request
        .headers()
        .get("authorization")
        .into_iter()
        .next()
        .and_then(|value| String::from_utf8(value).ok());
    let body = read_body(&request)?;
    Ok(Request {
        method,
        path,
        authorization,
        body,
    })
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let unreadable = |what: &str| ApiError::bad_request(format!("the request body {what}"));
    let body = request
        .consume()
        .map_err(|()| unreadable("was already consumed"))?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| unreadable("has no stream"))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => {
                    return Err(unreadable("could not be read to its end"));
                }
            }
        }
        // The stream is dropped here, before its body.
    }
    drop(body);
    Ok(bytes)
}

/// Sends `response`; write errors (the client went away) are ignored.
pub fn send(out: ResponseOutparam, response: Response) {
    let headers = Fields::new();
    if let Some(content_type) = response.content_type {
        let _ = headers.append("content-type", content_type.as_bytes());
    }
    let _ = headers.append("x-cairn-adapter-version", crate::VERSION.as_bytes());
    for (name, value) in &response.headers {
        let _ = headers.append(name, value.as_bytes());
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
