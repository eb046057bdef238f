//! Loading files and directories.

use super::grants::KvGrant;
use super::*;

#[test]
fn files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("counter.toml"), FULL).unwrap();
    std::fs::write(
        d.join("echo.toml"),
        "[plugin]\nname = \"other\"\nsigners = [\"dev\"]\n",
    )
    .unwrap();
    std::fs::write(d.join("broken.toml"), "[plugin\n").unwrap();
    std::fs::write(d.join("notes.txt"), "not a policy").unwrap();
    std::fs::create_dir(d.join("sub.toml")).unwrap();

    let p = Policy::load(&d.join("counter.toml")).unwrap();
    assert_eq!(p.path.as_deref(), Some(d.join("counter.toml").as_path()));
    assert_eq!(
        p.grant("kv").unwrap().parse::<KvGrant>().unwrap().quota,
        64 << 10
    );
    assert_eq!(Policy::load_for(d, "counter").unwrap(), p);

    // load() accepts any file name; load_for and load_dir do not.
    assert_eq!(
        Policy::load(&d.join("echo.toml")).unwrap().plugin.name,
        "other"
    );
    let e = Policy::load_for(d, "echo").unwrap_err();
    assert!(
        matches!(&e, PolicyError::NameMismatch { name, stem, line: 2, col: 8, .. } if name == "other" && stem == "echo")
    );
    assert!(
        e.to_string()
            .contains("plugin name `other` does not match the file name (expected `echo`"),
        "{e}"
    );

    let e = Policy::load_for(d, "missing").unwrap_err();
    assert!(matches!(&e, PolicyError::NotFound { plugin, .. } if plugin == "missing"));
    assert!(matches!(
        Policy::load_for(d, "../etc/passwd"),
        Err(PolicyError::Invalid { .. })
    ));
    assert!(matches!(
        Policy::load(&d.join("nope.toml")),
        Err(PolicyError::Io { .. })
    ));

    let (policies, errors) = load_dir(d);
    assert_eq!(
        policies
            .iter()
            .map(|p| p.plugin.name.as_str())
            .collect::<Vec<_>>(),
        ["counter"]
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        matches!(errors[0], PolicyError::Syntax { .. }),
        "{:?}",
        errors[0]
    );
    assert!(
        errors[0]
            .to_string()
            .starts_with(&d.join("broken.toml").display().to_string())
    );
    assert!(matches!(errors[1], PolicyError::NameMismatch { .. }));

    let (policies, errors) = load_dir(&d.join("absent"));
    assert!(policies.is_empty());
    assert!(matches!(errors.as_slice(), [PolicyError::Io { .. }]));
}

#[test]
fn oversized_and_binary_files() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(
        &big,
        format!("{HEAD}# {}\n", "x".repeat(MAX_POLICY_FILE as usize)),
    )
    .unwrap();
    assert!(
        Policy::load(&big)
            .unwrap_err()
            .to_string()
            .contains("larger than 1MiB")
    );
    let bin = dir.path().join("bin.toml");
    std::fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
    assert!(
        Policy::load(&bin)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8")
    );
}
