//! `cairn:host/system`: facts about the device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::system::{self as wit, DeviceFacts};

pub struct System;

/// `[grants.system]` (no settings).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemGrant {}

/// When the daemon started, and where its state lives (the disk it reports).
pub struct Daemon {
    started: Instant,
    state_dir: PathBuf,
}

impl Capability for System {
    const NAME: &'static str = "system";
    const INTERFACES: &'static [&'static str] = &["cairn:host/system"];
    type Grant = SystemGrant;
    type Shared = Daemon;
    type Local = ();

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<System>>(linker, |state| state.caps().view())
    }

    fn build(setup: &HostSetup) -> anyhow::Result<Daemon> {
        Ok(Daemon {
            started: setup.started,
            state_dir: setup.state_dir.clone(),
        })
    }

    fn prepare(_: &Daemon, _: Option<&SystemGrant>, _: &mut InstanceSetup<'_>) {}
}

impl wit::Host for CapView<'_, System> {
    async fn facts(&mut self) -> Result<DeviceFacts, CapError> {
        self.grant()?;
        let (memory_total, memory_available) = memory().unwrap_or((0, 0));
        let (disk_total, disk_available) = disk(&self.shared.state_dir).unwrap_or((0, 0));
        Ok(DeviceFacts {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            hostname: hostname(),
            uptime_secs: uptime_secs().unwrap_or(0),
            daemon_uptime_secs: self.shared.started.elapsed().as_secs(),
            memory_total,
            memory_available,
            disk_total,
            disk_available,
            host_version: env!("CARGO_PKG_VERSION").into(),
        })
    }
}

/// The device's host name (empty if it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

fn uptime_secs() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(seconds as u64)
}

/// Total and available memory in bytes, from /proc/meminfo.
fn memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|line| line.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Size and free space of the filesystem holding `path`.
fn disk(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stats points to writable memory.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stats = unsafe { stats.assume_init() };
    // Field widths differ between targets; `From` widens where they are narrower.
    #[allow(clippy::useless_conversion)]
    let block = u64::from(stats.f_frsize);
    #[allow(clippy::useless_conversion)]
    Some((
        u64::from(stats.f_blocks) * block,
        u64::from(stats.f_bavail) * block,
    ))
}
