//! Plain data shared by the Cairn host, the SDK and plugins.
//!
//! Everything here is ordinary serde data with no WebAssembly-specific
//! dependency, so the host (native) and plugins (`wasm32-wasip2`) agree on one
//! definition of:
//!
//! - [`ErrorCode`]: the stable error names of the WIT `error` variant;
//! - [`ErrorBody`]: the JSON `{"code": .., "message": ..}` that command
//!   errors, the HTTP listener and the adapters put on the wire;
//! - [`HealthSummary`] and [`PluginHealth`]: the device's health as
//!   `cairn --json health` prints it;
//! - [`PluginSummary`]: one installed plugin as `cairn --json plugin list` prints it.

#![warn(missing_docs)]

mod error;
mod health;

pub use error::{ErrorBody, ErrorCode, UnknownErrorCode};
pub use health::{HealthSummary, PluginHealth, PluginSummary};
