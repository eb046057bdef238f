//! Errors from reading labels and resolving options.
//!
//! Label errors quote the label (image metadata, public by nature). Resolve
//! errors carry values only after [`shown`] masked them: no secret value
//! ever reaches a message.

use thiserror::Error;

/// A label that cannot be read. Unlike Nanocloud, which drops a malformed
/// label and runs the image without options, Cairn refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LabelError {
    /// The label is not JSON, or its JSON has the wrong shape.
    #[error("label {label}: invalid JSON at line {line}, column {column}: {message}")]
    Json {
        /// The label's name.
        label: &'static str,
        /// The 1-based line of the problem.
        line: usize,
        /// The 1-based column of the problem.
        column: usize,
        /// What serde found wrong.
        message: String,
    },
    /// The label as a whole is malformed (e.g. a key with no option name).
    #[error("label {label}: {problem}")]
    Label {
        /// The label's name.
        label: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// One option's declaration is malformed.
    #[error("label {label}: option '{option}': {problem}")]
    Option {
        /// The label's name.
        label: &'static str,
        /// The option at fault.
        option: String,
        /// What is wrong, quoting the token at fault.
        problem: String,
    },
}

impl LabelError {
    /// The option at fault, when the error is about one.
    pub fn option(&self) -> Option<&str> {
        match self {
            LabelError::Option { option, .. } => Some(option),
            _ => None,
        }
    }

    pub(crate) fn json(label: &'static str, error: &serde_json::Error) -> LabelError {
        LabelError::Json {
            label,
            line: error.line(),
            column: error.column(),
            message: error.to_string(),
        }
    }
}

/// Options that cannot be resolved. Every value in here is already masked
/// when it belongs to a secret option.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolveError {
    /// The user gave options the service does not declare.
    #[error("unknown option(s): {}", .names.join(", "))]
    UnknownOptions {
        /// The unknown names, sorted.
        names: Vec<String>,
    },
    /// A choice option was given a value that is not one of its choices.
    #[error("invalid value for '{option}': {shown} is not one of: {}", .choices.join(", "))]
    NotAChoice {
        /// The choice option.
        option: String,
        /// The value given, masked if secret.
        shown: String,
        /// The valid values.
        choices: Vec<String>,
    },
    /// A chosen service is not installed (or has no profile yet).
    #[error("option {option}={service} needs service '{service}', which is not installed")]
    MissingProvider {
        /// The choice option.
        option: String,
        /// The provider service.
        service: String,
    },
    /// A value the user gave differs from the one imported from a provider.
    #[error(
        "option '{option}' is {shown} here but provider '{service}' has {imported}: \
         leave it unset to take the provider's value"
    )]
    ConflictingImport {
        /// The imported option.
        option: String,
        /// The provider service.
        service: String,
        /// The value given, masked if secret.
        shown: String,
        /// The provider's value, masked if secret.
        imported: String,
    },
    /// A taken choice requires another option to have a given value.
    #[error(
        "option {option}={choice} requires {required}={expected}, but {required} is {found} \
         (defaults do not count: give it explicitly)"
    )]
    RequirementNotMet {
        /// The choice option.
        option: String,
        /// The choice taken.
        choice: String,
        /// The option the choice puts a condition on.
        required: String,
        /// The value it must have (from the label).
        expected: String,
        /// What it is, masked if secret, or `unset`.
        found: String,
    },
    /// An option must resolve but nobody gave it and it has no default.
    #[error("option '{option}' is required{} but has no value and no default", .reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default())]
    MissingRequired {
        /// The option.
        option: String,
        /// Why it is required, when a choice requires it.
        reason: Option<String>,
    },
    /// A default macro failed (e.g. the host has no nameserver).
    #[error("option '{option}': {token} failed: {message}")]
    Macro {
        /// The defaulted option.
        option: String,
        /// The macro as written.
        token: String,
        /// What went wrong.
        message: String,
    },
    /// A value breaks its option's type, range, choices or pattern.
    #[error("option '{option}': {shown} is not valid: {rule}")]
    Invalid {
        /// The option.
        option: String,
        /// The value, masked if secret.
        shown: String,
        /// The rule it breaks.
        rule: String,
    },
    /// A value the runtime interprets (`port_*`, `volume_*`...) is malformed.
    #[error("option '{option}': {shown} is not a valid {what}: {reason}")]
    Runtime {
        /// The option.
        option: String,
        /// The value, masked if secret.
        shown: String,
        /// What the runtime expected (e.g. "port mapping").
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What stands for a secret value wherever values are shown.
pub const MASK: &str = "<secret>";

/// A value as messages may show it: quoted, or [`MASK`] if it is secret.
pub(crate) fn shown(value: &str, secret: bool) -> String {
    if secret {
        MASK.to_string()
    } else {
        format!("{value:?}")
    }
}
