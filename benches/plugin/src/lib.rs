//! `bench`: measures capability round trips from inside the sandbox.
//!
//! Commands:
//! - `noop` → empty reply (host→plugin round trip).
//! - `kv-get` with `{"n": N}` → `{"ns_per_op": F}` for N `kv::get` calls.

use std::time::Instant;

use cairn_sdk::{Config, Plugin, kv};

struct Bench;

impl Plugin for Bench {
    fn init(_config: Config) -> Result<Self, String> {
        kv::set("key", b"value")?;
        Ok(Bench)
    }

    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "noop" => Ok(Vec::new()),
            "kv-get" => {
                let request: serde_json::Value =
                    serde_json::from_slice(payload).map_err(|e| e.to_string())?;
                let n = request["n"].as_u64().unwrap_or(1000).max(1);
                let started = Instant::now();
                for _ in 0..n {
                    kv::get("key")?;
                }
                let ns_per_op = started.elapsed().as_nanos() as f64 / n as f64;
                Ok(serde_json::json!({ "ns_per_op": ns_per_op })
                    .to_string()
                    .into_bytes())
            }
            other => Err(format!("unknown command `{other}`")),
        }
    }
}

cairn_sdk::export_plugin!(Bench);
