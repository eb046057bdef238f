//! The smallest useful plugin: answers `hello` with a greeting.
//!
//! Build: `cargo build --target wasm32-wasip2 --release -p cairn-sdk --example hello`
//! (the component is `target/wasm32-wasip2/release/examples/hello.wasm`). It
//! imports only `cairn:host/log`, so its policy needs just `[grants.log]`.

use cairn_sdk::{Config, Plugin, parse_payload};
use serde::Deserialize;

struct Hello;

#[derive(Default, Deserialize)]
struct HelloRequest {
    name: Option<String>,
}

impl Plugin for Hello {
    fn init(_config: Config) -> Result<Self, String> {
        cairn_sdk::info!("hello plugin ready");
        Ok(Hello)
    }

    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "hello" => {
                let request: HelloRequest = parse_payload(payload)?.unwrap_or_default();
                let name = request.name.as_deref().unwrap_or("world");
                cairn_sdk::debug!("greeting {name}");
                Ok(serde_json::json!({ "greeting": format!("hello, {name}!") })
                    .to_string()
                    .into_bytes())
            }
            other => Err(format!("unknown command `{other}`")),
        }
    }
}

// The package is `cairn-sdk`, so the example names its plugin explicitly.
cairn_sdk::export_plugin!(Hello, name = "hello");
