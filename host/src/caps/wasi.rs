//! Baseline WASI: what every plugin gets without a grant.
//!
//! Rust's standard library imports these; the instance's WASI context grants no
//! directories, no environment and no sockets, so they reach nothing outside.
//! `wasi:filesystem` and `wasi:sockets` are linked too, but importing them needs
//! `[grants.files]` and `[grants.sockets]` (a component imports them only when
//! its code uses files or sockets).

use wasmtime::component::Linker;

use super::CapsData;

const BASELINE: &[&str] = &[
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    // The request and response types alone reach nothing: serving needs
    // [grants.http-server], sending needs outgoing-handler ([grants.http-client]).
    "wasi:http/types",
];

/// Whether `interface` (without version) is part of the baseline.
pub fn is_baseline(interface: &str) -> bool {
    BASELINE.iter().any(|prefix| interface.starts_with(prefix))
}

pub fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
}
