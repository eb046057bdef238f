//! Test plugin `trap`: `ok` answers `"ok"`; `trap` panics, which aborts the
//! instance with a wasm trap.

use cairn_sdk::{Config, Plugin};

struct Trap;

impl Plugin for Trap {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Trap)
    }

    fn on_command(&mut self, command: &str, _payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "ok" => Ok(br#""ok""#.to_vec()),
            "trap" => panic!("trap requested"),
            other => Err(format!("unknown command `{other}`")),
        }
    }
}

cairn_sdk::export_plugin!(Trap);
