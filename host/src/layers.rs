//! The host's layers depend on each other in one direction only
//! (`contract ← caps ← runtime ← kernel ← admin, daemon, cli`); this test
//! reads the sources and fails on an import against that direction.

use std::path::{Path, PathBuf};

/// Each layer and the modules it must never name.
const RULES: &[(&str, &[&str])] = &[
    (
        "contract",
        &["caps", "runtime", "kernel", "admin", "daemon", "cli"],
    ),
    ("caps", &["runtime", "kernel", "admin", "daemon", "cli"]),
    ("runtime", &["kernel", "admin", "daemon", "cli"]),
    ("kernel", &["admin", "daemon", "cli"]),
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_layer_imports_a_layer_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, forbidden) in RULES {
        let mut files = Vec::new();
        sources(&root.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources under src/{layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (number, line) in text.lines().enumerate() {
                for module in *forbidden {
                    if line.contains(&format!("crate::{module}::"))
                        || line.contains(&format!("crate::{module};"))
                        || line.contains(&format!("crate::{module}}}"))
                    {
                        violations.push(format!(
                            "{}:{}: {}",
                            file.display(),
                            number + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}
