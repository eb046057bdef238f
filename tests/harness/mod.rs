//! Shared end-to-end test support: builds the plugins once, runs a real daemon
//! in a temporary directory and drives it through the real CLI.
#![allow(dead_code)]

pub mod certs;
pub mod containers;
pub mod dockyard;
pub mod http;
pub mod mosquitto;
pub mod proxy;
pub mod registry;
pub mod site_registry;

use std::collections::HashMap;
use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host has a parent")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Runs `f` holding an exclusive lock on `name` under the target dir, so
/// parallel test processes do not build the same thing at once.
fn with_lock<R>(name: &str, f: impl FnOnce() -> R) -> R {
    fs::create_dir_all(target_dir()).expect("target dir");
    let file = fs::File::create(target_dir().join(name)).expect("lock file");
    // SAFETY: flock on an open descriptor we own.
    assert_eq!(
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) },
        0,
        "flock"
    );
    let result = f();
    drop(file);
    result
}

/// Path of a plugin built from the workspace (first-party or test-only).
pub fn plugin_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        with_lock(".cairn-plugins.lock", || {
            let status = Command::new(workspace().join("scripts/build-plugins"))
                .status()
                .expect("run scripts/build-plugins");
            assert!(status.success(), "building the plugins failed");
        })
    });
    let path = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A build of `crate_name` with its embedded version (and, for `versioned`,
/// its behaviour) overridden at build time. Cached across test processes.
pub fn variant(crate_name: &str, version: &str, mode: &str) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    // The sources' fingerprint is part of the key, so an edit to the plugin,
    // the SDK or the WIT never serves a stale build.
    let key = format!(
        "{crate_name}-{version}-{mode}-{:016x}",
        sources_fingerprint(crate_name)
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(path) = cache.lock().unwrap().get(&key) {
        return path.clone();
    }
    let out = target_dir()
        .join("variants/out")
        .join(format!("{key}.wasm"));
    with_lock(".cairn-variants.lock", || {
        if out.exists() {
            return;
        }
        let variants = target_dir().join("variants");
        let status = Command::new("cargo")
            .current_dir(workspace())
            .args([
                "build",
                "--quiet",
                "--target",
                "wasm32-wasip2",
                "--release",
                "-p",
                crate_name,
                "--target-dir",
            ])
            .arg(&variants)
            .env("CAIRN_PLUGIN_VERSION", version)
            .env("CAIRN_TEST_MODE", mode)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building variant {key} failed");
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        fs::copy(
            variants
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", crate_name.replace('-', "_"))),
            &out,
        )
        .unwrap();
    });
    cache.lock().unwrap().insert(key, out.clone());
    out
}

/// A hash of the paths, sizes and modification times of everything a plugin
/// variant is built from: its crate, the SDK and the WIT.
fn sources_fingerprint(crate_name: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    fn walk(dir: &Path, hasher: &mut DefaultHasher) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(&path, hasher);
            } else if let Ok(meta) = fs::metadata(&path) {
                path.hash(hasher);
                meta.len().hash(hasher);
                meta.modified().ok().hash(hasher);
            }
        }
    }
    let mut hasher = DefaultHasher::new();
    let root = workspace();
    for dir in [
        root.join("wit"),
        root.join("sdk"),
        root.join("plugins").join(crate_name),
        root.join("tests/plugins").join(crate_name),
    ] {
        walk(&dir, &mut hasher);
    }
    hasher.finish()
}

/// The `cairn` binary under test.
pub fn cairn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn"))
}

/// A copy of `wasm` grown to about `size` bytes by a custom section of
/// incompressible bytes: a valid component that takes a while to move.
pub fn padded(wasm: &Path, size: usize, dir: &Path) -> PathBuf {
    let mut bytes = fs::read(wasm).unwrap();
    let name = b"cairn-test-padding";
    let payload = size.saturating_sub(bytes.len() + 32);
    let mut section = Vec::new();
    leb128(name.len() as u64, &mut section);
    section.extend_from_slice(name);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    section.extend((0..payload).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    bytes.push(0); // custom section id
    leb128(section.len() as u64, &mut bytes);
    bytes.extend_from_slice(&section);
    let out = dir.join(format!(
        "padded-{size}-{}",
        wasm.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&out, bytes).unwrap();
    out
}

fn leb128(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Options for starting a daemon.
#[derive(Default, Clone)]
pub struct Options {
    pub allow_unsigned: bool,
    pub env: Vec<(String, String)>,
    /// Limit the daemon's address space (bytes), to exercise allocator fallback.
    pub address_space_limit: Option<u64>,
    /// Registries (`host:port`) the daemon may reach over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Text of the registry credentials file (written owner-only), if any.
    pub registry_credentials: Option<String>,
    /// `device-id` in the daemon's config.
    pub device_id: Option<String>,
    /// TOML appended to the daemon's config (tables such as `[mqtt.brokers.x]`).
    pub extra_config: String,
}

/// A daemon running in its own temporary directory.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    options: Options,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("cairn-test")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("policies")).unwrap();
        let keygen = |prefix: &str| {
            let out = Command::new(cairn_bin())
                .args(["key", "generate", "--out"])
                .arg(root.join(prefix))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "key generate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        keygen("dev");
        keygen("other");
        for entry in fs::read_dir(workspace().join("policies")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                fs::copy(&path, root.join("policies").join(path.file_name().unwrap())).unwrap();
            }
        }
        for entry in fs::read_dir(workspace().join("tests/plugins")).unwrap() {
            let crate_dir = entry.unwrap().path();
            let policy = crate_dir.join("policy.toml");
            if policy.exists() {
                let name = crate_dir.file_name().unwrap().to_string_lossy().to_string();
                fs::copy(&policy, root.join("policies").join(format!("{name}.toml"))).unwrap();
            }
        }
        let device_id = options
            .device_id
            .as_ref()
            .map(|id| format!("device-id = {id:?}\n"))
            .unwrap_or_default();
        let mut config = format!(
            "state-dir = \"state\"\npolicy-dir = \"policies\"\nadmin-socket = \"run/admin.sock\"\nallow-unsigned = {}\n{device_id}[trust.keys]\ndev = \"dev.pub\"\nother = \"other.pub\"\n[registry]\ninsecure = {:?}\n",
            options.allow_unsigned, options.insecure_registries
        );
        if let Some(text) = &options.registry_credentials {
            write_owner_only(&root.join("credentials.toml"), text);
            config.push_str("credentials = \"credentials.toml\"\n");
        }
        config.push_str(&options.extra_config);
        fs::write(root.join("cairn.toml"), config).unwrap();
        let mut daemon = Daemon {
            dir,
            child: None,
            options,
        };
        daemon.spawn();
        daemon
    }

    /// `cairn plugin push FILE REF --key <root>/KEY.key --insecure EXTRA…`; the digest.
    pub fn push(
        &self,
        wasm: &Path,
        reference: &str,
        key: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        let key = self.root().join(format!("{key}.key"));
        let mut args = vec![
            "plugin",
            "push",
            wasm.to_str().unwrap(),
            reference,
            "--key",
            key.to_str().unwrap(),
            "--insecure",
        ];
        args.extend_from_slice(extra);
        self.cli_json(&args)
            .map(|out| out["digest"].as_str().unwrap().to_string())
    }

    /// Installs `reference`, expecting a refusal that mentions `needle`
    /// (case-insensitively) and no change to the installed set; the error text.
    pub fn assert_install_refused(&self, reference: &str, needle: &str) -> String {
        let before = self.plugins();
        let err = self
            .cli_json(&["plugin", "install", reference])
            .expect_err(reference);
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{reference}: expected `{needle}` in: {err}"
        );
        assert_eq!(
            self.plugins(),
            before,
            "{reference} changed the installed set"
        );
        err
    }

    /// `127.0.0.1:PORT` of the HTTP listener, from the latest `serving HTTP
    /// address=…` log line (the log is appended to across restarts).
    pub fn http_address(&self) -> String {
        let mut address = None;
        self.eventually(Duration::from_secs(10), || {
            let log = self.daemon_log();
            address = log
                .lines()
                .rev()
                .find(|line| line.contains("serving HTTP"))
                .and_then(|line| {
                    line.split_once("address=")
                        .map(|(_, rest)| rest.to_string())
                })
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect()
                });
            address.is_some()
        });
        address.expect("the daemon reports its HTTP address")
    }

    /// Replaces the registry credentials file (read when the daemon starts).
    pub fn set_registry_credentials(&self, text: &str) {
        write_owner_only(&self.root().join("credentials.toml"), text);
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.root().join("run/admin.sock")
    }

    fn spawn(&mut self) {
        let _ = fs::remove_file(self.socket());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root().join("daemon.log"))
            .unwrap();
        let mut command = Command::new(cairn_bin());
        command
            .args(["daemon", "--config"])
            .arg(self.root().join("cairn.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        if let Some(limit) = self.options.address_space_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        self.child = Some(command.spawn().expect("spawn daemon"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().unwrap())
            {
                panic!(
                    "daemon exited with {status} during start:\n{}",
                    self.daemon_log()
                );
            }
            if self.socket().exists() && self.cli(&["status"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not become ready:\n{}", self.daemon_log());
    }

    /// Everything the daemon wrote to stderr/stdout.
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.root().join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL, as a power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM, as a service manager would, and waits for it.
    pub fn terminate(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            assert!(
                self.wait_exit(Duration::from_secs(30)),
                "the daemon did not stop on SIGTERM"
            );
        }
    }

    /// Waits for the daemon to exit by itself (e.g. after a failpoint).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    self.child = None;
                    return true;
                }
            } else {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Starts the daemon again on the same state, with new environment overrides.
    pub fn restart_with_env(&mut self, env: Vec<(String, String)>) {
        self.kill9();
        self.options.env = env;
        self.spawn();
    }

    pub fn restart(&mut self) {
        let env = self.options.env.clone();
        self.restart_with_env(env);
    }

    /// Installs the HTTP adapter (its API token `token`, policy as shipped)
    /// and the MQTT adapter; the daemon's config names the listener and the
    /// broker. Subscribe to replies before this returns, with `before_mqtt`.
    pub fn install_adapters(&self, token: &str, before_mqtt: impl FnOnce()) {
        let api = self.root().join("api");
        fs::create_dir_all(&api).unwrap();
        fs::write(api.join("token"), format!("{token}\n")).unwrap();
        let policy = fs::read_to_string(workspace().join("policies/http-adapter.toml"))
            .unwrap()
            .replace("/etc/cairn/api", api.to_str().unwrap());
        self.write_policy("http-adapter", &policy);
        self.install(&plugin_wasm("http_adapter")).unwrap();
        before_mqtt();
        self.install(&plugin_wasm("mqtt_adapter")).unwrap();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(cairn_bin())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run cairn")
    }

    /// Runs the CLI with `--json`; Ok(ok-value) or Err(stderr).
    pub fn cli_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli(&full);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(serde_json::from_str(text.trim()).unwrap_or(Value::String(text.trim().to_string())))
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// Copies `wasm` into the test dir and signs it with `key` (`dev` or `other`).
    pub fn signed_copy(&self, wasm: &Path, key: &str) -> PathBuf {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = self.root().join(format!(
            "{n}-{}",
            wasm.file_name().unwrap().to_string_lossy()
        ));
        fs::copy(wasm, &copy).unwrap();
        let out = Command::new(cairn_bin())
            .args(["plugin", "sign"])
            .arg(&copy)
            .arg("--key")
            .arg(self.root().join(format!("{key}.key")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        copy
    }

    /// Signs with the dev key and installs.
    pub fn install(&self, wasm: &Path) -> Result<Value, String> {
        let signed = self.signed_copy(wasm, "dev");
        self.cli_json(&["plugin", "install", signed.to_str().unwrap()])
    }

    pub fn install_forced(&self, wasm: &Path) -> Result<Value, String> {
        let signed = self.signed_copy(wasm, "dev");
        self.cli_json(&["plugin", "install", "--force", signed.to_str().unwrap()])
    }

    pub fn call(&self, plugin: &str, command: &str, payload: &str) -> Result<Value, String> {
        self.cli_json(&["call", plugin, command, payload])
    }

    /// `plugin list --json`, as (name, version, state) triples.
    pub fn plugins(&self) -> Vec<(String, String, String)> {
        let list = self.cli_json(&["plugin", "list"]).expect("plugin list");
        list.as_array()
            .expect("list is an array")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["version"].as_str().unwrap().to_string(),
                    p["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub fn write_policy(&self, name: &str, text: &str) {
        fs::write(
            self.root().join("policies").join(format!("{name}.toml")),
            text,
        )
        .unwrap();
    }

    /// Polls `check` until it returns true or `timeout` passes.
    pub fn eventually(&self, timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        unmount_below(self.root());
    }
}

/// Detaches what is mounted below `dir` — the network namespaces a killed
/// daemon's containers were pinned to — so that the directory can go and
/// no stale namespace keeps an address later tests are given again.
fn unmount_below(dir: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    for point in mounts.lines().filter_map(|line| line.split(' ').nth(1)) {
        if Path::new(point).starts_with(dir)
            && let Ok(point) = std::ffi::CString::new(point)
        {
            // SAFETY: a valid C string; failure leaves the mount as it was.
            unsafe { libc::umount2(point.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

pub fn write_owner_only(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}
