//! Installing a blob into a destination directory, all or nothing.
//!
//! Everything is first written to a sibling staging directory
//! `<dest>.partial-<n>/new`, on the same filesystem as `dest`, so the final
//! step is a few renames. Top-level entries that already exist in `dest` are
//! replaced (moved to `<dest>.partial-<n>/old` until the end, and moved back
//! if a later rename fails); other entries of `dest` are left alone.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::Limits;
use super::error::{ArtifactError, Errs};
use super::extract::set_executable;
use super::unpack::{self, Format, Outcome};
use super::verify::sync_dir;

/// How a blob becomes files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A plain file installed under this name.
    File(String),
    Archive(Format),
}

pub(crate) fn install(
    uri: &str,
    blob: &Path,
    dest: &Path,
    layout: &Layout,
    limits: &Limits,
) -> Result<Outcome, ArtifactError> {
    let errs = Errs(uri);
    let staging = Staging::create(&errs, dest)?;
    let outcome = staging
        .fill(&errs, blob, layout, limits)
        .and_then(|outcome| {
            commit(&errs, &staging.new, &staging.old, dest)?;
            Ok(outcome)
        });
    staging.remove();
    outcome
}

struct Staging {
    dir: PathBuf,
    new: PathBuf,
    old: PathBuf,
}

impl Staging {
    /// Also clears staging directories that a crashed install left behind.
    fn create(errs: &Errs<'_>, dest: &Path) -> Result<Staging, ArtifactError> {
        let name = dest
            .file_name()
            .ok_or_else(|| errs.invalid(format!("`{}` cannot be a destination", dest.display())))?;
        let parent = match dest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .map_err(|e| errs.io(format_args!("creating {}", parent.display()), &e))?;
        let prefix = format!("{}.partial-", name.to_string_lossy());
        if let Ok(siblings) = fs::read_dir(&parent) {
            for sibling in siblings.flatten() {
                let stale = sibling.file_name().to_string_lossy().starts_with(&prefix);
                if stale && sibling.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir_all(sibling.path());
                }
            }
        }
        for n in 0u32.. {
            let dir = parent.join(format!("{prefix}{n}"));
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let staging = Staging {
                        new: dir.join("new"),
                        old: dir.join("old"),
                        dir,
                    };
                    let made =
                        fs::create_dir(&staging.new).and_then(|()| fs::create_dir(&staging.old));
                    if let Err(e) = made {
                        staging.remove();
                        return Err(errs.io(format_args!("creating {}", staging.dir.display()), &e));
                    }
                    return Ok(staging);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(errs.io(format_args!("creating {}", dir.display()), &e)),
            }
        }
        Err(errs.invalid("no free staging directory name"))
    }

    fn fill(
        &self,
        errs: &Errs<'_>,
        blob: &Path,
        layout: &Layout,
        limits: &Limits,
    ) -> Result<Outcome, ArtifactError> {
        match layout {
            Layout::Archive(format) => unpack::unpack(errs.0, *format, blob, &self.new, limits),
            Layout::File(name) => {
                let target = self.new.join(name);
                let bytes = fs::copy(blob, &target)
                    .map_err(|e| errs.io(format_args!("copying to {}", target.display()), &e))?;
                File::open(&target)
                    .and_then(|file| {
                        set_executable(&file, true)?;
                        file.sync_all()
                    })
                    .map_err(|e| errs.io(format_args!("finishing {}", target.display()), &e))?;
                Ok(Outcome {
                    files: 1,
                    bytes,
                    executables: vec![PathBuf::from(name)],
                })
            }
        }
    }

    fn remove(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Moves every top-level entry of `new` into `dest`; on failure, undoes the
/// moves made so far so `dest` is as it was.
fn commit(errs: &Errs<'_>, new: &Path, old: &Path, dest: &Path) -> Result<(), ArtifactError> {
    let created_dest = !dest.exists();
    fs::create_dir_all(dest)
        .map_err(|e| errs.io(format_args!("creating {}", dest.display()), &e))?;
    let mut names: Vec<OsString> = fs::read_dir(new)
        .and_then(|listing| listing.map(|item| item.map(|i| i.file_name())).collect())
        .map_err(|e| errs.io(format_args!("listing {}", new.display()), &e))?;
    names.sort();
    let mut moved: Vec<(OsString, bool)> = Vec::new();
    for name in names {
        let target = dest.join(&name);
        let existed = fs::symlink_metadata(&target).is_ok();
        let step = (|| {
            if existed {
                fs::rename(&target, old.join(&name))?;
            }
            fs::rename(new.join(&name), &target).inspect_err(|_| {
                if existed {
                    let _ = fs::rename(old.join(&name), &target);
                }
            })
        })();
        if let Err(e) = step {
            rollback(&moved, old, dest, created_dest);
            return Err(errs.io(format_args!("moving into {}", target.display()), &e));
        }
        moved.push((name, existed));
    }
    sync_dir(dest);
    Ok(())
}

fn rollback(moved: &[(OsString, bool)], old: &Path, dest: &Path, created_dest: bool) {
    for (name, existed) in moved.iter().rev() {
        let target = dest.join(name);
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => {
                let _ = fs::remove_dir_all(&target);
            }
            _ => {
                let _ = fs::remove_file(&target);
            }
        }
        if *existed {
            let _ = fs::rename(old.join(name), &target);
        }
    }
    if created_dest {
        let _ = fs::remove_dir(dest);
    }
}

/// The name a plain-file artifact is installed under, refused if it could
/// name anything but one file inside `dest`.
pub(crate) fn file_name(uri: &str, segment: Option<String>) -> Result<String, ArtifactError> {
    match segment {
        Some(name) if name != "." && name != ".." && !name.contains(['/', '\\', '\0']) => Ok(name),
        _ => Err(Errs(uri).invalid(
            "the URI has no file name in its last path segment to install the file under",
        )),
    }
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
