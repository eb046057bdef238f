//! The wasm runtime: one engine, a precompiled cache, and an actor per running
//! plugin release. It knows the plugin contract (`cairn:plugin`), nothing about
//! what capabilities mean.

pub mod cache;
pub mod engine;
pub mod fault;
mod guest_output;
pub mod http_instances;
pub mod instance;
pub mod latency;
mod live;
pub mod release;

pub use fault::{CallError, Fault, FaultKind, StartError};
pub use instance::{InstanceState, PluginIdentity};
pub use release::{ActorLink, FaultReport, Release, ReleaseSpec, ReleaseState, RuntimeEnv};
