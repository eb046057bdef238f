//! Errors of kernel operations, and how they reach the CLI and plugins.

use crate::admin::api::{AdminError, ErrorCode};
use crate::runtime::CallError;
use crate::runtime::bindings::CapError;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The component is not something we can run (malformed, core module, no metadata).
    #[error("{0}")]
    Invalid(String),
    /// The plugin's policy is missing, malformed or does not allow it.
    #[error("policy: {0}")]
    Policy(String),
    /// Missing or untrusted signature.
    #[error("signature: {0}")]
    Signature(String),
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
    Call(CallError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl KernelError {
    pub fn internal(err: impl std::fmt::Display) -> Self {
        KernelError::Internal(err.to_string())
    }

    /// The typed error a plugin sees.
    pub fn to_cap_error(&self) -> CapError {
        let text = self.to_string();
        match self {
            KernelError::Invalid(_) => CapError::Invalid(text),
            KernelError::Policy(_) | KernelError::Signature(_) => CapError::Rejected(text),
            KernelError::Start(_) => CapError::NotReady(text),
            KernelError::Conflict(_) => CapError::Conflict(text),
            KernelError::Denied(_) => CapError::Denied(text),
            KernelError::NotFound(_) => CapError::NotFound(text),
            KernelError::Call(CallError::Timeout(_)) => CapError::Timeout(text),
            KernelError::Call(_) => CapError::Unavailable(text),
            KernelError::Internal(_) => CapError::Internal(text),
        }
    }

    /// The error the admin socket returns.
    pub fn to_admin(&self) -> AdminError {
        let code = match self {
            KernelError::Invalid(_) => ErrorCode::Invalid,
            KernelError::Policy(_) => ErrorCode::Policy,
            KernelError::Signature(_) => ErrorCode::Signature,
            KernelError::Denied(_) => ErrorCode::Denied,
            KernelError::Conflict(_) => ErrorCode::Conflict,
            KernelError::NotFound(_) => ErrorCode::NotFound,
            KernelError::Start(_) => ErrorCode::Invalid,
            KernelError::Call(CallError::Timeout(_)) => ErrorCode::Timeout,
            KernelError::Call(CallError::Plugin(_)) => ErrorCode::Invalid,
            KernelError::Call(_) => ErrorCode::Unavailable,
            KernelError::Internal(_) => ErrorCode::Internal,
        };
        AdminError::new(code, self.to_string())
    }
}
