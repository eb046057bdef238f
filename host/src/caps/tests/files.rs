//! `[grants.files]` through the bench: the grant's validation, and the
//! directories the bench instance's WASI context opens (the ones granted, at
//! the same path, read-only or writable as granted; nothing without the grant).

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, HostDescriptor as _, OpenFlags, PathFlags,
};

use crate::caps::bench::{Bench, grants_of};

/// The bench instance's `wasi:filesystem` view.
fn filesystem(bench: &mut Bench) -> WasiFilesystemCtxView<'_> {
    let wasi = bench.caps.wasi();
    WasiFilesystemCtxView {
        ctx: wasi.ctx.filesystem(),
        table: wasi.table,
    }
}

/// The preopened directories, by guest path.
fn preopens(bench: &mut Bench) -> Vec<(Resource<Descriptor>, String)> {
    filesystem(bench).get_directories().unwrap()
}

fn path(dir: &tempfile::TempDir) -> String {
    dir.path().to_str().unwrap().to_string()
}

async fn flags(bench: &mut Bench, dir: &Resource<Descriptor>) -> DescriptorFlags {
    let dir = Resource::new_borrow(dir.rep());
    filesystem(bench).get_flags(dir).await.unwrap()
}

/// Creates `name` in the preopened directory `dir`.
async fn create(
    bench: &mut Bench,
    dir: &Resource<Descriptor>,
    name: &str,
) -> Result<(), ErrorCode> {
    let mut view = filesystem(bench);
    let file = view
        .open_at(
            Resource::new_borrow(dir.rep()),
            PathFlags::empty(),
            name.into(),
            OpenFlags::CREATE,
            DescriptorFlags::READ | DescriptorFlags::WRITE,
        )
        .await
        .map_err(|err| err.downcast().expect("a filesystem error code"))?;
    view.drop(file).unwrap();
    Ok(())
}

#[tokio::test]
async fn granted_directories_are_opened_at_their_own_path() {
    let (read, write) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let grant = format!(
        "[grants.files]\nread = [\"{}\", \"/nonexistent/cairn-files\"]\nwrite = [\"{}\"]",
        path(&read),
        path(&write)
    );
    let mut bench = Bench::new(&grant);
    let dirs = preopens(&mut bench);
    let names: Vec<&str> = dirs.iter().map(|(_, name)| name.as_str()).collect();
    // A directory that cannot be opened is left out.
    assert_eq!(names, [path(&read), path(&write)]);

    let (read_dir, write_dir) = (&dirs[0].0, &dirs[1].0);
    let read_flags = flags(&mut bench, read_dir).await;
    assert!(read_flags.contains(DescriptorFlags::READ));
    assert!(!read_flags.contains(DescriptorFlags::MUTATE_DIRECTORY));
    let write_flags = flags(&mut bench, write_dir).await;
    assert!(write_flags.contains(DescriptorFlags::MUTATE_DIRECTORY));

    assert_eq!(create(&mut bench, write_dir, "made").await, Ok(()));
    assert!(write.path().join("made").is_file());
    let refused = create(&mut bench, read_dir, "made").await;
    assert_eq!(refused, Err(ErrorCode::NotPermitted));
    assert!(!read.path().join("made").exists());
    // Nothing outside the granted directory is reachable from it.
    let escape = create(&mut bench, write_dir, "../escaped").await;
    assert_eq!(escape, Err(ErrorCode::NotPermitted));
}

#[tokio::test]
async fn without_the_grant_there_is_no_filesystem() {
    let mut bench = Bench::new("");
    assert!(preopens(&mut bench).is_empty());
}

#[test]
fn directories_must_be_absolute_plain_and_not_the_root() {
    assert!(grants_of("[grants.files]\nread = [\"/etc/cairn\"]").is_ok());
    assert!(grants_of("[grants.files]\nwrite = [\"/var/lib/cairn/data\"]").is_ok());
    for (table, needle) in [
        (
            "read = [\"etc/cairn\"]",
            "`etc/cairn` is not an absolute path",
        ),
        (
            "read = [\"/etc/../root\"]",
            "`/etc/../root` contains `.` or `..`",
        ),
        ("write = [\"./data\"]", "`./data` is not an absolute path"),
        (
            "write = [\"/\"]",
            "granting `/` would expose the whole filesystem",
        ),
        (
            "read = [\"/etc\", \"relative\"]",
            "`relative` is not an absolute path",
        ),
        (
            "",
            "grants no directory: list some under `read`, `write` or `private`",
        ),
        ("read = []\nwrite = []", "grants no directory"),
        ("read = [\"/etc\"]\nexec = [\"/bin\"]", "exec"),
    ] {
        let err = grants_of(&format!("[grants.files]\n{table}"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("[grants.files]"), "{table}: {err}");
        assert!(err.contains(needle), "{table}: {err}");
    }
}
