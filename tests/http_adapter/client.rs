//! The client side of the HTTP API tests: a daemon with the adapter
//! installed, and requests that are checked against `docs/openapi.json` as
//! they are sent.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::http::{Reply, request_with_timeout};
use crate::harness::{self, Daemon, Options, plugin_wasm};
use crate::openapi::{Spec, path_matches};

pub static SPEC: LazyLock<Spec> = LazyLock::new(Spec::load);

/// The listener's `max-body-size` in these tests.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

pub const TOKEN: &str = "correct-horse-battery-staple";

/// A daemon with an HTTP listener (2 MiB body limit) and the adapter installed.
pub struct Device {
    pub daemon: Daemon,
    pub address: String,
}

impl Device {
    pub fn token_file(&self) -> PathBuf {
        token_file(&self.daemon)
    }

    pub fn install(&self, wasm: &Path) {
        self.daemon.install(wasm).expect("install a plugin");
    }
}

pub fn token_file(daemon: &Daemon) -> PathBuf {
    daemon.root().join("api/token")
}

/// Starts the daemon and writes the adapter's policy; the token file is not written yet.
pub fn bare_device(options: Options) -> Device {
    let mut options = options;
    options.extra_config.push_str(
        "[listeners.http]\naddress = \"127.0.0.1:0\"\nmax-body-size = \"2MiB\"\nrequest-timeout = \"120s\"\n",
    );
    let daemon = Daemon::start_with(options);
    let address = daemon.http_address();
    let api_dir = daemon.root().join("api");
    std::fs::create_dir_all(&api_dir).unwrap();
    let policy = std::fs::read_to_string(harness::workspace().join("policies/http-adapter.toml"))
        .unwrap()
        .replace(
            "/etc/cairn/api/token",
            token_file(&daemon).to_str().unwrap(),
        )
        .replace(
            "\"/etc/cairn/api\"",
            &format!("{:?}", api_dir.to_str().unwrap()),
        );
    assert!(policy.contains(api_dir.to_str().unwrap()), "{policy}");
    daemon.write_policy("http-adapter", &policy);
    Device { daemon, address }
}

pub fn device(options: Options) -> Device {
    let device = bare_device(options);
    std::fs::write(device.token_file(), format!("{TOKEN}\n")).unwrap();
    device.install(&plugin_wasm("http_adapter"));
    device
}

/// Sends one request; `auth` is the whole `Authorization` value.
pub fn send(address: &str, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}");
    if let Some(auth) = auth {
        head.push_str(&format!("\r\nAuthorization: {auth}"));
    }
    if !body.is_empty() {
        head.push_str("\r\nContent-Type: application/json");
    }
    // A body over the listener's limit is refused from its declared length
    // before it is read: declare it, but do not send it (writing it all would
    // race the refusal and end in a broken pipe).
    let body = if body.len() > MAX_BODY {
        head.push_str(&format!("\r\nContent-Length: {}", body.len()));
        &[][..]
    } else {
        body
    };
    // Installing compiles the component, which takes a while in a debug build
    // of the host on a busy machine: wait longer than the harness's default.
    request_with_timeout(address, &head, body, Duration::from_secs(120))
        .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
}

pub fn header(reply: &Reply, name: &str) -> Option<String> {
    reply.headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

pub fn json_of(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", reply.text()))
}

/// Sends operation `id` of the document to `path`, then checks the reply
/// against what the document says about that operation.
pub fn call_as(address: &str, auth: Option<&str>, id: &str, path: &str, body: &[u8]) -> Reply {
    let op = SPEC.operation(id);
    assert!(
        path_matches(&op.template, path),
        "{path} is not {}",
        op.template
    );
    SPEC.record(id);
    let reply = send(address, &op.method, path, auth, body);
    let what = format!("{} {path} -> {}", op.method, reply.status);
    let documented = &op.value["responses"][reply.status.to_string()];
    assert!(
        !documented.is_null(),
        "{what}: status not documented: {}",
        reply.text()
    );
    match documented["content"]
        .as_object()
        .and_then(|c| c.iter().next())
    {
        None => assert!(reply.body.is_empty(), "{what}: expected no body"),
        Some((media, content)) => {
            assert_eq!(
                header(&reply, "content-type").as_deref(),
                Some(media.as_str()),
                "{what}"
            );
            if media == "application/json" && content["schema"] != json!({}) {
                SPEC.validate(&content["schema"], &json_of(&reply))
                    .unwrap_or_else(|err| panic!("{what}: {err}: {}", reply.text()));
            }
        }
    }
    reply
}

pub fn call(device: &Device, id: &str, path: &str, body: &[u8]) -> Reply {
    call_as(
        &device.address,
        Some(&format!("Bearer {TOKEN}")),
        id,
        path,
        body,
    )
}

/// Asserts an error reply: status, code, and the documented error schema.
pub fn assert_error(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (status, code),
        "{}",
        reply.text()
    );
    let body = json_of(reply);
    SPEC.validate(SPEC.schema("Error"), &body)
        .unwrap_or_else(|err| panic!("{err}: {body}"));
    body
}

/// The install request for a component file and its `.sig`, signed with the dev key.
pub fn component_request(daemon: &Daemon, wasm: &Path, force: bool) -> Vec<u8> {
    let signed = daemon.signed_copy(wasm, "dev");
    let signature = std::fs::read_to_string(format!("{}.sig", signed.display())).unwrap();
    let component =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&signed).unwrap());
    json!({"component": component, "signature": signature, "force": force})
        .to_string()
        .into_bytes()
}
