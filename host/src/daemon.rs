//! `cairn daemon`: the kernel, served on the admin socket until a stop signal.

use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;

use crate::admin::api::{
    AdminApi, AdminError, ErrorCode, HealthSummary, InstallRequest, LogRecord, PluginSummary,
    ProgressSink, Status,
};
use crate::config::DaemonConfig;
use crate::kernel::{InstallSource, Kernel, KernelConfig, KernelError};
use crate::logging::LogRing;
use crate::runtime::CallError;
use crate::runtime::engine::EngineSettings;
use crate::supply::oci::{Credentials, RegistryOptions};

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: DaemonConfig, logs: LogRing) -> anyhow::Result<()> {
    let kernel = Kernel::start(KernelConfig {
        state_dir: config.state_dir.clone(),
        policy_dir: config.policy_dir.clone(),
        allow_unsigned: config.allow_unsigned,
        trust_keys: config.trust_keys.clone(),
        engine: EngineSettings {
            max_instances: config.runtime.max_instances,
            epoch_tick: config.runtime.epoch_tick,
        },
        registry: registry_options(&config.registry)?,
        device_id: config.device_id.clone(),
        caps: crate::caps::CapsConfig {
            mqtt: config.mqtt.clone(),
            containers: config.containers.clone(),
            registry: registry_options(&config.registry)?,
            trust_keys: config.trust_keys.clone(),
        },
    })
    .await?;
    let http = match &config.http {
        Some(listener) => Some(start_http(listener, &kernel).await?),
        None => None,
    };
    let service = Arc::new(AdminService {
        kernel: kernel.clone(),
        logs,
    });
    tracing::info!(socket = %config.admin_socket.display(), plugins = kernel.plugins().len(), allocator = kernel.allocator().as_str(), "cairn daemon ready");
    crate::admin::server::serve(service, &config.admin_socket, stop_signal()).await?;
    tracing::info!("stopping");
    if let Some(http) = http {
        http.abort();
    }
    kernel.stop().await;
    Ok(())
}

/// Binds the HTTP listener (failing the start if the address is taken) and serves
/// it in the background; requests reach the plugin whose route matches.
async fn start_http(
    config: &crate::config::HttpListenerConfig,
    kernel: &Arc<Kernel>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use crate::caps::http::listener::{self, ListenerSettings, Router};
    let to_usize = |bytes: u64| usize::try_from(bytes).unwrap_or(usize::MAX);
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            crate::caps::http::tls::acceptor(cert, key, config.client_ca_file.as_deref())
                .context("[listeners.http] TLS")?,
        ),
        (None, None) if config.client_ca_file.is_none() => None,
        _ => anyhow::bail!(
            "[listeners.http]: TLS needs both tls-cert-file and tls-key-file (and client-ca-file only with them)"
        ),
    };
    let mut settings = ListenerSettings {
        address: config.address,
        max_header_bytes: to_usize(config.max_header_size),
        max_body_bytes: to_usize(config.max_body_size),
        header_timeout: config.header_timeout,
        request_timeout: config.request_timeout,
        tls,
    };
    let socket = listener::bind(&settings)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.address))?;
    settings.address = socket.local_addr()?;
    tracing::info!(address = %settings.address, tls = settings.tls.is_some(), "serving HTTP");
    let weak = Arc::downgrade(kernel);
    let router: Router = Arc::new(move |path| {
        let kernel = weak.upgrade()?;
        let routes = kernel
            .caps()
            .http_server
            .table_for(kernel.serving_fingerprint(), || kernel.serving());
        let plugin = routes.find(path)?.plugin.clone();
        let handler = kernel.http_handler(&plugin)?;
        Some((plugin, handler))
    });
    Ok(tokio::spawn(listener::serve(socket, settings, router)))
}

fn registry_options(config: &crate::config::RegistryConfig) -> anyhow::Result<RegistryOptions> {
    let credentials = match &config.credentials {
        Some(path) => Some(Credentials::load(path)?),
        None => None,
    };
    let extra_roots_der = match &config.ca_file {
        Some(path) => crate::caps::pem::read_certs(path)
            .context("reading [registry] ca-file")?
            .into_iter()
            .map(|cert| cert.to_vec())
            .collect(),
        None => Vec::new(),
    };
    Ok(RegistryOptions {
        insecure: config.insecure.clone(),
        credentials,
        mirrors: config.mirrors.clone(),
        extra_roots_der,
        ..RegistryOptions::default()
    })
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for stop signals");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The admin socket's view of the kernel.
pub struct AdminService {
    pub kernel: Arc<Kernel>,
    pub logs: LogRing,
}

impl AdminApi for AdminService {
    async fn status(&self) -> Result<Status, AdminError> {
        let config = self.kernel.config();
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: self.kernel.uptime().as_secs(),
            pid: std::process::id(),
            state_dir: config.state_dir.display().to_string(),
            policy_dir: config.policy_dir.display().to_string(),
            allow_unsigned: config.allow_unsigned,
            allocator: self.kernel.allocator().as_str().into(),
            rss_bytes: crate::kernel::resident_memory_bytes(),
            plugins: self.kernel.plugins(),
        })
    }

    async fn list(&self) -> Result<Vec<PluginSummary>, AdminError> {
        Ok(self.kernel.plugins())
    }

    async fn install(
        &self,
        req: InstallRequest,
        progress: ProgressSink,
    ) -> Result<PluginSummary, AdminError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(req.component_b64.as_bytes())
            .map_err(|err| {
                AdminError::new(
                    ErrorCode::Invalid,
                    format!("component is not valid base64: {err}"),
                )
            })?;
        let identity = match (req.name, req.version) {
            (Some(name), Some(version)) => {
                let version = semver::Version::parse(&version).map_err(|err| {
                    AdminError::new(ErrorCode::Invalid, format!("version `{version}`: {err}"))
                })?;
                Some((name, version))
            }
            (None, None) => None,
            _ => {
                return Err(AdminError::new(
                    ErrorCode::Invalid,
                    "give both a name and a version, or neither",
                ));
            }
        };
        let source = InstallSource::Bytes {
            bytes,
            signature: req.signature,
            identity,
        };
        self.kernel
            .install(source, req.force, &|_| Ok(()), &*progress)
            .await
            .map_err(admin_error)
    }

    async fn install_ref(
        &self,
        reference: String,
        force: bool,
        progress: ProgressSink,
    ) -> Result<PluginSummary, AdminError> {
        self.kernel
            .install(
                InstallSource::Oci(reference),
                force,
                &|_| Ok(()),
                &*progress,
            )
            .await
            .map_err(admin_error)
    }

    async fn rollback(&self, name: String) -> Result<PluginSummary, AdminError> {
        self.kernel
            .rollback(&name, "requested by the operator")
            .await
            .map_err(admin_error)
    }

    async fn remove(&self, name: String) -> Result<(), AdminError> {
        self.kernel.remove(&name).await.map_err(admin_error)
    }

    async fn call(
        &self,
        plugin: String,
        command: String,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, AdminError> {
        let bytes = match &payload {
            serde_json::Value::Null => Vec::new(),
            other => serde_json::to_vec(other)
                .map_err(|err| AdminError::new(ErrorCode::Invalid, err.to_string()))?,
        };
        let reply = self
            .kernel
            .call(&plugin, &command, bytes)
            .await
            .map_err(admin_error)?;
        Ok(serde_json::from_slice(&reply).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&reply).into_owned())
        }))
    }

    async fn logs(
        &self,
        plugin: Option<String>,
        limit: usize,
    ) -> Result<Vec<LogRecord>, AdminError> {
        Ok(self.logs.recent(plugin.as_deref(), limit))
    }

    async fn metrics(&self) -> Result<String, AdminError> {
        Ok(self.kernel.render_metrics())
    }

    async fn health(&self) -> Result<HealthSummary, AdminError> {
        Ok(self.kernel.health(None).await)
    }

    async fn prune_store(
        &self,
        keep: usize,
        dry_run: bool,
    ) -> Result<serde_json::Value, AdminError> {
        let pruned = self
            .kernel
            .prune_store(keep, dry_run)
            .await
            .map_err(admin_error)?;
        serde_json::to_value(pruned)
            .map_err(|err| AdminError::new(ErrorCode::Internal, err.to_string()))
    }
}

/// The error the admin socket returns for a failed kernel operation.
fn admin_error(err: KernelError) -> AdminError {
    if let KernelError::Call(CallError::Plugin(reply)) = &err {
        return AdminError::from_plugin(reply);
    }
    let code = match &err {
        _ if err.is_policy() => ErrorCode::Policy,
        KernelError::Invalid(_)
        | KernelError::Component(_)
        | KernelError::Reference(_)
        | KernelError::Start(_) => ErrorCode::Invalid,
        KernelError::Signature(_) | KernelError::BadSignature(_) => ErrorCode::Signature,
        KernelError::Denied(_) => ErrorCode::Denied,
        KernelError::Conflict(_) | KernelError::Vetted { .. } => ErrorCode::Conflict,
        KernelError::NotFound(_) => ErrorCode::NotFound,
        KernelError::Call(CallError::Timeout(_)) => ErrorCode::Timeout,
        KernelError::Call(_) => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    };
    AdminError::new(code, err.to_string())
}
