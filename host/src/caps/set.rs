//! The code generated from the one list of capabilities in `caps/mod.rs`.

/// Declares the set of capabilities: `field: Type` per capability, in the
/// order they are linked, listed and reported.
macro_rules! capabilities {
    ($($field:ident: $cap:ty),* $(,)?) => {
        /// Every capability: policy table name and the WIT interfaces it grants.
        pub const CAPABILITIES: &[(&str, &[&str])] =
            &[$((<$cap as Capability>::NAME, <$cap as Capability>::INTERFACES)),*];

        /// A plugin's validated grants; `None` means not granted.
        #[derive(Default)]
        pub struct Grants {
            $(pub $field: Option<<$cap as Capability>::Grant>,)*
        }

        impl Grants {
            /// Parses and validates every `[grants.*]` table; an unknown
            /// capability is an error.
            pub fn from_policy(
                policy: &crate::policy::Policy,
            ) -> Result<Grants, crate::policy::PolicyError> {
                set::refuse_unknown(policy, CAPABILITIES)?;
                Ok(Grants {
                    $($field: set::parse::<$cap>(policy)?,)*
                })
            }

            /// Names of the granted capabilities, in declaration order.
            pub fn names(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if self.$field.is_some() {
                    names.push(<$cap as Capability>::NAME);
                })*
                names
            }

            fn has(&self, capability: &str) -> bool {
                self.names().contains(&capability)
            }
        }

        /// Host-wide state of every capability, built once when the daemon starts.
        pub struct SharedCaps {
            pub audit: Arc<Audit>,
            pub device_id: Arc<str>,
            $(pub $field: <$cap as Capability>::Shared,)*
        }

        impl SharedCaps {
            /// Builds every capability's host-wide state.
            pub fn build(setup: &HostSetup) -> anyhow::Result<SharedCaps> {
                use anyhow::Context as _;
                Ok(SharedCaps {
                    audit: setup.audit.clone(),
                    device_id: setup.device_id.clone(),
                    $($field: <$cap as Capability>::build(setup).with_context(|| {
                        format!("starting the {} capability", <$cap as Capability>::NAME)
                    })?,)*
                })
            }

            /// Asks every capability about a component about to be installed.
            pub fn vet(
                &self,
                plugin: &Candidate<'_>,
                grants: &Grants,
                serving: &Serving,
            ) -> Result<(), Refusal> {
                $(<$cap as Capability>::vet(&self.$field, plugin, grants.$field.as_ref(), serving)?;)*
                Ok(())
            }

            /// Lets every capability re-adopt what survived a restart.
            pub fn recover(&self, host: &HostLink) {
                $(<$cap as Capability>::recover(&self.$field, host);)*
            }

            /// Tells every capability that `plugin` was removed.
            pub async fn plugin_removed(&self, plugin: &str) {
                $(<$cap as Capability>::plugin_removed(&self.$field, plugin).await;)*
            }

            /// Tells every capability which plugins are installed after boot.
            pub async fn booted(&self, installed: &std::collections::BTreeSet<String>) {
                $(<$cap as Capability>::booted(&self.$field, installed).await;)*
            }

            /// Stops every capability, in declaration order.
            pub async fn shutdown(&self) {
                $(<$cap as Capability>::shutdown(&self.$field).await;)*
            }

            /// Every capability's metrics, in the Prometheus text format.
            pub fn render_metrics(&self, out: &mut String) {
                $(<$cap as Capability>::render_metrics(&self.$field, out);)*
            }
        }

        struct Locals {
            $($field: <$cap as Capability>::Local,)*
        }

        impl Locals {
            fn prepare(
                shared: &SharedCaps,
                grants: &Arc<Grants>,
                ctx: &InstanceCtx,
                wasi: &mut WasiCtxBuilder,
            ) -> Locals {
                let mut setup = InstanceSetup { ctx, grants, wasi };
                Locals {
                    $($field: <$cap as Capability>::prepare(
                        &shared.$field,
                        grants.$field.as_ref(),
                        &mut setup,
                    ),)*
                }
            }

            fn end(&mut self, shared: &SharedCaps, ctx: &InstanceCtx) {
                $(<$cap as Capability>::instance_ended(&shared.$field, &mut self.$field, ctx);)*
            }
        }

        $(impl Select<$cap> for InstanceCaps {
            fn view(&mut self) -> CapView<'_, $cap> {
                CapView {
                    ctx: &self.ctx,
                    grant: self.grants.$field.as_ref(),
                    shared: &self.shared.$field,
                    local: &mut self.locals.$field,
                }
            }
        })*

        fn add_all_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            $(<$cap as Capability>::add_to_linker(linker)?;)*
            Ok(())
        }
    };
}

use crate::policy::{Policy, PolicyError};

use super::Capability;

/// Refuses a `[grants.NAME]` table that names no capability (with its position).
pub(super) fn refuse_unknown(
    policy: &Policy,
    capabilities: &[(&str, &[&str])],
) -> Result<(), PolicyError> {
    let known: Vec<&str> = capabilities.iter().map(|(name, _)| *name).collect();
    policy.check_known_grants(&known)
}

/// Parses and validates one capability's grant, if the policy has it.
pub(super) fn parse<C: Capability>(policy: &Policy) -> Result<Option<C::Grant>, PolicyError> {
    let Some(slice) = policy.grant(C::NAME) else {
        return Ok(None);
    };
    let grant: C::Grant = slice.parse()?;
    C::validate(&grant).map_err(|msg| PolicyError::Invalid {
        file: policy.path.clone(),
        line: Some(slice.line).filter(|line| *line > 0),
        col: Some(slice.col).filter(|_| slice.line > 0),
        msg: format!("[grants.{}]: {msg}", C::NAME),
    })?;
    Ok(Some(grant))
}
