//! Errors of the policy module, and the byte-offset to line:column mapping
//! used to point an operator at the offending spot of a policy file.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a policy file could not be loaded or used.
///
/// `Display` renders `FILE:LINE:COL: message` (or `FILE: message` when there
/// is no useful position); `FILE` is `<policy>` for text parsed without a path.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file (or directory) could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid TOML.
    #[error("{}: invalid TOML: {msg}", at(.file.as_deref(), Some(*.line), Some(*.col)))]
    Syntax {
        file: Option<PathBuf>,
        line: usize,
        col: usize,
        msg: String,
    },

    /// A key that the policy format does not define (`section` is e.g.
    /// `[limits]` or `top level`).
    #[error(
        "{}: unknown key `{key}` in {section} (allowed: {})",
        at(.file.as_deref(), Some(*.line), Some(*.col)),
        .allowed.join(", ")
    )]
    UnknownKey {
        file: Option<PathBuf>,
        line: usize,
        col: usize,
        section: String,
        key: String,
        allowed: Vec<String>,
    },

    /// A value that is present but wrong (type, range, format), or a missing
    /// required key or section.
    #[error("{}: {msg}", at(.file.as_deref(), *.line, *.col))]
    Invalid {
        file: Option<PathBuf>,
        line: Option<usize>,
        col: Option<usize>,
        msg: String,
    },

    /// A `[grants.NAME]` table that does not fit the capability's grant type
    /// (from [`GrantSlice::parse`](super::GrantSlice::parse)).
    #[error(
        "{}: in [grants.{grant}]{}: {msg}",
        at(.file.as_deref(), Some(*.line), Some(*.col)),
        key_part(.key)
    )]
    Grant {
        file: Option<PathBuf>,
        line: usize,
        col: usize,
        grant: String,
        /// The grant's key the problem is in, when it can be told.
        key: Option<String>,
        msg: String,
    },

    /// `load_for`: there is no `<dir>/<plugin>.toml`.
    #[error("no policy for plugin `{plugin}`: {} does not exist", dir.join(format!("{plugin}.toml")).display())]
    NotFound { dir: PathBuf, plugin: String },

    /// The `[plugin] name` differs from the file name's stem.
    #[error(
        "{}: plugin name `{name}` does not match the file name (expected `{stem}`, the file must be named `<name>.toml`)",
        at(Some(.file.as_path()), Some(*.line), Some(*.col))
    )]
    NameMismatch {
        file: PathBuf,
        line: usize,
        col: usize,
        name: String,
        stem: String,
    },
}

impl PolicyError {
    /// The policy file the error is about, when known.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PolicyError::Io { path, .. } => Some(path),
            PolicyError::Syntax { file, .. }
            | PolicyError::UnknownKey { file, .. }
            | PolicyError::Invalid { file, .. }
            | PolicyError::Grant { file, .. } => file.as_deref(),
            PolicyError::NameMismatch { file, .. } => Some(file),
            PolicyError::NotFound { .. } => None,
        }
    }

    /// The 1-based line the error points at, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Syntax { line, .. }
            | PolicyError::UnknownKey { line, .. }
            | PolicyError::Grant { line, .. }
            | PolicyError::NameMismatch { line, .. } => Some(*line),
            PolicyError::Invalid { line, .. } => *line,
            PolicyError::Io { .. } | PolicyError::NotFound { .. } => None,
        }
    }
}

fn at(file: Option<&Path>, line: Option<usize>, col: Option<usize>) -> String {
    let name = match file {
        Some(f) => f.display().to_string(),
        None => "<policy>".to_string(),
    };
    match (line, col) {
        (Some(l), Some(c)) => format!("{name}:{l}:{c}"),
        (Some(l), None) => format!("{name}:{l}"),
        _ => name,
    }
}

fn key_part(key: &Option<String>) -> String {
    match key {
        Some(k) => format!(", key `{k}`"),
        None => String::new(),
    }
}

/// Why a topic, topic pattern, plugin name or name pattern is malformed.
/// `what` names the kind of input ("topic pattern", "topic", ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error(
        "{what} {input:?} has an empty level (levels are separated by a single '/', with none leading or trailing)"
    )]
    EmptyLevel { what: &'static str, input: String },
    #[error("{what} {input:?}: '#' must be the last level")]
    HashNotLast { what: &'static str, input: String },
    #[error("{what} {input:?}: '#' must be a whole level (like \"a/#\", not \"a#\")")]
    HashInLevel { what: &'static str, input: String },
    #[error("{what} {input:?}: '+' must be a whole level (like \"a/+/b\", not \"a+/b\")")]
    PlusInLevel { what: &'static str, input: String },
    #[error("topic {input:?} contains the wildcard '{ch}'; wildcards are only allowed in patterns")]
    WildcardInTopic { input: String, ch: char },
    #[error("{what} {input:?} contains a control character at byte {index}")]
    ControlChar {
        what: &'static str,
        input: String,
        index: usize,
    },
    #[error("{what} is {len} bytes long; the maximum is {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} has {levels} levels; the maximum is {max}")]
    TooManyLevels {
        what: &'static str,
        levels: usize,
        max: usize,
    },
    #[error("{what} {input:?}: '{{' and '}}' are only allowed in the placeholder {{device}}")]
    BadPlaceholder { what: &'static str, input: String },
    #[error("{what} {input:?}: character {ch:?} is not allowed ({allowed})")]
    InvalidChar {
        what: &'static str,
        input: String,
        ch: char,
        allowed: &'static str,
    },
    #[error("{what} {input:?}: {reason}")]
    Invalid {
        what: &'static str,
        input: String,
        reason: &'static str,
    },
}

/// The text of a policy file and its path, to turn byte spans into positions.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub file: Option<&'a Path>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str, file: Option<&'a Path>) -> Self {
        Source { text, file }
    }

    pub fn file(&self) -> Option<PathBuf> {
        self.file.map(Path::to_path_buf)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// An [`PolicyError::Invalid`] pointing at `span`.
    pub fn invalid(&self, span: Option<Range<usize>>, msg: impl Into<String>) -> PolicyError {
        let pos = span.map(|s| self.position(s.start));
        PolicyError::Invalid {
            file: self.file(),
            line: pos.map(|p| p.0),
            col: pos.map(|p| p.1),
            msg: msg.into(),
        }
    }

    pub fn unknown_key(
        &self,
        span: Range<usize>,
        section: &str,
        key: &str,
        allowed: &[&str],
    ) -> PolicyError {
        let (line, col) = self.position(span.start);
        PolicyError::UnknownKey {
            file: self.file(),
            line,
            col,
            section: section.to_string(),
            key: key.to_string(),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn syntax(&self, err: &toml::de::Error) -> PolicyError {
        let (line, col) = self.position(err.span().map_or(0, |s| s.start));
        let msg = err.message().trim().replace('\n', "; ");
        PolicyError::Syntax {
            file: self.file(),
            line,
            col,
            msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_in_characters() {
        let src = Source::new("ab\ncd\né=x\n", None);
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(1), (1, 2));
        assert_eq!(src.position(3), (2, 1));
        assert_eq!(src.position(6), (3, 1));
        // 'é' is two bytes: '=' is the second character of line 3.
        assert_eq!(src.position(8), (3, 2));
        // Offsets inside a character or past the end are clamped.
        assert_eq!(src.position(7), (3, 1));
        assert_eq!(src.position(999), (4, 1));
    }

    #[test]
    fn display_formats() {
        let e = PolicyError::Invalid {
            file: Some(PathBuf::from("p/a.toml")),
            line: Some(3),
            col: Some(5),
            msg: "bad".into(),
        };
        assert_eq!(e.to_string(), "p/a.toml:3:5: bad");
        assert_eq!(e.line(), Some(3));
        assert_eq!(e.file(), Some(Path::new("p/a.toml")));
        let e = PolicyError::Invalid {
            file: None,
            line: None,
            col: None,
            msg: "missing".into(),
        };
        assert_eq!(e.to_string(), "<policy>: missing");
        let e = PolicyError::UnknownKey {
            file: None,
            line: 2,
            col: 1,
            section: "[limits]".into(),
            key: "foo".into(),
            allowed: vec!["memory".into(), "soak".into()],
        };
        assert_eq!(
            e.to_string(),
            "<policy>:2:1: unknown key `foo` in [limits] (allowed: memory, soak)"
        );
        let e = PolicyError::Grant {
            file: Some(PathBuf::from("x.toml")),
            line: 9,
            col: 1,
            grant: "kv".into(),
            key: Some("quota".into()),
            msg: "invalid".into(),
        };
        assert_eq!(
            e.to_string(),
            "x.toml:9:1: in [grants.kv], key `quota`: invalid"
        );
        let e = PolicyError::NotFound {
            dir: PathBuf::from("/etc/cairn/policies"),
            plugin: "echo".into(),
        };
        assert_eq!(
            e.to_string(),
            "no policy for plugin `echo`: /etc/cairn/policies/echo.toml does not exist"
        );
    }

    #[test]
    fn pattern_errors_read_well() {
        let e = PatternError::EmptyLevel {
            what: "topic pattern",
            input: "a//b".into(),
        };
        assert!(
            e.to_string()
                .starts_with("topic pattern \"a//b\" has an empty level")
        );
        let e = PatternError::ControlChar {
            what: "topic",
            input: "a\0".into(),
            index: 1,
        };
        assert_eq!(
            e.to_string(),
            "topic \"a\\0\" contains a control character at byte 1"
        );
    }
}
