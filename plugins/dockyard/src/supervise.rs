//! Keeping installed services running: a service whose container exits is
//! started again after a backoff (250 ms doubling to 30 s; reset once it has
//! run a minute), and at every start of the plugin (a daemon restart, a
//! swap) every installed service whose container is not running is started.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_sdk::container::{self, Exited};
use cairn_sdk::{metrics, timer};

use crate::plan::ServiceRequest;
use crate::seal::Sealer;
use crate::settings::Settings;
use crate::{bindings, dependents, install, ready};

const TOPIC_PREFIX: &str = "dockyard/restart/";
const RECREATE_TOPIC: &str = "dockyard/recreate";
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A service that ran this long before exiting starts over from the first backoff.
const STABLE: Duration = Duration::from_secs(60);

/// Restarts per service since it last ran stably.
#[derive(Default)]
pub struct Supervisor {
    failures: BTreeMap<String, (u32, Instant)>,
    /// Total restarts per service, for `list`.
    pub restarts: BTreeMap<String, u32>,
}

impl Supervisor {
    /// After a start of the plugin: removes what an interrupted install or
    /// uninstall left — containers of services with no record, binding
    /// secrets of steps that never finished — then starts every installed
    /// service whose container is not running. Services whose container is
    /// gone altogether (a wiped container store) are made again from their
    /// records just after, providers first: that may wait for images and
    /// ready checks, which a plugin's start should not.
    pub fn reconcile(&mut self, settings: &Settings) {
        let Ok(records) = install::records() else {
            return;
        };
        for leftover in bindings::leftover_dirs(settings) {
            if let Err(err) = std::fs::remove_dir_all(&leftover) {
                cairn_sdk::warn!("cannot remove {leftover}: {err}");
            }
        }
        let installed: Vec<&str> = records
            .iter()
            .map(|record| record.service.as_str())
            .collect();
        for orphan in container::list().unwrap_or_default() {
            if !installed.contains(&orphan.name.as_str()) {
                cairn_sdk::warn!(
                    "removing container {}: its install did not finish",
                    orphan.name
                );
                if let Err(err) = container::remove(&orphan.name) {
                    cairn_sdk::warn!("cannot remove container {}: {err}", orphan.name);
                }
            }
        }
        let mut missing = false;
        for record in &records {
            match container::info(&record.service) {
                Ok(info) if info.running => {}
                Ok(_) => {
                    self.start(settings, &record.service);
                }
                Err(cairn_sdk::Error::NotFound(_)) => missing = true,
                Err(err) => {
                    cairn_sdk::warn!("service {}: its container: {err}", record.service);
                }
            }
        }
        if missing && let Err(err) = timer::once(Duration::from_millis(1), RECREATE_TOPIC) {
            cairn_sdk::warn!("services whose container is gone are not made again: {err}");
        }
    }

    /// Makes again, from their records, the services whose container is
    /// gone, providers before the services that use them.
    fn recreate(&mut self, settings: &Settings, sealer: &Sealer) {
        let Ok(records) = install::records() else {
            return;
        };
        let mut pending: Vec<&install::Record> = records
            .iter()
            .filter(|record| {
                matches!(
                    container::info(&record.service),
                    Err(cairn_sdk::Error::NotFound(_))
                )
            })
            .collect();
        while !pending.is_empty() {
            let waiting: Vec<String> = pending.iter().map(|r| r.service.clone()).collect();
            let (ready, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|record| {
                !record
                    .providers
                    .iter()
                    .any(|provider| waiting.contains(provider))
            });
            // A cycle cannot be installed; what is left then is tried as is.
            let (now, later) = if ready.is_empty() {
                (later, Vec::new())
            } else {
                (ready, later)
            };
            for record in now {
                let request = ServiceRequest {
                    service: record.service.clone(),
                    options: Default::default(),
                    pinned: Some(record.digest.clone()),
                };
                match install::install(settings, sealer, &request) {
                    Ok(_) => cairn_sdk::info!(
                        "service {} made again from its record: its container was gone",
                        record.service
                    ),
                    Err(err) => cairn_sdk::warn!(
                        "service {} could not be made again: {err}",
                        record.service
                    ),
                }
            }
            pending = later;
        }
    }

    /// A container exited: an installed service's is started again later.
    pub fn on_exit(&mut self, exited: &Exited) {
        let installed = install::record(&exited.name).ok().flatten().is_some();
        // A container replaced under the same name reports its old run late.
        let current = container::info(&exited.name).ok();
        let stale = current
            .as_ref()
            .is_some_and(|info| info.running && info.pid != exited.pid);
        if !installed || stale || current.is_none() {
            return;
        }
        let now = Instant::now();
        let (count, since) = self.failures.entry(exited.name.clone()).or_insert((0, now));
        if now.duration_since(*since) > STABLE {
            *count = 0;
        }
        *count += 1;
        *since = now;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (*count - 1).min(7))
            .min(MAX_BACKOFF);
        cairn_sdk::warn!(
            "service {} exited (code {:?}{}); starting it again in {backoff:?}",
            exited.name,
            exited.code,
            if exited.oom { ", out of memory" } else { "" }
        );
        if let Err(err) = timer::once(backoff, &format!("{TOPIC_PREFIX}{}", exited.name)) {
            cairn_sdk::warn!("service {} is not restarted: {err}", exited.name);
        }
    }

    /// A restart timer fired; `true` when `topic` was one. The services
    /// that use the one started again are handled as they declared.
    pub fn on_timer(&mut self, settings: &Settings, sealer: &Sealer, topic: &str) -> bool {
        if topic == RECREATE_TOPIC {
            self.recreate(settings, sealer);
            return true;
        }
        let Some(service) = topic.strip_prefix(TOPIC_PREFIX) else {
            return false;
        };
        if install::record(service).ok().flatten().is_some() && self.start(settings, service) {
            dependents::provider_restarted(settings, sealer, service);
        }
        true
    }

    /// Starts `service`'s container again (its ready check following it);
    /// whether it started.
    fn start(&mut self, settings: &Settings, service: &str) -> bool {
        match container::start(service) {
            Ok(_) => {
                if let Ok(Some(record)) = install::record(service) {
                    ready::refresh(settings, &record);
                }
                *self.restarts.entry(service.to_string()).or_default() += 1;
                if let Err(err) =
                    metrics::counter_add("dockyard_restarts_total", &[("service", service)], 1)
                {
                    cairn_sdk::debug!("metric dockyard_restarts_total: {err}");
                }
                cairn_sdk::info!("service {service} started again");
                true
            }
            Err(err) => {
                cairn_sdk::warn!("service {service} did not start: {err}");
                false
            }
        }
    }
}
