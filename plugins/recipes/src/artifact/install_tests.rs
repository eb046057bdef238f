use super::*;
use crate::artifact::ArtifactErrorKind;
use crate::artifact::test_support::{TarItem, ZipItem, listing, tar, write, zip};

fn setup(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let blob = write(&dir.path().join("cache/blob"), bytes);
    let dest = dir.path().join("apps/tool");
    (dir, blob, dest)
}

/// Siblings of `dest`: staging directories must all be gone.
fn siblings(dest: &Path) -> Vec<String> {
    listing(dest.parent().unwrap())
        .into_iter()
        .filter(|name| !name.contains('/'))
        .collect()
}

#[test]
fn archive_is_installed_into_a_new_dest() {
    let (_dir, blob, dest) = setup(&tar(&[TarItem::File("bin/tool", b"x", 0o755)]));
    let layout = Layout::Archive(Format::Tar);
    let outcome = install("u", &blob, &dest, &layout, &Limits::default()).unwrap();
    assert_eq!(outcome.files, 1);
    assert_eq!(listing(&dest), vec!["bin", "bin/tool"]);
    assert_eq!(siblings(&dest), vec!["tool"]);
}

#[test]
fn existing_top_level_entries_are_replaced_and_others_kept() {
    let (_dir, blob, dest) = setup(&tar(&[TarItem::File("bin/new", b"new", 0o755)]));
    write(&dest.join("bin/old"), b"old");
    write(&dest.join("data/keep"), b"keep");
    let layout = Layout::Archive(Format::Tar);
    install("u", &blob, &dest, &layout, &Limits::default()).unwrap();
    assert_eq!(listing(&dest), vec!["bin", "bin/new", "data", "data/keep"]);
    assert_eq!(siblings(&dest), vec!["tool"]);
}

#[test]
fn a_refused_archive_leaves_dest_untouched() {
    let archive = zip(&[
        ZipItem::File("fine", b"fine", 0o644),
        ZipItem::File("../evil", b"evil", 0o644),
    ]);
    let (dir, blob, dest) = setup(&archive);
    write(&dest.join("existing"), b"before");
    let layout = Layout::Archive(Format::Zip);
    let err = install("u", &blob, &dest, &layout, &Limits::default()).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    assert_eq!(listing(&dest), vec!["existing"]);
    assert_eq!(siblings(&dest), vec!["tool"]);
    assert!(!dir.path().join("apps/evil").exists());
}

#[test]
fn a_bomb_leaves_no_dest_behind() {
    let zeros = vec![0u8; 2 << 20];
    let (_dir, blob, dest) = setup(&zip(&[
        ZipItem::File("a", b"small", 0o644),
        ZipItem::File("zeros", &zeros, 0o644),
    ]));
    let limits = Limits {
        max_unpacked_bytes: 1 << 20,
        ..Limits::default()
    };
    let layout = Layout::Archive(Format::Zip);
    let err = install("u", &blob, &dest, &layout, &limits).unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::TooLarge);
    assert!(!dest.exists());
    assert!(siblings(&dest).is_empty());
}

#[test]
fn plain_file_is_copied_under_its_name_and_executable() {
    let (_dir, blob, dest) = setup(b"#!/bin/sh\n");
    let layout = Layout::File("agent".into());
    let outcome = install("u", &blob, &dest, &layout, &Limits::default()).unwrap();
    assert_eq!((outcome.files, outcome.bytes), (1, 10));
    assert_eq!(outcome.executables, vec![PathBuf::from("agent")]);
    assert_eq!(fs::read(dest.join("agent")).unwrap(), b"#!/bin/sh\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dest.join("agent"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}

#[test]
fn stale_staging_dirs_are_cleared() {
    let (_dir, blob, dest) = setup(b"x");
    write(
        &dest.with_file_name("tool.partial-0").join("new/junk"),
        b"junk",
    );
    install(
        "u",
        &blob,
        &dest,
        &Layout::File("x".into()),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(siblings(&dest), vec!["tool"]);
}

#[test]
fn rollback_restores_replaced_entries() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let old = dir.path().join("old");
    write(&dest.join("a/new"), b"new");
    write(&old.join("a/orig"), b"orig");
    write(&dest.join("b"), b"new b");
    rollback(
        &[("a".into(), true), ("b".into(), false)],
        &old,
        &dest,
        false,
    );
    assert_eq!(listing(&dest), vec!["a", "a/orig"]);
}

#[test]
fn plain_file_names_must_be_one_segment() {
    assert_eq!(file_name("u", Some("tool".into())).unwrap(), "tool");
    for bad in [None, Some(".."), Some("."), Some("a\\b")] {
        let err = file_name("u", bad.map(String::from)).unwrap_err();
        assert_eq!(err.kind, ArtifactErrorKind::Invalid);
    }
}
