//! The local admin socket: the protocol ([`api`]), the daemon side
//! ([`server`]) and the CLI side ([`client`]).

pub mod api;
pub mod client;
pub mod server;

pub use api::{AdminApi, AdminError, ErrorCode, Request, Response};
pub use client::{AdminClient, ClientError};
pub use server::{MAX_REQUEST_LINE, serve};

/// An in-memory [`AdminApi`] for tests of the server, client and CLI.
#[cfg(test)]
pub(crate) mod fake {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use base64::Engine as _;
    use tokio::sync::oneshot;

    use super::api::{
        AdminApi, AdminError, ErrorCode, HealthSummary, InstallRequest, LogRecord, PluginSummary,
        ProgressSink, Request, Status,
    };
    use super::client::AdminClient;
    use crate::progress::{Phase, Progress};

    /// A fake daemon serving on a socket; sending on (or dropping) `stop` shuts it down.
    pub(crate) struct Running {
        _dir: tempfile::TempDir,
        pub(crate) socket: PathBuf,
        pub(crate) stop: oneshot::Sender<()>,
        pub(crate) task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    /// Serves a [`FakeApi`] on `socket` (inside `dir`) and waits until it answers.
    pub(crate) async fn start_at(dir: tempfile::TempDir, socket: PathBuf) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let path = socket.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            super::serve(Arc::new(FakeApi::default()), &path, shutdown).await
        });
        // The first answered request proves the socket is bound and restricted.
        for _ in 0..200 {
            if let Ok(mut client) = AdminClient::connect(&socket).await
                && client.request(&Request::List).await.is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Running {
            _dir: dir,
            socket,
            stop,
            task,
        }
    }

    /// Serves a [`FakeApi`] in a fresh directory whose `run/` does not exist yet.
    pub(crate) async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
        let socket = dir.path().join("run").join("admin.sock");
        start_at(dir, socket).await
    }

    /// Pretends to be a daemon: an install's component bytes are `name@version`.
    #[derive(Default)]
    pub(crate) struct FakeApi {
        pub(crate) plugins: Mutex<Vec<PluginSummary>>,
        pub(crate) last_install: Mutex<Option<InstallRequest>>,
    }

    pub(crate) fn summary(name: &str, version: &str, previous: Option<&str>) -> PluginSummary {
        PluginSummary {
            name: name.to_string(),
            version: version.to_string(),
            digest: format!("sha256:{}", "ab12".repeat(16)),
            state: "running".to_string(),
            previous_version: previous.map(str::to_string),
            restarts: 0,
            calls: 3,
            faults: 0,
            swaps: 0,
            last_error: None,
        }
    }

    fn not_found(name: &str) -> AdminError {
        AdminError::new(ErrorCode::NotFound, format!("no plugin named `{name}`"))
    }

    fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    impl AdminApi for FakeApi {
        async fn status(&self) -> Result<Status, AdminError> {
            Ok(Status {
                version: "0.1.0".to_string(),
                uptime_secs: 3723,
                pid: 4242,
                state_dir: "/var/lib/cairn".to_string(),
                policy_dir: "/etc/cairn/policies".to_string(),
                allow_unsigned: true,
                allocator: "pooling".to_string(),
                rss_bytes: 12 * 1024 * 1024,
                plugins: self.list().await?,
            })
        }

        async fn list(&self) -> Result<Vec<PluginSummary>, AdminError> {
            Ok(locked(&self.plugins).clone())
        }

        async fn install_ref(
            &self,
            reference: String,
            _force: bool,
            progress: ProgressSink,
        ) -> Result<PluginSummary, AdminError> {
            // Reports steps like the real registry path, so the CLI's display is exercised.
            progress(Progress::entering(Phase::Resolve));
            for done in [0, 512, 1024] {
                progress(Progress {
                    phase: Phase::Download,
                    done,
                    total: 1024,
                });
            }
            Err(AdminError::new(
                ErrorCode::Unavailable,
                format!("{reference}: no registry in the fake"),
            ))
        }

        async fn install(
            &self,
            req: InstallRequest,
            _progress: ProgressSink,
        ) -> Result<PluginSummary, AdminError> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&req.component_b64)
                .map_err(|error| AdminError::new(ErrorCode::Invalid, error.to_string()))?;
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            let Some((name, version)) = text.split_once('@') else {
                return Err(AdminError::new(ErrorCode::Invalid, "not a component"));
            };
            *locked(&self.last_install) = Some(req.clone());
            let mut plugins = locked(&self.plugins);
            let previous = plugins.iter().position(|p| p.name == name);
            let installed = summary(
                name,
                version,
                previous.map(|index| plugins[index].version.as_str()),
            );
            match previous {
                Some(index) => plugins[index] = installed.clone(),
                None => plugins.push(installed.clone()),
            }
            Ok(installed)
        }

        async fn rollback(&self, name: String) -> Result<PluginSummary, AdminError> {
            let mut plugins = locked(&self.plugins);
            let plugin = plugins
                .iter_mut()
                .find(|p| p.name == name)
                .ok_or_else(|| not_found(&name))?;
            let Some(previous) = plugin.previous_version.take() else {
                return Err(AdminError::new(
                    ErrorCode::Conflict,
                    "nothing to roll back to",
                ));
            };
            plugin.version = previous;
            Ok(plugin.clone())
        }

        async fn remove(&self, name: String) -> Result<(), AdminError> {
            let mut plugins = locked(&self.plugins);
            let before = plugins.len();
            plugins.retain(|p| p.name != name);
            if plugins.len() == before {
                return Err(not_found(&name));
            }
            Ok(())
        }

        async fn call(
            &self,
            plugin: String,
            command: String,
            payload: serde_json::Value,
        ) -> Result<serde_json::Value, AdminError> {
            if command == "slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if command == "text" {
                return Ok(serde_json::Value::String(format!("hello from {plugin}")));
            }
            Ok(serde_json::json!({ "plugin": plugin, "command": command, "echo": payload }))
        }

        async fn logs(
            &self,
            plugin: Option<String>,
            limit: usize,
        ) -> Result<Vec<LogRecord>, AdminError> {
            let records = [Some("counter"), None, Some("echo")]
                .into_iter()
                .enumerate()
                .map(|(index, name)| LogRecord {
                    at_ms: 1_700_000_000_000 + index as u64 * 1001,
                    level: "INFO".to_string(),
                    plugin: name.map(str::to_string),
                    message: format!("record {index}"),
                })
                .filter(|record| plugin.is_none() || record.plugin == plugin)
                .take(limit)
                .collect();
            Ok(records)
        }

        async fn metrics(&self) -> Result<String, AdminError> {
            Ok("# TYPE cairn_plugins gauge\ncairn_plugins 1\n".to_string())
        }

        async fn health(&self) -> Result<HealthSummary, AdminError> {
            Ok(HealthSummary {
                status: "ok".into(),
                uptime_secs: 3723,
                plugins: Vec::new(),
            })
        }

        async fn prune_store(
            &self,
            keep: usize,
            dry_run: bool,
        ) -> Result<serde_json::Value, AdminError> {
            Ok(
                serde_json::json!({"dry-run": dry_run, "keep-latest": keep, "keep": [], "delete": [], "bytes-freed": 0}),
            )
        }
    }
}
