//! The Prometheus text exposition of host and plugin metrics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Kernel, resident_memory_bytes};
use crate::caps::metrics::escape;
use crate::contract::bindings::Health;
use crate::runtime::Release;
use crate::runtime::latency::BUCKETS;
use crate::runtime::release::ReleaseStats;
use crate::state::journal::JOURNAL_WRITES;
use cairn_types::{HealthSummary, PluginHealth};

/// How long a plugin has to answer a health check.
const HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Kernel {
    /// Host and plugin metrics in the Prometheus text format. Per-plugin series
    /// describe the release serving now (they restart from zero after a swap,
    /// which Prometheus reads as a counter reset).
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let host: [(&str, &str, &str, u64); 4] = [
            (
                "cairn_uptime_seconds",
                "gauge",
                "Seconds since the daemon started.",
                self.uptime().as_secs(),
            ),
            (
                "cairn_resident_memory_bytes",
                "gauge",
                "Resident set size of the daemon.",
                resident_memory_bytes(),
            ),
            (
                "cairn_journal_writes_total",
                "counter",
                "Journal files written with fsync and atomic rename.",
                JOURNAL_WRITES.load(Ordering::Relaxed),
            ),
            (
                "cairn_plugins",
                "gauge",
                "Installed plugins.",
                self.plugins().len() as u64,
            ),
        ];
        for (name, kind, help, value) in host {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }

        let releases = self.active_releases();
        type Reading = fn(&ReleaseStats, u64) -> u64;
        let series: [(&str, &str, &str, Reading); 6] = [
            (
                "cairn_plugin_calls_total",
                "counter",
                "Commands and HTTP requests handled.",
                |s, _| s.calls.load(Ordering::Relaxed),
            ),
            (
                "cairn_plugin_errors_total",
                "counter",
                "Calls that ended in an error.",
                |s, _| s.errors.load(Ordering::Relaxed),
            ),
            (
                "cairn_plugin_faults_total",
                "counter",
                "Traps, CPU deadlines and memory exhaustion.",
                |s, _| s.faults.load(Ordering::Relaxed),
            ),
            (
                "cairn_plugin_restarts_total",
                "counter",
                "Restarts after a fault.",
                |s, _| s.restarts.load(Ordering::Relaxed).into(),
            ),
            (
                "cairn_plugin_swaps_total",
                "counter",
                "Hot swaps since the daemon started.",
                |_, swaps| swaps,
            ),
            (
                "cairn_plugin_memory_bytes",
                "gauge",
                "Linear memory of the plugin's instances.",
                |s, _| s.memory_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (plugin, release, swaps) in &releases {
                let _ = writeln!(
                    out,
                    "{name}{{plugin=\"{}\"}} {}",
                    escape(plugin),
                    value(&release.stats, *swaps)
                );
            }
        }
        let name = "cairn_plugin_call_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to answer a command or HTTP request, queueing included.\n# TYPE {name} histogram"
        );
        for (plugin, release, _) in &releases {
            let plugin = escape(plugin);
            let reading = release.stats.latency.read();
            for (bound, count) in BUCKETS.iter().zip(reading.cumulative) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{plugin=\"{plugin}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{plugin=\"{plugin}\",le=\"+Inf\"}} {count}\n{name}_sum{{plugin=\"{plugin}\"}} {sum}\n{name}_count{{plugin=\"{plugin}\"}} {count}",
                count = reading.count,
                sum = reading.sum_seconds
            );
        }
        self.env.caps.render_metrics(&mut out);
        out
    }

    /// Asks every running plugin for its health (at most [`HEALTH_WAIT`] each, all at
    /// once) and sums it up with the plugins that failed to start. `asking` is the
    /// plugin whose own call this serves: it is busy making it, so it cannot be
    /// asked, and counts as healthy.
    pub async fn health(&self, asking: Option<&str>) -> HealthSummary {
        let releases = self.active_releases();
        let answers =
            futures_util::future::join_all(releases.iter().map(|(name, release, _)| async move {
                if asking == Some(name.as_str()) {
                    Ok(Health::Ok)
                } else {
                    release.health(HEALTH_WAIT).await
                }
            }))
            .await;
        let mut plugins: Vec<PluginHealth> = releases
            .iter()
            .zip(answers)
            .map(|((name, release, _), answer)| {
                let (health, detail) = match answer {
                    Ok(Health::Ok) => ("ok", None),
                    Ok(Health::Degraded(why)) => ("degraded", Some(why)),
                    Ok(Health::Unhealthy(why)) => ("unhealthy", Some(why)),
                    Err(err) => ("unknown", Some(err.to_string())),
                };
                PluginHealth {
                    name: name.clone(),
                    version: release.identity.version.to_string(),
                    state: release.stats.state().as_str().into(),
                    health: health.into(),
                    detail,
                }
            })
            .collect();
        for view in self.plugins() {
            if view.state == "failed" {
                plugins.push(PluginHealth {
                    name: view.name,
                    version: view.version,
                    state: view.state,
                    health: "unhealthy".into(),
                    detail: view.last_error,
                });
            }
        }
        let failing = plugins
            .iter()
            .any(|p| matches!(p.health.as_str(), "unhealthy" | "unknown"));
        let degraded = plugins
            .iter()
            .any(|p| p.health == "degraded" || p.state != "running");
        HealthSummary {
            status: if failing {
                "failing"
            } else if degraded {
                "degraded"
            } else {
                "ok"
            }
            .into(),
            uptime_secs: self.uptime().as_secs(),
            plugins,
        }
    }

    /// `(name, serving release, swaps)` of every running plugin, sorted by name.
    fn active_releases(&self) -> Vec<(String, Arc<Release>, u64)> {
        let Ok(slots) = self.slots.read() else {
            return Vec::new();
        };
        let mut releases: Vec<_> = slots
            .iter()
            .map(|(name, slot)| {
                (
                    name.clone(),
                    slot.active.load_full(),
                    slot.swaps.load(Ordering::Relaxed),
                )
            })
            .collect();
        releases.sort_by(|a, b| a.0.cmp(&b.0));
        releases
    }
}
