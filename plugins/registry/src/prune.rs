//! Pruning under a maintenance lock.
//!
//! A prune is a job persisted in the key-value store, one step at a time:
//! delete the manifests retention does not keep (through the registry's API,
//! while it still accepts writes), restart the registry read-only, run
//! `garbage-collect`, restart it read-write, smoke-check it, and check that
//! every kept manifest and its blobs are still there. The job record is the
//! lock: while it exists `publish` is refused. Every step is idempotent and
//! the job is resumed where it was when the plugin starts again, so a crash at
//! any instant leaves a registry that serves every kept digest (nothing kept
//! is ever deleted, and garbage collection only runs on a read-only registry)
//! and a lock that is released once the job finishes.

use std::time::Duration;

use cairn_sdk::process::{self, ProcessId};
use cairn_sdk::{CommandError, kv, metrics, timer};
use serde::{Deserialize, Serialize};

use crate::retention::Plan;
use crate::service::{self, Mode};
use crate::usage::{self, Usage};
use crate::{Registry, gauge};

/// Timer topic that advances the job.
pub const TOPIC: &str = "registry/prune";
const JOB_KEY: &str = "maintenance";
const LAST_KEY: &str = "last-prune";
/// How often a waiting step looks again.
const POLL: Duration = Duration::from_millis(100);
/// Polls before a restarted registry counts as not coming back (~30 s).
const WAIT_ATTEMPTS: u32 = 300;
/// `garbage-collect` runs whose outcome is unknown (a crash) before giving up.
const GC_RUNS: u32 = 3;

/// Where a prune is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Deleting the manifests outside the keep set.
    Deleting,
    /// Restarting the registry read-only.
    ReadOnly,
    /// `garbage-collect` on the read-only registry's storage.
    Collecting,
    /// Restarting the registry read-write and smoke-checking it.
    ReadWrite,
    /// Checking every kept manifest and its blobs.
    Verifying,
}

impl Step {
    /// The mode the registry must serve in during this step.
    pub fn mode(self) -> Mode {
        match self {
            Step::ReadOnly | Step::Collecting => Mode::ReadOnly,
            Step::Deleting | Step::ReadWrite | Step::Verifying => Mode::ReadWrite,
        }
    }
}

/// A manifest, by repository and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub repository: String,
    pub digest: String,
}

/// A running prune: the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Job {
    pub started_ms: u64,
    pub step: Step,
    /// Why it runs: `command` or `schedule`.
    pub trigger: String,
    pub delete: Vec<Target>,
    pub keep: Vec<Target>,
    pub stored_before: Usage,
    /// When the registry stopped accepting writes, if it has.
    pub writes_stopped_ms: Option<u64>,
    /// When it accepted them again (its smoke check passed).
    pub writes_resumed_ms: Option<u64>,
    pub gc_runs: u32,
    /// `garbage-collect`'s summary line.
    pub gc_summary: Option<String>,
    /// Abandoned uploads removed while the registry was read-only.
    #[serde(default)]
    pub uploads_freed: Usage,
    /// Polls spent in the current step.
    pub attempts: u32,
    pub errors: Vec<String>,
}

/// How the last prune went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Outcome {
    pub ok: bool,
    pub trigger: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub duration_ms: u64,
    pub manifests_deleted: usize,
    pub blobs_freed: u64,
    pub bytes_freed: u64,
    pub stored: Usage,
    /// How long the registry refused pushes for garbage collection.
    pub read_only_ms: u64,
    pub gc_summary: Option<String>,
    /// Abandoned uploads removed (a failed push leaves its bytes behind).
    #[serde(default)]
    pub uploads_freed: Usage,
    /// Kept manifests checked after the prune.
    pub verified: usize,
    /// Kept manifests or blobs the registry no longer serves (should be none).
    pub missing: Vec<String>,
    pub errors: Vec<String>,
}

/// What a step decided.
enum Progress {
    /// Look again after [`POLL`].
    Wait,
    /// Go on with the next step (after the configured pause).
    Next(Step),
    Finish,
}

pub use cairn_sdk::timer::now_ms;

/// The running prune, if any.
pub fn current() -> Result<Option<Job>, String> {
    kv::get_json(JOB_KEY).map_err(|err| format!("cannot read the maintenance lock: {err}"))
}

/// The last finished prune, if any.
pub fn last() -> Result<Option<Outcome>, String> {
    kv::get_json(LAST_KEY).map_err(|err| format!("cannot read the last prune: {err}"))
}

fn save(job: &Job) -> Result<(), String> {
    kv::set_json(JOB_KEY, job).map_err(|err| format!("cannot record the prune: {err}"))
}

/// The error publishing meets while a prune runs.
pub fn locked_error(job: &Job) -> CommandError {
    CommandError::conflict(format!(
        "the registry is under maintenance (a prune started at {} ms is at step {:?}); \
         publish again once `cairn registry status` shows no maintenance",
        job.started_ms, job.step
    ))
}

fn targets(plan: &Plan) -> (Vec<Target>, Vec<Target>) {
    let delete = plan
        .delete
        .iter()
        .map(|gone| Target {
            repository: gone.repository.clone(),
            digest: gone.digest.clone(),
        })
        .collect();
    let keep = plan
        .keep
        .iter()
        .flat_map(|(repository, digests)| {
            digests.keys().map(|digest| Target {
                repository: repository.clone(),
                digest: digest.clone(),
            })
        })
        .collect();
    (delete, keep)
}

impl Registry {
    /// Takes the lock and starts pruning what `plan` deletes.
    pub(crate) fn start_prune(&mut self, plan: &Plan, trigger: &str) -> Result<Job, CommandError> {
        if let Some(job) = current().map_err(CommandError::internal)? {
            return Err(CommandError::conflict(format!(
                "a prune is already running (started at {} ms, step {:?})",
                job.started_ms, job.step
            )));
        }
        if !self.ready {
            return Err(CommandError::conflict(
                "the registry is not ready (its smoke check has not passed); prune later",
            ));
        }
        let (delete, keep) = targets(plan);
        let job = Job {
            started_ms: now_ms(),
            step: Step::Deleting,
            trigger: trigger.to_string(),
            delete,
            keep,
            stored_before: usage::measure(&self.settings.storage),
            writes_stopped_ms: None,
            writes_resumed_ms: None,
            gc_runs: 0,
            gc_summary: None,
            uploads_freed: Usage::default(),
            attempts: 0,
            errors: Vec::new(),
        };
        save(&job).map_err(CommandError::internal)?;
        cairn_sdk::info!(
            "pruning the registry ({trigger}): {} manifests to delete, {} kept",
            job.delete.len(),
            job.keep.len()
        );
        self.schedule_prune(self.settings.prune_step_pause())
            .map_err(CommandError::internal)?;
        Ok(job)
    }

    pub(crate) fn schedule_prune(&self, delay: Duration) -> Result<(), String> {
        timer::once(delay, TOPIC)
            .map(|_| ())
            .map_err(|err| format!("cannot schedule the prune: {err}"))
    }

    /// Runs the job's current step and schedules the next look.
    pub(crate) fn on_prune_timer(&mut self) -> Result<(), String> {
        let Some(mut job) = current()? else {
            return Ok(());
        };
        let progress = match job.step {
            Step::Deleting => self.delete_manifests(&mut job),
            Step::ReadOnly => self.serve_read_only(&mut job),
            Step::Collecting => self.collect_garbage(&mut job),
            Step::ReadWrite => self.serve_read_write(&mut job),
            Step::Verifying => {
                let outcome = self.verify(&job);
                return self.finish(outcome);
            }
        };
        match progress {
            Progress::Wait => {
                job.attempts += 1;
                save(&job)?;
                self.schedule_prune(POLL)
            }
            Progress::Next(step) => {
                cairn_sdk::info!("prune: {:?} done, now {step:?}", job.step);
                job.step = step;
                job.attempts = 0;
                save(&job)?;
                self.schedule_prune(self.settings.prune_step_pause())
            }
            Progress::Finish => {
                let outcome = self.outcome(&job, 0, Vec::new());
                self.finish(outcome)
            }
        }
    }

    fn delete_manifests(&mut self, job: &mut Job) -> Progress {
        let api = self.api();
        // After a daemon restart the registry may still be starting.
        if !api.answers() && job.attempts < WAIT_ATTEMPTS {
            return Progress::Wait;
        }
        for target in &job.delete {
            // After a crash the first ones answer 404: already done.
            if let Err(err) = api.delete_manifest(&target.repository, &target.digest) {
                job.errors.push(err);
            }
        }
        Progress::Next(Step::ReadOnly)
    }

    /// Restarts the registry in `mode` unless it already serves it; whether
    /// it answers.
    fn ensure_mode(&mut self, mode: Mode) -> Result<bool, String> {
        let running = self
            .process
            .and_then(|id| process::info(id).ok())
            .filter(|info| info.running());
        match running {
            Some(info) if service::mode_of(&info) == mode => Ok(self.api().answers()),
            Some(info) => {
                service::stop(info.id)?;
                self.spawn_in(mode)?;
                Ok(false)
            }
            None if self.restart_pending => Ok(false),
            None => {
                self.spawn_in(mode)?;
                Ok(false)
            }
        }
    }

    pub(crate) fn spawn_in(&mut self, mode: Mode) -> Result<ProcessId, String> {
        let id = service::spawn(&self.settings, mode)?;
        self.process = Some(id);
        self.ready = false;
        gauge("registry_ready", 0.0);
        Ok(id)
    }

    fn serve_read_only(&mut self, job: &mut Job) -> Progress {
        job.writes_stopped_ms.get_or_insert_with(now_ms);
        match self.ensure_mode(Mode::ReadOnly) {
            Ok(true) => Progress::Next(Step::Collecting),
            Ok(false) if job.attempts < WAIT_ATTEMPTS => Progress::Wait,
            Ok(false) => {
                job.errors.push(
                    "the read-only registry did not answer; garbage collection skipped".into(),
                );
                Progress::Next(Step::ReadWrite)
            }
            Err(err) => {
                job.errors.push(err);
                Progress::Next(Step::ReadWrite)
            }
        }
    }

    fn collect_garbage(&mut self, job: &mut Job) -> Progress {
        let found = match process::find(service::GC_PROCESS) {
            Ok(found) => found,
            Err(err) => {
                job.errors
                    .push(format!("cannot look for garbage-collect: {err}"));
                return Progress::Next(Step::ReadWrite);
            }
        };
        if let Some(gc) = &found {
            if gc.running() {
                return Progress::Wait;
            }
            let output = process::output(gc.id, 64 * 1024).ok();
            let _ = process::forget(gc.id);
            match gc.exit_code {
                Some(0) => {
                    job.gc_summary = output.and_then(|out| summary(&out.stdout));
                    // Read-only: no upload is in progress, so every one left
                    // is abandoned (docker-registry would keep it a week).
                    job.uploads_freed = usage::remove_uploads(&self.settings.storage);
                    return Progress::Next(Step::ReadWrite);
                }
                Some(code) => {
                    let stderr = output.map(|out| tail(&out.stderr)).unwrap_or_default();
                    job.errors
                        .push(format!("garbage-collect exited with code {code}: {stderr}"));
                    return Progress::Next(Step::ReadWrite);
                }
                // Killed, or it ended while the daemon was down: its outcome
                // is unknown, and collecting again is harmless.
                None => {}
            }
        }
        if job.gc_runs >= GC_RUNS {
            job.errors.push(format!(
                "garbage-collect did not finish after {GC_RUNS} runs"
            ));
            return Progress::Next(Step::ReadWrite);
        }
        job.gc_runs += 1;
        match service::spawn_gc(&self.settings) {
            Ok(_) => Progress::Wait,
            Err(err) => {
                job.errors.push(err);
                Progress::Next(Step::ReadWrite)
            }
        }
    }

    fn serve_read_write(&mut self, job: &mut Job) -> Progress {
        match self.ensure_mode(Mode::ReadWrite) {
            Ok(true) => {}
            Ok(false) if job.attempts < WAIT_ATTEMPTS => return Progress::Wait,
            Ok(false) => {
                job.errors
                    .push("the registry did not come back read-write".into());
                return Progress::Finish;
            }
            Err(err) => {
                job.errors.push(err);
                return Progress::Finish;
            }
        }
        if self.run_smoke().ok {
            job.writes_resumed_ms = Some(now_ms());
            self.register_health_check();
            return Progress::Next(Step::Verifying);
        }
        if job.attempts < WAIT_ATTEMPTS {
            return Progress::Wait;
        }
        job.errors
            .push("the smoke check kept failing after the prune".into());
        Progress::Finish
    }

    fn verify(&self, job: &Job) -> Outcome {
        let api = self.api();
        let mut missing = Vec::new();
        let mut errors = Vec::new();
        for target in &job.keep {
            match api.missing_parts(&target.repository, &target.digest) {
                Ok(parts) => missing.extend(parts),
                Err(err) => errors.push(err),
            }
        }
        if !missing.is_empty() {
            cairn_sdk::error!(
                "after the prune the registry no longer serves kept content: {}",
                missing.join(", ")
            );
        }
        self.outcome(job, job.keep.len(), errors)
            .with_missing(missing)
    }

    fn outcome(&self, job: &Job, verified: usize, mut errors: Vec<String>) -> Outcome {
        let finished_ms = now_ms();
        let stored = usage::measure(&self.settings.storage);
        let freed = job.stored_before.freed_by(stored);
        errors.splice(0..0, job.errors.iter().cloned());
        Outcome {
            ok: errors.is_empty(),
            trigger: job.trigger.clone(),
            started_ms: job.started_ms,
            finished_ms,
            duration_ms: finished_ms.saturating_sub(job.started_ms),
            manifests_deleted: job.delete.len(),
            blobs_freed: freed.blobs,
            bytes_freed: freed.bytes,
            stored,
            read_only_ms: match (job.writes_stopped_ms, job.writes_resumed_ms) {
                (Some(stopped), Some(resumed)) => resumed.saturating_sub(stopped),
                (Some(stopped), None) => finished_ms.saturating_sub(stopped),
                _ => 0,
            },
            gc_summary: job.gc_summary.clone(),
            uploads_freed: job.uploads_freed,
            verified,
            missing: Vec::new(),
            errors,
        }
    }

    /// Records the outcome and releases the lock.
    fn finish(&mut self, outcome: Outcome) -> Result<(), String> {
        kv::set_json(LAST_KEY, &outcome)
            .map_err(|err| format!("cannot record the prune: {err}"))?;
        kv::delete(JOB_KEY).map_err(|err| format!("cannot release the maintenance lock: {err}"))?;
        record_metrics(&outcome);
        if outcome.ok {
            cairn_sdk::info!(
                "pruned the registry: {} manifests deleted, {} blobs ({} bytes) freed, read-only for {} ms",
                outcome.manifests_deleted,
                outcome.blobs_freed,
                outcome.bytes_freed,
                outcome.read_only_ms
            );
        } else {
            cairn_sdk::warn!(
                "the registry's prune finished with errors: {}",
                outcome.errors.join("; ")
            );
        }
        self.schedule_next_prune();
        Ok(())
    }
}

impl Outcome {
    fn with_missing(mut self, missing: Vec<String>) -> Outcome {
        self.ok &= missing.is_empty();
        self.missing = missing;
        self
    }
}

/// Prune metrics, and the store's size.
pub fn record_metrics(outcome: &Outcome) {
    gauge(
        "registry_last_prune_timestamp_seconds",
        outcome.finished_ms as f64 / 1000.0,
    );
    gauge(
        "registry_prune_duration_seconds",
        outcome.duration_ms as f64 / 1000.0,
    );
    gauge(
        "registry_prune_read_only_seconds",
        outcome.read_only_ms as f64 / 1000.0,
    );
    gauge("registry_prune_ok", if outcome.ok { 1.0 } else { 0.0 });
    record_usage(outcome.stored);
    for (name, value) in [
        ("registry_prune_blobs_freed_total", outcome.blobs_freed),
        ("registry_prune_bytes_freed_total", outcome.bytes_freed),
    ] {
        if let Err(err) = metrics::counter_add(name, &[], value) {
            cairn_sdk::debug!("metric {name}: {err}");
        }
    }
}

/// `registry_stored_bytes` and `registry_stored_blobs`.
pub fn record_usage(usage: Usage) {
    gauge("registry_stored_bytes", usage.bytes as f64);
    gauge("registry_stored_blobs", usage.blobs as f64);
}

/// `garbage-collect`'s "N blobs marked, M blobs and K manifests eligible for
/// deletion" line.
fn summary(stdout: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find(|line| line.contains("eligible for deletion"))
        .map(|line| line.trim().to_string())
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
