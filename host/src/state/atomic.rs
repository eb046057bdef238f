//! Crash-safe file replacement.
//!
//! Every file the host records goes through [`write_atomic`]: the bytes land in a
//! temporary file in the same directory, are flushed to disk, and only then is the
//! temporary renamed over the target and the directory itself flushed. `rename` within a
//! directory is atomic on POSIX file systems, so after a power cut at any instant the
//! target holds either the complete old contents or the complete new ones.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Marker in the names of temporary files, so [`remove_tmp_files`] never touches
/// anything it did not create.
const TMP_MARKER: &str = ".cairn-tmp.";

/// Mode of files written by [`write_atomic`] (before the umask).
const DEFAULT_MODE: u32 = 0o644;

/// Distinguishes temporary files of concurrent writers within one process; the pid
/// distinguishes processes.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Wraps `err` so its message names the operation and the path, keeping its kind so
/// callers can still match on e.g. [`io::ErrorKind::NotFound`].
pub(crate) fn io_context(err: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

/// Atomically replaces `path` with `bytes` (mode 0644 before the umask).
///
/// See the module documentation for the guarantees.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, DEFAULT_MODE)
}

/// Atomically replaces `path` with `bytes`, creating it with permission bits `mode`.
///
/// The mode is applied when the temporary file is created, so the contents are never
/// visible with wider permissions (which matters for private keys).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let tmp = tmp_path(&dir, name);
    let result = write_tmp(&tmp, bytes, mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| io_context(e, "renaming onto", path)));
    if let Err(err) = result {
        // Best effort: a leftover would be removed by the next open anyway.
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    fsync_dir(&dir)
}

/// Flushes a directory's entries (creations, renames, removals) to disk.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_context(e, "syncing directory", dir))
}

/// Creates `path` and any missing parents with mode 0700 (`mkdir -p`).
///
/// Existing directories keep their permissions. The parent of a newly created directory
/// is synced so the directory survives a power cut.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| io_context(e, "creating directory", path))?;
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsync_dir(parent),
        _ => Ok(()),
    }
}

/// Removes temporary files left in `dir` by writers that died mid-write.
///
/// With `for_file`, only the temporaries of that file name are removed, so a caller
/// sharing a directory with other writers cleans up only after itself. Returns how many
/// files were removed.
pub fn remove_tmp_files(dir: &Path, for_file: Option<&str>) -> io::Result<usize> {
    let prefix = for_file.map(|name| format!(".{name}{TMP_MARKER}"));
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(|e| io_context(e, "listing", dir))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_context(e, "listing", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = match &prefix {
            Some(prefix) => name.starts_with(prefix.as_str()),
            None => name.starts_with('.') && name.contains(TMP_MARKER),
        };
        if ours {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_context(e, "removing stale temporary file", &path)),
            }
        }
    }
    if removed > 0 {
        tracing::debug!(dir = %dir.display(), removed, "removed stale temporary files");
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// Splits `path` into its directory (`.` for a bare file name) and file name.
fn split(path: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

fn tmp_path(dir: &Path, name: &OsStr) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!("{TMP_MARKER}{}.{n}", std::process::id()));
    dir.join(tmp_name)
}

fn write_tmp(tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| io_context(e, "creating", tmp))?;
    file.write_all(bytes)
        .map_err(|e| io_context(e, "writing", tmp))?;
    // Without this the rename could reach the disk before the data, and a power cut
    // would leave a complete-looking but empty or torn file under the final name.
    file.sync_all().map_err(|e| io_context(e, "syncing", tmp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_contents_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn mode_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic_mode(&path, b"k", 0o600).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("f");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }

    #[test]
    fn private_dir_is_0700_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c");
        create_private_dir(&path).unwrap();
        create_private_dir(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn tmp_cleanup_is_scoped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join(".a.json.cairn-tmp.1.0"), b"").unwrap();
        fs::write(d.join(".b.json.cairn-tmp.1.0"), b"").unwrap();
        fs::write(d.join("a.json"), b"").unwrap();
        assert_eq!(remove_tmp_files(d, Some("a.json")).unwrap(), 1);
        assert!(d.join(".b.json.cairn-tmp.1.0").exists());
        assert_eq!(remove_tmp_files(d, None).unwrap(), 1);
        assert!(d.join("a.json").exists());
    }
}
