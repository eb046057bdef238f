//! When a provider's container starts again — it died and the supervisor
//! restarted it, or a re-install replaced it — each service that uses it is
//! handled as its label declared for that dependency (`on-restart`):
//! restarted (the default), rebound (its binding steps in that provider run
//! again, then it is restarted) or left alone. A restarted consumer that is
//! itself a provider passes it on to its own consumers, once each.
//!
//! Each outcome is logged and announced on `dockyard/dependent/<outcome>`
//! (`restarted`, `rebound`, `ignored`, `failed`).

use std::collections::BTreeSet;

use cairn_sdk::{CommandError, container, events};
use serde_json::json;

use crate::install::{self, STOP_GRACE};
use crate::options::OnRestart;
use crate::seal::Sealer;
use crate::settings::Settings;
use crate::{bindings, ready};

/// Handles the services that use `provider`, which just started again.
pub fn provider_restarted(settings: &Settings, sealer: &Sealer, provider: &str) {
    // Consumers reconnect to a provider that serves, not one still starting.
    if let Ok(Some(record)) = install::record(provider)
        && let Some(check) = &record.ready
        && let Err(err) = ready::wait(settings, provider, check)
    {
        cairn_sdk::warn!("{err}");
    }
    let Ok(records) = install::records() else {
        return;
    };
    let mut done = BTreeSet::from([provider.to_string()]);
    let mut restarted = vec![provider.to_string()];
    while let Some(provider) = restarted.pop() {
        for consumer in records
            .iter()
            .filter(|record| record.providers.contains(&provider))
        {
            if !done.insert(consumer.service.clone()) {
                continue;
            }
            let action = consumer
                .on_restart
                .get(&provider)
                .copied()
                .unwrap_or_default();
            let outcome = handle(settings, sealer, &consumer.service, &provider, action);
            let (what, error) = match (&outcome, action) {
                (Err(err), _) => ("failed", Some(err.to_string())),
                (Ok(()), OnRestart::Restart) => ("restarted", None),
                (Ok(()), OnRestart::Rebind) => ("rebound", None),
                (Ok(()), OnRestart::Ignore) => ("ignored", None),
            };
            match &error {
                Some(error) => cairn_sdk::warn!(
                    "service {} (uses {provider}, which restarted): {} failed: {error}",
                    consumer.service,
                    action.name()
                ),
                None => cairn_sdk::info!(
                    "service {} {what}: {provider}, which it uses, restarted",
                    consumer.service
                ),
            }
            let payload = json!({"service": consumer.service, "provider": provider, "on-restart": action.name(), "error": error});
            if let Err(err) = events::publish_json(&format!("dockyard/dependent/{what}"), &payload)
            {
                cairn_sdk::debug!("event dockyard/dependent/{what}: {err}");
            }
            if outcome.is_ok() && action != OnRestart::Ignore {
                restarted.push(consumer.service.clone());
            }
        }
    }
}

fn handle(
    settings: &Settings,
    sealer: &Sealer,
    consumer: &str,
    provider: &str,
    action: OnRestart,
) -> Result<(), CommandError> {
    match action {
        OnRestart::Ignore => Ok(()),
        OnRestart::Restart => restart(settings, consumer),
        OnRestart::Rebind => {
            let installed = install::record(consumer)?.ok_or_else(|| {
                CommandError::not_found(format!("service {consumer} is not installed"))
            })?;
            let rehydrated = install::rehydrate(
                settings,
                sealer,
                consumer,
                &Default::default(),
                Some(&installed.digest),
            )?;
            bindings::run_pending(
                settings,
                consumer,
                &rehydrated.planned.resolved,
                &|binding| binding.service == provider,
            )?;
            restart(settings, consumer)
        }
    }
}

/// Stops the consumer's container if it runs and starts it again; its
/// exit, reported later, is that of a replaced run and ignored.
fn restart(settings: &Settings, service: &str) -> Result<(), CommandError> {
    if container::info(service).is_ok_and(|info| info.running) {
        container::stop(service, STOP_GRACE)?;
    }
    container::start(service)?;
    if let Some(record) = install::record(service)? {
        ready::refresh(settings, &record);
    }
    Ok(())
}
