//! Unpacking tar, tar.gz and zip archives into a fresh staging directory:
//! reading each format's entries and refusing devices. The writing, and its
//! safety checks, is `extract`'s.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::Limits;
use super::error::{ArtifactError, Errs};
use super::extract::{Extractor, Meter, utf8};

/// Archive formats (what `Unpack` resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Tar,
    TarGz,
    Zip,
}

/// What an unpack wrote.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub files: u64,
    pub bytes: u64,
    /// Regular files with an executable bit, relative to the root.
    pub executables: Vec<PathBuf>,
}

/// Longest symlink target read from a zip entry's body.
const MAX_LINK_TARGET: u64 = 4096;
/// Decompressed tar bytes allowed beyond the written file bytes: headers and
/// padding of each entry, plus slack for read-ahead. Keeps a huge PAX or
/// long-name header (which the tar crate buffers in memory) from being a bomb.
const TAR_OVERHEAD_PER_ENTRY: u64 = 64 * 1024;
const TAR_OVERHEAD_BASE: u64 = 1024 * 1024;

/// Unpacks `archive` into `root`, an empty directory.
pub(crate) fn unpack(
    uri: &str,
    format: Format,
    archive: &Path,
    root: &Path,
    limits: &Limits,
) -> Result<Outcome, ArtifactError> {
    let errs = Errs(uri);
    let file = File::open(archive)
        .map_err(|e| errs.io(format_args!("opening {}", archive.display()), &e))?;
    let archive_bytes = file
        .metadata()
        .map_err(|e| errs.io(format_args!("reading {}", archive.display()), &e))?
        .len();
    let mut extractor = Extractor::new(errs, root, limits, archive_bytes);
    match format {
        Format::Tar => extractor.tar(io::BufReader::new(file))?,
        Format::TarGz => {
            let gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
            extractor.tar(gz)?;
        }
        Format::Zip => extractor.zip(file)?,
    }
    extractor.finish()
}

/// The decompressed tar stream, cut off once it runs too far ahead of what
/// was written.
struct Metered<R> {
    inner: R,
    read: u64,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let entries = self.meter.entries.get().saturating_add(2);
        let allowance = self
            .meter
            .written
            .get()
            .saturating_add(entries.saturating_mul(TAR_OVERHEAD_PER_ENTRY))
            .saturating_add(TAR_OVERHEAD_BASE);
        if self.read > allowance {
            self.meter.tripped.set(true);
            return Err(io::Error::other("archive metadata too large"));
        }
        Ok(n)
    }
}

impl Extractor<'_> {
    fn tar(&mut self, reader: impl Read) -> Result<(), ArtifactError> {
        let metered = Metered {
            inner: reader,
            read: 0,
            meter: Rc::clone(&self.meter),
        };
        let mut archive = tar::Archive::new(metered);
        let entries = archive.entries().map_err(|e| self.tar_error(&e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.tar_error(&e))?;
            let header = entry.header();
            let kind = header.entry_type();
            let executable = header.mode().is_ok_and(|mode| mode & 0o111 != 0);
            use tar::EntryType as T;
            if matches!(
                kind,
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
            ) {
                continue;
            }
            self.count_entry()?;
            let name = utf8(&self.errs, &entry.path_bytes())?;
            let path = self.clean(&name)?;
            let link_target = match entry.link_name_bytes() {
                Some(bytes) => Some(utf8(&self.errs, &bytes)?),
                None => None,
            };
            match (kind, path, link_target) {
                (T::Directory, Some(path), _) => self.dir(&path)?,
                (T::Directory, None, _) => {}
                (T::Regular | T::Continuous | T::GNUSparse, Some(path), _) => {
                    self.file(&path, &mut entry, executable)?;
                }
                (T::Symlink, Some(path), Some(target)) => self.symlink(path, target)?,
                (T::Link, Some(path), Some(target)) => self.hardlink(&path, &target)?,
                (T::Char | T::Block | T::Fifo, _, _) => {
                    return Err(self.errs.unsafe_(format!(
                        "`{name}` is a device or FIFO, which archives may not install"
                    )));
                }
                _ => {
                    return Err(self.errs.invalid(format!(
                        "`{name}` has an unsupported tar entry type ({:?})",
                        kind
                    )));
                }
            }
        }
        Ok(())
    }

    fn zip(&mut self, file: File) -> Result<(), ArtifactError> {
        let errs = self.errs;
        let invalid = |e: zip::result::ZipError| errs.invalid(format!("bad zip: {e}"));
        let mut archive = zip::ZipArchive::new(file).map_err(invalid)?;
        if archive.len() as u64 > self.limits.max_entries {
            return Err(self.errs.too_large(format!(
                "{} entries, more than max_entries ({})",
                archive.len(),
                self.limits.max_entries
            )));
        }
        for index in 0..archive.len() {
            let mut entry = archive.by_index(index).map_err(invalid)?;
            self.count_entry()?;
            let name = entry.name().map_err(invalid)?.into_owned();
            let path = self.clean(&name)?;
            let mode = entry.unix_mode().unwrap_or(0);
            let Some(path) = path else { continue };
            if entry.is_dir() {
                self.dir(&path)?;
                continue;
            }
            match mode & 0o170000 {
                0 | 0o100000 => self.file(&path, &mut entry, mode & 0o111 != 0)?,
                0o120000 => {
                    let mut target = Vec::new();
                    let read = (&mut entry).take(MAX_LINK_TARGET).read_to_end(&mut target);
                    read.map_err(|e| self.errs.invalid(format!("reading `{name}`: {e}")))?;
                    let target = utf8(&self.errs, &target)?;
                    self.symlink(path, target)?;
                }
                _ => {
                    return Err(self.errs.unsafe_(format!(
                        "`{name}` is a device, FIFO or socket, which archives may not install"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
