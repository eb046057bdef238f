//! Binding steps: commands a consumer's choice declares, run inside the
//! provider's container (container exec) before the consumer starts.
//!
//! - A secret never reaches a command line, a log line, an event or a
//!   record: each secret word of the command is replaced by the path (inside
//!   the provider) of a file holding it, written owner-only for the step and
//!   removed after it; the same values also arrive on standard input, one
//!   per line, in order. Output kept in the record is clipped and has every
//!   secret value masked.
//! - Each step has an id; a step that succeeded is recorded and not run
//!   again (on a re-install or a restart); `rebind` runs one again.
//! - The environment is cleared: a step sees only a standard `PATH`, not
//!   the provider's environment (which may hold its own secrets); Dockyard
//!   never puts options or secrets in an environment.
//! - The first step that fails or times out stops the install.

use std::time::Instant;

use cairn_sdk::{CommandError, container, events, kv, metrics};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::options::{ArgWord, Binding, MASK, Resolved};
use crate::settings::Settings;

const RECORD_PREFIX: &str = "binding/";
/// Output kept per step, after masking.
const KEPT_OUTPUT: usize = 4096;
/// Where the provider's service directory is, inside its container.
const IN_CONTAINER: &str = "/run/cairn/dockyard";

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed-out",
        }
    }
}

/// What is recorded of a step: never a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepRecord {
    pub consumer: String,
    pub provider: String,
    pub id: String,
    /// The command as shown (secret words masked).
    pub command: Vec<String>,
    pub outcome: Outcome,
    pub attempts: u32,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub exit_code: Option<u32>,
    /// The end of its output (stdout then stderr), secrets masked.
    pub output: String,
}

fn key(consumer: &str, provider: &str, id: &str) -> String {
    format!("{RECORD_PREFIX}{consumer}/{provider}/{id}")
}

/// Every provider's directory of step secrets (none survive a finished step).
pub fn leftover_dirs(settings: &Settings) -> Vec<String> {
    let services = format!("{}/services", settings.state);
    let Ok(entries) = std::fs::read_dir(&services) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| format!("{}/bindings", entry.path().display()))
        .filter(|dir| std::path::Path::new(dir).exists())
        .collect()
}

/// The records of `consumer`'s steps.
pub fn records(consumer: &str) -> Result<Vec<StepRecord>, CommandError> {
    let mut all = Vec::new();
    for key in kv::list_keys(&format!("{RECORD_PREFIX}{consumer}/"))? {
        if let Some(record) = kv::get_json::<StepRecord>(&key)? {
            all.push(record);
        }
    }
    Ok(all)
}

/// Stores a step's record (an import).
pub fn save(record: &StepRecord) -> Result<(), CommandError> {
    Ok(kv::set_json(
        &key(&record.consumer, &record.provider, &record.id),
        record,
    )?)
}

/// Forgets `consumer`'s steps (it is uninstalled).
pub fn forget(consumer: &str) -> Result<(), CommandError> {
    for key in kv::list_keys(&format!("{RECORD_PREFIX}{consumer}/"))? {
        kv::delete(&key)?;
    }
    Ok(())
}

/// Runs, in order, every step of `consumer` that has not succeeded yet, and
/// the step `again` names even if it has; stops at the first that does not
/// succeed (a `conflict` naming it, with the end of its masked output).
pub fn run_pending(
    settings: &Settings,
    consumer: &str,
    resolved: &Resolved,
    again: &dyn Fn(&Binding) -> bool,
) -> Result<Vec<StepRecord>, CommandError> {
    let mut ran = Vec::new();
    for binding in &resolved.bindings {
        let key = key(consumer, &binding.service, &binding.id);
        let previous: Option<StepRecord> = kv::get_json(&key)?;
        let forced = again(binding);
        if !forced
            && previous
                .as_ref()
                .is_some_and(|p| p.outcome == Outcome::Succeeded)
        {
            continue;
        }
        let attempts = previous.map_or(0, |p| p.attempts) + 1;
        let record = run_step(
            settings,
            consumer,
            binding,
            &secret_values(resolved),
            attempts,
        )?;
        kv::set_json(&key, &record)?;
        let outcome = record.outcome;
        ran.push(record);
        if outcome != Outcome::Succeeded {
            let last = ran.last().map(|r| r.output.clone()).unwrap_or_default();
            return Err(CommandError::conflict(format!(
                "binding {} of {consumer} in {} {}: {}",
                binding.id,
                binding.service,
                outcome.name(),
                last.lines().last().unwrap_or("no output")
            )));
        }
    }
    Ok(ran)
}

fn run_step(
    settings: &Settings,
    consumer: &str,
    binding: &Binding,
    secrets: &[String],
    attempts: u32,
) -> Result<StepRecord, CommandError> {
    let provider = &binding.service;
    let host_dir = format!("{}/services/{provider}/bindings/{consumer}", settings.state);
    let inside = format!("{IN_CONTAINER}/bindings/{consumer}");
    // Leftovers of a step a crash interrupted go first.
    let _ = std::fs::remove_dir_all(&host_dir);
    std::fs::create_dir_all(&host_dir)
        .map_err(|err| CommandError::internal(format!("cannot create {host_dir}: {err}")))?;
    let mut argv = Vec::new();
    let mut stdin = String::new();
    for (index, word) in binding.argv.iter().enumerate() {
        if word.secret {
            let path = format!("{host_dir}/{index}");
            std::fs::write(&path, word.text.as_bytes())
                .map_err(|err| CommandError::internal(format!("cannot write {path}: {err}")))?;
            argv.push(format!("{inside}/{index}"));
            stdin.push_str(&word.text);
            stdin.push('\n');
        } else {
            argv.push(word.text.clone());
        }
    }
    let shown: Vec<String> = binding
        .shown_argv()
        .iter()
        .map(|word| word.to_string())
        .collect();
    announce(consumer, binding, "started", &json!({"attempt": attempts}));
    cairn_sdk::info!(
        "binding {} of {consumer}: running {:?} in {provider}",
        binding.id,
        shown
    );
    let started_ms = cairn_sdk::timer::now_ms();
    let clock = Instant::now();
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let result = container::Exec::new(&args, settings.binding_timeout())
        .stdin(stdin.as_bytes())
        .clear_env()
        .run(provider);
    let _ = std::fs::remove_dir_all(&host_dir);
    let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (outcome, exit_code, output) = match result {
        Ok(done) if done.timed_out => (
            Outcome::TimedOut,
            Some(done.exit_code),
            both(&done.stdout, &done.stderr),
        ),
        Ok(done) if done.exit_code == 0 => (
            Outcome::Succeeded,
            Some(0),
            both(&done.stdout, &done.stderr),
        ),
        Ok(done) => (
            Outcome::Failed,
            Some(done.exit_code),
            both(&done.stdout, &done.stderr),
        ),
        Err(err) => (Outcome::Failed, None, err.to_string()),
    };
    let output = clip(&mask(&output, secrets));
    announce(
        consumer,
        binding,
        outcome.name(),
        &json!({"attempt": attempts, "exit-code": exit_code, "duration-ms": duration_ms}),
    );
    if let Err(err) =
        metrics::counter_add("dockyard_bindings_total", &[("outcome", outcome.name())], 1)
    {
        cairn_sdk::debug!("metric dockyard_bindings_total: {err}");
    }
    Ok(StepRecord {
        consumer: consumer.to_string(),
        provider: provider.clone(),
        id: binding.id.clone(),
        command: shown,
        outcome,
        attempts,
        started_ms,
        duration_ms,
        exit_code,
        output,
    })
}

fn both(stdout: &[u8], stderr: &[u8]) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    )
}

/// Every secret value of a resolution, longest first (so that a secret
/// holding another is masked whole).
fn secret_values(resolved: &Resolved) -> Vec<String> {
    let mut secrets: Vec<String> = resolved
        .options
        .iter()
        .filter(|option| option.secret && !option.value.is_empty())
        .map(|option| option.value.clone())
        .chain(resolved.bindings.iter().flat_map(|binding| {
            binding
                .argv
                .iter()
                .chain(&binding.unbind)
                .filter(|word| word.secret)
                .map(|word| word.text.clone())
        }))
        .collect();
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets.dedup();
    secrets
}

/// `text` with every one of `secrets` replaced by the mask.
fn mask(text: &str, secrets: &[String]) -> String {
    let mut masked = text.to_string();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        masked = masked.replace(secret.as_str(), MASK);
    }
    masked
}

/// A step that undoes a binding when its consumer is uninstalled: kept,
/// sealed, from the install, so uninstalling needs neither the image nor a
/// new resolution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Undo {
    pub id: String,
    pub provider: String,
    /// Each word, and whether it is secret.
    pub words: Vec<(String, bool)>,
}

/// The undo steps a resolution declares.
pub fn undo_steps(resolved: &Resolved) -> Vec<Undo> {
    resolved
        .bindings
        .iter()
        .filter(|binding| !binding.unbind.is_empty())
        .map(|binding| Undo {
            id: binding.id.clone(),
            provider: binding.service.clone(),
            words: binding
                .unbind
                .iter()
                .map(|word| (word.text.clone(), word.secret))
                .collect(),
        })
        .collect()
}

/// Runs `consumer`'s undo steps, in reverse order; stops at the first that
/// does not succeed.
pub fn run_undo(settings: &Settings, consumer: &str, steps: &[Undo]) -> Result<(), CommandError> {
    for step in steps.iter().rev() {
        let argv: Vec<ArgWord> = step
            .words
            .iter()
            .map(|(text, secret)| ArgWord {
                text: text.clone(),
                secret: *secret,
            })
            .collect();
        let mut secrets: Vec<String> = argv
            .iter()
            .filter(|word| word.secret)
            .map(|word| word.text.clone())
            .collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        let binding = Binding {
            id: format!("{}.unbind", step.id),
            service: step.provider.clone(),
            argv,
            unbind: Vec::new(),
        };
        let record = run_step(settings, consumer, &binding, &secrets, 1)?;
        if record.outcome != Outcome::Succeeded {
            return Err(CommandError::conflict(format!(
                "unbind {} of {consumer} in {} {}: {}",
                step.id,
                step.provider,
                record.outcome.name(),
                record.output.lines().last().unwrap_or("no output")
            )));
        }
    }
    Ok(())
}

/// The last [`KEPT_OUTPUT`] bytes, cut at a character boundary.
fn clip(text: &str) -> String {
    if text.len() <= KEPT_OUTPUT {
        return text.to_string();
    }
    let mut start = text.len() - KEPT_OUTPUT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// `dockyard/binding/<outcome>` with the step's names (never its command's values).
fn announce(consumer: &str, binding: &Binding, what: &str, extra: &serde_json::Value) {
    let mut payload = json!({"consumer": consumer, "provider": binding.service, "id": binding.id});
    if let (Some(payload), Some(extra)) = (payload.as_object_mut(), extra.as_object()) {
        payload.extend(extra.clone());
    }
    if let Err(err) = events::publish_json(&format!("dockyard/binding/{what}"), &payload) {
        cairn_sdk::debug!("event dockyard/binding/{what}: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_the_end_on_a_character_boundary() {
        let text = format!("{}é{}", "a".repeat(10), "b".repeat(KEPT_OUTPUT - 1));
        let clipped = clip(&text);
        assert!(clipped.len() <= KEPT_OUTPUT);
        assert!(clipped.ends_with('b'));
    }
}
