//! Blob downloads that survive a flaky registry: bounded retries with exponential
//! backoff, resuming with an HTTP `Range` request from the bytes already received.
//!
//! oci-client's `pull_blob_stream_partial` sends the `Range` header with the client's
//! stored login, so no second HTTP stack is needed. The digest is always checked here
//! over the complete bytes, because oci-client skips it on partial responses.

use futures_util::StreamExt as _;
use oci_client::client::BlobResponse;
use oci_client::manifest::OciDescriptor;

use super::client::Registry;
use super::error::{OciError, chain};
use super::reference::Reference;
use super::retry::with_attempts;
use crate::state::digest::Digest;

impl Registry {
    /// Downloads the blob `desc` of declared `size` (already checked against limits)
    /// and verifies its length and digest.
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
        // Foreign URLs in a descriptor would make oci-client fetch from other hosts.
        let desc = OciDescriptor {
            urls: None,
            ..desc.clone()
        };
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let attempts = self.options.retries.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .fetch_rest(reference, &desc, what, size, &mut buf, progress)
                .await
            {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < attempts => {
                    let delay = self.backoff(attempt);
                    tracing::debug!(%reference, what, attempt, have = buf.len(), error = %e, ?delay,
                        "blob download failed; resuming");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(with_attempts(e, attempt)),
            }
        }
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

    /// Fetches the bytes after those already in `buf`.
    async fn fetch_rest(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        what: &str,
        size: u64,
        buf: &mut Vec<u8>,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), OciError> {
        let have = buf.len() as u64;
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
                    buf.clear();
                }
                stream
            }
            BlobResponse::Partial(stream) => stream,
        };
        let interrupted = |got: usize, detail: String| OciError::Network {
            registry: reference.registry().to_owned(),
            attempts: 1,
            detail: format!("download of {what} interrupted after {got} of {size} bytes: {detail}"),
        };
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let total = buf.len() as u64 + bytes.len() as u64;
                    if total > size {
                        return Err(OciError::BlobSizeMismatch {
                            what: what.to_owned(),
                            expected: size,
                            actual: total,
                        });
                    }
                    buf.extend_from_slice(&bytes);
                    progress(total, size);
                }
                // With every byte in hand the only failure left is oci-client's own
                // digest check, which the caller repeats with a precise error.
                Err(_) if buf.len() as u64 == size => return Ok(()),
                Err(e) => return Err(interrupted(buf.len(), chain(&e))),
            }
        }
        if (buf.len() as u64) < size {
            return Err(interrupted(buf.len(), "connection closed early".into()));
        }
        Ok(())
    }
}
