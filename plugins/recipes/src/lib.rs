//! `recipes`: Keystone-style recipes and deployment plans.

// The caller (recipe installs) is still being written.
#[allow(dead_code)]
mod artifact;

/// Bindings for the `wasi:http` client side, generated from `wit/world.wit`.
#[allow(clippy::all, missing_docs, dead_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "downloads",
        generate_all,
    });
}

use cairn_sdk::{Config, Event, Plugin};

struct Recipes;

impl Plugin for Recipes {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Recipes)
    }

    fn on_command(&mut self, command: &str, _payload: &[u8]) -> Result<Vec<u8>, String> {
        Err(format!("unknown command `{command}`"))
    }

    fn on_event(&mut self, _event: Event) -> Result<(), String> {
        Ok(())
    }
}

cairn_sdk::export_plugin!(Recipes);
