//! The result of resolving a service's options, and its masked form for dry
//! runs.
//!
//! Secret values are here in the clear — the installer needs them — but
//! nothing here shows them: `Debug` masks them, and [`Resolved::masked`] is
//! the only rendering meant for people. Deliberately not `Serialize`, so a
//! resolved profile cannot be written out with its secrets by accident.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

use super::error::MASK;
use super::model::TlsPart;
use super::runtime::RuntimeSpec;

/// A service's resolved options, providers, bindings and runtime spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every option with a value: declared options in declaration order, then
    /// imports no option declares.
    pub options: Vec<ResolvedOption>,
    /// The provider services the chosen service choices need, in declaration
    /// order.
    pub services: Vec<RequiredService>,
    /// The commands to run in providers, in declaration order.
    pub bindings: Vec<Binding>,
    /// What the runtime makes of `port_*`, `volume_*`, `secret_env_*` and
    /// `runtime_*` options.
    pub runtime: RuntimeSpec,
    /// The TLS material the options refer to (via `!tls`), sorted.
    pub tls: Vec<TlsPart>,
}

impl Resolved {
    /// The option `name`, if it has a value.
    pub fn option(&self, name: &str) -> Option<&ResolvedOption> {
        self.options.iter().find(|option| option.name == name)
    }

    /// The value of option `name`, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.option(name).map(|option| option.value.as_str())
    }

    /// Every value by name, secrets in the clear: what a consumer imports
    /// from this service, and what is fed back as "provided" on the next
    /// resolution so that defaults (e.g. `!rand`) are not generated anew.
    pub fn profile(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .map(|option| (option.name.clone(), option.value.clone()))
            .collect()
    }

    /// Whether option `name` is secret.
    fn is_secret(&self, name: &str) -> bool {
        self.option(name).is_some_and(|option| option.secret)
    }

    /// The resolution for a dry run: every secret value, and every binding
    /// word or runtime entry that holds one, replaced by `"<secret>"`.
    pub fn masked(&self) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .map(|option| {
                json!({
                    "name": option.name,
                    "value": option.shown_value(),
                    "secret": option.secret,
                    "origin": option.origin.to_string(),
                })
            })
            .collect();
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|required| json!({"option": required.option, "service": required.service}))
            .collect();
        let bindings: Vec<Value> = self
            .bindings
            .iter()
            .map(|binding| {
                json!({
                    "id": binding.id,
                    "service": binding.service,
                    "argv": binding.shown_argv(),
                })
            })
            .collect();
        let tls: Vec<&str> = self.tls.iter().map(|part| part.name()).collect();
        json!({
            "options": options,
            "services": services,
            "bindings": bindings,
            "runtime": self.runtime.masked(&|name| self.is_secret(name)),
            "tls": tls,
        })
    }
}

/// One resolved option.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedOption {
    /// The option's name.
    pub name: String,
    /// Its value, in the clear even when secret.
    pub value: String,
    /// Whether the value must never be shown.
    pub secret: bool,
    /// Where the value came from.
    pub origin: Origin,
}

impl ResolvedOption {
    /// The value as it may be shown: [`MASK`] if secret.
    pub fn shown_value(&self) -> &str {
        if self.secret { MASK } else { &self.value }
    }
}

impl fmt::Debug for ResolvedOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedOption")
            .field("name", &self.name)
            .field("value", &self.shown_value())
            .field("secret", &self.secret)
            .field("origin", &self.origin)
            .finish()
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The user gave it (or it was fed back from the last resolution).
    Provided,
    /// Nobody gave it: the choice option's default choice was taken.
    Choice,
    /// Copied from a provider service's profile.
    Import {
        /// The provider.
        service: String,
    },
    /// The declared literal default.
    Default,
    /// The declared default macro, evaluated.
    Macro,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Provided => f.write_str("provided"),
            Origin::Choice => f.write_str("choice"),
            Origin::Import { service } => write!(f, "import:{service}"),
            Origin::Default => f.write_str("default"),
            Origin::Macro => f.write_str("macro"),
        }
    }
}

/// A provider service a chosen choice needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredService {
    /// The choice option that chose it.
    pub option: String,
    /// The provider service.
    pub service: String,
    /// What happens to the consumer when the provider restarts.
    pub on_restart: super::OnRestart,
}

/// A command to run in a provider service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `bindings.<id>`, or `<service>#<index>` for an unnamed template.
    pub id: String,
    /// The provider service to run it in.
    pub service: String,
    /// The command and its arguments, `$opt` words substituted.
    pub argv: Vec<ArgWord>,
    /// What undoes it, substituted the same way; empty for nothing.
    pub unbind: Vec<ArgWord>,
}

impl Binding {
    /// The argv to execute, secrets in the clear. Never log this: log
    /// [`Binding::shown_argv`].
    pub fn argv(&self) -> Vec<&str> {
        self.argv.iter().map(|word| word.text.as_str()).collect()
    }

    /// The argv as it may be shown: secret words replaced by [`MASK`].
    pub fn shown_argv(&self) -> Vec<&str> {
        self.argv.iter().map(ArgWord::shown).collect()
    }
}

/// One word of a binding's argv.
#[derive(Clone, PartialEq, Eq)]
pub struct ArgWord {
    /// The word, in the clear.
    pub text: String,
    /// Whether it came from a secret option or equals a secret value.
    pub secret: bool,
}

impl ArgWord {
    /// The word as it may be shown: [`MASK`] if secret.
    pub fn shown(&self) -> &str {
        if self.secret { MASK } else { &self.text }
    }
}

impl fmt::Debug for ArgWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}
