//! The `dockyard` plugin's policy as the tests give it: images from
//! `registry`, services' files in `state`, ready checks through `health`;
//! and reading its plans.

use serde_json::Value;

use super::{Daemon, plugin_wasm};

/// Installs the plugin on `daemon` with [`policy`] and a fresh state
/// directory, which it returns.
pub fn install(
    daemon: &Daemon,
    registry: &str,
    binding_timeout: &str,
    container: &str,
) -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    daemon.write_policy(
        "dockyard",
        &policy(registry, &state_dir, binding_timeout, container),
    );
    daemon.install(&plugin_wasm("dockyard")).unwrap();
    state
}

/// The option `name` of a plan (or a panic naming it).
pub fn option<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|option| option["name"] == name)
        .unwrap_or_else(|| panic!("no option {name} in {plan:#}"))
}

/// The policy; `container` is added to its `[grants.container]` (ports,
/// signature rules).
pub fn policy(registry: &str, state: &str, binding_timeout: &str, container: &str) -> String {
    format!(
        r#"[plugin]
name = "dockyard"
signers = ["dev"]
[limits]
call-timeout = "60s"
reply-wait = "5m"
[config]
images = "{registry}/dockyard/{{service}}:latest"
state = "{state}"
nameserver = "10.0.0.53"
binding-timeout = "{binding_timeout}"
[grants.log]
[grants.timer]
max-timers = 8
[grants.kv]
[grants.metrics]
[grants.events]
publish = ["dockyard/#"]
[grants.files]
private = ["{state}"]
[grants.commands]
call = ["health/status", "health/add", "health/get", "health/remove"]
[grants.container]
images = ["{registry}/dockyard/*"]
{container}
[[grants.container.mounts]]
path = "{state}"
"#
    )
}
