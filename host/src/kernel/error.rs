//! Errors of kernel operations, and how they reach plugins.

use crate::caps::{ImportRefusal, Refusal};
use crate::contract::bindings::CapError;
use crate::policy::PolicyError;
use crate::runtime::CallError;
use crate::supply::component::ComponentError;
use crate::supply::oci::ReferenceError;
use crate::supply::signing::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The component is not something we can run (malformed, core module, no metadata).
    #[error("{0}")]
    Invalid(String),
    /// The component's bytes could not be read as a component.
    #[error("{0}")]
    Component(#[from] ComponentError),
    /// A malformed OCI reference.
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    /// The plugin's policy is missing or malformed.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    /// The policy's limits are beyond what the host allows.
    #[error("policy: {0}")]
    Limits(String),
    /// The component imports an interface its policy does not grant.
    #[error("policy: {plugin} refused: {refusal}")]
    Imports {
        plugin: String,
        refusal: ImportRefusal,
    },
    /// A capability refused the component (a route served by another plugin, say).
    #[error("{}{plugin} refused: {refusal}", if matches!(.refusal, Refusal::Policy(_)) { "policy: " } else { "" })]
    Vetted { plugin: String, refusal: Refusal },
    /// Missing or untrusted signature.
    #[error("signature: {0}")]
    Signature(String),
    /// A detached signature that does not verify.
    #[error("signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The caller may not do this.
    #[error("denied: {0}")]
    Denied(String),
    /// Conflicts with what is installed (a downgrade, a changed release under the same version).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The new release failed init, handover or readiness; nothing changed.
    #[error("{0}")]
    Start(String),
    /// A call into a plugin failed.
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl KernelError {
    pub fn internal(err: impl std::fmt::Display) -> Self {
        KernelError::Internal(err.to_string())
    }

    /// Whether the plugin's policy refused it (missing, malformed, or not granting what it needs).
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            KernelError::Policy(_)
                | KernelError::Limits(_)
                | KernelError::Imports { .. }
                | KernelError::Vetted {
                    refusal: Refusal::Policy(_),
                    ..
                }
        )
    }

    /// The typed error a plugin sees.
    pub fn to_cap_error(&self) -> CapError {
        let text = self.to_string();
        match self {
            _ if self.is_policy() => CapError::Rejected(text),
            KernelError::Signature(_) | KernelError::BadSignature(_) => CapError::Rejected(text),
            KernelError::Invalid(_) | KernelError::Component(_) | KernelError::Reference(_) => {
                CapError::Invalid(text)
            }
            KernelError::Start(_) => CapError::NotReady(text),
            KernelError::Conflict(_) | KernelError::Vetted { .. } => CapError::Conflict(text),
            KernelError::Denied(_) => CapError::Denied(text),
            KernelError::NotFound(_) => CapError::NotFound(text),
            KernelError::Call(CallError::Timeout(_)) => CapError::Timeout(text),
            KernelError::Call(_) => CapError::Unavailable(text),
            _ => CapError::Internal(text),
        }
    }
}
