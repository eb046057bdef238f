//! Keeping an applied plan running: exits and failed health checks restart
//! components per their restart policy (exponential backoff with jitter),
//! hard dependents wait for their dependency, and operators stop, restart and
//! reconcile components.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use cairn_sdk::container;
use cairn_sdk::process::{self, Exited, ProcessId};

use crate::engine::{Action, Engine, now_ms};
use crate::plan::Plan;
use crate::recipe::RestartPolicy;
use crate::runner::Readiness;
use crate::state::{self, Phase, PlanPhase, Stage};
use crate::units;

/// A process that ran this long before failing is restarted from the first
/// backoff step again.
const STABLE_MS: u64 = 10_000;

impl Engine {
    fn plan(&self) -> Option<&Plan> {
        match &self.operation {
            Some(operation) => Some(&operation.target),
            None => self.applied.as_ref(),
        }
    }

    /// A process of this plugin ended.
    pub fn on_exit(&mut self, exited: &Exited) {
        let Some(record) = self.records.get_mut(&exited.name) else {
            return;
        };
        if record.process != Some(exited.id) {
            return;
        }
        let how = match (&exited.code, &exited.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by {signal}"),
            (None, None) => "exited".to_string(),
        };
        let _ = process::forget(ProcessId(exited.id));
        record.process = None;
        self.ended(&exited.name, how, exited.code == Some(0));
    }

    /// A container of this plugin ended (its record stays until the next
    /// start replaces it, so its logs can be read).
    pub fn on_container_exit(&mut self, exited: &container::Exited) {
        let Some(record) = self.records.get(&exited.name) else {
            return;
        };
        if record.container.as_deref() != Some(exited.name.as_str()) || !record.phase.running() {
            return;
        }
        // The exit of the run this one replaced.
        if exited.pid.is_some() && record.pid.is_some() && exited.pid != record.pid {
            return;
        }
        let how = match (exited.oom, exited.code) {
            (true, _) => "was killed for lack of memory (OOM)".to_string(),
            (false, Some(code)) => format!("exited with code {code}"),
            (false, None) => "exited".to_string(),
        };
        self.ended(&exited.name, how, exited.code == Some(0) && !exited.oom);
    }

    /// Its process or container ended: a failed start, or a failure to
    /// handle per its restart policy.
    fn ended(&mut self, name: &str, how: String, clean_exit: bool) {
        let Some(record) = self.records.get_mut(name) else {
            return;
        };
        record.pid = None;
        let in_operation = self.operation.as_ref().is_some_and(|operation| {
            operation.stage == Stage::Layers && operation.launched.iter().any(|n| n == name)
        }) && record.phase == Phase::Starting;
        if in_operation {
            record.phase = Phase::Failed;
            record.last_error = Some(format!("{how} before it was ready"));
            state::save_record(record);
            self.drive();
            return;
        }
        if record.phase.running() {
            cairn_sdk::warn!("{name} {how}");
            self.failure(name, how, clean_exit);
        }
    }

    /// The `health` plugin reported a change of a component's check.
    pub fn on_health(&mut self, name: &str, health: &str, error: Option<String>) {
        let Some(record) = self.records.get_mut(name) else {
            return;
        };
        record.health = Some(health.to_string());
        if health == "unhealthy" && record.phase == Phase::Ready {
            let reason = format!(
                "health check failing{}",
                error.map(|err| format!(": {err}")).unwrap_or_default()
            );
            cairn_sdk::warn!("{name}: {reason}");
            let component = self.component(name);
            if let Some(record) = self.records.get_mut(name) {
                self.runner.stop(component.as_ref(), record);
            }
            self.failure(name, reason, false);
        }
    }

    /// Applies the restart policy to a component that stopped running, and
    /// stops its hard dependents until it is ready again.
    fn failure(&mut self, name: &str, error: String, clean_exit: bool) {
        let Some(component) = self.component(name) else {
            return;
        };
        let policy = component
            .recipe
            .run()
            .map_or(RestartPolicy::Never, |run| run.restart_policy);
        let timing = component.recipe.timing();
        let Some(record) = self.records.get_mut(name) else {
            return;
        };
        record.last_error = Some(error.clone());
        if now_ms().saturating_sub(record.started_at_ms) >= STABLE_MS {
            // It ran long enough: this failure starts a new series of restarts.
            record.restarts = 0;
        }
        let restart = match policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !clean_exit,
            RestartPolicy::Always => true,
        };
        if !restart {
            record.phase = if clean_exit {
                Phase::Exited
            } else {
                Phase::Failed
            };
        } else if record.restarts >= timing.max_retries {
            record.phase = Phase::Failed;
            record.last_error = Some(format!(
                "gave up after {} restarts: {error}",
                record.restarts
            ));
            cairn_sdk::error!("{name}: gave up after {} restarts", record.restarts);
        } else {
            let delay = backoff(
                units::millis(timing.backoff),
                units::millis(timing.backoff_max),
                record.restarts,
            );
            record.phase = Phase::Backoff;
            record.due_ms = now_ms() + delay;
            record.restarts += 1;
            record.total_restarts += 1;
            cairn_sdk::info!("{name}: restart {} in {delay} ms", record.restarts);
        }
        state::save_record(record);
        self.cascade_stop(name);
    }

    /// Hard dependents of `name` that run are stopped and wait for it.
    fn cascade_stop(&mut self, name: &str) {
        let dependents = self
            .plan()
            .map(|plan| plan.hard_dependents(name))
            .unwrap_or_default();
        for dependent in dependents.iter().rev() {
            let running = self
                .records
                .get(dependent)
                .is_some_and(|record| record.phase.running() || record.phase == Phase::Backoff);
            if running {
                cairn_sdk::info!("{dependent} waits for its hard dependency {name}");
                self.stop_component(dependent, Phase::Waiting, None);
            }
        }
    }

    /// `cmd:` checks of ready containers, run inside them by this plugin
    /// (the `health` plugin cannot reach this plugin's containers): after
    /// `failure_threshold` failures in a row the component has failed.
    fn probe_ready_containers(&mut self, now: u64) {
        let due: Vec<String> = self
            .records
            .values()
            .filter(|record| {
                record.phase == Phase::Ready
                    && record.container.is_some()
                    && now >= record.probe_due_ms
            })
            .map(|record| record.name.clone())
            .collect();
        for name in due {
            let Some(component) = self.component(&name) else {
                continue;
            };
            let threshold = component
                .recipe
                .run()
                .and_then(|run| run.health.as_ref())
                .and_then(|health| health.failure_threshold)
                .unwrap_or(3);
            let Some(record) = self.records.get_mut(&name) else {
                continue;
            };
            let Some(outcome) = self.runner.probe_container(&component, record, now) else {
                continue;
            };
            if let Err(error) = outcome
                && record.probe_failures >= threshold
            {
                self.on_health(&name, "unhealthy", Some(error));
            }
        }
    }

    /// The periodic pass over the applied plan (not during an operation).
    pub fn supervise(&mut self) {
        if self.operation.is_some() || self.applied.is_none() {
            return;
        }
        let now = now_ms();
        self.probe_ready_containers(now);
        let Some(plan) = &self.applied else {
            return;
        };
        // Most ticks find every component ready: only the others are looked at.
        let pending: Vec<String> = plan
            .layers
            .iter()
            .flatten()
            .filter(|name| {
                self.records
                    .get(*name)
                    .is_some_and(|record| match record.phase {
                        Phase::Backoff => now >= record.due_ms,
                        Phase::Waiting | Phase::Pending | Phase::Starting => true,
                        _ => false,
                    })
            })
            .cloned()
            .collect();
        for name in pending {
            let Some(component) = self.component(&name) else {
                continue;
            };
            let dependencies_ready = self.applied.as_ref().is_some_and(|plan| {
                plan.hard_dependencies(&name).iter().all(|dependency| {
                    self.records
                        .get(dependency)
                        .is_some_and(|record| record.phase == Phase::Ready)
                })
            });
            let Some(record) = self.records.get_mut(&name) else {
                continue;
            };
            if record.phase != Phase::Starting {
                if dependencies_ready {
                    self.launch(&name, &component);
                } else if record.phase != Phase::Waiting {
                    record.phase = Phase::Waiting;
                    state::save_record(record);
                }
                continue;
            }
            match self.runner.readiness(&component, record, now) {
                Readiness::Ready => {
                    record.phase = Phase::Ready;
                    cairn_sdk::info!("{name} is ready");
                    state::save_record(record);
                }
                Readiness::NotYet => {}
                Readiness::Failed(error) => {
                    self.runner.stop(Some(&component), record);
                    self.failure(&name, error, false);
                }
            }
        }
    }

    fn launch(&mut self, name: &str, component: &crate::plan::Component) {
        let Some(record) = self.records.get_mut(name) else {
            return;
        };
        cairn_sdk::info!("starting {name}");
        match self.runner.launch(component, record) {
            Ok(()) => {
                record.phase = Phase::Starting;
                state::save_record(record);
            }
            Err(error) => self.failure(name, error, false),
        }
    }

    /// After a restart of the daemon or the plugin: processes that ended
    /// meanwhile are failures; processes nobody records are stopped.
    pub fn resume(&mut self) {
        let names: Vec<String> = self.records.keys().cloned().collect();
        for name in names {
            let Some(record) = self.records.get_mut(&name) else {
                continue;
            };
            if let Some(container_name) = record.container.clone() {
                match container::info(&container_name) {
                    Ok(info) if info.running => record.pid = info.pid,
                    outcome => {
                        let (code, oom) = outcome
                            .map(|info| (info.exit_code, info.oom_killed))
                            .unwrap_or((None, false));
                        self.on_container_exit(&container::Exited {
                            name: container_name,
                            code,
                            oom,
                            pid: None,
                        });
                    }
                }
                continue;
            }
            let Some(id) = record.process else {
                continue;
            };
            match process::info(ProcessId(id)) {
                Ok(info) if info.running() => record.pid = Some(info.pid),
                outcome => {
                    let code = outcome.ok().and_then(|info| info.exit_code);
                    let exited = Exited {
                        id,
                        name: name.clone(),
                        pid: record.pid.unwrap_or(0),
                        code,
                        signal: None,
                    };
                    self.on_exit(&exited);
                }
            }
        }
        match process::list() {
            Ok(processes) => {
                for info in processes {
                    let known = self
                        .records
                        .values()
                        .any(|record| record.process == Some(info.id.0));
                    if info.running() && !known {
                        cairn_sdk::warn!(
                            "stopping {} (pid {}): no component owns it",
                            info.name,
                            info.pid
                        );
                        let _ = process::stop(info.id, std::time::Duration::from_secs(5));
                    }
                    if !info.running() && !known {
                        let _ = process::forget(info.id);
                    }
                }
            }
            Err(err) => cairn_sdk::warn!("cannot list processes: {err}"),
        }
        // Containers no component records (a start interrupted by a crash).
        // Without the grant (or containerd) there is nothing to sweep.
        if let Ok(containers) = container::list() {
            for info in containers {
                let known = self
                    .records
                    .values()
                    .any(|record| record.container.as_deref() == Some(info.name.as_str()));
                if !known {
                    cairn_sdk::warn!("removing container {}: no component owns it", info.name);
                    let _ = container::remove(&info.name);
                }
            }
        }
    }

    /// Stops every component, dependents first; cancels an operation.
    pub fn stop_plan(&mut self) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        if let Some(operation) = self.operation.take() {
            order.extend(operation.launched.iter().rev().cloned());
            self.applied = Some(operation.target);
            state::save_applied(self.applied.as_ref());
            state::save_operation(None);
        }
        if let Some(plan) = &self.applied {
            let names = plan.in_start_order(self.records.keys().cloned());
            order.extend(names.into_iter().rev());
        }
        let mut stopped = Vec::new();
        for name in order {
            let Some(record) = self.records.get(&name) else {
                continue;
            };
            if record.phase != Phase::Stopped && !stopped.contains(&name) {
                self.stop_component(&name, Phase::Stopped, None);
                stopped.push(name);
            }
        }
        self.status.phase = PlanPhase::Stopped;
        state::save_status(&self.status);
        stopped
    }

    /// Stops one component and its hard dependents.
    pub fn stop_one(&mut self, name: &str, dry_run: bool) -> Result<Vec<Action>, String> {
        self.check_component(name)?;
        let mut actions = Vec::new();
        let dependents = self
            .plan()
            .map(|plan| plan.hard_dependents(name))
            .unwrap_or_default();
        for dependent in dependents.iter().rev() {
            actions.push(Action::new(
                dependent,
                "stop",
                format!("hard dependency {name} stops"),
            ));
        }
        actions.push(Action::new(name, "stop", "requested"));
        if !dry_run {
            for action in &actions {
                self.stop_component(&action.component, Phase::Stopped, None);
            }
        }
        Ok(actions)
    }

    /// Restarts one component; its hard dependents restart once it is ready.
    pub fn restart_one(&mut self, name: &str, dry_run: bool) -> Result<Vec<Action>, String> {
        self.check_component(name)?;
        let dependents = self
            .plan()
            .map(|plan| plan.hard_dependents(name))
            .unwrap_or_default();
        let mut actions: Vec<Action> = dependents
            .iter()
            .rev()
            .map(|dependent| {
                Action::new(
                    dependent,
                    "stop",
                    format!("hard dependency {name} restarts"),
                )
            })
            .collect();
        actions.push(Action::new(name, "restart", "requested"));
        actions.extend(
            dependents
                .iter()
                .map(|dependent| Action::new(dependent, "start", format!("once {name} is ready"))),
        );
        if !dry_run {
            for dependent in dependents.iter().rev() {
                self.stop_component(dependent, Phase::Waiting, None);
            }
            self.stop_component(name, Phase::Backoff, None);
            if let Some(record) = self.records.get_mut(name) {
                record.due_ms = 0;
                state::save_record(record);
            }
            self.resume_plan_phase();
            self.supervise();
        }
        Ok(actions)
    }

    /// Reloads a running component as its `[lifecycle.reload]` says: a signal
    /// to its process, or a script (bounded by `grace`, default 30 s).
    pub fn reload_one(&mut self, name: &str, dry_run: bool) -> Result<Vec<Action>, String> {
        self.check_component(name)?;
        let component = self
            .component(name)
            .ok_or_else(|| format!("unknown component `{name}`"))?;
        let reload = component
            .recipe
            .lifecycle
            .reload
            .clone()
            .ok_or_else(|| format!("{name} has no [lifecycle.reload]"))?;
        let running = self
            .records
            .get(name)
            .filter(|record| record.phase.running())
            .ok_or_else(|| format!("{name} is not running"))?;
        let (process, in_container) = (running.process, running.container.clone());
        let how = match &reload.signal {
            Some(signal) => format!("signal {signal}"),
            None => "reload script".to_string(),
        };
        let actions = vec![Action::new(name, "reload", how)];
        if dry_run {
            return Ok(actions);
        }
        match (&reload.signal, &reload.script) {
            (Some(signal), _) => match (in_container, process) {
                (Some(container_name), _) => container::kill(&container_name, signal)
                    .map_err(|err| format!("cannot signal {name}: {err}"))?,
                (None, Some(process)) => process::signal(ProcessId(process), signal)
                    .map_err(|err| format!("cannot signal {name}: {err}"))?,
                (None, None) => return Err(format!("{name} is not running")),
            },
            (None, Some(script)) => {
                let script = crate::recipe::Script {
                    script: script.clone(),
                    timeout: reload.grace.clone(),
                };
                self.runner.run_script(
                    &component,
                    "reload",
                    &script,
                    std::time::Duration::from_secs(30),
                )?;
            }
            (None, None) => return Err(format!("{name}: [lifecycle.reload] is empty")),
        }
        cairn_sdk::info!("{name} reloaded");
        Ok(actions)
    }

    /// Brings every component of the applied plan back to running: failed,
    /// exited, stopped and backing-off ones start now.
    pub fn reconcile(&mut self) -> Result<Vec<Action>, String> {
        if let Some(operation) = &self.operation {
            return Err(format!("operation {} is in progress", operation.id));
        }
        let Some(plan) = self.applied.clone() else {
            return Err("no plan is applied".into());
        };
        let mut actions = Vec::new();
        for name in plan.layers.iter().flatten() {
            let Some(record) = self.records.get_mut(name) else {
                continue;
            };
            if let Some(container_name) = &record.container
                && record.phase.running()
                && !container::info(container_name).is_ok_and(|info| info.running)
            {
                record.phase = Phase::Failed;
                record.last_error = Some("its container is not running".into());
            }
            if let Some(id) = record.process {
                let alive = process::info(ProcessId(id)).is_ok_and(|info| info.running());
                if !alive {
                    record.process = None;
                    record.phase = Phase::Failed;
                    record.last_error = Some("its process is gone".into());
                }
            }
            if !record.phase.running() {
                actions.push(Action::new(
                    name,
                    "start",
                    format!("was {}", record.phase.as_str()),
                ));
                record.phase = Phase::Backoff;
                record.due_ms = 0;
                record.restarts = 0;
                state::save_record(record);
            }
        }
        self.resume_plan_phase();
        self.supervise();
        Ok(actions)
    }

    /// After a plan stop, starting components again means the plan applies again.
    fn resume_plan_phase(&mut self) {
        if self.status.phase == PlanPhase::Stopped {
            self.status.phase = PlanPhase::Applied;
            state::save_status(&self.status);
        }
    }

    fn check_component(&self, name: &str) -> Result<(), String> {
        if let Some(operation) = &self.operation {
            return Err(format!(
                "operation {} is in progress; wait for it or stop the plan",
                operation.id
            ));
        }
        if self.records.contains_key(name)
            && self
                .plan()
                .is_some_and(|plan| plan.components.contains_key(name))
        {
            Ok(())
        } else {
            Err(format!("unknown component `{name}`"))
        }
    }
}

/// `base · 2^attempt`, capped, with ±20 % jitter so that components that
/// failed together do not restart in lockstep.
fn backoff(base_ms: u64, max_ms: u64, attempt: u32) -> u64 {
    let delay = base_ms.saturating_mul(1u64 << attempt.min(20)).min(max_ms);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    let jitter = hasher.finish() % 401; // 0..=400 → -20 %..=+20 %
    delay.saturating_mul(800 + jitter) / 1000
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        for attempt in 0..4 {
            let expected = 100u64 << attempt;
            let delay = backoff(100, 10_000, attempt);
            assert!(
                delay >= expected * 8 / 10 && delay <= expected * 12 / 10,
                "{attempt}: {delay}"
            );
        }
        assert!(backoff(100, 1_000, 30) <= 1_200);
    }
}
