//! Test plugin `membomb`: `ok` answers `"ok"`; `bomb` allocates and writes
//! 1 MiB chunks with infallible allocation, so when the host refuses to grow
//! linear memory past the policy limit the allocator aborts and the instance
//! traps; `bomb-gracefully` uses fallible allocation and replies
//! `{"allocated_mib":N}` once growth is refused.

use std::hint::black_box;

use cairn_sdk::{Config, Plugin};

const CHUNK: usize = 1024 * 1024;

struct Membomb;

/// Allocates until the process aborts on allocation failure.
fn exhaust_memory() -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(black_box(vec![0xa5; CHUNK]));
        if chunks.len() == usize::MAX {
            return chunks.len();
        }
    }
}

/// Uses `try_reserve` rather than `Vec::with_capacity` so that running out
/// of memory is an ordinary error instead of an abort.
fn allocate_until_failure() -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(CHUNK).is_err() || chunks.try_reserve(1).is_err() {
            break;
        }
        // Writing every byte makes the pages resident on hosts that commit lazily.
        chunk.resize(CHUNK, 0xa5);
        chunks.push(black_box(chunk));
    }
    chunks.len()
}

impl Plugin for Membomb {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Membomb)
    }

    fn on_command(&mut self, command: &str, _payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "ok" => Ok(br#""ok""#.to_vec()),
            "bomb" => Ok(exhaust_memory().to_string().into_bytes()),
            "bomb-gracefully" => {
                let allocated_mib = allocate_until_failure();
                serde_json::to_vec(&serde_json::json!({ "allocated_mib": allocated_mib }))
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("unknown command `{other}`")),
        }
    }
}

cairn_sdk::export_plugin!(Membomb);
