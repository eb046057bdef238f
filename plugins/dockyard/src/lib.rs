//! `dockyard`: services declared by container images, the Nanocloud way.
//!
//! A Dockyard image declares the options a service takes, the choices among
//! them (including other services it can use), and the commands ("bindings")
//! to run in those providers. This crate reads those declarations — from
//! Nanocloud's `io.nanocloud.options` label or Cairn's typed
//! `dev.cairn.options` label — into one model, and resolves a service's
//! options against what the user gave, the providers' profiles and the host.
//!
//! Everything here is pure: no host calls, no containers, no network. The
//! plugin shell that installs services comes later.

pub mod options;
