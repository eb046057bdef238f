//! The daemon side of the admin socket: newline-delimited JSON over a Unix
//! socket that only the daemon's own user (and root) may use.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::api::{AdminApi, AdminError, ErrorCode, ProgressSink, Request, Response};
use crate::progress::Progress;

/// Longest request line accepted, newline excluded. Installs carry whole
/// components in base64, so this bounds the component size to about 12 MiB.
pub const MAX_REQUEST_LINE: usize = 16 * 1024 * 1024;

/// How long a connection may sit without sending a complete request line.
/// Keeps a forgotten client (or a hostile one) from holding a task forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long shutdown waits for requests in progress (an install, say) to
/// finish before abandoning them; idle connections are closed at once.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `api` on `socket_path` until `shutdown` resolves, then removes the socket.
///
/// The parent directory is created with mode 0700 when missing; a stale socket
/// left by a crashed daemon is replaced, but a socket another daemon still
/// answers on is an error. The socket file is made owner-only (0600) before the
/// first connection is accepted, and peers whose uid is neither the daemon's
/// effective uid nor root are refused.
pub async fn serve<A: AdminApi>(
    api: Arc<A>,
    socket_path: &Path,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    prepare_socket_path(socket_path).await?;
    let listener = UnixListener::bind(socket_path)
        .with_context(|| format!("cannot bind the admin socket {}", socket_path.display()))?;
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to its owner", socket_path.display()))?;
    tracing::info!(socket = %socket_path.display(), "admin socket listening");

    // SAFETY: geteuid has no preconditions and cannot fail.
    let daemon_uid = unsafe { libc::geteuid() };
    let mut connections = JoinSet::new();
    let (closing_tx, closing) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let api = Arc::clone(&api);
                    let closing = closing.clone();
                    connections.spawn(async move {
                        let served = serve_connection(api.as_ref(), stream, daemon_uid, closing);
                        if let Err(error) = served.await {
                            tracing::debug!(%error, "admin connection ended with an error");
                        }
                    });
                }
                // Running out of file descriptors is transient: back off instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "cannot accept an admin connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    // Requests are not cancelled midway: the API's operations need not be
    // cancellation-safe. Connections waiting for a request close at once.
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("abandoning admin requests still running at shutdown");
    }
    connections.shutdown().await;
    if let Err(error) = std::fs::remove_file(socket_path) {
        tracing::warn!(%error, socket = %socket_path.display(), "cannot remove the admin socket");
    }
    tracing::info!("admin socket closed");
    Ok(())
}

/// Makes `socket_path` free to bind: creates its directory, clears a stale socket.
async fn prepare_socket_path(socket_path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = socket_path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let metadata = match std::fs::symlink_metadata(socket_path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot inspect {}", socket_path.display()));
        }
    };
    // Never delete something that is not a socket: the path may be a typo.
    if !metadata.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            socket_path.display()
        );
    }
    match UnixStream::connect(socket_path).await {
        Ok(_) => bail!(
            "another cairn daemon is already serving on {}",
            socket_path.display()
        ),
        // Nobody listens: the socket was left behind by a daemon that died.
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(error) => {
            return Err(error).with_context(|| {
                format!("cannot tell whether {} is in use", socket_path.display())
            });
        }
    }
    tracing::info!(socket = %socket_path.display(), "removing a stale admin socket");
    std::fs::remove_file(socket_path)
        .with_context(|| format!("cannot remove the stale socket {}", socket_path.display()))
}

/// Serves the requests of one connection, one at a time, in order.
async fn serve_connection<A: AdminApi>(
    api: &A,
    stream: UnixStream,
    daemon_uid: libc::uid_t,
    mut closing: watch::Receiver<bool>,
) -> io::Result<()> {
    let peer_uid = stream.peer_cred()?.uid();
    let (reader, mut writer) = stream.into_split();
    if peer_uid != daemon_uid && peer_uid != 0 {
        tracing::warn!(peer_uid, "refused an admin connection from another user");
        let refusal = AdminError::new(
            ErrorCode::Denied,
            "the admin socket only serves the daemon's own user and root",
        );
        return write_response(&mut writer, &failure(refusal)).await;
    }

    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        // One byte over the limit tells an oversized line from one that fits exactly.
        let mut limited = (&mut reader).take(MAX_REQUEST_LINE as u64 + 1);
        let read = tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, limited.read_until(b'\n', &mut line)) => {
                match read {
                    Ok(read) => read?,
                    Err(_) => return Ok(()),
                }
            }
            // A sender dropped means the server is gone too.
            _ = closing.wait_for(|closing| *closing) => return Ok(()),
        };
        if read == 0 {
            return Ok(());
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_REQUEST_LINE {
            let error = AdminError::new(
                ErrorCode::Invalid,
                format!(
                    "request line exceeds {} MiB",
                    MAX_REQUEST_LINE / (1024 * 1024)
                ),
            );
            return write_response(&mut writer, &failure(error)).await;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request = match serde_json::from_slice::<Request>(&line) {
            Ok(request) => request,
            Err(error) => {
                let error =
                    AdminError::new(ErrorCode::Invalid, format!("malformed request: {error}"));
                return write_response(&mut writer, &failure(error)).await;
            }
        };
        let response = answer_with_progress(api, request, &mut writer).await;
        write_response(&mut writer, &response).await?;
        // A last line without a newline is still answered, but nothing can follow it.
        if !complete {
            return Ok(());
        }
    }
}

/// Runs one request, streaming its progress lines to `writer` while it runs.
///
/// The request always runs to completion: a client that goes away mid-install
/// must not cancel the install half-way, so a failed progress write only stops
/// further progress lines.
async fn answer_with_progress<A: AdminApi>(
    api: &A,
    request: Request,
    writer: &mut (impl AsyncWrite + Unpin),
) -> Response {
    let (sender, mut reports) = mpsc::unbounded_channel();
    let sink: ProgressSink = Arc::new(move |progress| {
        let _ = sender.send(progress);
    });
    let work = dispatch(api, request, sink);
    tokio::pin!(work);
    let mut client_listens = true;
    loop {
        tokio::select! {
            response = &mut work => {
                // Reports queued just before the end still go out, ahead of the answer.
                if client_listens && let Ok(first) = reports.try_recv() {
                    let _ = forward_progress(first, &mut reports, writer).await;
                }
                return response;
            }
            Some(first) = reports.recv() => {
                if client_listens && forward_progress(first, &mut reports, writer).await.is_err() {
                    client_listens = false;
                }
            }
        }
    }
}

/// Writes `first` and whatever else is queued, keeping only phase changes and the
/// latest byte count, so a fast download does not become thousands of lines.
async fn forward_progress(
    first: Progress,
    queued: &mut mpsc::UnboundedReceiver<Progress>,
    writer: &mut (impl AsyncWrite + Unpin),
) -> io::Result<()> {
    let mut pending = vec![first];
    while let Ok(next) = queued.try_recv() {
        match pending.last_mut() {
            Some(last) if last.phase == next.phase => *last = next,
            _ => pending.push(next),
        }
    }
    for progress in pending {
        let line = Response {
            progress: Some(progress),
            ..Response::default()
        };
        write_response(writer, &line).await?;
    }
    Ok(())
}

/// Runs one request against the API.
pub(crate) async fn dispatch<A: AdminApi>(
    api: &A,
    request: Request,
    progress: ProgressSink,
) -> Response {
    tracing::debug!(op = operation_name(&request), "admin request");
    let result = match request {
        Request::Status => api.status().await.and_then(|status| to_json(&status)),
        Request::List => api.list().await.and_then(|plugins| to_json(&plugins)),
        Request::Install(install) => api
            .install(install, progress)
            .await
            .and_then(|p| to_json(&p)),
        Request::InstallRef { reference, force } => api
            .install_ref(reference, force, progress)
            .await
            .and_then(|p| to_json(&p)),
        Request::Rollback { name } => api.rollback(name).await.and_then(|p| to_json(&p)),
        Request::Remove { name } => api.remove(name).await.map(|()| serde_json::Value::Null),
        Request::PruneStore { keep, dry_run } => api.prune_store(keep, dry_run).await,
        Request::Call {
            plugin,
            command,
            payload,
        } => api.call(plugin, command, payload).await,
        Request::Logs { plugin, limit } => api.logs(plugin, limit).await.and_then(|r| to_json(&r)),
        Request::Metrics => api.metrics().await.map(serde_json::Value::String),
        Request::Health => api.health().await.and_then(|h| to_json(&h)),
    };
    match result {
        Ok(value) => Response {
            ok: Some(value),
            ..Response::default()
        },
        Err(error) => failure(error),
    }
}

fn operation_name(request: &Request) -> &'static str {
    match request {
        Request::Status => "status",
        Request::List => "list",
        Request::Install(_) => "install",
        Request::InstallRef { .. } => "install",
        Request::Rollback { .. } => "rollback",
        Request::Remove { .. } => "remove",
        Request::PruneStore { .. } => "prune-store",
        Request::Call { .. } => "call",
        Request::Logs { .. } => "logs",
        Request::Metrics => "metrics",
        Request::Health => "health",
    }
}

fn to_json(value: &impl Serialize) -> Result<serde_json::Value, AdminError> {
    serde_json::to_value(value).map_err(|error| {
        AdminError::new(
            ErrorCode::Internal,
            format!("cannot encode the reply: {error}"),
        )
    })
}

fn failure(error: AdminError) -> Response {
    Response {
        error: Some(error),
        ..Response::default()
    }
}

async fn write_response(
    writer: &mut (impl AsyncWrite + Unpin),
    response: &Response,
) -> io::Result<()> {
    let mut encoded = serde_json::to_vec(response).map_err(io::Error::other)?;
    encoded.push(b'\n');
    writer.write_all(&encoded).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncBufReadExt;

    use super::*;
    use crate::admin::client::AdminClient;
    use crate::admin::fake::{FakeApi, start, start_at};

    async fn raw_exchange(socket: &Path, payload: Vec<u8>) -> (Response, usize) {
        let stream = UnixStream::connect(socket).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        // Written concurrently: the server answers before it has read everything.
        let sender = tokio::spawn(async move {
            let _ = writer.write_all(&payload).await;
            writer
        });
        let mut reader = BufReader::new(reader);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let response: Response = serde_json::from_str(&line).unwrap();
        let mut rest = String::new();
        let after = reader.read_line(&mut rest).await.unwrap_or(0);
        drop(sender.await);
        (response, after)
    }

    #[tokio::test]
    async fn restricts_the_socket_and_its_directory_to_the_owner() {
        let server = start().await;
        let socket_mode = std::fs::metadata(&server.socket)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(socket_mode & 0o777, 0o600);
        let parent = server.socket.parent().unwrap();
        let dir_mode = std::fs::metadata(parent).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let _ = server.stop.send(());
        server.task.await.unwrap().unwrap();
        assert!(!server.socket.exists(), "shutdown removes the socket");
    }

    #[tokio::test]
    async fn rejects_an_oversized_line_and_hangs_up() {
        let server = start().await;
        let payload = vec![b'x'; MAX_REQUEST_LINE + 10];
        let (response, after) = raw_exchange(&server.socket, payload).await;
        assert_eq!(response.error.unwrap().code, ErrorCode::Invalid);
        assert_eq!(after, 0, "the connection is closed");
        // The server is still healthy.
        let mut client = AdminClient::connect(&server.socket).await.unwrap();
        client.request(&Request::List).await.unwrap();
    }

    #[tokio::test]
    async fn rejects_malformed_json_and_hangs_up() {
        let server = start().await;
        let payload = b"{\"op\":\"status\"}\n{not json}\n{\"op\":\"list\"}\n".to_vec();
        let stream = UnixStream::connect(&server.socket).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        writer.write_all(&payload).await.unwrap();
        let mut lines = BufReader::new(reader).lines();
        let first: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(first.ok.is_some());
        let second: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let error = second.error.unwrap();
        assert_eq!(error.code, ErrorCode::Invalid);
        assert!(error.message.starts_with("malformed request"));
        assert_eq!(lines.next_line().await.unwrap(), None);

        let (unknown_op, _) = raw_exchange(&server.socket, b"{\"op\":\"reboot\"}\n".to_vec()).await;
        assert_eq!(unknown_op.error.unwrap().code, ErrorCode::Invalid);
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(
            socket.exists(),
            "a dead listener leaves its socket file behind"
        );
        let server = start_at(dir, socket.clone()).await;
        AdminClient::connect(&socket).await.unwrap();

        let second = serve(Arc::new(FakeApi::default()), &socket, async {}).await;
        let message = format!("{:#}", second.unwrap_err());
        assert!(message.contains("already serving"), "{message}");
        // The live daemon kept its socket.
        let mut client = AdminClient::connect(&server.socket).await.unwrap();
        client.request(&Request::Status).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_to_replace_a_file_that_is_not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        std::fs::write(&path, "keep me").unwrap();
        let result = serve(Arc::new(FakeApi::default()), &path, async {}).await;
        assert!(format!("{:#}", result.unwrap_err()).contains("not a socket"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_finishes_requests_in_progress() {
        let server = start().await;
        let mut idle = AdminClient::connect(&server.socket).await.unwrap();
        let mut busy = AdminClient::connect(&server.socket).await.unwrap();
        let slow_call = tokio::spawn(async move {
            let request = Request::Call {
                plugin: "echo".into(),
                command: "slow".into(),
                payload: serde_json::Value::Null,
            };
            busy.request(&request).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = server.stop.send(());
        let reply = slow_call.await.unwrap().unwrap();
        assert_eq!(reply["command"], "slow");
        tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let closed = idle.request(&Request::Status).await.unwrap_err();
        assert_eq!(closed.code, ErrorCode::Unavailable);
    }
}
