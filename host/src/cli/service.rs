//! `cairn service ...`: the commands of the `dockyard` plugin, sent over the
//! admin socket as `cairn call dockyard ...` would send them. Secrets are
//! never printed: the plugin only answers them masked.

use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::output::Outcome;
use super::remote::ask;
use crate::admin::api::{AdminError, ErrorCode, Request};

/// `cairn service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The dockyard plugin to talk to (for an install under another name)
    #[arg(long, value_name = "NAME", default_value = "dockyard", global = true)]
    pub plugin: String,
    #[command(subcommand)]
    pub command: ServiceCommand,
}

/// What to ask the dockyard plugin.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Install a service (or bring it to these options): its image's own
    /// labels say what it takes
    Install(ServiceOptions),
    /// Show what installing would do, secrets masked, touching nothing
    Plan(ServiceOptions),
    /// The installed services
    List,
    /// The binding steps of a service and how they went
    Bindings {
        /// The service
        name: String,
    },
    /// Run one binding step of a service again
    Rebind {
        /// The service
        name: String,
        /// The step's id, as `bindings` shows it
        binding: String,
    },
    /// Remove a service no other service uses
    Uninstall {
        /// The service
        name: String,
    },
}

/// A service and the options given to it.
#[derive(Debug, Args)]
pub struct ServiceOptions {
    /// The service
    pub name: String,
    /// An option, `KEY=VALUE` (repeatable)
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
}

impl ServiceOptions {
    fn payload(&self) -> Result<Value, AdminError> {
        let mut options = Map::new();
        for option in &self.options {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                super::failure(ErrorCode::Invalid, format!("`{option}` is not KEY=VALUE"))
            })?;
            options.insert(key.to_string(), json!(value));
        }
        Ok(json!({"service": self.name, "options": options}))
    }
}

/// Runs `cairn service ...`.
pub(crate) async fn run(socket: &Path, args: ServiceArgs) -> Result<Outcome, AdminError> {
    let (command, payload) = match &args.command {
        ServiceCommand::Install(service) => ("install", service.payload()?),
        ServiceCommand::Plan(service) => ("plan", service.payload()?),
        ServiceCommand::List => ("list", Value::Null),
        ServiceCommand::Bindings { name } => ("bindings", json!({ "service": name })),
        ServiceCommand::Rebind { name, binding } => {
            ("rebind", json!({ "service": name, "binding": binding }))
        }
        ServiceCommand::Uninstall { name } => ("uninstall", json!({ "service": name })),
    };
    let request = Request::Call {
        plugin: args.plugin.clone(),
        command: command.to_string(),
        payload,
    };
    let value = ask(socket, &request).await?;
    let human = render(command, &value);
    Ok(Outcome::new(value, human))
}

fn render(command: &str, value: &Value) -> String {
    match command {
        "list" => {
            let mut text = String::new();
            for service in value.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "{:<20} {:<10} {}\n",
                    service["service"].as_str().unwrap_or("?"),
                    match (&service["running"], &service["ready"]) {
                        (Value::Bool(true), Value::Bool(false)) => "not-ready",
                        (Value::Bool(true), _) => "running",
                        _ => "stopped",
                    },
                    service["digest"].as_str().unwrap_or("?"),
                ));
            }
            text
        }
        "install" => format!(
            "{} {} ({})\n",
            value["service"].as_str().unwrap_or("?"),
            if value["changed"] == true {
                "installed"
            } else {
                "unchanged"
            },
            value["digest"].as_str().unwrap_or("?"),
        ),
        _ => serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
    }
}
