//! Turning command results into text: the human form, the `--json` form, and
//! the small formatting helpers both share.

use std::time::Duration;

use crate::admin::api::{AdminError, PluginSummary};

/// What a command produced, in both forms; [`render`] picks one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Printed with `--json`.
    pub json: serde_json::Value,
    /// Printed on stdout without `--json`.
    pub human: String,
    /// Printed on stderr without `--json`: failures inside a command that went on.
    pub human_errors: String,
    /// False when part of the command failed (the exit status is then 1).
    pub success: bool,
    /// Nothing to print on success (the daemon, whose output is its log).
    pub silent: bool,
}

impl Outcome {
    /// A successful outcome.
    pub fn new(json: serde_json::Value, human: impl Into<String>) -> Self {
        Outcome {
            json,
            human: human.into(),
            human_errors: String::new(),
            success: true,
            silent: false,
        }
    }

    /// A successful outcome that prints nothing.
    pub fn silent() -> Self {
        Outcome {
            silent: true,
            ..Outcome::new(serde_json::Value::Null, "")
        }
    }
}

/// The text to print and the exit status of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: u8,
}

/// Exit status when an operation failed (clap uses 2 for usage errors).
pub(crate) const EXIT_FAILURE: u8 = 1;

/// Renders a command's result as people (`json == false`) or scripts read it.
pub(crate) fn render(result: Result<Outcome, AdminError>, json: bool) -> Rendered {
    match result {
        Ok(outcome) => {
            let exit_code = if outcome.success { 0 } else { EXIT_FAILURE };
            let (stdout, stderr) = if outcome.silent {
                (String::new(), String::new())
            } else if json {
                (pretty_json(&outcome.json), String::new())
            } else {
                (
                    with_newline(outcome.human),
                    with_newline(outcome.human_errors),
                )
            };
            Rendered {
                stdout,
                stderr,
                exit_code,
            }
        }
        Err(error) => {
            let stderr = if json {
                let wrapped = serde_json::json!({ "error": error });
                format!("{wrapped}\n")
            } else if let Some(code) = &error.plugin_code {
                format!("error: {} ({code})\n", error.message.trim_end())
            } else {
                format!("error: {}\n", error.message.trim_end())
            };
            Rendered {
                stdout: String::new(),
                stderr,
                exit_code: EXIT_FAILURE,
            }
        }
    }
}

/// JSON laid out for reading, with a final newline.
pub(crate) fn pretty_json(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail; the compact form is a harmless fallback.
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    format!("{text}\n")
}

fn with_newline(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Aligns `rows` under `headers`, two spaces between columns, no trailing blanks.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let padding = widths[index].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// The plugin table shared by `cairn status` and `cairn plugin list`, followed
/// by each plugin's last error, which is too long for a column.
pub(crate) fn plugin_table(plugins: &[PluginSummary]) -> String {
    if plugins.is_empty() {
        return "no plugins installed\n".to_string();
    }
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|plugin| {
            vec![
                plugin.name.clone(),
                plugin.version.clone(),
                plugin
                    .previous_version
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                plugin.state.clone(),
                plugin.restarts.to_string(),
                plugin.calls.to_string(),
                plugin.faults.to_string(),
                short_digest(&plugin.digest),
            ]
        })
        .collect();
    let mut text = table(
        &[
            "NAME", "VERSION", "PREVIOUS", "STATE", "RESTARTS", "CALLS", "FAULTS", "DIGEST",
        ],
        &rows,
    );
    for plugin in plugins {
        if let Some(error) = &plugin.last_error {
            text.push_str(&format!("{}: last error: {error}\n", plugin.name));
        }
    }
    text
}

/// `sha256:0123456789ab…`: enough of a digest to recognise it.
pub(crate) fn short_digest(digest: &str) -> String {
    const SHOWN_HEX_DIGITS: usize = 12;
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("", digest));
    if hex.chars().count() <= SHOWN_HEX_DIGITS {
        return digest.to_string();
    }
    let prefix: String = hex.chars().take(SHOWN_HEX_DIGITS).collect();
    if algorithm.is_empty() {
        format!("{prefix}…")
    } else {
        format!("{algorithm}:{prefix}…")
    }
}

/// `12.0 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1h 2m 3s`.
pub(crate) fn human_duration(seconds: u64) -> String {
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// `HH:MM:SS.mmm` (UTC) of a millisecond Unix timestamp.
pub(crate) fn clock_time(at_ms: u64) -> String {
    let ms_of_day = at_ms % 86_400_000;
    let (hours, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{seconds:02}.{millis:03}")
}
