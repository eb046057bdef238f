//! Symbolic links from archives: checked as a whole, created last.
//!
//! A link is only refused or accepted once every link of the archive is
//! known, because escapes can be chained (`d/s -> ..`, then `d/t -> s/..`
//! reaches above the root although each target looks harmless alone). The
//! links are created after all files and directories, so no entry is ever
//! written through one.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// How many links one resolution may follow before it counts as a loop.
const MAX_HOPS: u32 = 40;

/// Why a link is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Absolute,
    Escapes,
    Loop,
}

/// A target is absolute if it starts at a root, including Windows forms.
pub(crate) fn is_absolute(target: &str) -> bool {
    target.starts_with(['/', '\\'])
        || (target.len() >= 2
            && target.as_bytes()[1] == b':'
            && target.as_bytes()[0].is_ascii_alphabetic())
}

/// Checks that every link, followed through the others, stays inside the
/// root. `links` maps link paths (relative to the root) to their targets.
pub(crate) fn check_all(links: &BTreeMap<PathBuf, String>) -> Result<(), (PathBuf, Refusal)> {
    for (link, target) in links {
        if is_absolute(target) {
            return Err((link.clone(), Refusal::Absolute));
        }
        let parent: Vec<String> = link
            .parent()
            .map(|p| {
                p.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut hops = 0;
        resolve(links, parent, target, &mut hops).map_err(|refusal| (link.clone(), refusal))?;
    }
    Ok(())
}

/// Walks `target` from the directory `stack`, following known links, and
/// returns where it ends (as components below the root).
fn resolve(
    links: &BTreeMap<PathBuf, String>,
    mut stack: Vec<String>,
    target: &str,
    hops: &mut u32,
) -> Result<Vec<String>, Refusal> {
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                stack.pop().ok_or(Refusal::Escapes)?;
            }
            name => {
                stack.push(name.to_string());
                let here: PathBuf = stack.iter().collect();
                if let Some(next) = links.get(&here) {
                    *hops += 1;
                    if *hops > MAX_HOPS {
                        return Err(Refusal::Loop);
                    }
                    if is_absolute(next) {
                        return Err(Refusal::Absolute);
                    }
                    stack.pop();
                    stack = resolve(links, stack, next, hops)?;
                }
            }
        }
    }
    Ok(stack)
}

/// Creates `link` pointing at `target` (a relative path, already checked).
#[cfg(unix)]
pub(crate) fn create(target: &str, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Creates `link` pointing at `target` (a relative path, already checked).
///
/// Stable std has no symlink call for WASI, so this goes to wasi-libc, which
/// std already links and which maps the absolute path onto the preopened
/// directory that holds it.
#[cfg(target_os = "wasi")]
pub(crate) fn create(target: &str, link: &Path) -> io::Result<()> {
    use std::ffi::{CString, c_char, c_int};

    unsafe extern "C" {
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    }
    let invalid = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    let target = CString::new(target).map_err(|_| invalid("NUL in the link target"))?;
    let link = link
        .to_str()
        .ok_or_else(|| invalid("the link path is not UTF-8"))
        .and_then(|path| CString::new(path).map_err(|_| invalid("NUL in the link path")))?;
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the
    // call, and wasi-libc's `symlink` only reads them.
    let rc = unsafe { symlink(target.as_ptr(), link.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(unix, target_os = "wasi")))]
pub(crate) fn create(_target: &str, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symbolic links are not supported on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(pairs: &[(&str, &str)]) -> BTreeMap<PathBuf, String> {
        pairs
            .iter()
            .map(|(link, target)| (PathBuf::from(link), target.to_string()))
            .collect()
    }

    #[test]
    fn links_inside_the_root_pass() {
        let ok = links(&[
            ("bin/tool", "../lib/tool-1.2"),
            ("lib/libx.so", "libx.so.1"),
            ("lib/libx.so.1", "./libx.so.1.0"),
            ("d/s", ".."),
            ("top", "d/s/lib"),
        ]);
        assert_eq!(check_all(&ok), Ok(()));
    }

    #[test]
    fn escaping_absolute_chained_and_looping_links_are_refused() {
        let check = |pairs: &[(&str, &str)]| check_all(&links(pairs)).map_err(|(_, why)| why);
        assert_eq!(check(&[("x", "/etc")]), Err(Refusal::Absolute));
        assert_eq!(check(&[("x", "C:\\Windows")]), Err(Refusal::Absolute));
        assert_eq!(check(&[("x", "..")]), Err(Refusal::Escapes));
        assert_eq!(check(&[("a/b/x", "../../../y")]), Err(Refusal::Escapes));
        // Each target looks inside alone; together `d/t` is the root's parent.
        assert_eq!(
            check(&[("d/s", ".."), ("d/t", "s/..")]),
            Err(Refusal::Escapes)
        );
        assert_eq!(check(&[("a", "b"), ("b", "a")]), Err(Refusal::Loop));
    }
}
