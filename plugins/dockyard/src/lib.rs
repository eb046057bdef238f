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

mod device;
pub mod options;
mod plan;
mod settings;

use cairn_sdk::{CommandError, Commands, Config, Plugin};

use settings::Settings;

struct Dockyard {
    settings: Settings,
}

impl Plugin for Dockyard {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        settings.check()?;
        Ok(Dockyard { settings })
    }

    fn commands() -> Commands<Self> {
        Commands::new().command(
            "plan",
            |dockyard: &mut Dockyard, request: Option<plan::ServiceRequest>| {
                let request = request.ok_or_else(|| {
                    CommandError::invalid(
                        r#"plan expects {"service": NAME, "options": {KEY: VALUE}}"#,
                    )
                })?;
                let planned = plan::prepare(&dockyard.settings, &request)?;
                Ok::<_, CommandError>(plan::render(&request, &planned))
            },
        )
    }
}

cairn_sdk::export_plugin!(Dockyard);
