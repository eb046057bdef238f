//! The CLI side of the admin socket.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::api::{AdminError, ErrorCode, Request, Response};
use super::server::MAX_REQUEST_LINE;
use crate::progress::Progress;

/// Longest reply line the client accepts; generous because log dumps and
/// metrics can be large, bounded so a confused peer cannot exhaust memory.
const MAX_RESPONSE_LINE: usize = 64 * 1024 * 1024;

/// Why the CLI could not open a connection to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (no file, or a stale one).
    #[error("cannot reach the cairn daemon at {}: is `cairn daemon` running?", path.display())]
    NotRunning {
        /// The socket that was tried.
        path: PathBuf,
        /// What the connect call reported.
        #[source]
        source: io::Error,
    },
    /// The socket exists but belongs to another user.
    #[error(
        "permission denied on the admin socket {}: run as the daemon's user or root",
        path.display()
    )]
    PermissionDenied {
        /// The socket that was tried.
        path: PathBuf,
        /// What the connect call reported.
        #[source]
        source: io::Error,
    },
    /// Any other failure to connect.
    #[error("cannot connect to the admin socket {}: {source}", path.display())]
    Io {
        /// The socket that was tried.
        path: PathBuf,
        /// What the connect call reported.
        #[source]
        source: io::Error,
    },
}

impl From<ClientError> for AdminError {
    fn from(error: ClientError) -> Self {
        let code = match error {
            ClientError::PermissionDenied { .. } => ErrorCode::Denied,
            ClientError::NotRunning { .. } | ClientError::Io { .. } => ErrorCode::Unavailable,
        };
        AdminError::new(code, error.to_string())
    }
}

/// One connection to the daemon's admin socket; requests are answered in order.
#[derive(Debug)]
pub struct AdminClient {
    socket_path: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl AdminClient {
    /// Connects to the daemon listening on `socket_path`.
    pub async fn connect(socket_path: &Path) -> Result<Self, ClientError> {
        let path = socket_path.to_path_buf();
        let stream = match UnixStream::connect(socket_path).await {
            Ok(stream) => stream,
            Err(source) => {
                return Err(match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        ClientError::NotRunning { path, source }
                    }
                    io::ErrorKind::PermissionDenied => {
                        ClientError::PermissionDenied { path, source }
                    }
                    _ => ClientError::Io { path, source },
                });
            }
        };
        let (reader, writer) = stream.into_split();
        Ok(AdminClient {
            socket_path: path,
            reader: BufReader::new(reader),
            writer,
        })
    }

    /// The socket this client is connected to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Sends one request and returns the daemon's `ok` value, or its error.
    pub async fn request(&mut self, req: &Request) -> Result<serde_json::Value, AdminError> {
        self.request_with_progress(req, &mut |_| {}).await
    }

    /// Like [`Self::request`], handing each progress line the daemon sends on the
    /// way to `on_progress`.
    pub async fn request_with_progress(
        &mut self,
        req: &Request,
        on_progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<serde_json::Value, AdminError> {
        let mut line = serde_json::to_vec(req).map_err(|error| {
            AdminError::new(
                ErrorCode::Internal,
                format!("cannot encode the request: {error}"),
            )
        })?;
        if line.len() > MAX_REQUEST_LINE {
            return Err(AdminError::new(
                ErrorCode::Invalid,
                format!(
                    "the request is {} bytes; the admin socket accepts at most {} MiB \
                     (components up to about 12 MiB)",
                    line.len(),
                    MAX_REQUEST_LINE / (1024 * 1024)
                ),
            ));
        }
        line.push(b'\n');

        let written = self.send(&line).await;
        // The daemon answers an unacceptable request and hangs up, possibly
        // before reading all of it: its answer explains more than a broken pipe.
        if let Err(error) = &written {
            let peer_hung_up = matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            );
            if !peer_hung_up {
                return Err(self.lost(error));
            }
        }
        let response = loop {
            match (self.read_response().await, &written) {
                (
                    Ok(Some(Response {
                        progress: Some(progress),
                        ok: None,
                        error: None,
                    })),
                    _,
                ) => on_progress(progress),
                (Ok(Some(response)), _) => break response,
                (Ok(None), Ok(())) => {
                    return Err(AdminError::new(
                        ErrorCode::Unavailable,
                        "the daemon closed the connection without answering",
                    ));
                }
                (Ok(None), Err(error)) => return Err(self.lost(error)),
                (Err(error), _) => return Err(self.lost(&error)),
            }
        };
        match response.error {
            Some(error) => Err(error),
            // `{"ok":null}` decodes to `None`: a successful reply without a value.
            None => Ok(response.ok.unwrap_or(serde_json::Value::Null)),
        }
    }

    /// Sends one request and decodes the `ok` value as `T`.
    pub async fn request_as<T: DeserializeOwned>(
        &mut self,
        req: &Request,
    ) -> Result<T, AdminError> {
        let value = self.request(req).await?;
        serde_json::from_value(value).map_err(|error| {
            AdminError::new(
                ErrorCode::Internal,
                format!("the daemon's reply has an unexpected shape: {error}"),
            )
        })
    }

    async fn send(&mut self, line: &[u8]) -> io::Result<()> {
        self.writer.write_all(line).await?;
        self.writer.flush().await
    }

    /// Reads one reply line; `None` when the daemon hung up first.
    async fn read_response(&mut self) -> io::Result<Option<Response>> {
        let mut line = Vec::new();
        let mut limited = (&mut self.reader).take(MAX_RESPONSE_LINE as u64 + 1);
        if limited.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line.len() > MAX_RESPONSE_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the daemon's reply is too large",
            ));
        }
        serde_json::from_slice(&line).map(Some).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the daemon's reply is not valid: {error}"),
            )
        })
    }

    fn lost(&self, error: &io::Error) -> AdminError {
        AdminError::new(
            ErrorCode::Unavailable,
            format!(
                "lost the connection to the daemon at {}: {error}",
                self.socket_path.display()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::InstallRequest;
    use crate::admin::fake::start;
    use crate::progress::Phase;

    #[tokio::test]
    async fn answers_several_requests_on_one_connection() {
        let server = start().await;
        let mut client = AdminClient::connect(&server.socket).await.unwrap();
        let status = client.request(&Request::Status).await.unwrap();
        assert_eq!(status["pid"], 4242);
        let missing = client
            .request(&Request::Remove {
                name: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code, ErrorCode::NotFound);
        let reply = client
            .request(&Request::Call {
                plugin: "echo".into(),
                command: "say".into(),
                payload: serde_json::json!({"n": 1}),
            })
            .await
            .unwrap();
        assert_eq!(reply["echo"]["n"], 1);
        let metrics = client.request(&Request::Metrics).await.unwrap();
        assert!(metrics.as_str().unwrap().contains("cairn_plugins"));
    }

    #[tokio::test]
    async fn streams_progress_before_the_answer_and_keeps_the_connection_usable() {
        let server = start().await;
        let mut client = AdminClient::connect(&server.socket).await.unwrap();
        let mut seen = Vec::new();
        let request = Request::InstallRef {
            reference: "oci://registry.example/counter:1".into(),
            force: false,
        };
        let answer = client
            .request_with_progress(&request, &mut |progress| seen.push(progress))
            .await
            .unwrap_err();
        assert_eq!(answer.code, ErrorCode::Unavailable);
        let phases: Vec<Phase> = seen.iter().map(|p| p.phase).collect();
        assert_eq!(phases.first(), Some(&Phase::Resolve), "{seen:?}");
        let last = seen.last().unwrap();
        assert_eq!(
            (last.phase, last.done, last.total),
            (Phase::Download, 1024, 1024)
        );
        // The progress lines were consumed with their request: the next answer is its own.
        let status = client.request(&Request::Status).await.unwrap();
        assert_eq!(status["pid"], 4242);
    }

    #[tokio::test]
    async fn client_explains_a_missing_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let error = AdminClient::connect(&socket).await.unwrap_err();
        let expected = format!(
            "cannot reach the cairn daemon at {}: is `cairn daemon` running?",
            socket.display()
        );
        assert_eq!(error.to_string(), expected);
        assert_eq!(AdminError::from(error).code, ErrorCode::Unavailable);
    }

    #[tokio::test]
    async fn refuses_to_send_an_oversized_request() {
        let server = start().await;
        let mut client = AdminClient::connect(&server.socket).await.unwrap();
        let install = Request::Install(InstallRequest {
            component_b64: "A".repeat(MAX_REQUEST_LINE),
            signature: None,
            force: false,
            name: None,
            version: None,
        });
        let error = client.request(&install).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::Invalid);
        assert!(
            error.message.contains("at most 16 MiB"),
            "{}",
            error.message
        );
        // Nothing was sent, so the connection is still usable.
        client.request(&Request::Status).await.unwrap();
    }
}
