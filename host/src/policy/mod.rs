//! Per-plugin policy: which capabilities a plugin is granted, its resource
//! limits, its configuration and who may sign it.
//!
//! One TOML file per plugin, `<policy_dir>/<name>.toml`; everything not
//! granted is denied. This module only models and parses policies: it does
//! not know the capabilities, whose grant tables it keeps raw as
//! [`GrantSlice`]s for each capability module to parse with
//! [`GrantSlice::parse`]. The operator's reference is `docs/policy.md`.

mod error;
mod grant;
mod model;
mod parse;
mod patterns;
mod units;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{PatternError, PolicyError};
pub use grant::GrantSlice;
pub use model::{Limits, MAX_POLICY_FILE, PluginSection, Policy, bounds};
pub use patterns::{
    DEVICE_PLACEHOLDER, MAX_COMMAND_NAME, MAX_PLUGIN_NAME, MAX_TOPIC_BYTES, MAX_TOPIC_LEVELS,
    NamePattern, TopicPattern, validate_plugin_name, validate_topic,
};
pub use units::{
    format_duration, format_size, parse_duration, parse_size, serde_duration, serde_size,
};

/// Loads every `*.toml` file directly in `dir` (sorted by file name), each
/// with [`Policy::load_strict`]. A file that fails does not stop the others:
/// its error is collected. Other files and subdirectories are ignored.
pub fn load_dir(dir: &Path) -> (Vec<Policy>, Vec<PolicyError>) {
    let io = |source| PolicyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return (Vec::new(), vec![io(e)]),
    };
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                    paths.push(path);
                }
            }
            Err(e) => errors.push(io(e)),
        }
    }
    paths.sort();
    let mut policies = Vec::new();
    for path in paths {
        match Policy::load_strict(&path) {
            Ok(p) => policies.push(p),
            Err(e) => errors.push(e),
        }
    }
    (policies, errors)
}
