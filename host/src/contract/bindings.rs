//! Rust bindings generated from the WIT contract (`wit/`).
//!
//! Every import is async so capability code may await I/O (kv fsync, calls into
//! other plugins) without blocking the executor.

wasmtime::component::bindgen!({
    path: "../wit/plugin",
    world: "cairn:plugin/plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use cairn::host::types::Error as CapError;
pub use exports::cairn::plugin::handlers::Event;
pub use exports::cairn::plugin::lifecycle::HealthStatus as Health;
