//! Cairn: a WebAssembly-plugin microkernel daemon for edge devices.
//!
//! The tree shows the microkernel:
//! - [`contract`]: what the layers share: WIT bindings and the traits the kernel and runtime implement for capabilities;
//! - [`caps`]: one module per capability the host grants (the only place that knows them);
//! - [`runtime`]: the wasmtime engine, precompiled cache and one actor per running plugin release;
//! - [`kernel`]: install, hot-swap, rollback, supervision and the journal of what runs;
//!
//! Dependencies point one way: `contract ← caps ← runtime ← kernel`.
//! - [`policy`], [`state`], [`supply`]: policy files, crash-safe storage, signatures and component metadata;
//! - [`admin`], [`cli`]: the local admin socket and the command line that uses it.

pub mod admin;
pub mod caps;
pub mod cli;
pub mod config;
pub mod contract;
pub mod daemon;
pub mod kernel;
#[cfg(test)]
mod layers;
pub mod logging;
pub mod policy;
pub mod progress;
pub mod runtime;
pub mod state;
pub mod supply;
