//! Facts about the device the host runs on (`cairn:host/system`).
//!
//! Needs `[grants.system]`.

use serde::Serialize;

use crate::Result;
use crate::bindings::cairn::host::system as host;

/// A snapshot of device facts. Serializes to JSON with snake_case field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `x86_64` or `aarch64`.
    pub arch: String,
    /// The device's host name.
    pub hostname: String,
    /// Seconds since the operating system booted.
    pub uptime_secs: u64,
    /// Seconds since the Cairn daemon started.
    pub daemon_uptime_secs: u64,
    /// Total physical memory in bytes.
    pub memory_total: u64,
    /// Memory available to new work in bytes.
    pub memory_available: u64,
    /// Size of the filesystem holding the host's state, in bytes.
    pub disk_total: u64,
    /// Free bytes on that filesystem.
    pub disk_available: u64,
    /// Version of the Cairn host.
    pub host_version: String,
}

impl From<host::DeviceFacts> for Facts {
    fn from(facts: host::DeviceFacts) -> Self {
        Facts {
            os: facts.os,
            arch: facts.arch,
            hostname: facts.hostname,
            uptime_secs: facts.uptime_secs,
            daemon_uptime_secs: facts.daemon_uptime_secs,
            memory_total: facts.memory_total,
            memory_available: facts.memory_available,
            disk_total: facts.disk_total,
            disk_available: facts.disk_available,
            host_version: facts.host_version,
        }
    }
}

/// Reads the current facts.
pub fn facts() -> Result<Facts> {
    Ok(host::facts()?.into())
}
