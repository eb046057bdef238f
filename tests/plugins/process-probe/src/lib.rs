//! Test plugin `process-probe`: drives `cairn:host/process` on command and
//! records every process exit event it receives, so end-to-end tests can read
//! them back.
//!
//! Commands (JSON payloads):
//! - `spawn` `{"name","exe","args","env":[[k,v]],"cwd","user","group",
//!   "no_new_privs","capabilities","open_files","memory_bytes","cpu_seconds",
//!   "processes","memory_max","cpu_max","pids_max","best_effort"}` → `{"id"}`
//! - `stop` `{"id","grace_ms"}` → process info; `terminate` (same) → `{"ok":true}`
//! - `signal` `{"id","signal"}` → `{"ok":true}`
//! - `info` `{"id"}` → process info; `find` `{"name"}` → info or null
//! - `list` → `[process info]`
//! - `output` `{"id","max"}` → `{"stdout","stderr","total"}` (lossy UTF-8)
//! - `forget` `{"id"}` → `{"forgotten":bool}`
//! - `exits` → `[{"id","name","pid","code","signal"}]` received so far
//! - `version` → `{"version"}`
//!
//! A refused call fails with `<kind>: <message>` (e.g. `denied: ...`).

use std::time::Duration;

use cairn_sdk::process::{self, Exited, ProcessId, ProcessInfo, Spec};
use cairn_sdk::{Config, Event, Plugin};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Default)]
struct Probe {
    exits: Vec<Value>,
}

#[derive(Deserialize)]
struct SpawnRequest {
    name: String,
    exe: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<(String, String)>,
    cwd: Option<String>,
    user: Option<String>,
    group: Option<String>,
    no_new_privs: Option<bool>,
    #[serde(default)]
    capabilities: Vec<String>,
    open_files: Option<u64>,
    memory_bytes: Option<u64>,
    cpu_seconds: Option<u64>,
    processes: Option<u64>,
    memory_max: Option<u64>,
    cpu_max: Option<u32>,
    pids_max: Option<u64>,
    #[serde(default)]
    best_effort: bool,
}

#[derive(Deserialize)]
struct IdRequest {
    id: u64,
    #[serde(default)]
    grace_ms: u64,
    #[serde(default)]
    signal: String,
    #[serde(default = "default_max")]
    max: u32,
}

fn default_max() -> u32 {
    65536
}

fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|err| format!("bad request: {err}"))
}

fn reply(value: Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&value).map_err(|err| err.to_string())
}

fn info_json(info: &ProcessInfo) -> Value {
    json!({
        "id": info.id.0,
        "name": info.name,
        "exe": info.exe,
        "args": info.args,
        "pid": info.pid,
        "running": info.running(),
        "exit_code": info.exit_code,
        "exit_signal": info.exit_signal,
        "started_at_ms": info.started_at_ms,
        "adopted": info.adopted,
        "limits_note": info.limits_note,
    })
}

/// A `Spec` setter taking a number.
type Setter = fn(Spec, u64) -> Spec;

fn spec(request: SpawnRequest) -> Spec {
    let mut spec = Spec::new(&request.name, &request.exe)
        .args(&request.args)
        .no_new_privs(request.no_new_privs.unwrap_or(true))
        .cgroup_best_effort(request.best_effort);
    for (key, value) in &request.env {
        spec = spec.env(key, value);
    }
    if let Some(cwd) = &request.cwd {
        spec = spec.cwd(cwd);
    }
    if let Some(user) = &request.user {
        spec = spec.user(user);
    }
    if let Some(group) = &request.group {
        spec = spec.group(group);
    }
    for cap in &request.capabilities {
        spec = spec.keep_capability(cap);
    }
    let setters: [(Option<u64>, Setter); 6] = [
        (request.open_files, Spec::open_files),
        (request.memory_bytes, Spec::memory_bytes),
        (request.cpu_seconds, Spec::cpu_seconds),
        (request.processes, Spec::max_processes),
        (request.memory_max, Spec::memory_max),
        (request.pids_max, Spec::pids_max),
    ];
    for (value, set) in setters {
        if let Some(value) = value {
            spec = set(spec, value);
        }
    }
    if let Some(milli) = request.cpu_max {
        spec = spec.cpu_max(milli);
    }
    spec
}

impl Plugin for Probe {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Probe::default())
    }

    fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        match command {
            "spawn" => {
                let id = process::spawn(&spec(parse(payload)?))?;
                reply(json!({ "id": id.0 }))
            }
            "stop" => {
                let request: IdRequest = parse(payload)?;
                let grace = Duration::from_millis(request.grace_ms);
                reply(info_json(&process::stop(ProcessId(request.id), grace)?))
            }
            "terminate" => {
                let request: IdRequest = parse(payload)?;
                let grace = Duration::from_millis(request.grace_ms);
                process::terminate(ProcessId(request.id), grace)?;
                reply(json!({ "ok": true }))
            }
            "signal" => {
                let request: IdRequest = parse(payload)?;
                process::signal(ProcessId(request.id), &request.signal)?;
                reply(json!({ "ok": true }))
            }
            "info" => {
                let request: IdRequest = parse(payload)?;
                reply(info_json(&process::info(ProcessId(request.id))?))
            }
            "find" => {
                #[derive(Deserialize)]
                struct Find {
                    name: String,
                }
                let request: Find = parse(payload)?;
                reply(process::find(&request.name)?.map_or(Value::Null, |info| info_json(&info)))
            }
            "list" => reply(Value::Array(
                process::list()?.iter().map(info_json).collect(),
            )),
            "output" => {
                let request: IdRequest = parse(payload)?;
                let output = process::output(ProcessId(request.id), request.max)?;
                reply(json!({
                    "stdout": String::from_utf8_lossy(&output.stdout),
                    "stderr": String::from_utf8_lossy(&output.stderr),
                    "total": output.total_bytes,
                }))
            }
            "forget" => {
                let request: IdRequest = parse(payload)?;
                reply(json!({ "forgotten": process::forget(ProcessId(request.id))? }))
            }
            "exits" => reply(Value::Array(self.exits.clone())),
            "version" => reply(json!({ "version": cairn_sdk::plugin_version!() })),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if let Some(exited) = Exited::from_event(&event) {
            self.exits.push(json!({
                "id": exited.id,
                "name": exited.name,
                "pid": exited.pid,
                "code": exited.code,
                "signal": exited.signal,
            }));
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&self.exits).ok()
    }

    fn restore(&mut self, state: &[u8]) -> Result<bool, String> {
        self.exits = serde_json::from_slice(state).map_err(|err| err.to_string())?;
        Ok(true)
    }
}

cairn_sdk::export_plugin!(Probe);
