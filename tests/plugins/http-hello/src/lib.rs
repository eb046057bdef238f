//! A plain `wasi:http` handler built with wit-bindgen alone, the way any
//! toolchain builds one. What it does depends on the path:
//!
//! - `/hello/echo`: answers with the request body;
//! - `/hello/trap`: panics (a trap);
//! - `/hello/spin`: loops until the host's CPU deadline stops it;
//! - anything else: `hello from http-hello <version> at <path>`, with a counter
//!   of requests this instance served (so reuse is visible).

wit_bindgen::generate!({
    path: "wit",
    world: "hello",
    generate_all,
});

use std::sync::atomic::{AtomicU64, Ordering};

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const NAME: &str = "http-hello";
const VERSION: &str = cairn_sdk::plugin_version!();
#[cfg_attr(anonymous, allow(dead_code))]
const LEN: usize = cairn_sdk::runtime::metadata_len(NAME, VERSION);
// Built with CAIRN_TEST_MODE=anonymous, the component carries no identity, as a
// component from another toolchain would not.
#[cfg(not(anonymous))]
#[unsafe(link_section = "cairn-plugin")]
#[used]
static IDENTITY: [u8; LEN] = cairn_sdk::runtime::metadata::<LEN>(NAME, VERSION);

static SERVED: AtomicU64 = AtomicU64::new(0);

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match path.as_str() {
            "/hello/echo" => (200, read_body(&request)),
            "/hello/trap" => panic!("asked to trap"),
            "/hello/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => (
                200,
                format!(
                    "hello from {NAME} {VERSION} at {path} (request {served} of this instance)"
                )
                .into_bytes(),
            ),
        };
        respond(out, status, &body);
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    let Ok(stream) = body.stream() else {
        return bytes;
    };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    bytes
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

export!(Hello);
