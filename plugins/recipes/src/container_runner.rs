//! Running a `type = "container"` component through the host's `container`
//! capability: pull per the pull policy, replace what an earlier start left,
//! create and start; stop and remove; `cmd:` health checks run inside the
//! container with exec.

use std::time::Duration;

use cairn_sdk::Error;
use cairn_sdk::container;

use crate::container::ContainerRun;
use crate::engine::now_ms;
use crate::plan::Component;
use crate::recipe::HealthCheck;
use crate::runner::{Readiness, Runner};
use crate::state::Record;
use crate::units;

const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `REPOSITORY@DIGEST` of a pulled image.
fn pinned(reference: &str, digest: &str) -> String {
    let repository = match reference.split_once('@') {
        Some((repository, _)) => repository,
        None => {
            // A colon after the last slash starts the tag.
            let last_slash = reference.rfind('/').map_or(0, |at| at + 1);
            match reference[last_slash..].rfind(':') {
                Some(colon) => &reference[..last_slash + colon],
                None => reference,
            }
        }
    };
    format!("{repository}@{digest}")
}

fn refused(component: &Component, what: &str, err: &Error) -> String {
    match err {
        Error::Denied(message) => format!(
            "{} may not run: the policy's [grants.container] does not allow it ({message})",
            component.name
        ),
        other => format!("{what} {}: {other}", component.name),
    }
}

/// The `cmd:` check's command line, when the component has one.
pub fn exec_check(health: Option<&HealthCheck>) -> Option<Vec<String>> {
    let command = health?.check.strip_prefix("cmd:")?;
    let args: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    (!args.is_empty()).then_some(args)
}

impl Runner {
    fn volume_dir(&self, component: &str) -> String {
        format!("{}/volumes/{component}", self.root)
    }

    /// Pulls the image and starts the container; fills the record.
    pub fn launch_container(
        &mut self,
        component: &Component,
        run: &ContainerRun,
        record: &mut Record,
    ) -> Result<(), String> {
        let name = &component.name;
        if container::info(name).is_ok() {
            // Left by an interrupted start or an earlier run: replaced.
            container::remove(name)
                .map_err(|err| refused(component, "cannot replace the container of", &err))?;
        }
        let image = container::pull(&run.image, run.pull_policy())
            .map_err(|err| refused(component, &format!("cannot pull {} for", run.image), &err))?;
        let volumes = self.volume_dir(name);
        for volume in run.volumes() {
            let dir = format!("{volumes}/{volume}");
            std::fs::create_dir_all(&dir)
                .map_err(|err| format!("cannot create volume {dir}: {err}"))?;
        }
        let spec = run.spec(name, &image.reference, &volumes);
        container::create(&spec)
            .map_err(|err| refused(component, "cannot create the container of", &err))?;
        record.container = Some(name.clone());
        let info = match container::start(name) {
            Ok(info) => info,
            Err(err) => {
                let _ = container::remove(name);
                record.container = None;
                return Err(refused(component, "cannot start", &err));
            }
        };
        record.image = Some(pinned(&image.reference, &image.digest));
        record.pid = info.pid;
        record.started_at_ms = now_ms();
        record.probe_due_ms = 0;
        record.probe_failures = 0;
        Ok(())
    }

    /// Stops and removes the component's container, if it has one.
    pub fn stop_container(&self, record: &mut Record, grace: Duration) {
        let Some(name) = record.container.take() else {
            return;
        };
        match container::stop(&name, grace) {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(err) => cairn_sdk::warn!("cannot stop container {name}: {err}"),
        }
        match container::remove(&name) {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(err) => cairn_sdk::warn!("cannot remove container {name}: {err}"),
        }
    }

    /// One `cmd:` probe inside the container, if one is due: `Some(Ok)` when
    /// it passed, `Some(Err)` with why not, `None` when none was due.
    pub fn probe_container(
        &self,
        component: &Component,
        record: &mut Record,
        now: u64,
    ) -> Option<Result<(), String>> {
        let health = component.recipe.run()?.health.as_ref();
        let args = exec_check(health)?;
        let name = record.container.clone()?;
        if now < record.probe_due_ms {
            return None;
        }
        let pick = |value: Option<&String>, default: Duration| {
            value
                .and_then(|text| units::duration(text).ok())
                .unwrap_or(default)
        };
        let interval = pick(
            health.and_then(|h| h.interval.as_ref()),
            DEFAULT_PROBE_INTERVAL,
        );
        let timeout = pick(
            health.and_then(|h| h.timeout.as_ref()),
            DEFAULT_PROBE_TIMEOUT,
        );
        record.probe_due_ms = now + units::millis(interval);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outcome = match container::exec(&name, &args, timeout) {
            Ok(result) if result.exit_code == 0 => Ok(()),
            Ok(result) if result.timed_out => Err(format!("`{}` timed out", args.join(" "))),
            Ok(result) => Err(format!(
                "`{}` exited with {}: {}",
                args.join(" "),
                result.exit_code,
                String::from_utf8_lossy(&result.stderr).trim()
            )),
            Err(err) => Err(err.to_string()),
        };
        match &outcome {
            Ok(()) => record.probe_failures = 0,
            Err(_) => record.probe_failures += 1,
        }
        record.health = Some(
            if outcome.is_ok() {
                "healthy"
            } else {
                "unhealthy"
            }
            .to_string(),
        );
        Some(outcome)
    }

    /// Readiness of a starting container whose check is a `cmd:` probe.
    pub fn container_readiness(
        &self,
        component: &Component,
        record: &mut Record,
        now: u64,
    ) -> Readiness {
        match self.probe_container(component, record, now) {
            Some(Ok(())) => Readiness::Ready,
            Some(Err(error)) if now >= record.due_ms => Readiness::Failed(format!(
                "health check did not pass within {}: {error}",
                component
                    .recipe
                    .run()
                    .and_then(|run| run.health.as_ref())
                    .and_then(|health| health.start_timeout.as_deref())
                    .unwrap_or("60s")
            )),
            _ if now >= record.due_ms => {
                Readiness::Failed("health check did not pass in time".into())
            }
            _ => Readiness::NotYet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_pinned_by_digest() {
        let digest = "sha256:abc";
        assert_eq!(
            pinned("reg:5000/apps/web:1.2", digest),
            "reg:5000/apps/web@sha256:abc"
        );
        assert_eq!(
            pinned("reg:5000/apps/web@sha256:old", digest),
            "reg:5000/apps/web@sha256:abc"
        );
        assert_eq!(pinned("reg/apps/web", digest), "reg/apps/web@sha256:abc");
    }

    #[test]
    fn cmd_checks_become_exec_arguments() {
        let check = |text: &str| HealthCheck {
            check: text.into(),
            interval: None,
            timeout: None,
            failure_threshold: None,
            start_timeout: None,
        };
        assert_eq!(
            exec_check(Some(&check("cmd:/bin/test -f /ready"))),
            Some(vec!["/bin/test".to_string(), "-f".into(), "/ready".into()])
        );
        assert_eq!(exec_check(Some(&check("tcp://127.0.0.1:80"))), None);
        assert_eq!(exec_check(None), None);
    }
}
