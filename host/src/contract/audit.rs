//! Refused capability calls: the audit line and the per-plugin denial counter.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::bindings::CapError;

/// Counts every refused call, per plugin (rendered as `cairn_plugin_denials_total`).
#[derive(Default)]
pub struct Audit {
    denials: Mutex<BTreeMap<String, u64>>,
    /// The last audit lines, newest last (for status views and tests).
    recent: Mutex<VecDeque<String>>,
}

/// Audit lines kept in memory.
const RECENT: usize = 64;

impl Audit {
    /// Writes the audit line for a refused call, counts it, and returns `denied`.
    pub fn deny(&self, plugin: &str, capability: &str, detail: impl Into<String>) -> CapError {
        let detail = detail.into();
        self.record(plugin, capability, &detail);
        CapError::Denied(detail)
    }

    /// Writes the audit line and counts it, for refusals that do not reach the
    /// plugin as a `denied` (a dropped log record, a refused socket address).
    pub fn record(&self, plugin: &str, capability: &str, detail: &str) {
        tracing::warn!(target: "cairn::audit", plugin = %plugin, capability, "denied: {detail}");
        if let Ok(mut denials) = self.denials.lock() {
            *denials.entry(plugin.to_string()).or_default() += 1;
        }
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(format!(
                "plugin={plugin} capability={capability} denied: {detail}"
            ));
        }
    }

    /// The last audit lines, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.recent
            .lock()
            .map(|recent| recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Denials counted for `plugin` so far.
    pub fn denials(&self, plugin: &str) -> u64 {
        self.denials
            .lock()
            .map(|denials| denials.get(plugin).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every plugin's denial count.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.denials
            .lock()
            .map(|denials| denials.clone())
            .unwrap_or_default()
    }
}
