//! Commands run inside a running container (what health checks and service
//! bindings use): stdin from a file, stdout and stderr to files, a deadline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, KillRequest, StartRequest, WaitRequest,
};

use super::engine::status_error;
use super::spec::{PROCESS_TYPE, exec_process};
use super::table::{Containers, Entry};
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::container::{ExecResult, ExecSpec};

/// Longest deadline an exec may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Output kept per stream.
const MAX_OUTPUT: u64 = 1024 * 1024;
/// Exit status reported for an exec killed on its deadline (128 + SIGKILL).
const KILLED: u32 = 137;

static NEXT: AtomicU64 = AtomicU64::new(1);

/// Tells this daemon run's exec ids from an earlier run's: containerd keeps
/// an exec a killed daemon left running, and a new id must not meet it.
fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        format!("{nanos:x}")
    })
}

/// The exec's stdio files, removed when dropped.
struct Files {
    stdin: Option<PathBuf>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for Files {
    fn drop(&mut self) {
        for path in self.stdin.iter().chain([&self.stdout, &self.stderr]) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn read_bounded(path: &PathBuf) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(MAX_OUTPUT).read_to_end(&mut bytes);
    }
    bytes
}

/// Runs `spec` in `entry` and waits for it (or its deadline).
pub async fn run(
    containers: &Containers,
    entry: &Entry,
    spec: ExecSpec,
) -> Result<ExecResult, CapError> {
    if spec.args.is_empty() {
        return Err(CapError::Invalid("exec needs a program to run".into()));
    }
    let timeout = Duration::from_millis(u64::from(spec.timeout_ms));
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(CapError::Invalid("timeout-ms must be 1 to 600000".into()));
    }
    let exec_id = format!(
        "exec-{}-{}",
        run_tag(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let dir = containers.dir()?.join("exec");
    crate::state::atomic::create_private_dir(&dir)
        .map_err(|err| CapError::Internal(err.to_string()))?;
    let base = dir.join(format!("{}-{exec_id}", entry.id));
    let files = Files {
        stdin: (!spec.stdin.is_empty()).then(|| base.with_extension("in")),
        stdout: base.with_extension("out"),
        stderr: base.with_extension("err"),
    };
    let write = |path: &PathBuf, bytes: &[u8]| {
        std::fs::write(path, bytes)
            .map_err(|err| CapError::Internal(format!("creating {}: {err}", path.display())))
    };
    if let Some(stdin) = &files.stdin {
        write(stdin, &spec.stdin)?;
    }
    write(&files.stdout, b"")?;
    write(&files.stderr, b"")?;
    let process = exec_process(
        &entry.spec,
        &spec.args,
        &spec.env,
        spec.clear_env,
        spec.working_dir.as_deref(),
    );
    let process =
        serde_json::to_vec(&process).map_err(|err| CapError::Internal(err.to_string()))?;
    let engine = &containers.engine;
    let client = engine.client().await?;
    let mut tasks = client.tasks();
    tasks
        .exec(
            engine.req(ExecProcessRequest {
                container_id: entry.id.clone(),
                stdin: files
                    .stdin
                    .as_ref()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
                stdout: files.stdout.display().to_string(),
                stderr: files.stderr.display().to_string(),
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE.into(),
                    value: process,
                }),
                exec_id: exec_id.clone(),
            }),
        )
        .await
        .map_err(|status| status_error(&format!("exec in `{}`", entry.name), status))?;
    let ids = || (entry.id.clone(), exec_id.clone());
    let cleanup = |mut tasks: containerd_client::services::v1::tasks_client::TasksClient<_>| {
        let (container_id, exec_id) = ids();
        async move {
            let _ = tasks
                .delete_process(engine.req(DeleteProcessRequest {
                    container_id,
                    exec_id,
                }))
                .await;
        }
    };
    if let Err(status) = tasks
        .start(engine.req(StartRequest {
            container_id: entry.id.clone(),
            exec_id: exec_id.clone(),
        }))
        .await
    {
        cleanup(tasks.clone()).await;
        let error = status_error(&format!("exec in `{}`", entry.name), status);
        return Err(match error {
            // runc reports a missing program as a failed start.
            CapError::Internal(message) if message.contains("no such file") => {
                CapError::NotFound(message)
            }
            other => other,
        });
    }
    let mut waiter = tasks.clone();
    let waited = tokio::time::timeout(
        timeout,
        waiter.wait(engine.req(WaitRequest {
            container_id: entry.id.clone(),
            exec_id: exec_id.clone(),
        })),
    )
    .await;
    let (exit_code, timed_out) = match waited {
        Ok(Ok(reply)) => (reply.into_inner().exit_status, false),
        Ok(Err(status)) => {
            cleanup(tasks.clone()).await;
            return Err(status_error(&format!("exec in `{}`", entry.name), status));
        }
        Err(_) => {
            let _ = tasks
                .kill(engine.req(KillRequest {
                    container_id: entry.id.clone(),
                    exec_id: exec_id.clone(),
                    signal: libc::SIGKILL as u32,
                    all: false,
                }))
                .await;
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                tasks.wait(engine.req(WaitRequest {
                    container_id: entry.id.clone(),
                    exec_id: exec_id.clone(),
                })),
            )
            .await;
            (KILLED, true)
        }
    };
    cleanup(tasks).await;
    Ok(ExecResult {
        exit_code,
        timed_out,
        stdout: read_bounded(&files.stdout),
        stderr: read_bounded(&files.stderr),
    })
}
