//! Tests of parsing and loading whole policy files.

mod files;
mod grants;
mod sections;

use std::path::Path;

use super::*;

pub(super) const FULL: &str = r#"# The counter plugin.
[plugin]
name = "counter"
signers = ["dev", "release"]
description = "Counts things"

[limits]
memory = "64MiB"
call-timeout = "250ms"
restart-backoff = "2s"
restart-backoff-max = "2m"
soak = "45s"
soak-max-faults = 5

[config]
greeting = "hi"
count = 3
ratio = 0.5
on = true
when = 1979-05-27T07:32:00Z
list = [1, "two"]
nested = { deep = { x = 1 } }

[grants.log]

[grants.kv]
quota = "64KiB"

[grants.events]
publish = ["counter/#"]
subscribe = ["sensors/+/temp"]
"#;

pub(super) fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Some(Path::new("counter.toml")))
}

pub(super) fn err(text: &str) -> PolicyError {
    match parse(text) {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e,
    }
}

pub(super) const HEAD: &str = "[plugin]\nname = \"counter\"\nsigners = [\"dev\"]\n";

/// A minimal valid policy followed by `extra`.
pub(super) fn with(extra: &str) -> String {
    format!("{HEAD}{extra}")
}

pub(super) fn position(e: &PolicyError) -> (usize, usize) {
    match e {
        PolicyError::Syntax { line, col, .. }
        | PolicyError::UnknownKey { line, col, .. }
        | PolicyError::Grant { line, col, .. }
        | PolicyError::NameMismatch { line, col, .. } => (*line, *col),
        PolicyError::Invalid { line, col, .. } => (line.unwrap_or(0), col.unwrap_or(0)),
        other => panic!("no position in {other:?}"),
    }
}

pub(super) fn invalid(text: &str) -> (String, (usize, usize)) {
    match err(text) {
        e @ PolicyError::Invalid { .. } => (e.to_string(), position(&e)),
        other => panic!("{text}: expected Invalid, got {other:?}"),
    }
}
