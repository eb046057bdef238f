//! Commands that ask the daemon something: `status`, `call`, `logs`, `metrics`.

use std::path::Path;

use clap::Args;
use serde::de::DeserializeOwned;

use super::failure;
use super::output::{self, Outcome};
use super::progress::ProgressView;
use crate::admin::api::{AdminError, ErrorCode, HealthSummary, LogRecord, Request, Status};
use crate::admin::client::AdminClient;

/// Records `cairn logs` shows when `-n` is not given.
pub(crate) const DEFAULT_LOG_LINES: usize = 100;

/// Arguments of `cairn call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The plugin to call
    pub plugin: String,
    /// The plugin's command
    pub command: String,
    /// Argument as JSON, e.g. '{"by": 2}' or '"text"' [default: null]
    #[arg(value_name = "JSON")]
    pub payload: Option<String>,
}

/// Arguments of `cairn logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only records of this plugin
    pub plugin: Option<String>,
    /// How many of the newest records to show
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = DEFAULT_LOG_LINES)]
    pub lines: usize,
}

/// Sends one request on a fresh connection and returns the `ok` value.
pub(crate) async fn ask(socket: &Path, request: &Request) -> Result<serde_json::Value, AdminError> {
    let mut client = AdminClient::connect(socket).await?;
    client.request(request).await
}

/// Like [`ask`], drawing the daemon's progress reports while waiting.
pub(crate) async fn ask_showing_progress(
    socket: &Path,
    request: &Request,
    quiet: bool,
) -> Result<serde_json::Value, AdminError> {
    let view = ProgressView::new(quiet);
    let mut client = AdminClient::connect(socket).await?;
    let answer = client
        .request_with_progress(request, &mut |progress| view.report(progress))
        .await;
    view.finish();
    answer
}

/// Reads the daemon's `ok` value as `T` (the value itself is what `--json` prints).
pub(crate) fn decode<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, AdminError> {
    T::deserialize(value).map_err(|error| {
        failure(
            ErrorCode::Internal,
            format!("the daemon's reply has an unexpected shape: {error}"),
        )
    })
}

/// `cairn status`.
pub(crate) async fn status(socket: &Path) -> Result<Outcome, AdminError> {
    let value = ask(socket, &Request::Status).await?;
    let status: Status = decode(&value)?;
    Ok(Outcome::new(value, render_status(&status)))
}

/// `cairn call`.
pub(crate) async fn call(socket: &Path, args: CallArgs) -> Result<Outcome, AdminError> {
    // Checked before connecting: a typo should not depend on the daemon running.
    let payload = parse_payload(args.payload.as_deref())?;
    let request = Request::Call {
        plugin: args.plugin,
        command: args.command,
        payload,
    };
    let reply = ask(socket, &request).await?;
    let human = render_reply(&reply);
    Ok(Outcome::new(reply, human))
}

/// `cairn logs`.
pub(crate) async fn logs(socket: &Path, args: LogsArgs) -> Result<Outcome, AdminError> {
    let request = Request::Logs {
        plugin: args.plugin.clone(),
        limit: args.lines,
    };
    let value = ask(socket, &request).await?;
    let records: Vec<LogRecord> = decode(&value)?;
    let human = if records.is_empty() {
        match &args.plugin {
            Some(plugin) => format!("no log records for {plugin}"),
            None => "no log records".to_string(),
        }
    } else {
        render_logs(&records)
    };
    Ok(Outcome::new(value, human))
}

/// `cairn metrics`.
pub(crate) async fn metrics(socket: &Path) -> Result<Outcome, AdminError> {
    let value = ask(socket, &Request::Metrics).await?;
    let text: String = decode(&value)?;
    Ok(Outcome::new(value, text))
}

/// `cairn health`: exits 1 when the daemon is failing.
pub(crate) async fn health(socket: &Path) -> Result<Outcome, AdminError> {
    let value = ask(socket, &Request::Health).await?;
    let summary: HealthSummary = decode(&value)?;
    let mut human = format!(
        "{} (up {})",
        summary.status,
        output::human_duration(summary.uptime_secs)
    );
    for plugin in &summary.plugins {
        human.push_str(&format!(
            "\n  {:<20} {:<10} {:<10} {}{}",
            plugin.name,
            plugin.version,
            plugin.state,
            plugin.health,
            plugin
                .detail
                .as_deref()
                .map(|detail| format!(": {detail}"))
                .unwrap_or_default()
        ));
    }
    if summary.status == "failing" {
        return Err(failure(ErrorCode::Unavailable, human));
    }
    Ok(Outcome::new(value, human))
}

/// The JSON argument of `cairn call`; `null` when absent.
pub(crate) fn parse_payload(payload: Option<&str>) -> Result<serde_json::Value, AdminError> {
    let Some(text) = payload else {
        return Ok(serde_json::Value::Null);
    };
    serde_json::from_str(text).map_err(|error| {
        failure(
            ErrorCode::Invalid,
            format!(
                "the argument is not valid JSON ({error}); \
                 quote text as JSON, e.g. '\"hello\"' or '{{\"by\": 2}}'"
            ),
        )
    })
}

/// A plugin's reply: text as is, anything else as indented JSON.
pub(crate) fn render_reply(reply: &serde_json::Value) -> String {
    match reply {
        serde_json::Value::String(text) => text.clone(),
        other => output::pretty_json(other),
    }
}

/// The human form of `cairn status`.
pub(crate) fn render_status(status: &Status) -> String {
    let mut text = format!(
        "cairn {}, up {} (pid {})\n",
        status.version,
        output::human_duration(status.uptime_secs),
        status.pid
    );
    let details = [
        ("state dir", status.state_dir.clone()),
        ("policy dir", status.policy_dir.clone()),
        ("allocator", status.allocator.clone()),
        (
            "memory",
            format!("{} resident", output::human_bytes(status.rss_bytes)),
        ),
    ];
    for (label, value) in details {
        text.push_str(&format!("{:<12}{value}\n", format!("{label}:")));
    }
    if status.allow_unsigned {
        text.push_str(
            "warning: unsigned plugins are allowed (development mode); \
             do not run this on a real device\n",
        );
    }
    text.push('\n');
    text.push_str(&output::plugin_table(&status.plugins));
    text
}

/// The human form of `cairn logs`: `HH:MM:SS.mmm LEVEL [plugin] message`.
pub(crate) fn render_logs(records: &[LogRecord]) -> String {
    records
        .iter()
        .map(|record| {
            let plugin = record
                .plugin
                .as_ref()
                .map(|plugin| format!("[{plugin}] "))
                .unwrap_or_default();
            format!(
                "{} {:<5} {plugin}{}\n",
                output::clock_time(record.at_ms),
                record.level,
                record.message
            )
        })
        .collect()
}
