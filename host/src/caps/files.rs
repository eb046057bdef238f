//! `[grants.files]`: host directories a plugin may reach through the standard
//! `wasi:filesystem` interface, each mounted at the same path inside the plugin.
//!
//! Without the grant a plugin sees no filesystem at all. `read` directories are
//! opened read-only; `write` directories may be changed. Nothing outside a
//! granted directory is reachable from it (cap-std resolves every path beneath
//! the opened directory, symlinks included).

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use wasmtime::component::Linker;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::{Capability, CapsData, HostSetup, InstanceSetup};

pub struct Files;

/// `[grants.files]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesGrant {
    /// Directories the plugin may read.
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Directories the plugin may read and change.
    #[serde(default)]
    pub write: Vec<PathBuf>,
}

impl Capability for Files {
    const NAME: &'static str = "files";
    const INTERFACES: &'static [&'static str] = &["wasi:filesystem/"];
    type Grant = FilesGrant;
    type Shared = ();
    type Local = ();

    fn validate(grant: &FilesGrant) -> Result<(), String> {
        if grant.read.is_empty() && grant.write.is_empty() {
            return Err("grants no directory: list some under `read` or `write`".into());
        }
        for dir in grant.read.iter().chain(&grant.write) {
            check_dir(dir)?;
        }
        Ok(())
    }

    /// `wasi:filesystem` is linked with the rest of WASI (see `wasi.rs`); the
    /// grant decides which directories an instance starts with.
    fn add_to_linker<T: CapsData>(_: &mut Linker<T>) -> wasmtime::Result<()> {
        Ok(())
    }

    fn build(_: &HostSetup) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare(_: &(), grant: Option<&FilesGrant>, instance: &mut InstanceSetup<'_>) {
        preopen(instance.wasi, &instance.ctx.plugin, grant);
    }
}

fn check_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    if !dir.is_absolute() {
        return Err(format!("`{shown}` is not an absolute path"));
    }
    if dir
        .components()
        .any(|part| matches!(part, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("`{shown}` contains `.` or `..`"));
    }
    if dir.parent().is_none() {
        return Err("granting `/` would expose the whole filesystem".into());
    }
    if dir.to_str().is_none() {
        return Err(format!("`{shown}` is not valid UTF-8"));
    }
    Ok(())
}

/// Opens the granted directories in a new instance's WASI context. A directory
/// that cannot be opened (it does not exist yet, say) is left out with a warning:
/// the plugin then gets `not found` for paths under it.
fn preopen(builder: &mut WasiCtxBuilder, plugin: &str, grant: Option<&FilesGrant>) {
    let Some(grant) = grant else {
        return;
    };
    let writable = grant.write.iter().map(|dir| (dir, true));
    for (dir, write) in grant.read.iter().map(|dir| (dir, false)).chain(writable) {
        let perms = if write {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        let guest_path = dir.to_string_lossy();
        if let Err(err) = builder.preopened_dir(dir, &*guest_path, perms) {
            tracing::warn!(
                plugin,
                "granted directory {} cannot be opened: {err:#}",
                dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> Result<FilesGrant, String> {
        let grant: FilesGrant = toml::from_str(text).map_err(|err| err.to_string())?;
        Files::validate(&grant).map(|()| grant)
    }

    #[test]
    fn directories_must_be_absolute_plain_and_not_the_root() {
        assert!(grant(r#"read = ["/etc/cairn"]"#).is_ok());
        assert!(grant(r#"write = ["/var/lib/cairn/data"]"#).is_ok());
        for bad in [
            r#"read = ["etc"]"#,
            r#"read = ["/etc/../root"]"#,
            r#"write = ["/"]"#,
            "",
            r#"read = ["/etc"]
other = 1"#,
        ] {
            assert!(grant(bad).is_err(), "accepted {bad:?}");
        }
    }
}
