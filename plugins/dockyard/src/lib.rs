//! `dockyard`: services declared by container images, the Nanocloud way.
//!
//! A Dockyard image declares the options a service takes, the choices among
//! them (including other services it can use), and the commands ("bindings")
//! to run in those providers. [`options`] reads those declarations — from
//! Nanocloud's `io.nanocloud.options` label or Cairn's typed
//! `dev.cairn.options` label — into one model, and resolves a service's
//! options against what the user gave, the providers' profiles and the host;
//! that part is pure. The plugin pulls a service's image through the
//! `container` capability (its tag resolved once to a digest), reads its
//! labels from the digest-checked config and answers `plan`: the resolved
//! options (secrets masked), required services, binding steps and the
//! container it would run, touching nothing. See `docs/dockyard.md`.

mod backup;
mod bindings;
mod dependents;
mod device;
mod install;
pub mod options;
mod plan;
mod ready;
mod seal;
mod settings;
mod supervise;
mod tls;

use cairn_sdk::container;
use cairn_sdk::{CommandError, Commands, Config, Event, Plugin};
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use settings::Settings;

struct Dockyard {
    settings: Settings,
    sealer: seal::Sealer,
    supervisor: supervise::Supervisor,
}

impl Plugin for Dockyard {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        settings.check()?;
        std::fs::create_dir_all(&settings.state)
            .map_err(|err| format!("cannot create {}: {err}", settings.state))?;
        let sealer = seal::Sealer::load_or_create(&settings.state)?;
        let mut dockyard = Dockyard {
            settings,
            sealer,
            supervisor: supervise::Supervisor::default(),
        };
        dockyard.supervisor.reconcile(&dockyard.settings);
        Ok(dockyard)
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        self.handle_event(&event);
        Ok(())
    }

    fn commands() -> Commands<Self> {
        Commands::new()
            .command(
                "plan",
                |dockyard: &mut Dockyard, request: Option<plan::ServiceRequest>| {
                    let request = service_request(request, "plan")?;
                    let planned = plan::prepare(&dockyard.settings, &dockyard.sealer, &request)?;
                    Ok::<_, CommandError>(plan::render(&request, &planned))
                },
            )
            .command(
                "install",
                |dockyard: &mut Dockyard, request: Option<plan::ServiceRequest>| {
                    let request = service_request(request, "install")?;
                    install::install(&dockyard.settings, &dockyard.sealer, &request)
                },
            )
            .command(
                "uninstall",
                |dockyard: &mut Dockyard, request: Option<plan::ServiceRequest>| {
                    let request = service_request(request, "uninstall")?;
                    install::uninstall(&dockyard.settings, &dockyard.sealer, &request.service)
                },
            )
            .command(
                "rebind",
                |dockyard: &mut Dockyard, request: Option<RebindRequest>| {
                    let request = request.ok_or_else(|| {
                        CommandError::invalid(r#"rebind expects {"service": NAME, "binding": ID}"#)
                    })?;
                    let Some(installed) = install::record(&request.service)? else {
                        return Err(CommandError::not_found(format!(
                            "service {} is not installed",
                            request.service
                        )));
                    };
                    let rehydrated = install::rehydrate(
                        &dockyard.settings,
                        &dockyard.sealer,
                        &request.service,
                        &Default::default(),
                        Some(&installed.digest),
                    )?;
                    let resolved = &rehydrated.planned.resolved;
                    if !resolved
                        .bindings
                        .iter()
                        .any(|binding| binding.id == request.binding)
                    {
                        return Err(CommandError::not_found(format!(
                            "service {} has no binding {}",
                            request.service, request.binding
                        )));
                    }
                    bindings::run_pending(
                        &dockyard.settings,
                        &request.service,
                        resolved,
                        &|binding| binding.id == request.binding,
                    )
                },
            )
            .command(
                "bindings",
                |_: &mut Dockyard, request: Option<plan::ServiceRequest>| {
                    let request = service_request(request, "bindings")?;
                    bindings::records(&request.service)
                },
            )
            .command(
                "export",
                |dockyard: &mut Dockyard, request: Option<plan::ServiceRequest>| {
                    let request = service_request(request, "export")?;
                    backup::export(&dockyard.settings, &dockyard.sealer, &request.service)
                },
            )
            .command(
                "import",
                |dockyard: &mut Dockyard, export: Option<backup::Export>| {
                    let export = export.ok_or_else(|| {
                        CommandError::invalid("import expects what `export` answered")
                    })?;
                    backup::import(&dockyard.settings, &dockyard.sealer, export)
                },
            )
            .command("list", |dockyard: &mut Dockyard, _: IgnoredAny| {
                let listed: Vec<Value> = install::records()?
                    .into_iter()
                    .map(|record| {
                        let running =
                            container::info(&record.service).is_ok_and(|info| info.running);
                        let readiness = ready::readiness(&dockyard.settings, &record);
                        json!({
                            "service": record.service,
                            "reference": record.reference,
                            "digest": record.digest,
                            "options": record.shown,
                            "providers": record.providers,
                            "installed-ms": record.installed_ms,
                            "running": running,
                            "ready": readiness.is_ok(),
                            "not-ready": readiness.err(),
                            "restarts": dockyard.supervisor.restarts.get(&record.service).copied().unwrap_or(0),
                        })
                    })
                    .collect();
                Ok::<_, CommandError>(listed)
            })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RebindRequest {
    service: String,
    binding: String,
}

impl Dockyard {
    fn handle_event(&mut self, event: &Event) {
        if let Some(exited) = container::Exited::from_event(event) {
            self.supervisor.on_exit(&exited);
        } else if event.is_timer() {
            self.supervisor
                .on_timer(&self.settings, &self.sealer, &event.topic);
        }
    }
}

fn service_request(
    request: Option<plan::ServiceRequest>,
    command: &str,
) -> Result<plan::ServiceRequest, CommandError> {
    request.ok_or_else(|| {
        CommandError::invalid(format!(
            r#"{command} expects {{"service": NAME, "options": {{KEY: VALUE}}}}"#
        ))
    })
}

cairn_sdk::export_plugin!(Dockyard);
