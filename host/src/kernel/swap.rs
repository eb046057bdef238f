//! Hot swap: start the new release beside the old, hand over state, check
//! readiness, switch atomically, then journal — undoing the switch if the
//! journal cannot be written.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{Kernel, KernelError, PluginSlot, Soak, failpoint};
use crate::contract::bindings::Health;
use crate::runtime::{CallError, Release, ReleaseSpec};
use crate::state::journal::InstalledSet;

/// How long a new release may report itself unhealthy before the swap is abandoned.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

impl Kernel {
    /// Starts `spec` and makes it the serving release of `name`, recording the
    /// change with `edit`. With `soak`, faults soon after roll it back.
    pub(super) async fn activate(
        &self,
        name: &str,
        spec: ReleaseSpec,
        soak: bool,
        edit: impl FnOnce(&mut InstalledSet),
    ) -> Result<Arc<Release>, KernelError> {
        let existing = self.slot(name);
        let activation = existing
            .as_ref()
            .map(|slot| slot.activation.clone())
            .unwrap_or_default();
        let limits = spec.limits.clone();
        let old = existing.as_ref().map(|slot| slot.active.load_full());
        let keeps_serving = |err: KernelError| match (err, &old) {
            (KernelError::Start(why), Some(old)) => {
                KernelError::Start(format!("{why}; {} keeps serving", old.identity.version))
            }
            (err, _) => err,
        };
        let new = Release::start(spec, self.env.clone(), activation.clone())
            .await
            .map_err(|err| {
                keeps_serving(KernelError::Start(format!("{name}: the new release {err}")))
            })?;
        failpoint::hit("swap:after-start");
        if let Some(old) = &old {
            hand_over(old, &new).await.map_err(keeps_serving)?;
        }
        failpoint::hit("swap:after-handover");
        wait_ready(name, &new).await.map_err(keeps_serving)?;

        let slot = match existing {
            Some(slot) => {
                slot.active.store(new.clone());
                slot
            }
            None => {
                let slot = Arc::new(PluginSlot {
                    active: ArcSwap::new(new.clone()),
                    activation,
                    swaps: Default::default(),
                    soak: Default::default(),
                });
                self.slots
                    .write()
                    .map_err(KernelError::internal)?
                    .insert(name.to_string(), slot.clone());
                slot
            }
        };
        new.activate();
        failpoint::hit("swap:after-switch");

        if let Err(err) = self.commit(edit) {
            match &old {
                Some(old) => {
                    slot.active.store(old.clone());
                    old.activate();
                }
                None => {
                    if let Ok(mut slots) = self.slots.write() {
                        slots.remove(name);
                    }
                }
            }
            return Err(err);
        }
        failpoint::hit("swap:after-journal");
        if old.is_some() {
            slot.swaps.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut window) = slot.soak.lock() {
            *window = soak.then(|| Soak {
                release_id: new.id,
                until: Instant::now() + limits.soak,
                max_faults: limits.soak_max_faults,
            });
        }
        Ok(new)
    }

    /// Writes the journal with `edit` applied; the in-memory copy follows only on success.
    pub(super) fn commit(&self, edit: impl FnOnce(&mut InstalledSet)) -> Result<(), KernelError> {
        let mut installed = self.installed.lock().map_err(KernelError::internal)?;
        let mut next = installed.clone();
        edit(&mut next);
        self.journal
            .commit(&mut next)
            .map_err(|err| KernelError::internal(format!("writing the journal: {err}")))?;
        *installed = next;
        Ok(())
    }
}

/// Moves the old release's in-memory state into the new one, when both support it.
async fn hand_over(old: &Release, new: &Release) -> Result<(), KernelError> {
    let wait = old.limits.call_timeout * 2 + Duration::from_secs(1);
    let name = &new.identity.name;
    let state = match old.snapshot(wait).await {
        Ok(Some(state)) => state,
        Ok(None) => return Ok(()),
        Err(err) => {
            tracing::warn!(plugin = %name, "no state handover: the running release could not snapshot ({err})");
            return Ok(());
        }
    };
    match new.restore(state, wait).await {
        Ok(true) => {
            tracing::info!(plugin = %name, "state handed over to {}", new.identity.version);
            Ok(())
        }
        Ok(false) => {
            tracing::info!(plugin = %name, "{} did not take the previous state", new.identity.version);
            Ok(())
        }
        Err(CallError::Plugin(message)) => Err(KernelError::Start(format!(
            "{name}: the new release refused the previous state: {message}"
        ))),
        Err(err) => Err(KernelError::Start(format!(
            "{name}: restoring state into the new release failed: {err}"
        ))),
    }
}

/// Polls the new release's health until it is ready or the timeout passes.
async fn wait_ready(name: &str, release: &Release) -> Result<(), KernelError> {
    let deadline = Instant::now() + READINESS_TIMEOUT;
    let wait = release.limits.call_timeout * 2 + Duration::from_secs(1);
    loop {
        match release.health(wait).await {
            Ok(Health::Ok | Health::Degraded(_)) => return Ok(()),
            Ok(Health::Unhealthy(reason)) if Instant::now() >= deadline => {
                return Err(KernelError::Start(format!(
                    "{name}: the new release is not ready: {reason}"
                )));
            }
            Ok(Health::Unhealthy(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(err) => {
                return Err(KernelError::Start(format!(
                    "{name}: readiness check failed: {err}"
                )));
            }
        }
    }
}
