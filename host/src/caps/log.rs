//! `cairn:host/log`: plugin log records into the host log.

use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf};
use crate::contract::bindings::cairn::host::log::{self as wit, Level};

const MAX_MESSAGE: usize = 8 * 1024;

pub struct Log;

/// `[grants.log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogGrant {
    /// Records below this level are dropped.
    #[serde(default)]
    pub level: MinLevel,
}

/// Minimum level kept, as written in a policy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinLevel {
    #[default]
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Capability for Log {
    const NAME: &'static str = "log";
    const INTERFACES: &'static [&'static str] = &["cairn:host/log"];
    type Grant = LogGrant;
    type Shared = ();
    /// Whether the instance's dropped records were reported (once is enough).
    type Local = bool;

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Log>>(linker, |state| state.caps().view())
    }

    fn build(_: &HostSetup) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare(_: &(), _: Option<&LogGrant>, _: &mut InstanceSetup<'_>) -> bool {
        false
    }
}

fn rank(level: Level) -> MinLevel {
    match level {
        Level::Trace => MinLevel::Trace,
        Level::Debug => MinLevel::Debug,
        Level::Info => MinLevel::Info,
        Level::Warn => MinLevel::Warn,
        Level::Error => MinLevel::Error,
    }
}

impl wit::Host for CapView<'_, Log> {
    async fn write(&mut self, level: Level, mut message: String) {
        let Some(grant) = self.grant else {
            if !*self.local {
                *self.local = true;
                self.deny("log records dropped: the policy has no [grants.log]");
            }
            return;
        };
        if rank(level) < grant.level {
            return;
        }
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = self.plugin();
        match level {
            Level::Trace => tracing::trace!(plugin = %plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin = %plugin, "{message}"),
            Level::Info => tracing::info!(plugin = %plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin = %plugin, "{message}"),
            Level::Error => tracing::error!(plugin = %plugin, "{message}"),
        }
    }
}
