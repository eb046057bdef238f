//! Applying plans: an operation stops what the new plan removes or changes,
//! then starts the plan layer by layer, each layer gated on the readiness of
//! all its components. A failure stops what the operation started, in
//! reverse order, and re-applies the previous plan.
//!
//! Everything advances on the plugin's timer tick; each step is persisted
//! first, so a restart of the daemon or of the plugin resumes it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::{Component, Plan};
use crate::runner::{Readiness, Runner};
use crate::state::{self, Operation, OperationKind, Phase, PlanPhase, Record, Stage, Status};

/// One thing an operation or command does (or, in a dry run, would do).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Action {
    pub component: String,
    pub action: &'static str,
    pub reason: String,
}

impl Action {
    pub fn new(component: &str, action: &'static str, reason: impl Into<String>) -> Action {
        Action {
            component: component.to_string(),
            action,
            reason: reason.into(),
        }
    }
}

pub struct Engine {
    pub runner: Runner,
    pub applied: Option<Plan>,
    pub operation: Option<Operation>,
    pub status: Status,
    pub records: BTreeMap<String, Record>,
}

pub use cairn_sdk::timer::now_ms;

impl Engine {
    /// The recipe a component runs now: the operation's target first.
    pub fn component_ref(&self, name: &str) -> Option<&Component> {
        let from_operation = self.operation.as_ref().and_then(|operation| {
            operation
                .target
                .components
                .get(name)
                .or_else(|| operation.previous.as_ref()?.components.get(name))
        });
        from_operation.or_else(|| self.applied.as_ref()?.components.get(name))
    }

    /// [`Engine::component_ref`], owned, for callers that then change the engine.
    pub fn component(&self, name: &str) -> Option<Component> {
        self.component_ref(name).cloned()
    }

    /// What applying `target` would do, in the order it would happen.
    pub fn plan_actions(&self, target: &Plan) -> Vec<Action> {
        let mut actions = Vec::new();
        let current_order: Vec<String> = match &self.applied {
            Some(applied) => applied.in_start_order(self.records.keys().cloned()),
            None => self.records.keys().cloned().collect(),
        };
        for name in current_order.iter().rev() {
            if !target.components.contains_key(name)
                && self
                    .records
                    .get(name)
                    .is_some_and(|record| record.phase.running())
            {
                actions.push(Action::new(name, "stop", "not in the new plan"));
            }
        }
        let mut starting: Vec<String> = Vec::new();
        for name in target.layers.iter().flatten() {
            let Some(component) = target.components.get(name) else {
                continue;
            };
            let record = self.records.get(name);
            let same = record.is_some_and(|record| record.fingerprint == component.fingerprint);
            let running = record.is_some_and(|record| record.phase.running());
            let restarted_dependency = target
                .hard_dependencies(name)
                .into_iter()
                .find(|dependency| starting.contains(dependency));
            let (action, reason) = match (record, same, running, restarted_dependency) {
                (None, _, _, _) => ("start", "new component".to_string()),
                (Some(_), true, true, None) => ("keep", "unchanged and running".to_string()),
                (Some(_), true, true, Some(dependency)) => {
                    ("restart", format!("hard dependency {dependency} restarts"))
                }
                (Some(_), false, true, _) => ("restart", "recipe changed".to_string()),
                (Some(_), false, false, _) => ("start", "recipe changed".to_string()),
                (Some(record), true, false, _) => {
                    ("start", format!("not running ({})", record.phase.as_str()))
                }
            };
            if action != "keep" {
                starting.push(name.clone());
            }
            actions.push(Action::new(name, action, reason));
        }
        actions
    }

    /// Starts applying `target`; the tick does the work.
    pub fn begin(
        &mut self,
        target: Plan,
        kind: OperationKind,
        cause: Option<String>,
    ) -> (u64, Vec<Action>) {
        let actions = self.plan_actions(&target);
        let mut to_stop: Vec<String> = actions
            .iter()
            .filter(|action| action.action == "stop")
            .map(|action| action.component.clone())
            .collect();
        // Changed components stop dependents first: reverse start order.
        to_stop.extend(
            actions
                .iter()
                .filter(|action| action.action == "restart")
                .rev()
                .map(|action| action.component.clone()),
        );
        let id = self.status.next_operation + 1;
        self.status.next_operation = id;
        let previous = match kind {
            OperationKind::Apply => self.applied.clone(),
            OperationKind::Rollback => None,
        };
        self.status.phase = match kind {
            OperationKind::Apply => PlanPhase::Applying,
            OperationKind::Rollback => PlanPhase::RollingBack,
        };
        self.status.operation = Some(id);
        self.status.error = cause.clone();
        cairn_sdk::info!(
            "operation {id}: {} {} components in {} layers",
            if kind == OperationKind::Apply {
                "applying"
            } else {
                "rolling back to"
            },
            target.components.len(),
            target.layers.len()
        );
        self.operation = Some(Operation {
            id,
            kind,
            target,
            previous,
            stage: Stage::Stopping,
            layer: 0,
            to_stop,
            launched: Vec::new(),
            cause,
        });
        state::save_operation(self.operation.as_ref());
        state::save_status(&self.status);
        (id, actions)
    }

    /// One step of the operation in progress, as far as it can go now.
    pub fn drive(&mut self) {
        loop {
            let Some(operation) = &self.operation else {
                return;
            };
            match operation.stage {
                Stage::Stopping => {
                    for name in operation.to_stop.clone() {
                        self.stop_component(&name, Phase::Stopped, None);
                    }
                    if let Some(operation) = &mut self.operation {
                        operation.stage = Stage::Layers;
                    }
                    state::save_operation(self.operation.as_ref());
                }
                Stage::Layers => {
                    let Some(layer) = operation.target.layers.get(operation.layer).cloned() else {
                        self.finish();
                        return;
                    };
                    match self.drive_layer(&layer) {
                        Ok(true) => {
                            if let Some(operation) = &mut self.operation {
                                operation.layer += 1;
                            }
                            state::save_operation(self.operation.as_ref());
                        }
                        Ok(false) => return,
                        Err(error) => {
                            self.fail(error);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Launches what the layer still needs; `Ok(true)` once all are ready.
    fn drive_layer(&mut self, layer: &[String]) -> Result<bool, String> {
        let now = now_ms();
        let mut all_ready = true;
        for name in layer {
            let Some(operation) = &self.operation else {
                return Ok(false);
            };
            let Some(component) = operation.target.components.get(name).cloned() else {
                continue;
            };
            let launched = operation.launched.contains(name);
            let record = self
                .records
                .entry(name.clone())
                .or_insert_with(|| Record::new(name, &component.fingerprint));
            let current = record.fingerprint == component.fingerprint;
            let needs_launch = !(launched || (current && record.phase.running()));
            if needs_launch {
                if record.has_workload() {
                    self.runner.stop(None, record);
                }
                record.fingerprint = component.fingerprint.clone();
                record.last_error = None;
                record.restarts = 0;
                let outcome = self.runner.launch(&component, record);
                if let Some(operation) = &mut self.operation {
                    operation.launched.push(name.clone());
                }
                state::save_operation(self.operation.as_ref());
                let Some(record) = self.records.get_mut(name) else {
                    continue;
                };
                if let Err(error) = outcome {
                    record.phase = Phase::Failed;
                    record.last_error = Some(error.clone());
                    state::save_record(record);
                    return Err(format!("{name}: {error}"));
                }
                record.phase = if component.recipe.run().is_some() {
                    Phase::Starting
                } else {
                    Phase::Ready
                };
                state::save_record(record);
            }
            let Some(record) = self.records.get_mut(name) else {
                continue;
            };
            match record.phase {
                Phase::Ready => {}
                Phase::Starting => match self.runner.readiness(&component, record, now) {
                    Readiness::Ready => {
                        record.phase = Phase::Ready;
                        cairn_sdk::info!("{name} is ready");
                        state::save_record(record);
                    }
                    Readiness::NotYet => all_ready = false,
                    Readiness::Failed(error) => {
                        record.phase = Phase::Failed;
                        record.last_error = Some(error.clone());
                        state::save_record(record);
                        return Err(format!("{name}: {error}"));
                    }
                },
                phase => {
                    let error = record.last_error.clone().unwrap_or_default();
                    return Err(format!("{name} {}: {error}", phase.as_str()));
                }
            }
        }
        Ok(all_ready)
    }

    fn finish(&mut self) {
        let Some(operation) = self.operation.take() else {
            return;
        };
        let gone: Vec<String> = self
            .records
            .keys()
            .filter(|name| !operation.target.components.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.records.remove(&name);
            state::delete_record(&name);
        }
        match operation.kind {
            OperationKind::Apply => {
                cairn_sdk::info!("operation {}: plan applied", operation.id);
                self.status.phase = PlanPhase::Applied;
                self.status.error = None;
            }
            OperationKind::Rollback => {
                let cause = operation.cause.clone().unwrap_or_default();
                cairn_sdk::warn!("operation {}: previous plan restored", operation.id);
                self.status.phase = PlanPhase::Failed;
                self.status.error = Some(format!("{cause}; rolled back to the previous plan"));
            }
        }
        self.applied = Some(operation.target);
        state::save_applied(self.applied.as_ref());
        state::save_operation(None);
        state::save_status(&self.status);
    }

    /// Stops what the operation started (last first), then rolls back.
    fn fail(&mut self, error: String) {
        let Some(operation) = self.operation.clone() else {
            return;
        };
        cairn_sdk::warn!("operation {} failed: {error}", operation.id);
        for name in operation.launched.iter().rev() {
            let phase = self.records.get(name).map_or(Phase::Stopped, |record| {
                if record.phase == Phase::Failed {
                    Phase::Failed
                } else {
                    Phase::Stopped
                }
            });
            self.stop_component(name, phase, None);
        }
        self.operation = None;
        match (operation.kind, operation.previous) {
            (OperationKind::Apply, Some(previous)) => {
                self.begin(previous, OperationKind::Rollback, Some(error));
            }
            (OperationKind::Apply, None) => {
                self.status.phase = PlanPhase::Failed;
                self.status.error = Some(format!("{error}; no previous plan to return to"));
                self.applied = None;
                state::save_applied(None);
                state::save_operation(None);
                state::save_status(&self.status);
            }
            (OperationKind::Rollback, _) => {
                let cause = operation.cause.unwrap_or_default();
                self.status.phase = PlanPhase::Failed;
                self.status.error = Some(format!("{cause}; the rollback failed too: {error}"));
                self.applied = Some(operation.target);
                state::save_applied(self.applied.as_ref());
                state::save_operation(None);
                state::save_status(&self.status);
            }
        }
    }

    /// Stops one component's process and records `phase`.
    pub fn stop_component(&mut self, name: &str, phase: Phase, error: Option<String>) {
        let component = self.component(name);
        let Some(record) = self.records.get_mut(name) else {
            return;
        };
        if record.has_workload() || record.phase.running() {
            cairn_sdk::info!("stopping {name}");
        }
        self.runner.stop(component.as_ref(), record);
        record.phase = phase;
        if error.is_some() {
            record.last_error = error;
        }
        state::save_record(record);
    }
}
