//! Writing archive entries under a root, whatever the archive format.
//!
//! Nothing in an archive is trusted: paths are cleaned and refused if they
//! could leave the root, links are checked together and created last (see
//! `links`), and sizes are counted as bytes are written rather than read
//! from headers.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::Limits;
use super::error::{ArtifactError, Errs};
use super::links::{self, Refusal};
use super::unpack::Outcome;

/// Counters shared with the metered tar stream.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub written: Cell<u64>,
    pub entries: Cell<u64>,
    pub tripped: Cell<bool>,
}

/// One unpack in progress: its counters, and the links it will create.
pub(crate) struct Extractor<'a> {
    pub errs: Errs<'a>,
    pub root: &'a Path,
    pub limits: &'a Limits,
    archive_bytes: u64,
    pub meter: Rc<Meter>,
    outcome: Outcome,
    /// Regular files written so far, with their executable bit (hard links
    /// may only point at these).
    files: BTreeMap<PathBuf, bool>,
    /// Deferred symbolic links: path → target.
    links: BTreeMap<PathBuf, String>,
}

impl<'a> Extractor<'a> {
    pub fn new(errs: Errs<'a>, root: &'a Path, limits: &'a Limits, archive_bytes: u64) -> Self {
        Extractor {
            errs,
            root,
            limits,
            archive_bytes,
            meter: Rc::new(Meter::default()),
            outcome: Outcome::default(),
            files: BTreeMap::new(),
            links: BTreeMap::new(),
        }
    }

    /// A tar error is the bomb guard tripping or a malformed archive.
    pub fn tar_error(&self, err: &io::Error) -> ArtifactError {
        if self.meter.tripped.get() {
            self.errs.too_large(
                "the archive's headers are far larger than its contents (an archive bomb?)",
            )
        } else {
            self.errs.invalid(format!("bad tar archive: {err}"))
        }
    }

    pub fn count_entry(&mut self) -> Result<(), ArtifactError> {
        let entries = self.meter.entries.get() + 1;
        self.meter.entries.set(entries);
        if entries > self.limits.max_entries {
            return Err(self.errs.too_large(format!(
                "more than max_entries ({}) entries",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// The entry's path below the root, or `None` for the root itself.
    /// Backslashes count as separators so Windows-made zips cannot sneak
    /// `..\` past the check.
    pub fn clean(&self, name: &str) -> Result<Option<PathBuf>, ArtifactError> {
        if name.contains('\0') {
            return Err(self.errs.unsafe_(format!("`{name}` contains a NUL byte")));
        }
        if links::is_absolute(name) {
            return Err(self.errs.unsafe_(format!("`{name}` is an absolute path")));
        }
        let mut path = PathBuf::new();
        for component in name.split(['/', '\\']) {
            match component {
                "" | "." => {}
                ".." => {
                    return Err(self.errs.unsafe_(format!(
                        "`{name}` contains `..` and could leave the destination"
                    )));
                }
                normal => path.push(normal),
            }
        }
        Ok((!path.as_os_str().is_empty()).then_some(path))
    }

    pub fn dir(&mut self, path: &Path) -> Result<(), ArtifactError> {
        let full = self.root.join(path);
        fs::create_dir_all(&full).map_err(|e| {
            self.errs.io(
                format_args!("creating the directory {}", path.display()),
                &e,
            )
        })
    }

    pub fn file(
        &mut self,
        path: &Path,
        content: &mut dyn Read,
        executable: bool,
    ) -> Result<(), ArtifactError> {
        let full = self.root.join(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.dir(parent)?;
        }
        // A later tar entry for the same path replaces the earlier one.
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_file() => {
                let _ = fs::remove_file(&full);
            }
            Ok(_) => {
                return Err(self.errs.invalid(format!(
                    "`{}` is both a directory and a file in the archive",
                    path.display()
                )));
            }
            Err(_) => {}
        }
        let errs = self.errs;
        let io_err = |e: &io::Error| errs.io(format_args!("writing {}", path.display()), e);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)
            .map_err(|e| io_err(&e))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if self.meter.tripped.get() => return Err(self.tar_error(&e)),
                Err(e) => {
                    return Err(self.errs.invalid(format!(
                        "reading `{}` from the archive: {e}",
                        path.display()
                    )));
                }
            };
            self.add_bytes(n as u64)?;
            out.write_all(&buf[..n]).map_err(|e| io_err(&e))?;
        }
        set_executable(&out, executable).map_err(|e| io_err(&e))?;
        self.outcome.files += 1;
        if executable {
            self.outcome.executables.push(path.to_path_buf());
        }
        self.files.insert(path.to_path_buf(), executable);
        Ok(())
    }

    /// Counts written bytes against the size and ratio limits.
    pub fn add_bytes(&mut self, n: u64) -> Result<(), ArtifactError> {
        let total = self.outcome.bytes + n;
        self.outcome.bytes = total;
        self.meter.written.set(total);
        let limits = self.limits;
        if total > limits.max_unpacked_bytes {
            return Err(self.errs.too_large(format!(
                "unpacking writes more than max_unpacked_bytes ({} bytes)",
                limits.max_unpacked_bytes
            )));
        }
        if total > self.archive_bytes.saturating_mul(limits.max_ratio) {
            return Err(self.errs.too_large(format!(
                "unpacking writes more than {} times the archive's {} bytes (an archive bomb?)",
                limits.max_ratio, self.archive_bytes
            )));
        }
        Ok(())
    }

    /// Hard links become copies of an earlier file of the same archive: a
    /// real hard link could point anywhere on the filesystem.
    pub fn hardlink(&mut self, path: &Path, target: &str) -> Result<(), ArtifactError> {
        let source = self.clean(target)?;
        let Some((source, executable)) =
            source.and_then(|source| self.files.get(&source).map(|&exec| (source, exec)))
        else {
            return Err(self.errs.unsafe_(format!(
                "hard link `{}` points at `{target}`, which is not a file earlier in the archive",
                path.display()
            )));
        };
        let full = self.root.join(&source);
        let mut input = File::open(&full).map_err(|e| {
            self.errs
                .io(format_args!("reading {}", source.display()), &e)
        })?;
        self.file(path, &mut input, executable)
    }

    pub fn symlink(&mut self, path: PathBuf, target: String) -> Result<(), ArtifactError> {
        if target.is_empty() || target.contains('\0') {
            return Err(self.errs.invalid(format!(
                "symbolic link `{}` has an empty or NUL-containing target",
                path.display()
            )));
        }
        if links::is_absolute(&target) {
            return Err(self.errs.unsafe_(format!(
                "symbolic link `{}` points at the absolute path `{target}`",
                path.display()
            )));
        }
        self.links.insert(path, target);
        Ok(())
    }

    /// Checks the links together, then creates them (parents first, so no
    /// directory is made through a link).
    pub fn finish(self) -> Result<Outcome, ArtifactError> {
        links::check_all(&self.links).map_err(|(link, refusal)| {
            let why = match refusal {
                Refusal::Absolute => "points at an absolute path",
                Refusal::Escapes => "resolves outside the destination",
                Refusal::Loop => "is part of a loop of links",
            };
            self.errs
                .unsafe_(format!("symbolic link `{}` {why}", link.display()))
        })?;
        for link in self.links.keys() {
            if let Some(parent) = link.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(self.root.join(parent)).map_err(|e| {
                    self.errs.io(
                        format_args!("creating the directory {}", parent.display()),
                        &e,
                    )
                })?;
            }
        }
        for (link, target) in &self.links {
            links::create(target, &self.root.join(link)).map_err(|e| {
                self.errs.io(
                    format_args!("creating the symbolic link {}", link.display()),
                    &e,
                )
            })?;
        }
        Ok(self.outcome)
    }
}

pub(crate) fn utf8(errs: &Errs<'_>, bytes: &[u8]) -> Result<String, ArtifactError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| errs.invalid(format!("the archive path {bytes:?} is not UTF-8")))
}

/// Unix gets 0o755 or 0o644 (never setuid/setgid bits from an archive).
/// WASI has no permission bits at all: there the caller learns about
/// executables from `Installed::executables`.
pub(crate) fn set_executable(file: &File, executable: bool) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if executable { 0o755 } else { 0o644 };
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, executable);
        Ok(())
    }
}
