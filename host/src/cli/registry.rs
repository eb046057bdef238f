//! `cairn registry ...`: the commands of the `registry` plugin, sent over the
//! admin socket as `cairn call registry ...` would send them, with readable
//! output. Passwords are never printed: the plugin only answers fingerprints.

use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::output::Outcome;
use super::remote::ask;
use crate::admin::api::{AdminError, Request};

/// The name the registry plugin is installed under unless `--plugin` says otherwise.
pub const DEFAULT_PLUGIN: &str = "registry";

/// `cairn registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry plugin to talk to (for an install under another name)
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PLUGIN, global = true)]
    pub plugin: String,
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// What to ask the registry plugin.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// The registry's URL, process, readiness and last smoke check
    Status,
    /// Fingerprints of the build and runtime credentials
    Fingerprints,
    /// Give a credential a new password
    Rotate {
        /// `build` or `runtime`
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Push, pull by digest and delete a tiny image, step by step
    Smoke,
    /// Record a pushed artifact by the digest its tag points at
    Publish(PublishArgs),
    /// The recorded artifacts, oldest first
    Artifacts,
    /// What retention would delete, and why each kept digest stays
    Retention,
}

/// Arguments of `cairn registry publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// `repository:tag` as pushed to the registry
    #[arg(value_name = "REPOSITORY:TAG")]
    pub image: String,
    /// The environment it is for
    #[arg(long)]
    pub environment: String,
    /// The source revision it was built from
    #[arg(long, default_value = "")]
    pub revision: String,
    /// `image` or `plugin`
    #[arg(long, default_value = "image")]
    pub kind: String,
    /// The digest the push reported, checked against the registry's
    #[arg(long)]
    pub digest: Option<String>,
}

/// Runs `cairn registry ...`.
pub(crate) async fn run(socket: &Path, args: RegistryArgs) -> Result<Outcome, AdminError> {
    let (command, payload) = match args.command {
        RegistryCommand::Status => ("status", Value::Null),
        RegistryCommand::Fingerprints => ("credentials-fingerprint", Value::Null),
        RegistryCommand::Rotate { user } => ("rotate", json!({ "user": user })),
        RegistryCommand::Smoke => ("smoke", Value::Null),
        RegistryCommand::Artifacts => ("artifacts", Value::Null),
        RegistryCommand::Retention => ("retention", Value::Null),
        RegistryCommand::Publish(publish) => {
            let (repository, tag) = publish.image.rsplit_once(':').ok_or_else(|| {
                super::failure(
                    crate::admin::api::ErrorCode::Invalid,
                    format!("`{}` is not REPOSITORY:TAG", publish.image),
                )
            })?;
            let mut payload = json!({
                "repository": repository,
                "tag": tag,
                "environment": publish.environment,
                "revision": publish.revision,
                "kind": publish.kind,
            });
            if let Some(digest) = publish.digest {
                payload["digest"] = json!(digest);
            }
            ("publish", payload)
        }
    };
    let value = ask(
        socket,
        &Request::Call {
            plugin: args.plugin,
            command: command.to_string(),
            payload,
        },
    )
    .await?;
    let human = render(command, &value);
    Ok(Outcome::new(value, human))
}

fn render(command: &str, value: &Value) -> String {
    match command {
        "status" => format!(
            "{} ({}): {}{}\nstorage: {}\nrestarts: {}\n",
            value["url"].as_str().unwrap_or("?"),
            value["tls"].as_str().unwrap_or("?"),
            if value["ready"] == true {
                "ready"
            } else if value["running"] == true {
                "running, not ready"
            } else {
                "not running"
            },
            value["ca"]
                .as_str()
                .map(|ca| format!("\nclients trust: {ca}"))
                .unwrap_or_default(),
            value["storage"].as_str().unwrap_or("?"),
            value["restarts"],
        ),
        "credentials-fingerprint" | "rotate" => format!(
            "build    {}\nruntime  {}\n",
            value["build"].as_str().unwrap_or("?"),
            value["runtime"].as_str().unwrap_or("?")
        ),
        "smoke" => {
            let mut text = String::new();
            for step in value["steps"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "{:<14} {}  {}\n",
                    step["step"].as_str().unwrap_or("?"),
                    if step["ok"] == true { "ok" } else { "FAILED" },
                    step["detail"].as_str().unwrap_or("")
                ));
            }
            text
        }
        "publish" => format!(
            "{}@{} ({}, {})\n",
            value["repository"].as_str().unwrap_or("?"),
            value["digest"].as_str().unwrap_or("?"),
            value["environment"].as_str().unwrap_or("?"),
            value["tag"].as_str().unwrap_or("?"),
        ),
        "artifacts" => value
            .as_array()
            .into_iter()
            .flatten()
            .map(|artifact| {
                format!(
                    "{:<12} {}:{}  {}\n",
                    artifact["environment"].as_str().unwrap_or("?"),
                    artifact["repository"].as_str().unwrap_or("?"),
                    artifact["tag"].as_str().unwrap_or("?"),
                    artifact["digest"].as_str().unwrap_or("?"),
                )
            })
            .collect(),
        _ => render_retention(value),
    }
}

fn render_retention(value: &Value) -> String {
    let mut text = String::from("delete:\n");
    let deletions = value["delete"].as_array().cloned().unwrap_or_default();
    if deletions.is_empty() {
        text.push_str("  (nothing)\n");
    }
    for gone in &deletions {
        text.push_str(&format!(
            "  {}@{}  {}\n",
            gone["repository"].as_str().unwrap_or("?"),
            gone["digest"].as_str().unwrap_or("?"),
            gone["why"].as_str().unwrap_or("")
        ));
    }
    text.push_str("keep:\n");
    for (repository, digests) in value["keep"].as_object().into_iter().flatten() {
        for (digest, reasons) in digests.as_object().into_iter().flatten() {
            let reasons: Vec<&str> = reasons
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            text.push_str(&format!(
                "  {repository}@{digest}  {}\n",
                reasons.join("; ")
            ));
        }
    }
    text
}
