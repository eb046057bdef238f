//! The connection to containerd: one gRPC channel over its socket, opened on
//! first use and re-dialled by tonic when containerd restarts, and the
//! metadata every namespaced call carries.

use containerd_client::Client;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{self, Code, Status};
use tokio::sync::Mutex;

use super::config::ContainersConfig;
use crate::contract::bindings::CapError;

/// containerd, as the capability reaches it.
pub struct Containerd {
    pub config: ContainersConfig,
    channel: Mutex<Option<Channel>>,
}

impl Containerd {
    pub fn new(config: ContainersConfig) -> Containerd {
        Containerd {
            config,
            channel: Mutex::new(None),
        }
    }

    /// The client; `unavailable`, saying why, when containerd cannot be reached.
    pub async fn client(&self) -> Result<Client, CapError> {
        let mut channel = self.channel.lock().await;
        if let Some(open) = channel.as_ref() {
            return Ok(Client::from(open.clone()));
        }
        let socket = &self.config.socket;
        if !socket.exists() {
            return Err(CapError::Unavailable(format!(
                "containerd is not running: no socket at {} (see [containers] socket)",
                socket.display()
            )));
        }
        let opened = containerd_client::connect(socket).await.map_err(|err| {
            CapError::Unavailable(format!(
                "cannot connect to containerd at {}: {err}",
                socket.display()
            ))
        })?;
        *channel = Some(opened.clone());
        Ok(Client::from(opened))
    }

    /// `message` as a request in Cairn's containerd namespace.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = self.config.namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    /// `message` in the namespace, under `lease` (what it writes is kept
    /// from garbage collection until the lease ends).
    pub fn leased<T>(&self, message: T, lease: &str) -> tonic::Request<T> {
        let mut request = self.req(message);
        if let Ok(value) = lease.parse() {
            request.metadata_mut().insert("containerd-lease", value);
        }
        request
    }
}

/// A containerd answer as the error a plugin sees; `what` says what was done.
pub fn status_error(what: &str, status: Status) -> CapError {
    let message = format!("{what}: {}", status.message());
    match status.code() {
        Code::NotFound => CapError::NotFound(message),
        Code::AlreadyExists | Code::FailedPrecondition => CapError::Conflict(message),
        Code::InvalidArgument | Code::OutOfRange => CapError::Invalid(message),
        Code::Unavailable | Code::Unknown if is_connection(&status) => CapError::Unavailable(
            format!("{what}: containerd cannot be reached: {}", status.message()),
        ),
        Code::Unavailable => CapError::Unavailable(message),
        Code::DeadlineExceeded => CapError::Timeout(message),
        Code::PermissionDenied | Code::Unauthenticated => CapError::Denied(message),
        Code::ResourceExhausted => CapError::QuotaExceeded(message),
        _ => CapError::Internal(message),
    }
}

fn is_connection(status: &Status) -> bool {
    let text = status.message();
    text.contains("transport") || text.contains("connect") || text.contains("No such file")
}

/// Whether containerd answered "not found".
pub fn is_not_found(status: &Status) -> bool {
    status.code() == Code::NotFound
}

/// Whether containerd answered "already exists".
pub fn is_already_exists(status: &Status) -> bool {
    status.code() == Code::AlreadyExists
}

/// A containerd lease: what is written under it is kept from garbage
/// collection until it ends (or expires, if the daemon dies first).
pub struct Lease {
    pub id: String,
}

impl Lease {
    /// A lease that expires on its own after `LEASE_EXPIRY`.
    pub async fn create(engine: &Containerd, client: &Client) -> Result<Lease, CapError> {
        use containerd_client::services::v1::CreateRequest;
        let id = format!(
            "cairn-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let expiry = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + LEASE_EXPIRY)
            .to_string();
        client
            .leases()
            .create(engine.req(CreateRequest {
                id: id.clone(),
                labels: std::collections::HashMap::from([(
                    "containerd.io/gc.expire".to_string(),
                    expiry,
                )]),
            }))
            .await
            .map_err(|status| status_error("creating a lease", status))?;
        Ok(Lease { id })
    }

    /// Ends the lease; what nothing else references is collected.
    pub async fn end(self, engine: &Containerd, client: &Client) {
        use containerd_client::services::v1::DeleteRequest;
        let _ = client
            .leases()
            .delete(engine.req(DeleteRequest {
                id: self.id,
                sync: false,
            }))
            .await;
    }
}

/// How long a lease protects what it holds if the daemon dies before ending it.
const LEASE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(3600);
