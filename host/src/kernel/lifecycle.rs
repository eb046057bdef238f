//! Boot, rollback, removal, and the supervisor that rolls back a swap whose new
//! release keeps faulting.

use std::sync::Weak;
use std::time::Instant;

use tokio::sync::mpsc;

use super::install::unix_now;
use super::{Kernel, KernelError, PluginView};
use crate::runtime::FaultReport;
use crate::state::journal::{HistoryEntry, Release as ReleaseRecord};

impl Kernel {
    /// Starts every journaled plugin. A release that cannot start falls back to
    /// its previous one (journaled as an automatic rollback); with none, the
    /// plugin is reported failed and the others still start.
    pub(super) async fn boot(&self) {
        let installed = self.installed_snapshot();
        for (name, record) in &installed.plugins {
            let Err(err) = self.boot_release(name, &record.active).await else {
                continue;
            };
            tracing::error!(plugin = %name, "cannot start {}: {err}", record.active.version);
            let fallback = match &record.previous {
                Some(previous) => match self.boot_release(name, previous).await {
                    Ok(()) => Some(previous.clone()),
                    Err(fallback_err) => {
                        tracing::error!(plugin = %name, "cannot start the previous release {} either: {fallback_err}", previous.version);
                        None
                    }
                },
                None => None,
            };
            match fallback {
                Some(previous) => {
                    let (failed, reason) = (record.active.clone(), format!("at boot: {err}"));
                    let result = self.commit(|set| {
                        if let Some(entry) = set.plugins.get_mut(name) {
                            entry.active = previous.clone();
                            entry.previous = Some(failed);
                            entry.push_history(HistoryEntry {
                                at: unix_now(),
                                action: "auto-rollback".into(),
                                version: previous.version.to_string(),
                                reason: Some(reason),
                            });
                        }
                    });
                    if let Err(err) = result {
                        tracing::error!(plugin = %name, "could not journal the boot rollback: {err}");
                    }
                }
                None => {
                    if let Ok(mut failures) = self.failures.lock() {
                        failures.insert(name.clone(), err.to_string());
                    }
                }
            }
        }
    }

    async fn boot_release(&self, name: &str, release: &ReleaseRecord) -> Result<(), KernelError> {
        let spec = self.prepare_recorded(name, release).await?;
        self.activate(name, spec, false, |_| {}).await.map(|_| ())
    }

    /// Switches `name` back to its previous release (which becomes the new previous).
    pub async fn rollback(&self, name: &str, reason: &str) -> Result<PluginView, KernelError> {
        self.roll_back(name, reason, "rollback").await
    }

    async fn roll_back(
        &self,
        name: &str,
        reason: &str,
        action: &str,
    ) -> Result<PluginView, KernelError> {
        let _change = self.changes.lock().await;
        let record = self
            .installed_snapshot()
            .plugins
            .get(name)
            .cloned()
            .ok_or_else(|| {
                KernelError::NotFound(format!("no plugin named `{name}` is installed"))
            })?;
        let previous = record.previous.clone().ok_or_else(|| {
            KernelError::NotFound(format!("`{name}` has no previous release to roll back to"))
        })?;
        let spec = self.prepare_recorded(name, &previous).await?;
        let current = record.active.clone();
        let entry = HistoryEntry {
            at: unix_now(),
            action: action.into(),
            version: previous.version.to_string(),
            reason: Some(reason.to_string()),
        };
        self.activate(name, spec, false, |set| {
            if let Some(record) = set.plugins.get_mut(name) {
                record.active = previous.clone();
                record.previous = Some(current);
                record.push_history(entry);
            }
        })
        .await?;
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(name);
        }
        tracing::warn!(plugin = %name, "{action} to {}: {reason}", previous.version);
        self.view(name)
            .ok_or_else(|| KernelError::internal("rolled-back plugin vanished"))
    }

    /// Stops and uninstalls `name`; its kv data and cached blobs stay.
    pub async fn remove(&self, name: &str) -> Result<(), KernelError> {
        let _change = self.changes.lock().await;
        if !self.installed_snapshot().plugins.contains_key(name) {
            return Err(KernelError::NotFound(format!(
                "no plugin named `{name}` is installed"
            )));
        }
        self.commit(|set| {
            set.plugins.remove(name);
        })?;
        let slot = self
            .slots
            .write()
            .map_err(KernelError::internal)?
            .remove(name);
        if let Some(slot) = slot {
            // No release is active any more: subscriptions stop delivering at once.
            slot.activation
                .store(0, std::sync::atomic::Ordering::Release);
        }
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(name);
        }
        self.env.caps.plugin_removed(name).await;
        tracing::info!(plugin = %name, "removed");
        Ok(())
    }
}

/// Watches faults: a release that faults `soak-max-faults` times within its soak
/// window after a swap is rolled back to the previous release.
pub(super) async fn supervise(
    kernel: Weak<Kernel>,
    mut faults: mpsc::UnboundedReceiver<FaultReport>,
) {
    while let Some(report) = faults.recv().await {
        let Some(kernel) = kernel.upgrade() else {
            break;
        };
        let Some(slot) = kernel.slot(&report.plugin) else {
            continue;
        };
        let Some(soak) = slot.soak.lock().ok().and_then(|window| *window) else {
            continue;
        };
        let release = slot.active.load_full();
        if soak.release_id != report.release_id
            || release.id != report.release_id
            || Instant::now() > soak.until
        {
            continue;
        }
        let faults = release
            .stats
            .faults
            .load(std::sync::atomic::Ordering::Relaxed);
        if faults < u64::from(soak.max_faults) {
            continue;
        }
        if let Ok(mut window) = slot.soak.lock() {
            *window = None;
        }
        let reason = format!(
            "{faults} faults within the soak window after the swap; last: {}",
            report.fault
        );
        let plugin = report.plugin.clone();
        tokio::spawn(async move {
            match kernel.roll_back(&plugin, &reason, "auto-rollback").await {
                Ok(view) => {
                    tracing::warn!(plugin = %plugin, "rolled back automatically to {}", view.version)
                }
                Err(err) => tracing::error!(plugin = %plugin, "automatic rollback failed: {err}"),
            }
        });
    }
}
