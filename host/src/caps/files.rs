//! `[grants.files]`: host directories a plugin may reach through the standard
//! `wasi:filesystem` interface, each mounted at the same path inside the plugin.
//!
//! Without the grant a plugin sees no filesystem at all. `read` directories are
//! opened read-only; `write` directories may be changed; `private` directories
//! too, and the host keeps them at mode 0700 owned by the daemon, because WASI
//! cannot set file modes and a plugin's secrets must not be readable by others.
//! Nothing outside a granted directory is reachable from it (cap-std resolves
//! every path beneath the opened directory, symlinks included).

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
    /// Directories the plugin may read and change that only the daemon's user
    /// may enter: created (mode 0700) when missing, tightened when looser.
    #[serde(default)]
    pub private: Vec<PathBuf>,
}

impl Capability for Files {
    const NAME: &'static str = "files";
    const INTERFACES: &'static [&'static str] = &["wasi:filesystem/"];
    type Grant = FilesGrant;
    type Shared = ();
    type Local = ();

    fn validate(grant: &FilesGrant) -> Result<(), String> {
        if grant.read.is_empty() && grant.write.is_empty() && grant.private.is_empty() {
            return Err("grants no directory: list some under `read`, `write` or `private`".into());
        }
        for dir in grant.read.iter().chain(&grant.write).chain(&grant.private) {
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
    let private = grant.private.iter().filter(|dir| match make_private(dir) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(
                plugin,
                "private directory {} is left out: {err}",
                dir.display()
            );
            false
        }
    });
    let writable = grant.write.iter().chain(private).map(|dir| (dir, true));
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

/// Creates `dir` (mode 0700) if missing; refuses one that is not a directory
/// owned by the daemon's user, and removes group and other access from one
/// that has it.
fn make_private(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    match std::fs::symlink_metadata(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| format!("cannot create it: {err}")),
        Err(err) => Err(err.to_string()),
        Ok(meta) if !meta.is_dir() => Err("it is not a directory".into()),
        // SAFETY: geteuid has no preconditions.
        Ok(meta) if meta.uid() != unsafe { libc::geteuid() } => Err(format!(
            "it belongs to uid {}, not the daemon's",
            meta.uid()
        )),
        Ok(meta) if meta.mode() & 0o077 != 0 => {
            tracing::info!(dir = %dir.display(), "removing group and other access from a private directory");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|err| format!("cannot make it private: {err}"))
        }
        Ok(_) => Ok(()),
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
        assert!(grant(r#"private = ["/var/lib/cairn/secrets"]"#).is_ok());
        assert!(grant(r#"private = ["relative"]"#).is_err());
    }

    #[test]
    fn private_directories_are_created_or_tightened_to_0700() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let mode = |dir: &Path| std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        let fresh = root.path().join("a/b/secrets");
        make_private(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let loose = root.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);

        let file = root.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(make_private(&file).unwrap_err().contains("not a directory"));
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&loose, &link).unwrap();
        assert!(make_private(&link).unwrap_err().contains("not a directory"));
    }
}
