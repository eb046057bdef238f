//! Service options: what an image declares, and what they resolve to.
//!
//! Read a declaration with [`read_labels`] (or [`parse_cairn`] /
//! [`parse_nanocloud`] for one label), then [`resolve`] it against the
//! options the user gave, the installed providers and the device. The
//! result, [`Resolved`], holds every value (secrets in the clear, for the
//! installer) and renders itself for people only through
//! [`Resolved::masked`].

mod check;
mod error;
mod json;
mod macros;
mod model;
mod nanocloud;
mod resolve;
mod resolved;
mod runtime;
mod schema;
mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod macros_tests;
#[cfg(test)]
mod nanocloud_tests;
#[cfg(test)]
mod never_panics_tests;
#[cfg(test)]
mod resolve_tests;
#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
mod secrets_tests;

use std::collections::BTreeMap;

pub use error::{LabelError, MASK, ResolveError};
pub use macros::MAX_RAND_LEN;
pub use model::{
    BindingId, BindingTemplate, Charset, Choice, ChoiceTarget, Declared, DefaultValue, Import,
    IntRange, LabelKind, Macro, OnRestart, OptionDecl, OptionKind, Pattern, ReadyCheck,
    Requirement, TlsPart,
};
pub use nanocloud::parse_nanocloud;
pub use resolve::{Environment, Providers, resolve};
pub use resolved::{ArgWord, Binding, Origin, RequiredService, Resolved, ResolvedOption};
pub use runtime::{PortMapping, Protocol, RuntimeSpec, SecretEnv, Volume, VolumeEncryption};
pub use schema::parse_cairn;

/// Nanocloud's options label (sigil grammar, see [`parse_nanocloud`]).
pub const NANOCLOUD_LABEL: &str = "io.nanocloud.options";
/// Cairn's typed options label (see [`parse_cairn`]).
pub const CAIRN_LABEL: &str = "dev.cairn.options";

/// Reads an image's option declaration from its labels: Cairn's label if
/// present, else Nanocloud's, else `None` (the image declares no options).
/// With both, Cairn's wins and a note in [`Declared::notes`] says the
/// Nanocloud one was ignored.
pub fn read_labels(labels: &BTreeMap<String, String>) -> Result<Option<Declared>, LabelError> {
    match (labels.get(CAIRN_LABEL), labels.get(NANOCLOUD_LABEL)) {
        (Some(cairn), nanocloud) => {
            let mut declared = parse_cairn(cairn)?;
            if nanocloud.is_some() {
                declared.notes.push(format!(
                    "label {NANOCLOUD_LABEL} ignored: {CAIRN_LABEL} takes precedence"
                ));
            }
            Ok(Some(declared))
        }
        (None, Some(nanocloud)) => parse_nanocloud(nanocloud).map(Some),
        (None, None) => Ok(None),
    }
}
