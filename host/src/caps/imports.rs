//! Which grant each import of a component needs, checked at install.

use super::{CAPABILITIES, Grants, wasi};

/// A component import that its policy does not grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportRefusal {
    /// The capability exists; the policy lacks its `[grants.NAME]`.
    #[error("the plugin imports `{import}` but its policy has no [grants.{capability}]")]
    NotGranted {
        import: String,
        capability: &'static str,
    },
    /// A WASI interface the host never grants to plugins.
    #[error("the plugin imports `{import}`, which the host does not grant to plugins")]
    WasiNotOffered { import: String },
    /// An interface the host does not provide at all.
    #[error("the plugin imports `{import}`, which the host does not provide")]
    Unknown { import: String },
}

/// What a plugin needs granted for one of its imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantNeed {
    /// Nothing: baseline WASI or shared types.
    Baseline,
    /// `[grants.<name>]` in its policy.
    Capability(&'static str),
    /// Nothing can grant it on this host.
    Unavailable,
}

/// The grant an import (e.g. `cairn:host/kv@0.1.0`) requires.
pub fn grant_needed(import: &str) -> GrantNeed {
    let interface = import.split('@').next().unwrap_or(import);
    if interface == "cairn:host/types" || wasi::is_baseline(interface) {
        return GrantNeed::Baseline;
    }
    match owner(interface) {
        Some(name) => GrantNeed::Capability(name),
        None => GrantNeed::Unavailable,
    }
}

/// Refuses a component whose imports exceed its grants, naming the first such import.
pub fn check_imports<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
) -> Result<(), ImportRefusal> {
    for import in imports {
        match grant_needed(import) {
            GrantNeed::Baseline => {}
            GrantNeed::Capability(name) if grants.has(name) => {}
            GrantNeed::Capability(capability) => {
                return Err(ImportRefusal::NotGranted {
                    import: import.to_string(),
                    capability,
                });
            }
            GrantNeed::Unavailable if import.starts_with("wasi:") => {
                return Err(ImportRefusal::WasiNotOffered {
                    import: import.to_string(),
                });
            }
            GrantNeed::Unavailable => {
                return Err(ImportRefusal::Unknown {
                    import: import.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The capability whose grant covers `interface` (without version).
fn owner(interface: &str) -> Option<&'static str> {
    CAPABILITIES.iter().find_map(|(name, interfaces)| {
        interfaces
            .iter()
            .any(|wit| match wit.strip_suffix('/') {
                Some(package) => {
                    interface.starts_with(package) && interface[package.len()..].starts_with('/')
                }
                None => *wit == interface,
            })
            .then_some(*name)
    })
}
