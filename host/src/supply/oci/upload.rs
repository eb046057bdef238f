//! Blob uploads: skipped when the registry already has the blob (so a push that
//! failed half-way resumes with the blobs still missing, and a re-push is cheap),
//! otherwise sent in chunks so progress can be reported.

use futures_util::StreamExt as _;
use oci_client::errors::OciDistributionError;
use tokio::sync::mpsc;

use super::client::Registry;
use super::error::OciError;
use super::reference::Reference;
use crate::state::digest::Digest;

/// Size of each upload request (a `PATCH` of the chunked upload protocol).
const UPLOAD_CHUNK: usize = 1024 * 1024;

impl Registry {
    /// Uploads `data` (whose digest is `digest`) to `target`'s repository unless it
    /// is there already. `progress(done, total)` hears about bytes the registry took.
    pub(crate) async fn upload_blob(
        &self,
        target: &Reference,
        what: &str,
        data: &[u8],
        digest: &Digest,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), OciError> {
        let oref = target.to_oci();
        let total = data.len() as u64;
        // Only an optimisation: when the check itself fails (its errors are
        // unclassified, a 401 among them), the upload runs and reports the cause.
        let present = self
            .client
            .blob_exists(&oref, digest.as_str())
            .await
            .unwrap_or(false);
        if present {
            tracing::debug!(reference = %target, what, %digest, "registry has the blob already");
            progress(total, total);
            return Ok(());
        }
        self.retry(target, what, || async {
            let (sent, mut reports) = mpsc::unbounded_channel::<u64>();
            let chunks: Vec<Result<bytes::Bytes, OciDistributionError>> = data
                .chunks(UPLOAD_CHUNK)
                .map(|chunk| Ok(bytes::Bytes::copy_from_slice(chunk)))
                .collect();
            // The stream is asked for the next chunk once the previous one is sent.
            let mut yielded = 0u64;
            let stream = futures_util::stream::iter(chunks).inspect(move |chunk| {
                let _ = sent.send(yielded);
                if let Ok(chunk) = chunk {
                    yielded += chunk.len() as u64;
                }
            });
            let upload = self
                .client
                .push_blob_stream(&oref, stream, digest.as_str(), Some(total));
            tokio::pin!(upload);
            loop {
                tokio::select! {
                    outcome = &mut upload => break outcome,
                    Some(done) = reports.recv() => progress(done, total),
                }
            }
        })
        .await?;
        progress(total, total);
        Ok(())
    }
}
