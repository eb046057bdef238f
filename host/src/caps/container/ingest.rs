//! Writes into containerd's content store, streamed and resumable.
//!
//! A write is named after the blob's digest, so the bytes containerd kept
//! from an interrupted pull (held by that pull's lease until it expires) are
//! where the next pull of the same blob resumes, whichever registry serves it.
//! Nothing is held in memory beyond a few chunks; containerd checks the size
//! and digest when the write is committed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use containerd_client::services::v1::{
    AbortRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use containerd_client::tonic::{Code, Status, Streaming};
use tokio::sync::mpsc;

use super::engine::{Containerd, is_already_exists};
use crate::supply::oci::{BlobSink, OciError};

/// Bytes per write message (containerd's message limit is 16 MiB).
pub const CHUNK: usize = 1024 * 1024;
/// Write messages sent before waiting for containerd's answer to the oldest.
const WINDOW: usize = 4;
/// How long to wait for another pull writing the same blob to finish.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// What opening a write found.
pub enum Opened {
    /// containerd already has the blob.
    Present,
    /// A write, resuming after the bytes containerd already holds.
    Writing(Box<Ingest>),
}

/// How a commit ended well.
pub enum Committed {
    /// The bytes written are now the blob.
    Stored,
    /// Another writer committed the blob first.
    Present,
}

/// How a commit failed.
pub enum CommitError {
    /// The bytes written are not the blob: wrong size or digest.
    Mismatch(String),
    /// containerd refused or went away.
    Store(Status),
}

/// One open write of a blob into containerd's content store.
pub struct Ingest {
    requests: mpsc::Sender<WriteContentRequest>,
    replies: Streaming<WriteContentResponse>,
    reference: String,
    digest: String,
    total: i64,
    /// Bytes sent to containerd.
    sent: u64,
    /// Bytes received but not sent yet (less than a chunk).
    pending: Vec<u8>,
    /// Messages containerd has not answered yet.
    unanswered: usize,
    /// What containerd answered when a write failed.
    failure: Option<Status>,
}

/// The write's name: one per blob, so an interrupted one can be found again.
pub fn ingest_ref(digest: &str) -> String {
    format!("cairn-pull-{digest}")
}

impl Ingest {
    /// Opens the write of `digest` (`total` bytes) under `lease`. Waits while
    /// another pull is writing the same blob.
    pub async fn open(
        engine: &Containerd,
        client: &containerd_client::Client,
        lease: &str,
        digest: &str,
        total: u64,
    ) -> Result<Opened, Status> {
        let started = Instant::now();
        loop {
            match Self::try_open(engine, client, lease, digest, total).await {
                Err(status) if is_locked(&status) && started.elapsed() < LOCK_WAIT => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(status) if is_already_exists(&status) => return Ok(Opened::Present),
                other => return other,
            }
        }
    }

    async fn try_open(
        engine: &Containerd,
        client: &containerd_client::Client,
        lease: &str,
        digest: &str,
        total: u64,
    ) -> Result<Opened, Status> {
        let (requests, receiver) = mpsc::channel(WINDOW + 1);
        let reference = ingest_ref(digest);
        let total = i64::try_from(total)
            .map_err(|_| Status::invalid_argument(format!("{digest} is too large")))?;
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total,
            expected: digest.to_string(),
            ..WriteContentRequest::default()
        };
        // The receiver is alive, so the first message always fits.
        let _ = requests.send(stat).await;
        let messages = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|message| (message, receiver))
        });
        let mut replies = client
            .content()
            .write(engine.leased(messages, lease))
            .await?
            .into_inner();
        let status = replies
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("containerd closed the write"))?;
        let mut ingest = Ingest {
            requests,
            replies,
            reference,
            digest: digest.to_string(),
            total,
            sent: u64::try_from(status.offset).unwrap_or(0),
            pending: Vec::new(),
            unanswered: 0,
            failure: None,
        };
        if status.offset > total {
            // More than the blob: not a prefix of it. The next write truncates.
            ingest.sent = 0;
        }
        Ok(Opened::Writing(Box::new(ingest)))
    }

    /// The write's name in containerd.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// What containerd answered when a write failed.
    pub fn failure(&self) -> Option<Status> {
        self.failure.clone()
    }

    async fn send(
        &mut self,
        action: WriteAction,
        data: Vec<u8>,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        let offset = self.sent as i64;
        self.sent += data.len() as u64;
        let message = WriteContentRequest {
            action: action as i32,
            r#ref: self.reference.clone(),
            total: self.total,
            expected: self.digest.clone(),
            offset,
            data,
            labels,
        };
        if self.requests.send(message).await.is_err() {
            // containerd ended the stream; its answer says why.
            return Err(self.answer().await.err().unwrap_or_else(|| {
                Status::unavailable("containerd closed the write before it finished")
            }));
        }
        self.unanswered += 1;
        while self.unanswered > WINDOW {
            self.answer().await?;
        }
        Ok(())
    }

    /// Reads containerd's answer to the oldest unanswered message.
    async fn answer(&mut self) -> Result<WriteContentResponse, Status> {
        let reply = self
            .replies
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("containerd closed the write"))?;
        self.unanswered = self.unanswered.saturating_sub(1);
        Ok(reply)
    }

    fn store_error(&mut self, status: Status) -> OciError {
        let error = OciError::Store {
            what: self.digest.clone(),
            detail: status.message().to_string(),
        };
        self.failure = Some(status);
        error
    }

    /// Commits what was written with `labels`: containerd checks the size and
    /// digest. The write is closed either way.
    pub async fn commit(
        mut self,
        labels: HashMap<String, String>,
    ) -> Result<Committed, CommitError> {
        let rest = std::mem::take(&mut self.pending);
        let committed = async {
            self.send(WriteAction::Commit, rest, labels).await?;
            while self.unanswered > 0 {
                self.answer().await?;
            }
            Ok::<(), Status>(())
        }
        .await;
        self.close().await;
        match committed {
            Ok(()) => Ok(Committed::Stored),
            Err(status) if is_already_exists(&status) => Ok(Committed::Present),
            Err(status) if status.code() == Code::FailedPrecondition => {
                Err(CommitError::Mismatch(status.message().to_string()))
            }
            Err(status) => Err(CommitError::Store(status)),
        }
    }

    /// Sends what is pending, so a later pull resumes after it, and closes
    /// the write (containerd keeps its bytes).
    pub async fn suspend(mut self) {
        if self.failure.is_none() && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let _ = self.send(WriteAction::Write, rest, HashMap::new()).await;
        }
        self.close().await;
    }

    /// Ends the stream and waits for containerd to close the write, which
    /// releases the blob for the next writer.
    async fn close(self) {
        let Ingest {
            requests,
            mut replies,
            ..
        } = self;
        drop(requests);
        while let Ok(Some(_)) = replies.message().await {}
    }
}

impl BlobSink for Ingest {
    fn held(&self) -> u64 {
        self.sent + self.pending.len() as u64
    }

    async fn append(&mut self, bytes: &[u8]) -> Result<(), OciError> {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= CHUNK {
            let rest = self.pending.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.pending, rest);
            if let Err(status) = self.send(WriteAction::Write, chunk, HashMap::new()).await {
                return Err(self.store_error(status));
            }
        }
        Ok(())
    }

    async fn restart(&mut self) -> Result<(), OciError> {
        // The next message is written at offset 0, which truncates.
        self.pending.clear();
        self.sent = 0;
        Ok(())
    }
}

/// Drops the bytes containerd holds for the write `reference`.
pub async fn abort(engine: &Containerd, client: &containerd_client::Client, reference: &str) {
    let _ = client
        .content()
        .abort(engine.req(AbortRequest {
            r#ref: reference.to_string(),
        }))
        .await;
}

/// Whether containerd answered that another writer holds the blob.
fn is_locked(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().contains("locked")
}
