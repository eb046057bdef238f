//! A plain `wasi:http` component that fetches what it is asked to:
//! `GET /fetch?url=<url>` performs an outgoing `GET <url>` and answers
//! `200` with `status <code>\n<body>`, or `502` with `error <error-code>`
//! when the request fails (a refusal by the host is `HttpRequestDenied`).

wit_bindgen::generate!({
    path: "wit",
    world: "fetch",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};

const NAME: &str = "http-fetch";
const VERSION: &str = cairn_sdk::plugin_version!();
const LEN: usize = cairn_sdk::runtime::metadata_len(NAME, VERSION);
#[unsafe(link_section = "cairn-plugin")]
#[used]
static IDENTITY: [u8; LEN] = cairn_sdk::runtime::metadata::<LEN>(NAME, VERSION);

struct Fetch;

impl Guest for Fetch {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let Some(url) = path.split_once("?url=").map(|(_, url)| percent_decode(url)) else {
            return respond(out, 400, b"expected /fetch?url=<url>");
        };
        match fetch(&url) {
            Ok((status, body)) => {
                let mut text = format!("status {status}\n").into_bytes();
                text.extend_from_slice(&body);
                respond(out, 200, &text);
            }
            Err(err) => respond(out, 502, format!("error {err}").as_bytes()),
        }
    }
}

/// `GET url`: the status and body, or what went wrong.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let body = request.body().map_err(|()| "body")?;
    OutgoingBody::finish(body, None).map_err(|err| code(&err))?;
    let pending = outgoing_handler::handle(request, None).map_err(|err| code(&err))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|err| code(&err))?;
    let status = response.status();
    Ok((status, read_body(&response)?))
}

fn read_body(response: &IncomingResponse) -> Result<Vec<u8>, String> {
    let body = response.consume().map_err(|()| "consume")?;
    let stream = body.stream().map_err(|()| "stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(err)) => {
                let detail = wasi::http::types::http_error_code(&err)
                    .map(|code| format!("{code:?}"))
                    .unwrap_or_else(|| err.to_debug_string());
                return Err(format!("reading the body: {detail}"));
            }
        }
    }
    drop(stream);
    Ok(bytes)
}

fn code(err: &ErrorCode) -> String {
    format!("{err:?}")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

export!(Fetch);
