//! The one model of what a service declares: its options, their types and
//! defaults, the choices among them (services included) and the binding
//! templates to run in providers — whichever label it was read from.
//!
//! Both readers ([`parse_nanocloud`](super::parse_nanocloud) and
//! [`parse_cairn`](super::parse_cairn)) produce this, and the resolver only
//! ever sees this: no sigil or name-prefix rule survives past the readers.

use std::fmt;

/// Which label a declaration was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// `io.nanocloud.options`: Nanocloud's sigil grammar.
    Nanocloud,
    /// `dev.cairn.options`: Cairn's typed schema.
    Cairn,
}

impl LabelKind {
    /// The image label this kind is read from.
    pub fn label(self) -> &'static str {
        match self {
            LabelKind::Nanocloud => super::NANOCLOUD_LABEL,
            LabelKind::Cairn => super::CAIRN_LABEL,
        }
    }
}

/// Everything a service declares, options in declaration order.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// The label it was read from.
    pub source: LabelKind,
    /// The options, in the order the label declares them.
    pub options: Vec<OptionDecl>,
    /// Things worth telling the image author or the user that are not
    /// errors (e.g. a Nanocloud option with several defaults, of which the
    /// last wins). Never contains option values.
    pub notes: Vec<String>,
    /// How the service shows it is ready (Cairn labels only): without it,
    /// a running container is a ready one.
    pub ready: Option<ReadyCheck>,
}

/// A readiness probe, run by the `health` plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReadyCheck {
    /// `tcp://HOST:PORT`, `http://…` or `https://…`; `{ip}` stands for the
    /// container's address on the bridge network.
    pub check: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// How long an install waits for the first healthy probe.
    pub start_timeout_ms: u64,
}

impl Declared {
    /// What an image without an options label declares: nothing.
    pub fn empty() -> Declared {
        Declared {
            source: LabelKind::Cairn,
            options: Vec::new(),
            notes: Vec::new(),
            ready: None,
        }
    }

    /// The declaration of `name`, if any.
    pub fn option(&self, name: &str) -> Option<&OptionDecl> {
        self.options.iter().find(|option| option.name == name)
    }
}

/// One declared option.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionDecl {
    /// The option's name, as users set it and `$name` refers to it.
    pub name: String,
    /// What values it takes.
    pub kind: OptionKind,
    /// An optional option need not resolve: it is set only when the user
    /// gives it or a chosen choice `requires` it (then its default applies).
    pub optional: bool,
    /// A secret value is never shown: masked in dry runs, errors and logs.
    pub secret: bool,
    /// The value used when the option must resolve and nobody gave one. For
    /// a choice option, the choice taken when none is given.
    pub default: Option<DefaultValue>,
    /// A regular expression every value must match as a whole.
    pub pattern: Option<Pattern>,
    /// Documentation for users (Cairn labels only).
    pub doc: Option<String>,
}

impl OptionDecl {
    /// The option's choices; empty unless it is a choice option.
    pub fn choices(&self) -> &[Choice] {
        match &self.kind {
            OptionKind::Choice(choices) => choices,
            _ => &[],
        }
    }

    /// The choice whose value is `value`.
    pub fn choice(&self, value: &str) -> Option<&Choice> {
        self.choices().iter().find(|choice| choice.value() == value)
    }
}

/// The kind of value an option takes. Option values are always strings;
/// the kind says which strings are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionKind {
    /// Any string. Every Nanocloud free option is one.
    String,
    /// A decimal integer (`i64`), within the range.
    Integer(IntRange),
    /// `true` or `false`.
    Boolean,
    /// A TCP/UDP port number, 1–65535, within the range.
    Port(IntRange),
    /// An absolute path without `..` components.
    Path,
    /// One of a fixed set of choices (literal values or services).
    Choice(Vec<Choice>),
}

impl OptionKind {
    /// The kind's name as the Cairn schema spells it.
    pub fn name(&self) -> &'static str {
        match self {
            OptionKind::String => "string",
            OptionKind::Integer(_) => "integer",
            OptionKind::Boolean => "boolean",
            OptionKind::Port(_) => "port",
            OptionKind::Path => "path",
            OptionKind::Choice(_) => "choice",
        }
    }
}

/// Inclusive bounds on an integer or port option; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntRange {
    /// The smallest valid value.
    pub min: Option<i64>,
    /// The largest valid value.
    pub max: Option<i64>,
}

/// An option's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultValue {
    /// Used as is.
    Literal(String),
    /// Evaluated once, when the option is defaulted.
    Macro(Macro),
}

/// A default computed at resolution time (a Nanocloud `!` token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Macro {
    /// `!dns`: the host's first nameserver.
    Dns,
    /// `!local_ip`: the host's first non-loopback IPv4 address.
    LocalIp,
    /// `!rand [<len> [<charset>]]`: `len` random bytes (or characters) in a
    /// charset.
    Rand {
        /// Bytes for `hex`/`base64`, characters for the others.
        len: usize,
        /// How the randomness is written.
        charset: Charset,
    },
    /// `!tls key|cert|ca`: the path of the service's TLS material.
    Tls(TlsPart),
    /// `!if key=value THEN ELSE`: THEN if option `key` equals `value` among
    /// the provided, chosen and imported options, else ELSE.
    If {
        /// The option compared.
        key: String,
        /// The value it is compared with.
        equals: String,
        /// The result when it matches (may be empty).
        then: String,
        /// The result otherwise (may be empty).
        otherwise: String,
    },
}

impl fmt::Display for Macro {
    /// The canonical `!` token, as a Nanocloud label would spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Macro::Dns => f.write_str("!dns"),
            Macro::LocalIp => f.write_str("!local_ip"),
            Macro::Rand { len, charset } => write!(f, "!rand {len} {}", charset.name()),
            Macro::Tls(part) => write!(f, "!tls {}", part.name()),
            Macro::If {
                key,
                equals,
                then,
                otherwise,
            } => write!(f, "!if {key}={equals} {then} {otherwise}"),
        }
    }
}

/// How `!rand` writes its randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `len` bytes as `2 * len` lowercase hex digits.
    Hex,
    /// `len` bytes in standard, padded base64.
    Base64,
    /// `len` characters `a`–`z`.
    Charset26,
    /// `len` characters from `0-9a-zA-Z!@#$%^&*()-` (the 73 Nanocloud
    /// actually produces).
    Charset73,
}

impl Charset {
    /// Every charset, for parsing and error messages.
    pub const ALL: [Charset; 4] = [
        Charset::Hex,
        Charset::Base64,
        Charset::Charset26,
        Charset::Charset73,
    ];

    /// The charset's name in a `!rand` token.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Hex => "hex",
            Charset::Base64 => "base64",
            Charset::Charset26 => "charset26",
            Charset::Charset73 => "charset73",
        }
    }
}

/// One piece of a service's TLS material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsPart {
    /// The private key.
    Key,
    /// The service's certificate.
    Cert,
    /// The CA certificate.
    Ca,
}

impl TlsPart {
    /// The part's name in a `!tls` token.
    pub fn name(self) -> &'static str {
        match self {
            TlsPart::Key => "key",
            TlsPart::Cert => "cert",
            TlsPart::Ca => "ca",
        }
    }
}

/// A regular expression a value must match as a whole.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    anchored: regex_lite::Regex,
}

impl Pattern {
    /// Compiles `source`; it must match the whole value, as if written
    /// `^(?:source)$`.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let anchored = regex_lite::Regex::new(&format!("^(?:{source})$")).map_err(|error| {
            format!("pattern {source:?} is not a valid regular expression: {error}")
        })?;
        Ok(Pattern {
            source: source.to_string(),
            anchored,
        })
    }

    /// The expression as written in the label.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `value` matches as a whole.
    pub fn matches(&self, value: &str) -> bool {
        self.anchored.is_match(value)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

/// One value of a choice option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The value, or the service it selects.
    pub target: ChoiceTarget,
    /// What must hold when this choice is taken.
    pub requires: Vec<Requirement>,
    /// Provider profile entries copied in when this service choice is taken.
    pub imports: Vec<Import>,
    /// Commands run in the provider when this service choice is taken.
    pub bindings: Vec<BindingTemplate>,
    /// What to do to the consumer when this choice's provider restarts.
    pub on_restart: OnRestart,
}

/// What happens to a consumer when its provider's container starts again
/// (after it died, or was replaced by a re-install with other options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRestart {
    /// Restart the consumer, which reconnects (the default).
    #[default]
    Restart,
    /// Run the consumer's binding steps in the provider again (what they
    /// made may have been lost with the provider's container), then
    /// restart the consumer.
    Rebind,
    /// Nothing: the consumer copes on its own.
    Ignore,
}

impl OnRestart {
    /// Its name in a label.
    pub fn name(self) -> &'static str {
        match self {
            OnRestart::Restart => "restart",
            OnRestart::Rebind => "rebind",
            OnRestart::Ignore => "ignore",
        }
    }

    /// The policy named `name` in a label.
    pub fn parse(name: &str) -> Result<OnRestart, String> {
        match name {
            "restart" => Ok(OnRestart::Restart),
            "rebind" => Ok(OnRestart::Rebind),
            "ignore" => Ok(OnRestart::Ignore),
            other => Err(format!(
                "on-restart {other:?}: expected \"restart\", \"rebind\" or \"ignore\""
            )),
        }
    }
}

impl Choice {
    /// The option value that selects this choice (a service's name for a
    /// service choice).
    pub fn value(&self) -> &str {
        match &self.target {
            ChoiceTarget::Value(value) | ChoiceTarget::Service(value) => value,
        }
    }

    /// The provider service this choice selects, if it is a service choice.
    pub fn service(&self) -> Option<&str> {
        match &self.target {
            ChoiceTarget::Service(service) => Some(service),
            ChoiceTarget::Value(_) => None,
        }
    }
}

/// What a choice stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceTarget {
    /// A plain value (`name=value`).
    Value(String),
    /// Another service, which must already be installed (`name=&svc`).
    Service(String),
}

/// A condition a taken choice puts on another option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The option it is about.
    pub option: String,
    /// `None` (`*opt`): the option must end up set, defaulted if need be.
    /// `Some(v)` (`*opt=v`): it must already equal `v` among the provided,
    /// chosen and imported options (defaults are not considered, as in
    /// Nanocloud).
    pub equals: Option<String>,
}

/// A provider profile entry a service choice copies in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The provider's profile key; it arrives as option `<option>_<key>`.
    pub key: String,
    /// Whether the imported value is a secret.
    pub secret: bool,
}

impl Import {
    /// The option name the value arrives as, for choice option `option`.
    pub fn option_name(&self, option: &str) -> String {
        format!("{option}_{}", self.key)
    }
}

/// A command run in a provider when the service choice carrying it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingTemplate {
    /// How the binding is identified in records.
    pub id: BindingId,
    /// The provider service it runs in.
    pub service: String,
    /// The argv; whole words `$opt` are replaced by option values.
    pub words: Vec<String>,
    /// What undoes it when the consumer is uninstalled (Cairn labels
    /// only); empty for nothing.
    pub unbind: Vec<String>,
}

impl BindingTemplate {
    /// The id as Nanocloud records it: `bindings.<id>` when named, else
    /// `<service>#<index>`.
    pub fn id_string(&self) -> String {
        match &self.id {
            BindingId::Named(id) => format!("bindings.{id}"),
            BindingId::Positional(index) => format!("{}#{index}", self.service),
        }
    }
}

/// How a binding template is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingId {
    /// Named by the label (`bindings.<id>`); stable across label edits.
    Named(String),
    /// Unnamed: its position among the choice's templates, counting from 0.
    /// Changes when templates are added before it.
    Positional(usize),
}

/// Checks an option, service, import or binding name: non-empty, ASCII
/// letters, digits, `_`, `-` and `.` only (no whitespace or sigils, which
/// would make `*opt`, `$opt` and `&svc` tokens ambiguous).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.chars().all(valid) {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} may only contain ASCII letters, digits, '_', '-' and '.'"
        ))
    }
}
