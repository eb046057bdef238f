//! The policy data model and its file-level entry points.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy::error::Source;
use crate::policy::{GrantSlice, PatternError, PolicyError, validate_plugin_name};

/// Largest policy file read, in bytes.
pub const MAX_POLICY_FILE: u64 = 1 << 20;

/// One plugin's policy, as read from `<policy_dir>/<name>.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub plugin: PluginSection,
    pub limits: Limits,
    /// Granted capabilities by name; anything absent is denied.
    pub grants: BTreeMap<String, GrantSlice>,
    /// The `[config]` table as JSON (an object, `{}` when absent).
    pub config: serde_json::Value,
    /// The file it was read from, if any.
    pub path: Option<PathBuf>,
}

/// `[plugin]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSection {
    pub name: String,
    /// Names of trusted public keys (configured in the daemon); the plugin
    /// must be signed by one of them. Never empty.
    pub signers: Vec<String>,
    pub description: Option<String>,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory per instance, in bytes.
    pub memory: u64,
    /// Wasm execution time allowed per call.
    pub call_timeout: Duration,
    /// How long a caller (the CLI, an adapter, another plugin) waits for a
    /// reply to one of the plugin's commands, queueing included.
    pub reply_wait: Duration,
    /// First restart delay after a fault; doubles on each further fault.
    pub restart_backoff: Duration,
    /// Cap on the restart delay.
    pub restart_backoff_max: Duration,
    /// After a hot swap, faults within this window count toward rollback
    /// (zero: no automatic rollback).
    pub soak: Duration,
    /// This many faults within the soak window roll the swap back.
    pub soak_max_faults: u32,
}

/// Bounds enforced on `[limits]` values.
pub mod bounds {
    use std::time::Duration;

    pub const MEMORY_MIN: u64 = 1 << 20;
    pub const MEMORY_MAX: u64 = 4 << 30;
    pub const CALL_TIMEOUT_MIN: Duration = Duration::from_millis(10);
    pub const CALL_TIMEOUT_MAX: Duration = Duration::from_secs(600);
    pub const REPLY_WAIT_MIN: Duration = Duration::from_secs(1);
    pub const REPLY_WAIT_MAX: Duration = Duration::from_secs(3600);
    pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(10);
    pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(3600);
    pub const RESTART_BACKOFF_CAP_MAX: Duration = Duration::from_secs(24 * 3600);
    pub const SOAK_MAX: Duration = Duration::from_secs(24 * 3600);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 32 << 20,
            call_timeout: Duration::from_secs(5),
            reply_wait: Duration::from_secs(30),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            soak: Duration::from_secs(30),
            soak_max_faults: 3,
        }
    }
}

impl Policy {
    /// Parses policy text; `path` is used in error messages and kept in
    /// [`Policy::path`]. The plugin name is not compared with the file name.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Policy, PolicyError> {
        crate::policy::parse::parse(Source::new(text, path), false)
    }

    /// Reads and parses a policy file (at most [`MAX_POLICY_FILE`] bytes),
    /// without requiring the name to match the file name, so that any file
    /// can be checked (`cairn policy check FILE`).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        load_file(path, false)
    }

    /// Like [`Policy::load`], and the `[plugin] name` must equal the file
    /// name's stem ([`PolicyError::NameMismatch`]), as in a policy directory.
    pub fn load_strict(path: &Path) -> Result<Policy, PolicyError> {
        load_file(path, true)
    }

    /// Loads `<dir>/<plugin>.toml` with [`Policy::load_strict`];
    /// [`PolicyError::NotFound`] when the file does not exist.
    pub fn load_for(dir: &Path, plugin: &str) -> Result<Policy, PolicyError> {
        // Also keeps `plugin` from naming a path outside `dir`.
        validate_plugin_name(plugin).map_err(|e: PatternError| PolicyError::Invalid {
            file: None,
            line: None,
            col: None,
            msg: e.to_string(),
        })?;
        match Policy::load_strict(&dir.join(format!("{plugin}.toml"))) {
            Err(PolicyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(PolicyError::NotFound {
                    dir: dir.to_path_buf(),
                    plugin: plugin.to_string(),
                })
            }
            other => other,
        }
    }

    /// The grant for `capability`, if the policy has one.
    pub fn grant(&self, capability: &str) -> Option<&GrantSlice> {
        self.grants.get(capability)
    }

    /// True if `capability` is granted.
    pub fn is_granted(&self, capability: &str) -> bool {
        self.grants.contains_key(capability)
    }

    /// Fails on the first grant whose name is not in `known` (the host's
    /// capabilities), pointing at its line.
    pub fn check_known_grants(&self, known: &[&str]) -> Result<(), PolicyError> {
        let mut unknown: Vec<&GrantSlice> = self
            .grants
            .values()
            .filter(|g| !known.contains(&g.name.as_str()))
            .collect();
        unknown.sort_by_key(|g| g.line);
        match unknown.first() {
            None => Ok(()),
            Some(g) => Err(PolicyError::UnknownKey {
                file: self.path.clone(),
                line: g.line,
                col: g.col,
                section: "[grants]".to_string(),
                key: g.name.clone(),
                allowed: known.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }
}

fn load_file(path: &Path, require_stem: bool) -> Result<Policy, PolicyError> {
    let io = |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let src = Source::new("", Some(path));
    if bytes.len() as u64 > MAX_POLICY_FILE {
        return Err(src.invalid(None, "file is larger than 1MiB"));
    }
    let text =
        String::from_utf8(bytes).map_err(|e| src.invalid(None, format!("not UTF-8 text: {e}")))?;
    crate::policy::parse::parse(Source::new(&text, Some(path)), require_stem)
}
