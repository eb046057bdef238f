use std::fs;

use super::*;
use crate::artifact::ArtifactErrorKind;
use crate::artifact::test_support::{TarItem, ZipItem, gzip, listing, tar, write, zip};

/// Unpacks `bytes` as `format` into a fresh root; returns the root's tempdir.
fn unpack_bytes(
    format: Format,
    bytes: &[u8],
    limits: &Limits,
) -> (tempfile::TempDir, Result<Outcome, ArtifactError>) {
    let dir = tempfile::tempdir().unwrap();
    let archive = write(&dir.path().join("archive"), bytes);
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let result = unpack("https://h/a", format, &archive, &root, limits);
    (dir, result)
}

fn refused(format: Format, bytes: &[u8]) -> ArtifactError {
    let (_dir, result) = unpack_bytes(format, bytes, &Limits::default());
    result.expect_err("the archive should be refused")
}

#[test]
fn good_tar_gz_unpacks_with_contents_and_modes() {
    let archive = gzip(&tar(&[
        TarItem::Dir("tool/"),
        TarItem::File("tool/bin/run", b"#!/bin/sh\necho hi\n", 0o755),
        TarItem::File("tool/README", b"read me", 0o644),
        TarItem::Symlink("tool/latest", "bin/run"),
        TarItem::Hardlink("tool/README.copy", "tool/README"),
    ]));
    let (dir, result) = unpack_bytes(Format::TarGz, &archive, &Limits::default());
    let outcome = result.unwrap();
    let root = dir.path().join("root");
    assert_eq!(outcome.files, 3);
    assert_eq!(outcome.bytes, 18 + 7 + 7);
    assert_eq!(outcome.executables, vec![PathBuf::from("tool/bin/run")]);
    assert_eq!(fs::read(root.join("tool/README.copy")).unwrap(), b"read me");
    assert_eq!(
        fs::read(root.join("tool/latest")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        fs::read_link(root.join("tool/latest")).unwrap(),
        PathBuf::from("bin/run")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("tool/bin/run"), 0o755);
        assert_eq!(mode("tool/README"), 0o644);
    }
}

#[test]
fn good_zip_unpacks_with_contents_and_modes() {
    let archive = zip(&[
        ZipItem::Dir("app/"),
        ZipItem::File("app/server", b"binary", 0o755),
        ZipItem::File("app/conf/app.toml", b"port = 1", 0o644),
        ZipItem::Symlink("app/current", "server"),
    ]);
    let (dir, result) = unpack_bytes(Format::Zip, &archive, &Limits::default());
    let outcome = result.unwrap();
    let root = dir.path().join("root");
    assert_eq!(outcome.files, 2);
    assert_eq!(outcome.executables, vec![PathBuf::from("app/server")]);
    assert_eq!(
        listing(&root),
        vec![
            "app",
            "app/conf",
            "app/conf/app.toml",
            "app/current",
            "app/server"
        ]
    );
    assert_eq!(
        fs::read(root.join("app/conf/app.toml")).unwrap(),
        b"port = 1"
    );
    assert_eq!(
        fs::read_link(root.join("app/current")).unwrap(),
        PathBuf::from("server")
    );
}

#[test]
fn zip_slip_is_refused() {
    let err = refused(Format::Zip, &zip(&[ZipItem::File("../evil", b"x", 0o644)]));
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    assert!(err.message.contains("../evil"), "{err}");
    let err = refused(
        Format::Zip,
        &zip(&[ZipItem::File("a\\..\\..\\evil", b"x", 0o644)]),
    );
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    let err = refused(
        Format::Tar,
        &tar(&[TarItem::File("ok/../../evil", b"x", 0o644)]),
    );
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
}

#[test]
fn absolute_paths_are_refused() {
    let err = refused(
        Format::Tar,
        &tar(&[TarItem::File("/etc/passwd", b"x", 0o644)]),
    );
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    assert!(err.message.contains("absolute"), "{err}");
    let err = refused(
        Format::Zip,
        &zip(&[ZipItem::File("/tmp/evil", b"x", 0o644)]),
    );
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
}

#[test]
fn escaping_symlinks_are_refused() {
    for target in ["/etc", "..", "../../outside", "a/../../x"] {
        let err = refused(Format::Tar, &tar(&[TarItem::Symlink("link", target)]));
        assert_eq!(err.kind, ArtifactErrorKind::Unsafe, "{target}");
    }
    // A link, then a file written "through" it: the link is refused first.
    let err = refused(
        Format::Tar,
        &tar(&[
            TarItem::Symlink("out", "../x"),
            TarItem::File("out/f", b"x", 0o644),
        ]),
    );
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    // Chained: each target looks inside alone.
    let err = refused(
        Format::Tar,
        &tar(&[
            TarItem::Symlink("d/s", ".."),
            TarItem::Symlink("d/t", "s/.."),
        ]),
    );
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    let err = refused(Format::Zip, &zip(&[ZipItem::Symlink("l", "../../etc")]));
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
}

#[test]
fn a_file_written_through_an_inside_link_is_a_conflict_not_an_escape() {
    let (dir, result) = unpack_bytes(
        Format::Tar,
        &tar(&[
            TarItem::Symlink("l", "sub"),
            TarItem::File("l/f", b"x", 0o644),
        ]),
        &Limits::default(),
    );
    assert!(result.is_err());
    assert!(!dir.path().join("root/sub").exists());
}

#[test]
fn devices_and_foreign_hardlinks_are_refused() {
    let err = refused(Format::Tar, &tar(&[TarItem::Fifo("pipe")]));
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    let err = refused(Format::Tar, &tar(&[TarItem::Hardlink("h", "/etc/shadow")]));
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
    let err = refused(
        Format::Tar,
        &tar(&[TarItem::Hardlink("h", "not-in-archive")]),
    );
    assert_eq!(err.kind, ArtifactErrorKind::Unsafe);
}

#[test]
fn zip_bomb_is_refused_by_ratio() {
    let zeros = vec![0u8; 4 << 20];
    let archive = zip(&[ZipItem::File("zeros", &zeros, 0o644)]);
    assert!(archive.len() < 20_000, "{} bytes", archive.len());
    let err = refused(Format::Zip, &archive);
    assert_eq!(err.kind, ArtifactErrorKind::TooLarge);
    assert!(err.message.contains("bomb"), "{err}");
}

#[test]
fn unpacked_size_and_entry_limits_apply() {
    let limits = Limits {
        max_unpacked_bytes: 1000,
        ..Limits::default()
    };
    let big = vec![7u8; 600];
    let archive = tar(&[
        TarItem::File("a", &big, 0o644),
        TarItem::File("b", &big, 0o644),
    ]);
    let (_dir, result) = unpack_bytes(Format::Tar, &archive, &limits);
    assert_eq!(result.unwrap_err().kind, ArtifactErrorKind::TooLarge);

    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let items = [TarItem::Dir("a/"), TarItem::Dir("b/"), TarItem::Dir("c/")];
    let (_dir, result) = unpack_bytes(Format::Tar, &tar(&items), &limits);
    assert_eq!(result.unwrap_err().kind, ArtifactErrorKind::TooLarge);
    let items = [ZipItem::Dir("a/"), ZipItem::Dir("b/"), ZipItem::Dir("c/")];
    let (_dir, result) = unpack_bytes(Format::Zip, &zip(&items), &limits);
    assert_eq!(result.unwrap_err().kind, ArtifactErrorKind::TooLarge);
}

#[test]
fn garbage_is_invalid() {
    for format in [Format::Tar, Format::TarGz, Format::Zip] {
        let err = refused(format, &[0x42; 2000]);
        assert_eq!(err.kind, ArtifactErrorKind::Invalid, "{format:?}: {err}");
    }
}

#[test]
fn a_huge_tar_header_is_refused_before_it_is_buffered() {
    let mut builder = tar::Builder::new(Vec::new());
    let name = vec![b'a'; 3 << 20];
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(name.len() as u64);
    header.set_cksum();
    builder.append(&header, &name[..]).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_path("short").unwrap();
    header.set_size(1);
    header.set_cksum();
    builder.append(&header, &b"x"[..]).unwrap();
    let archive = gzip(&builder.into_inner().unwrap());
    let err = refused(Format::TarGz, &archive);
    assert_eq!(err.kind, ArtifactErrorKind::TooLarge, "{err}");
}
