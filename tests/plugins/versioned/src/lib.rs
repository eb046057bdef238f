//! Test plugin `versioned`: a counter like `counter` (kv key `count`, snapshot
//! `{"count":N}`) whose behaviour is fixed at build time by `CAIRN_TEST_MODE`,
//! so tests can build good and bad releases of one plugin from one source:
//!
//! - unset or `ok`: behaves normally
//! - `fail-init`: `init` fails
//! - `unhealthy`: `health` reports unhealthy
//! - `trap-after-swap`: every command traps
//!
//! Pair it with `CAIRN_PLUGIN_VERSION` to give each build its own version.
//!
//! Commands: `version` → `{"version":"..","mode":".."}`, `get` → `{"count":N}`,
//! `increment` (payload optional `{"by":N}`) → `{"count":N}`.

use cairn_sdk::{Config, Health, Plugin, kv, parse_payload};
use serde::{Deserialize, Serialize};

const COUNT_KEY: &str = "count";

const MODE: &str = match option_env!("CAIRN_TEST_MODE") {
    Some(mode) if !mode.is_empty() => mode,
    _ => "ok",
};

const fn is_known_mode(mode: &str) -> bool {
    matches!(
        mode.as_bytes(),
        b"ok" | b"fail-init" | b"unhealthy" | b"trap-after-swap"
    )
}

// A mistyped mode would silently build a healthy plugin and make a test pass for the wrong reason.
const _: () = assert!(
    is_known_mode(MODE),
    "CAIRN_TEST_MODE must be one of ok, fail-init, unhealthy, trap-after-swap"
);

struct Versioned {
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct CountMessage {
    count: u64,
}

#[derive(Deserialize)]
struct IncrementRequest {
    by: u64,
}

fn json_reply(value: &impl Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

impl Versioned {
    fn reply(&self) -> Result<Vec<u8>, String> {
        json_reply(&CountMessage { count: self.count })
    }

    fn increment(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let by = parse_payload::<IncrementRequest>(payload)?.map_or(1, |request| request.by);
        let count = self.count.checked_add(by).ok_or("count overflows")?;
        kv::set_json(COUNT_KEY, &count)?;
        self.count = count;
        self.reply()
    }
}

impl Plugin for Versioned {
    fn init(_config: Config) -> Result<Self, String> {
        if MODE == "fail-init" {
            return Err(format!("init fails in this build (mode {MODE})"));
        }
        let count = kv::get_json::<u64>(COUNT_KEY)?.unwrap_or(0);
        cairn_sdk::info!(
            "versioned {} starting at {count} (mode {MODE})",
            cairn_sdk::plugin_version!()
        );
        Ok(Versioned { count })
    }

    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        if MODE == "trap-after-swap" {
            panic!("every command traps in this build (mode {MODE})");
        }
        match command {
            "version" => json_reply(
                &serde_json::json!({ "version": cairn_sdk::plugin_version!(), "mode": MODE }),
            ),
            "get" => self.reply(),
            "increment" => self.increment(payload),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&CountMessage { count: self.count }).ok()
    }

    fn restore(&mut self, state: &[u8]) -> Result<bool, String> {
        match serde_json::from_slice::<CountMessage>(state) {
            Ok(CountMessage { count }) => {
                self.count = count;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn health(&self) -> Health {
        if MODE == "unhealthy" {
            Health::Unhealthy(format!("unhealthy by construction (mode {MODE})"))
        } else {
            Health::Ok
        }
    }
}

cairn_sdk::export_plugin!(Versioned);
