//! Blob downloads that survive a flaky registry: bounded retries with exponential
//! backoff, resuming with an HTTP `Range` request from the bytes already held.
//!
//! oci-client's `pull_blob_stream_partial` sends the `Range` header with the client's
//! stored login, so no second HTTP stack is needed. oci-client skips its digest check
//! on partial responses, so whoever holds the complete bytes checks them: this module
//! for downloads into memory, containerd's content store for image layers.

use std::future::Future;

use futures_util::StreamExt as _;
use oci_client::client::BlobResponse;
use oci_client::manifest::OciDescriptor;

use super::client::Registry;
use super::error::{OciError, chain};
use super::reference::Reference;
use super::retry::with_attempts;
use crate::state::digest::Digest;

/// Where a download puts the bytes it receives.
pub(crate) trait BlobSink: Send {
    /// How many bytes it already holds: the download resumes after them.
    fn held(&self) -> u64;
    /// Appends `bytes` after those it holds.
    fn append(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), OciError>> + Send;
    /// Forgets what it holds, because the registry ignored a `Range` request.
    fn restart(&mut self) -> impl Future<Output = Result<(), OciError>> + Send;
}

impl BlobSink for Vec<u8> {
    fn held(&self) -> u64 {
        self.len() as u64
    }

    async fn append(&mut self, bytes: &[u8]) -> Result<(), OciError> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    async fn restart(&mut self) -> Result<(), OciError> {
        self.clear();
        Ok(())
    }
}

impl Registry {
    /// Downloads the blob `desc` of declared `size` (already checked against limits)
    /// into memory and verifies its length and digest.
    pub(crate) async fn download_blob(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        what: &str,
        size: u64,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Vec<u8>, OciError> {
        let expected = Digest::parse(&desc.digest).map_err(|_| {
            OciError::ManifestInvalid(format!(
                "{what} digest {:?} is not a sha256 digest",
                desc.digest
            ))
        })?;
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        self.download_into(reference, desc, what, size, &mut buf, progress)
            .await?;
        let actual = Digest::of(&buf);
        if actual != expected {
            return Err(OciError::BlobDigestMismatch {
                what: what.to_owned(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(buf)
    }

    /// Downloads the blob `desc` of declared `size` into `sink`, after the bytes
    /// the sink already holds, and checks its length; the digest is the sink's
    /// to check.
    pub(crate) async fn download_into<S: BlobSink>(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        what: &str,
        size: u64,
        sink: &mut S,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), OciError> {
        // Foreign URLs in a descriptor would make oci-client fetch from other hosts.
        let desc = OciDescriptor {
            urls: None,
            ..desc.clone()
        };
        let attempts = self.options.retries.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .fetch_rest(reference, &desc, what, size, sink, progress)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < attempts => {
                    let delay = self.backoff(attempt);
                    tracing::debug!(%reference, what, attempt, have = sink.held(), error = %e, ?delay,
                        "blob download failed; resuming");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(with_attempts(e, attempt)),
            }
        }
    }

    /// Fetches the bytes after those the sink holds.
    async fn fetch_rest<S: BlobSink>(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        what: &str,
        size: u64,
        sink: &mut S,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), OciError> {
        let have = sink.held();
        if have == size {
            return Ok(());
        }
        let response = self
            .client
            .pull_blob_stream_partial(&reference.to_oci(), desc, have, None)
            .await
            .map_err(|e| self.classify(reference, what, e))?;
        let mut stream = match response {
            BlobResponse::Full(stream) => {
                if have > 0 {
                    tracing::debug!(%reference, what, "registry ignored Range; restarting");
                    sink.restart().await?;
                }
                stream
            }
            BlobResponse::Partial(stream) => stream,
        };
        let interrupted = |got: u64, detail: String| OciError::Network {
            registry: reference.registry().to_owned(),
            attempts: 1,
            detail: format!("download of {what} interrupted after {got} of {size} bytes: {detail}"),
        };
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let total = sink.held() + bytes.len() as u64;
                    if total > size {
                        return Err(OciError::BlobSizeMismatch {
                            what: what.to_owned(),
                            expected: size,
                            actual: total,
                        });
                    }
                    sink.append(&bytes).await?;
                    progress(total, size);
                }
                // With every byte in hand the only failure left is oci-client's own
                // digest check, which the sink's owner repeats with a precise error.
                Err(_) if sink.held() == size => return Ok(()),
                Err(e) => return Err(interrupted(sink.held(), chain(&e))),
            }
        }
        if sink.held() < size {
            return Err(interrupted(sink.held(), "connection closed early".into()));
        }
        Ok(())
    }
}
