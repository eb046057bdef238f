#![allow(dead_code)]
//! The recipes tests' fixture: a daemon running the `health` and `recipes`
//! plugins, with a components root of its own, recipe texts for small shell
//! services, and what /proc says about the processes they run.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{Daemon, Options, plugin_wasm};

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Fixture {
    pub daemon: Daemon,
    pub root: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.daemon.terminate();
        // Whatever still runs in a component directory (a failed test, a
        // killed daemon) is killed, so nothing outlives the test.
        for pid in self.processes_in_root() {
            // SAFETY: signalling processes this test's daemon started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

pub fn health_policy() -> String {
    r#"[plugin]
name = "health"
signers = ["dev"]

[config]
tick-ms = 100

[grants.log]
[grants.kv]
[grants.timer]
max-timers = 1
[grants.events]
publish = ["health/#"]
[grants.metrics]
[grants.http-client]
allow = ["http://127.0.0.1:9"]
allow-private = ["127.0.0.0/8"]
[grants.sockets]
tcp-connect = ["127.0.0.1:*"]
[grants.process]
max-processes = 4
[[grants.process.allow]]
exe = "/usr/bin/test"
args = ["-f", "*"]
"#
    .to_string()
}

/// Additions to the `recipes` policy of a test.
#[derive(Default)]
pub struct Extra {
    /// Keys of `[config]`.
    pub config: String,
    /// Replaces the default (useless) `[grants.http-client]`.
    pub http_client: String,
    /// More `[[grants.process.allow]]` entries.
    pub process: String,
    /// More grant tables (`[grants.container]`…).
    pub grants: String,
}

pub fn recipes_policy(root: &Path, extra: &Extra) -> String {
    let root = root.display();
    let http_client = if extra.http_client.is_empty() {
        "[grants.http-client]\nallow = [\"http://127.0.0.1:9\"]\n"
    } else {
        extra.http_client.as_str()
    };
    let config = &extra.config;
    let process = &extra.process;
    // Recipes imports the container capability: a grant allowing no image
    // unless the test gives its own.
    let grants = if extra.grants.contains("[grants.container]") {
        extra.grants.clone()
    } else {
        format!("{}\n[grants.container]\nimages = []\n", extra.grants)
    };
    format!(
        r#"[plugin]
name = "recipes"
signers = ["dev"]

[config]
root = "{root}"
tick-ms = 100
{config}

[grants.log]
[grants.kv]
quota = "8MiB"
[grants.timer]
max-timers = 1
[grants.events]
subscribe = ["health/changed/+"]
[grants.commands]
call = ["health/add", "health/remove", "health/get"]
[grants.files]
write = ["{root}"]
{http_client}
[grants.process]
max-processes = 64
allow-shell = true
[[grants.process.allow]]
exe = "/bin/sh"
args = ["**"]
{process}
{grants}
"#
    )
}

/// A daemon with `health` and `recipes` installed.
pub fn fixture() -> Fixture {
    fixture_with(|_| Extra::default())
}

/// A fixture whose `recipes` policy gets `extra(root)`.
pub fn fixture_with(extra: impl FnOnce(&Path) -> Extra) -> Fixture {
    fixture_with_options(Options::default(), extra)
}

/// A fixture whose daemon starts with `options`.
pub fn fixture_with_options(options: Options, extra: impl FnOnce(&Path) -> Extra) -> Fixture {
    let daemon = Daemon::start_with(options);
    let root = daemon.root().join("components-root");
    fs::create_dir_all(&root).unwrap();
    daemon.write_policy("health", &health_policy());
    daemon.write_policy("recipes", &recipes_policy(&root, &extra(&root)));
    daemon.install(&plugin_wasm("health")).unwrap();
    daemon.install(&plugin_wasm("recipes")).unwrap();
    Fixture { daemon, root }
}

/// A shell service: records when it started, becomes ready (creates
/// `ready`, which its health check tests) after `ready_after` seconds, then
/// runs `then` (by default: sleeps).
pub struct Service {
    pub name: String,
    pub version: String,
    pub ready_after: f64,
    pub then: String,
    pub restart_policy: String,
    pub max_retries: u32,
    pub health: bool,
    pub start_timeout: String,
    pub dependencies: Vec<(String, String)>,
    pub extra: String,
}

pub fn service(name: &str) -> Service {
    Service {
        name: name.to_string(),
        version: "1.0.0".to_string(),
        ready_after: 0.0,
        then: "sleep 600".to_string(),
        restart_policy: "on-failure".to_string(),
        max_retries: 5,
        health: true,
        start_timeout: "5s".to_string(),
        dependencies: Vec::new(),
        extra: String::new(),
    }
}

impl Service {
    pub fn ready_after(mut self, seconds: f64) -> Service {
        self.ready_after = seconds;
        self
    }

    pub fn then(mut self, script: &str) -> Service {
        self.then = script.to_string();
        self
    }

    pub fn depends(mut self, name: &str, kind: &str) -> Service {
        self.dependencies.push((name.to_string(), kind.to_string()));
        self
    }

    pub fn version(mut self, version: &str) -> Service {
        self.version = version.to_string();
        self
    }

    pub fn extra(mut self, toml: &str) -> Service {
        self.extra.push_str(toml);
        self
    }

    pub fn toml(&self) -> String {
        let script = format!(
            "date +%s%N >> started; sleep {}; touch ready; {}",
            self.ready_after, self.then
        );
        let health = if self.health {
            format!(
                "[lifecycle.run.health]\ncheck = \"cmd:/usr/bin/test -f ${{COMPONENT_DIR}}/ready\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nfailure_threshold = 1\nstart_timeout = \"{}\"\n",
                self.start_timeout
            )
        } else {
            String::new()
        };
        let mut text = format!(
            r#"[metadata]
name = "{name}"
version = "{version}"

[lifecycle.run]
restart_policy = "{policy}"
max_retries = {retries}
grace = "200ms"
backoff = "300ms"
stop_grace = "2s"

[lifecycle.run.exec]
command = "/bin/sh"
args = ["-c", "rm -f ready; {script}"]

{health}
{extra}
"#,
            name = self.name,
            version = self.version,
            policy = self.restart_policy,
            retries = self.max_retries,
            extra = self.extra,
        );
        for (dependency, kind) in &self.dependencies {
            text.push_str(&format!(
                "\n[[dependencies]]\nname = \"{dependency}\"\ntype = \"{kind}\"\n"
            ));
        }
        text
    }
}

/// A plan of these services, each recipe sent along as `<name>.toml`.
pub fn plan(services: &[&Service]) -> Value {
    let mut text = String::new();
    let mut recipes = serde_json::Map::new();
    for service in services {
        text.push_str(&format!(
            "[[components]]\nname = \"{0}\"\nrecipe = \"{0}.toml\"\n\n",
            service.name
        ));
        recipes.insert(
            format!("{}.toml", service.name),
            Value::String(service.toml()),
        );
    }
    json!({ "plan": text, "recipes": recipes })
}

impl Fixture {
    pub fn call(&self, command: &str, payload: Value) -> Result<Value, String> {
        self.daemon.call("recipes", command, &payload.to_string())
    }

    pub fn apply(&self, plan: Value) -> Result<Value, String> {
        self.call("plan-apply", plan)
    }

    pub fn status(&self) -> Value {
        self.call("plan-status", json!({})).unwrap()
    }

    /// Waits for the plan's phase; panics with the status otherwise.
    pub fn wait_phase(&self, phase: &str) -> Value {
        let mut last = Value::Null;
        let reached = self.daemon.eventually(WAIT, || {
            last = self.status();
            last["phase"] == phase
        });
        assert!(reached, "the plan never reached {phase}: {last:#}");
        last
    }

    pub fn component(&self, name: &str) -> Value {
        let status = self.status();
        status["components"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn wait_component(&self, name: &str, check: impl Fn(&Value) -> bool, what: &str) -> Value {
        let mut last = Value::Null;
        let reached = self.daemon.eventually(WAIT, || {
            last = self.component(name);
            check(&last)
        });
        assert!(reached, "{name} never {what}: {last:#}");
        last
    }

    pub fn pid(&self, name: &str) -> u32 {
        let component = self.component(name);
        component["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} has no pid: {component}")) as u32
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join("components").join(name)
    }

    /// Start times (ns since the epoch) the service wrote, one per run.
    pub fn starts(&self, name: &str) -> Vec<u128> {
        fs::read_to_string(self.dir(name).join("started"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    /// Processes whose working directory is under the components root.
    pub fn processes_in_root(&self) -> Vec<u32> {
        let mut found = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(cwd) = fs::read_link(entry.path().join("cwd"))
                && cwd.starts_with(&self.root)
                && !is_zombie(pid)
            {
                found.push(pid);
            }
        }
        found
    }
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1.trim_start().to_string();
            after.chars().next()
        })
        .is_none_or(|state| state == 'Z')
}

/// The parent of a process.
pub fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
