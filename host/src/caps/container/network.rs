//! Container networks. `none` and `host` are namespaces in the spec; the
//! `bridge` network (CNI bridge, host-local addresses, port mappings) is set
//! up here, before the task starts, and torn down with the container.

use super::config::ContainersConfig;

/// Undoes what [`setup`] did for container `id`, if anything.
pub async fn teardown(_config: &ContainersConfig, _id: &str) {}
