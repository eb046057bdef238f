//! Capability unit tests, one file per capability, through the test bench
//! ([`super::bench`]): host functions called directly, no daemon, no wasm.

mod commands;
mod container;
mod container_inspect;
mod container_pull;
mod events;
mod files;
mod http;
mod imports;
mod kv;
mod log;
mod metrics;
mod mqtt;
mod plugins;
mod process;
mod sockets;
mod system;
mod timer;
