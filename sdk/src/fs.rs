//! Files in the directories `[grants.files]` grants, written crash-safely.

use std::io::Write as _;

use crate::{Error, Result};

/// Replaces `path` with `bytes`: a temporary file beside it, synced, then
/// renamed over it, so a crash leaves the old file or the new one, never a
/// torn one. Fails with [`Error::Internal`] naming the path.
pub fn write_atomic(path: &str, bytes: &[u8]) -> Result<()> {
    let temporary = format!("{path}.tmp");
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    written.map_err(|err| Error::Internal(format!("cannot write {path}: {err}")))
}
