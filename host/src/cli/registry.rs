//! `cairn registry ...`: the commands of the `registry` plugin, sent over the
//! admin socket as `cairn call registry ...` would send them, with readable
//! output. Passwords are never printed: the plugin only answers fingerprints.

use std::path::Path;
use std::time::Duration;

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
    /// Write the files a device needs to use this registry as its mirror,
    /// and print the `cairn.toml` lines that use them
    DeviceConfig,
    /// Delete what retention does not keep and garbage-collect, under a
    /// maintenance lock (publishing is refused until it ends)
    Prune {
        /// Only show what would be deleted
        #[arg(long)]
        dry_run: bool,
        /// Wait for the prune to finish and show how it went
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
    },
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

/// How often `prune --wait` asks whether the prune finished.
const PRUNE_POLL: Duration = Duration::from_millis(250);

/// Runs `cairn registry ...`.
pub(crate) async fn run(socket: &Path, args: RegistryArgs) -> Result<Outcome, AdminError> {
    let mut wait_for_prune = false;
    let (command, payload) = match args.command {
        RegistryCommand::Status => ("status", Value::Null),
        RegistryCommand::Fingerprints => ("credentials-fingerprint", Value::Null),
        RegistryCommand::Rotate { user } => ("rotate", json!({ "user": user })),
        RegistryCommand::Smoke => ("smoke", Value::Null),
        RegistryCommand::Artifacts => ("artifacts", Value::Null),
        RegistryCommand::Retention => ("retention", Value::Null),
        RegistryCommand::DeviceConfig => ("device-config", Value::Null),
        RegistryCommand::Prune { dry_run, wait } => {
            wait_for_prune = wait;
            ("prune", json!({ "dry-run": dry_run }))
        }
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
    let call = |command: &str, payload: Value| Request::Call {
        plugin: args.plugin.clone(),
        command: command.to_string(),
        payload,
    };
    let value = ask(socket, &call(command, payload)).await?;
    if wait_for_prune {
        loop {
            let status = ask(socket, &call("status", Value::Null)).await?;
            if status["maintenance"].is_null() {
                let last = status["last-prune"].clone();
                let human = render_prune_outcome(&last);
                return Ok(Outcome::new(last, human));
            }
            tokio::time::sleep(PRUNE_POLL).await;
        }
    }
    let human = render(command, &value);
    Ok(Outcome::new(value, human))
}

fn render(command: &str, value: &Value) -> String {
    match command {
        "status" => format!(
            "{} ({}): {}{}\nauth: {}\nstorage: {}\nrestarts: {}\n{}",
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
            match value["token-realm"].as_str() {
                Some(realm) => format!("tokens from {realm} (runtime pulls only)"),
                None => "htpasswd (any login may push)".to_string(),
            },
            value["storage"].as_str().unwrap_or("?"),
            value["restarts"],
            render_maintenance(value),
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
                    "{:<20} {}  {}\n",
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
        "device-config" => format!(
            "Copy to each device, owner-only (install -m 600):\n  {} -> /etc/cairn/site-registry/credentials.toml\n{}\nand add to its cairn.toml:\n\n{}",
            value["credentials-file"].as_str().unwrap_or("?"),
            value["ca-file"]
                .as_str()
                .map(|ca| format!("  {ca} -> /etc/cairn/site-registry/ca.pem\n"))
                .unwrap_or_default(),
            value["config"].as_str().unwrap_or(""),
        ),
        "prune" if value["dry-run"] == true => render_retention(&value["plan"]),
        "prune" => format!(
            "pruning: {} manifests to delete, {} kept (publishing is refused until it ends)\n",
            value["deleting"], value["keeping"]
        ),
        _ => render_retention(value),
    }
}

fn render_maintenance(status: &Value) -> String {
    let mut text = String::new();
    if let Some(mode) = status["mode"].as_str() {
        text.push_str(&format!("mode: {mode}\n"));
    }
    let job = &status["maintenance"];
    if !job.is_null() {
        text.push_str(&format!(
            "maintenance: pruning ({}), step {}\n",
            job["trigger"].as_str().unwrap_or("?"),
            job["step"].as_str().unwrap_or("?")
        ));
    }
    if !status["last-prune"].is_null() {
        text.push_str("last prune: ");
        text.push_str(&render_prune_outcome(&status["last-prune"]));
    }
    text
}

fn render_prune_outcome(outcome: &Value) -> String {
    if outcome.is_null() {
        return "no prune has finished\n".into();
    }
    let mut text = format!(
        "{}: {} manifests deleted, {} blobs ({} bytes) freed in {} ms, read-only {} ms, {} kept manifests verified\n",
        if outcome["ok"] == true {
            "ok"
        } else {
            "FAILED"
        },
        outcome["manifests-deleted"],
        outcome["blobs-freed"],
        outcome["bytes-freed"],
        outcome["duration-ms"],
        outcome["read-only-ms"],
        outcome["verified"],
    );
    for line in ["missing", "errors"]
        .iter()
        .flat_map(|key| outcome[*key].as_array().cloned().unwrap_or_default())
    {
        text.push_str(&format!("  {}\n", line.as_str().unwrap_or("?")));
    }
    text
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
