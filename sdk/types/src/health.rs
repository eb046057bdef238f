//! The device's health, as `cairn --json health` and `GET /v1/health` show it.

use serde::{Deserialize, Serialize};

/// How one plugin is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginHealth {
    /// Plugin name.
    pub name: String,
    /// Version of the serving release.
    pub version: String,
    /// `running`, `restarting`, `stopped` or `failed`.
    pub state: String,
    /// `ok`, `degraded`, `unhealthy` or `unknown` (no answer in time).
    pub health: String,
    /// What the plugin or the host says is wrong, if anything.
    pub detail: Option<String>,
}

/// The daemon's health: `ok` when every plugin is running and healthy,
/// `degraded` when one is degraded or restarting, `failing` when one is
/// unhealthy, failed or does not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSummary {
    /// `ok`, `degraded` or `failing`.
    pub status: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Every plugin's answer, sorted by name.
    pub plugins: Vec<PluginHealth>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact keys `cairn --json health` prints (the host's admin API).
    #[test]
    fn serializes_with_the_admin_api_keys() {
        let summary = HealthSummary {
            status: "degraded".into(),
            uptime_secs: 12,
            plugins: vec![PluginHealth {
                name: "counter".into(),
                version: "1.0.0".into(),
                state: "running".into(),
                health: "degraded".into(),
                detail: Some("slow".into()),
            }],
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "status": "degraded",
                "uptime_secs": 12,
                "plugins": [{
                    "name": "counter", "version": "1.0.0", "state": "running",
                    "health": "degraded", "detail": "slow",
                }],
            })
        );
        let back: HealthSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
    }
}

/// One installed plugin, as `cairn --json plugin list` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSummary {
    /// The plugin's name.
    pub name: String,
    /// The serving release's version.
    pub version: String,
    /// The serving release's `sha256:` digest.
    pub digest: String,
    /// `running`, `starting`, `restarting`, `failed` or `stopped`.
    pub state: String,
    /// The release a rollback would return to, if any.
    pub previous_version: Option<String>,
    /// Restarts after faults of the running release.
    pub restarts: u32,
    /// Commands and HTTP requests handled.
    pub calls: u64,
    /// Traps, CPU-deadline and out-of-memory faults of the running release.
    pub faults: u64,
    /// Hot swaps since the daemon started.
    pub swaps: u64,
    /// Last fault or rollback reason, if any.
    pub last_error: Option<String>,
}
