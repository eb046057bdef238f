//! Calls other plugins' commands (`cairn:host/commands`).
//!
//! The target receives the call through its
//! [`Plugin::on_command`](crate::Plugin::on_command). Needs `[grants.commands]`
//! with `call = ["plugin", "plugin/command", "*"]`. A plugin may not call itself.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
#[cfg(target_arch = "wasm32")]
use crate::bindings::cairn::host::commands as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::commands as host;

/// How a command call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The host refused or could not deliver the call, e.g. [`Error::Denied`]
    /// without a matching grant or [`Error::NotFound`] for an unknown plugin.
    Host(Error),
    /// The target plugin ran the command and returned this error.
    Plugin(String),
    /// [`call_json`] could not encode the request or decode the reply.
    Json(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Host(error) => write!(f, "call failed: {error}"),
            CallError::Plugin(message) => write!(f, "command failed: {message}"),
            CallError::Json(message) => write!(f, "command reply not understood: {message}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Host(error) => Some(error),
            CallError::Plugin(_) | CallError::Json(_) => None,
        }
    }
}

impl From<Error> for CallError {
    fn from(error: Error) -> Self {
        CallError::Host(error)
    }
}

/// Lets `?` turn a call error into the `String` errors the [`Plugin`](crate::Plugin)
/// methods return.
impl From<CallError> for String {
    fn from(error: CallError) -> Self {
        error.to_string()
    }
}

impl From<host::CallError> for CallError {
    fn from(error: host::CallError) -> Self {
        match error {
            host::CallError::Host(error) => CallError::Host(error.into()),
            host::CallError::Plugin(message) => CallError::Plugin(message),
        }
    }
}

/// Calls `command` on `plugin` with raw `payload` bytes and returns the raw reply.
pub fn call(plugin: &str, command: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
    Ok(host::call(plugin, command, payload)?)
}

/// Calls `command` on `plugin` with `request` encoded as JSON and decodes the JSON reply.
pub fn call_json<Request, Reply>(
    plugin: &str,
    command: &str,
    request: &Request,
) -> Result<Reply, CallError>
where
    Request: Serialize + ?Sized,
    Reply: DeserializeOwned,
{
    let payload =
        serde_json::to_vec(request).map_err(|cause| CallError::Json(cause.to_string()))?;
    let reply = call(plugin, command, &payload)?;
    serde_json::from_slice(&reply).map_err(|cause| CallError::Json(cause.to_string()))
}
