//! Counters and gauges exported through the host's metrics endpoint (`cairn:host/metrics`).
//!
//! Names must match `[a-z_][a-z0-9_]*`; the host exports them as
//! `cairn_plugin_<name>` with a `plugin` label. Labels are `(key, value)`
//! pairs; pass `&[]` for none. Needs `[grants.metrics]`, whose `max-series`
//! bounds the distinct name and label combinations (64 by default).

use crate::Result;
#[cfg(target_arch = "wasm32")]
use crate::bindings::cairn::host::metrics as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::metrics as host;

fn owned_labels(labels: &[(&str, &str)]) -> Vec<host::Label> {
    labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Adds `delta` to a monotonically increasing counter.
pub fn counter_add(name: &str, labels: &[(&str, &str)], delta: u64) -> Result<()> {
    Ok(host::counter_add(name, &owned_labels(labels), delta)?)
}

/// Sets a gauge to `value`.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], value: f64) -> Result<()> {
    Ok(host::gauge_set(name, &owned_labels(labels), value)?)
}
