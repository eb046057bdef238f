//! What the plugin records in the key-value store, so a daemon restart or a
//! swap of the plugin resumes where it was: the applied plan, the operation
//! in progress and every component's state.

use std::collections::BTreeMap;

use cairn_sdk::kv;
use serde::{Deserialize, Serialize};

use crate::plan::Plan;

const APPLIED: &str = "plan/applied";
const OPERATION: &str = "plan/operation";
const STATUS: &str = "plan/status";
const RECORD_PREFIX: &str = "component/";

/// Where one component is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// In the plan, not started yet.
    Pending,
    /// Spawned; waiting for its first healthy probe or its grace period.
    Starting,
    /// Running and ready.
    Ready,
    /// Stopped because a hard dependency is not ready; starts when it is.
    Waiting,
    /// Exited or failed; restarts at `next-restart-ms`.
    Backoff,
    /// Exited and not restarted (restart policy).
    Exited,
    /// Could not start, or gave up after `max_retries` restarts.
    Failed,
    /// Stopped by an operator or by a plan stop.
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Waiting => "waiting",
            Phase::Backoff => "backoff",
            Phase::Exited => "exited",
            Phase::Failed => "failed",
            Phase::Stopped => "stopped",
        }
    }

    /// Whether the component's process is meant to be running.
    pub fn running(self) -> bool {
        matches!(self, Phase::Starting | Phase::Ready)
    }
}

/// One component's state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub name: String,
    /// Fingerprint of the recipe its process runs.
    pub fingerprint: String,
    /// Fingerprint whose artifacts and install script are in place.
    pub installed: Option<String>,
    pub phase: Phase,
    pub process: Option<u64>,
    pub pid: Option<u32>,
    /// Restarts since the component last became ready.
    pub restarts: u32,
    /// Restarts in total.
    pub total_restarts: u32,
    pub started_at_ms: u64,
    /// Starting: when readiness must be reached. Backoff: when to restart.
    pub due_ms: u64,
    /// Last state reported by its health check.
    pub health: Option<String>,
    pub last_error: Option<String>,
    /// Note from the host on limits it could not apply.
    pub limits_note: Option<String>,
    /// The container it runs as (`type = "container"`), by name; kept after
    /// an exit until the next start replaces it.
    #[serde(default)]
    pub container: Option<String>,
    /// The image its container runs, pinned by digest (`REPOSITORY@sha256:…`).
    #[serde(default)]
    pub image: Option<String>,
    /// `cmd:` checks run inside its container: when the next probe is due.
    #[serde(default)]
    pub probe_due_ms: u64,
    /// `cmd:` checks run inside its container: failures in a row.
    #[serde(default)]
    pub probe_failures: u32,
    /// The artifacts (hex sha256) its installs used, newest last, at most
    /// [`ARTIFACT_HISTORY`]: what pruning the artifact cache keeps per component.
    #[serde(default)]
    pub artifacts: Vec<String>,
}

/// Artifact digests a component's record remembers.
pub const ARTIFACT_HISTORY: usize = 16;

impl Record {
    pub fn new(name: &str, fingerprint: &str) -> Record {
        Record {
            name: name.to_string(),
            fingerprint: fingerprint.to_string(),
            installed: None,
            phase: Phase::Pending,
            process: None,
            pid: None,
            restarts: 0,
            total_restarts: 0,
            started_at_ms: 0,
            due_ms: 0,
            health: None,
            last_error: None,
            limits_note: None,
            container: None,
            image: None,
            probe_due_ms: 0,
            probe_failures: 0,
            artifacts: Vec::new(),
        }
    }

    /// Remembers that an install used the artifact `hex`.
    pub fn used_artifact(&mut self, hex: &str) {
        self.artifacts.retain(|known| known != hex);
        self.artifacts.push(hex.to_string());
        let excess = self.artifacts.len().saturating_sub(ARTIFACT_HISTORY);
        self.artifacts.drain(..excess);
    }

    /// Whether a process or container of it may exist.
    pub fn has_workload(&self) -> bool {
        self.process.is_some() || self.container.is_some()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    Apply,
    /// Re-applying the previous plan after an apply failed.
    Rollback,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Stopping what the new plan removes or changes.
    Stopping,
    /// Starting layer `layer`.
    Layers,
}

/// An apply (or rollback) in progress.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "kebab-case")]
pub struct Operation {
    pub id: u64,
    pub kind: OperationKind,
    pub target: Plan,
    /// The plan to return to if this one fails.
    pub previous: Option<Plan>,
    pub stage: Stage,
    pub layer: usize,
    /// Components to stop first, in order.
    pub to_stop: Vec<String>,
    /// Components this operation started, in start order.
    pub launched: Vec<String>,
    /// For a rollback: why the apply failed.
    pub cause: Option<String>,
}

/// The outcome of the last operation.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PlanPhase {
    #[default]
    Idle,
    Applying,
    RollingBack,
    Applied,
    Failed,
    Stopped,
}

impl PlanPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanPhase::Idle => "idle",
            PlanPhase::Applying => "applying",
            PlanPhase::RollingBack => "rolling-back",
            PlanPhase::Applied => "applied",
            PlanPhase::Failed => "failed",
            PlanPhase::Stopped => "stopped",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    pub phase: PlanPhase,
    pub operation: Option<u64>,
    pub error: Option<String>,
    pub next_operation: u64,
}

/// Everything persisted, loaded at start.
pub struct Stored {
    pub applied: Option<Plan>,
    pub operation: Option<Operation>,
    pub status: Status,
    pub records: BTreeMap<String, Record>,
}

pub fn load() -> Result<Stored, String> {
    let read = |key: &str| format!("cannot read `{key}` from the key-value store");
    let applied = kv::get_json(APPLIED).map_err(|err| format!("{}: {err}", read(APPLIED)))?;
    let operation = kv::get_json(OPERATION).map_err(|err| format!("{}: {err}", read(OPERATION)))?;
    let status: Option<Status> =
        kv::get_json(STATUS).map_err(|err| format!("{}: {err}", read(STATUS)))?;
    let mut records = BTreeMap::new();
    for key in kv::list_keys(RECORD_PREFIX).map_err(|err| err.to_string())? {
        match kv::get_json::<Record>(&key) {
            Ok(Some(record)) => {
                records.insert(record.name.clone(), record);
            }
            Ok(None) => {}
            Err(err) => cairn_sdk::warn!("ignoring unreadable {key}: {err}"),
        }
    }
    Ok(Stored {
        applied,
        operation,
        status: status.unwrap_or_default(),
        records,
    })
}

/// Writes fail only when the store is full or broken; the plugin keeps going
/// with its in-memory state and says so.
fn report(what: &str, result: cairn_sdk::Result<()>) {
    if let Err(err) = result {
        cairn_sdk::error!("cannot persist {what}: {err}");
    }
}

pub fn save_record(record: &Record) {
    report(
        &format!("component {}", record.name),
        kv::set_json(&format!("{RECORD_PREFIX}{}", record.name), record),
    );
}

pub fn delete_record(name: &str) {
    report(
        &format!("the removal of component {name}"),
        kv::delete(&format!("{RECORD_PREFIX}{name}")).map(|_| ()),
    );
}

pub fn save_applied(plan: Option<&Plan>) {
    let result = match plan {
        Some(plan) => kv::set_json(APPLIED, plan),
        None => kv::delete(APPLIED).map(|_| ()),
    };
    report("the applied plan", result);
}

pub fn save_operation(operation: Option<&Operation>) {
    let result = match operation {
        Some(operation) => kv::set_json(OPERATION, operation),
        None => kv::delete(OPERATION).map(|_| ()),
    };
    report("the operation", result);
}

pub fn save_status(status: &Status) {
    report("the plan status", kv::set_json(STATUS, status));
}
