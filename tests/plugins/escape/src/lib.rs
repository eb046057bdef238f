//! Test plugin `escape`: tries calls its policy does not allow and reports
//! what the host answered, as `{"ok":..}` or `{"error":"<kind>","message":..}`
//! where `<kind>` is the host error variant (`denied`, `quota-exceeded`, ...).
//!
//! Commands:
//! - `publish-outside`: publishes on `forbidden/x` (only `escape/#` is granted)
//! - `subscribe-outside`: subscribes to `#`
//! - `call-counter`: calls `counter`'s `get`
//! - `kv-quota`: writes 512-byte values until the kv quota refuses one, then
//!   deletes what it wrote so the test can be repeated
//! - `install`: installs a plugin. The payload selects the source: empty or
//!   `null` → empty bytes; `{"digest":"sha256:.."}` → that cached component;
//!   anything else → the payload itself as an unsigned component
//!
//! It imports `commands` and `plugins`, so it installs only under a policy
//! granting them; `policy-granted.toml` does, scoped so these calls are
//! still refused.

use cairn_sdk::commands::{self, CallError};
use cairn_sdk::plugins::{self, Source};
use cairn_sdk::{Config, Error, Plugin, events, kv};
use serde::Deserialize;
use serde_json::{Value, json};

const KV_VALUE_SIZE: usize = 512;
// Far beyond the 4 KiB quota of the test policies; reaching it means no quota applies.
const KV_MAX_WRITES: usize = 1024;

struct Escape;

#[derive(Deserialize)]
struct CachedSource {
    digest: String,
}

fn refused(error: &Error) -> Value {
    json!({ "error": error.kind(), "message": error.message() })
}

fn outcome<T: serde::Serialize>(result: Result<T, Error>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(error) => refused(&error),
    }
}

fn call_counter() -> Value {
    match commands::call("counter", "get", b"") {
        Ok(reply) => json!({ "ok": String::from_utf8_lossy(&reply) }),
        Err(CallError::Host(error)) => refused(&error),
        Err(CallError::Plugin(message) | CallError::Json(message)) => {
            json!({ "error": "plugin", "message": message })
        }
    }
}

fn fill_kv() -> Value {
    let value = vec![b'x'; KV_VALUE_SIZE];
    let mut written = Vec::new();
    let mut failure = None;
    for index in 0..KV_MAX_WRITES {
        let key = format!("fill/{index:04}");
        match kv::set(&key, &value) {
            Ok(()) => written.push(key),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    for key in &written {
        if let Err(error) = kv::delete(key) {
            cairn_sdk::warn!("could not delete {key}: {error}");
        }
    }
    match failure {
        Some(error) => {
            let mut report = refused(&error);
            report["written"] = json!(written.len());
            report
        }
        None => json!({ "ok": format!("wrote {} values without reaching a quota", written.len()) }),
    }
}

fn install_source(payload: &[u8]) -> Source {
    if let Ok(CachedSource { digest }) = serde_json::from_slice(payload) {
        return Source::Cached(digest);
    }
    if payload == b"null" {
        return Source::Bytes {
            component: Vec::new(),
            signature: String::new(),
        };
    }
    Source::Bytes {
        component: payload.to_vec(),
        signature: String::new(),
    }
}

impl Plugin for Escape {
    fn init(_config: Config) -> Result<Self, String> {
        cairn_sdk::info!("escape ready");
        Ok(Escape)
    }

    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        let report = match command {
            "publish-outside" => outcome(events::publish("forbidden/x", b"{}")),
            "subscribe-outside" => outcome(events::subscribe("#")),
            "call-counter" => call_counter(),
            "kv-quota" => fill_kv(),
            "install" => {
                outcome(plugins::install(install_source(payload), false).map(|info| info.name))
            }
            other => return Err(format!("unknown command `{other}`")),
        };
        serde_json::to_vec(&report).map_err(|e| e.to_string())
    }
}

cairn_sdk::export_plugin!(Escape);
