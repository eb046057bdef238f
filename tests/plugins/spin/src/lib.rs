//! Test plugin `spin`: `ok` answers `"ok"`; `spin` never returns, so only the
//! host's call timeout can end it.

use std::hint::black_box;

use cairn_sdk::{Config, Plugin};

struct Spin;

fn spin_forever() -> ! {
    let mut turns: u64 = 0;
    loop {
        // `black_box` keeps the optimiser from proving the loop does nothing.
        turns = black_box(turns.wrapping_add(1));
    }
}

impl Plugin for Spin {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Spin)
    }

    fn on_command(&mut self, command: &str, _payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "ok" => Ok(br#""ok""#.to_vec()),
            "spin" => spin_forever(),
            other => Err(format!("unknown command `{other}`")),
        }
    }
}

cairn_sdk::export_plugin!(Spin);
