//! The daemon's configuration file (TOML), its defaults and command-line overrides.
//!
//! Every key is optional. Relative paths in a file resolve against the file's
//! own directory, so a config can travel with the files it names; relative
//! paths given on the command line resolve against the working directory.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Deserializer};

use crate::caps::container::config::ContainersConfig;
use crate::caps::mqtt::config::{MqttConfig, MqttSection};

/// Where plugins, the precompiled cache, the journal and key-value data live by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cairn";
/// Where policy files are read from by default.
pub const DEFAULT_POLICY_DIR: &str = "/etc/cairn/policies";
/// File name of the admin socket inside the state directory when none is configured.
pub const ADMIN_SOCKET_FILE_NAME: &str = "admin.sock";
/// Log filter used when none is configured.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Size of the instance pool when none is configured.
pub const DEFAULT_MAX_INSTANCES: u32 = 32;
/// Interruption granularity of running plugins when none is configured.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);

/// The daemon's settings after defaults, file and command line are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Plugin blobs, precompiled cache, journal and key-value data.
    pub state_dir: PathBuf,
    /// Directory of policy files.
    pub policy_dir: PathBuf,
    /// The admin socket the CLI talks to; `<state-dir>/admin.sock` unless set.
    pub admin_socket: PathBuf,
    /// Development switch: accept plugins without a valid signature.
    pub allow_unsigned: bool,
    /// A tracing filter: a level (`info`) or directives (`info,cairn::runtime=debug`).
    pub log_level: String,
    /// Trusted signers: the name policies use → path of the public key (PEM).
    pub trust_keys: BTreeMap<String, PathBuf>,
    /// Plugin runtime settings.
    pub runtime: RuntimeConfig,
    /// How plugins are fetched from OCI registries.
    pub registry: RegistryConfig,
    /// The HTTP listener plugins serve on, when configured.
    pub http: Option<HttpListenerConfig>,
    /// This device's id: `{device}` in topic patterns and MQTT settings.
    pub device_id: String,
    /// MQTT brokers the daemon connects to.
    pub mqtt: MqttConfig,
    /// The containerd that runs containers.
    pub containers: ContainersConfig,
}

/// `[listeners.http]`: where plugins that serve HTTP are reached, and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpListenerConfig {
    /// `IP:PORT` to listen on (port 0 picks a free one, which the log reports).
    pub address: std::net::SocketAddr,
    /// Largest request head (request line and headers).
    #[serde(
        default = "default_max_header_size",
        with = "crate::policy::serde_size"
    )]
    pub max_header_size: u64,
    /// Largest request body.
    #[serde(default = "default_max_body_size", with = "crate::policy::serde_size")]
    pub max_body_size: u64,
    /// Time a client has to send the request head.
    #[serde(
        default = "default_header_timeout",
        with = "crate::policy::serde_duration"
    )]
    pub header_timeout: Duration,
    /// Time a plugin has to answer.
    #[serde(
        default = "default_request_timeout",
        with = "crate::policy::serde_duration"
    )]
    pub request_timeout: Duration,
    /// Serve HTTPS with this certificate chain (PEM)…
    pub tls_cert_file: Option<PathBuf>,
    /// …and this private key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate issued by this CA (PEM).
    pub client_ca_file: Option<PathBuf>,
}

fn default_max_header_size() -> u64 {
    16 * 1024
}
fn default_max_body_size() -> u64 {
    1024 * 1024
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Settings for installing plugins from OCI registries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registries (`host:port`, exactly) reached over plain HTTP; all others use HTTPS.
    pub insecure: Vec<String>,
    /// Owner-only TOML file with registry credentials, if any.
    pub credentials: Option<PathBuf>,
    /// Upstream registry → the mirror every fetch for it goes to.
    pub mirrors: BTreeMap<String, String>,
    /// A PEM file of certificates trusted besides the system's (a site CA).
    pub ca_file: Option<PathBuf>,
}

/// Settings of the WebAssembly runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Instances the pooling allocator reserves room for.
    pub max_instances: u32,
    /// How often running plugins are interrupted to check deadlines.
    pub epoch_tick: Duration,
}

/// Values from `cairn daemon` flags, which win over the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--policy-dir`.
    pub policy_dir: Option<PathBuf>,
    /// `--socket` (or `CAIRN_SOCKET`).
    pub admin_socket: Option<PathBuf>,
    /// `--allow-unsigned`: can switch the development mode on, never off.
    pub allow_unsigned: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        let state_dir = PathBuf::from(DEFAULT_STATE_DIR);
        DaemonConfig {
            admin_socket: state_dir.join(ADMIN_SOCKET_FILE_NAME),
            state_dir,
            policy_dir: PathBuf::from(DEFAULT_POLICY_DIR),
            allow_unsigned: false,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            trust_keys: BTreeMap::new(),
            runtime: RuntimeConfig::default(),
            registry: RegistryConfig::default(),
            http: None,
            device_id: default_device_id(),
            mqtt: MqttConfig::default(),
            containers: ContainersConfig::default(),
        }
    }
}

/// The host name, or `cairn` when it cannot be read.
fn default_device_id() -> String {
    let hostname = crate::caps::system::hostname();
    if hostname.is_empty() {
        "cairn".to_string()
    } else {
        hostname
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: DEFAULT_MAX_INSTANCES,
            epoch_tick: DEFAULT_EPOCH_TICK,
        }
    }
}

impl DaemonConfig {
    /// Reads the config file at `path`; keys it leaves out take their defaults.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::resolve(Some(path), &ConfigOverrides::default())
    }

    /// Merges defaults, the optional config file and command-line overrides.
    pub fn resolve(path: Option<&Path>, overrides: &ConfigOverrides) -> anyhow::Result<Self> {
        let (file, base_dir) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let absolute = std::path::absolute(path)
                    .with_context(|| format!("cannot resolve {}", path.display()))?;
                let base_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
                let file = toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?;
                (file, base_dir)
            }
            None => (ConfigFile::default(), PathBuf::new()),
        };
        let from_command_line = |path: &Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
            path.as_deref()
                .map(|path| {
                    std::path::absolute(path)
                        .with_context(|| format!("cannot resolve {}", path.display()))
                })
                .transpose()
        };
        let from_file = |path: Option<PathBuf>| path.map(|path| base_dir.join(path));

        let defaults = DaemonConfig::default();
        let state_dir = from_command_line(&overrides.state_dir)?
            .or_else(|| from_file(file.state_dir))
            .unwrap_or(defaults.state_dir);
        let policy_dir = from_command_line(&overrides.policy_dir)?
            .or_else(|| from_file(file.policy_dir))
            .unwrap_or(defaults.policy_dir);
        // Derived after the overrides so `--state-dir` moves a default socket along.
        let admin_socket = from_command_line(&overrides.admin_socket)?
            .or_else(|| from_file(file.admin_socket))
            .unwrap_or_else(|| state_dir.join(ADMIN_SOCKET_FILE_NAME));
        let trust_keys = file
            .trust
            .keys
            .into_iter()
            .map(|(name, path)| (name, base_dir.join(path)))
            .collect();

        Ok(DaemonConfig {
            state_dir,
            policy_dir,
            admin_socket,
            allow_unsigned: overrides.allow_unsigned || file.allow_unsigned.unwrap_or(false),
            log_level: file.log_level.unwrap_or(defaults.log_level),
            trust_keys,
            runtime: RuntimeConfig {
                max_instances: file
                    .runtime
                    .max_instances
                    .map_or(DEFAULT_MAX_INSTANCES, NonZeroU32::get),
                epoch_tick: file.runtime.epoch_tick.unwrap_or(DEFAULT_EPOCH_TICK),
            },
            registry: RegistryConfig {
                insecure: file.registry.insecure,
                credentials: from_file(file.registry.credentials),
                mirrors: checked_mirrors(file.registry.mirrors)
                    .with_context(|| format!("invalid config file {}", path_text(path)))?,
                ca_file: from_file(file.registry.ca_file),
            },
            http: file.listeners.http.map(|mut http| {
                http.tls_cert_file = from_file(http.tls_cert_file.take());
                http.tls_key_file = from_file(http.tls_key_file.take());
                http.client_ca_file = from_file(http.client_ca_file.take());
                http
            }),
            device_id: file.device_id.unwrap_or(defaults.device_id),
            mqtt: file
                .mqtt
                .resolve(&base_dir)
                .with_context(|| format!("invalid config file {}", path_text(path)))?,
            containers: file
                .containers
                .resolve(&base_dir)
                .map_err(|why| anyhow::anyhow!("invalid config file {}: {why}", path_text(path)))?,
        })
    }
}

/// The file as written: everything optional, unknown keys rejected (with their
/// line, through the TOML parser's spans) so a typo is never silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    state_dir: Option<PathBuf>,
    policy_dir: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    allow_unsigned: Option<bool>,
    #[serde(default, deserialize_with = "device_id")]
    device_id: Option<String>,
    #[serde(default, deserialize_with = "log_filter")]
    log_level: Option<String>,
    #[serde(default)]
    trust: TrustSection,
    #[serde(default)]
    runtime: RuntimeSection,
    #[serde(default)]
    registry: RegistrySection,
    #[serde(default)]
    mqtt: MqttSection,
    #[serde(default)]
    containers: ContainersConfig,
    #[serde(default)]
    listeners: ListenersSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustSection {
    #[serde(default)]
    keys: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RuntimeSection {
    max_instances: Option<NonZeroU32>,
    #[serde(default, deserialize_with = "positive_duration")]
    epoch_tick: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RegistrySection {
    #[serde(default)]
    insecure: Vec<String>,
    credentials: Option<PathBuf>,
    #[serde(default)]
    mirrors: BTreeMap<String, String>,
    ca_file: Option<PathBuf>,
}

/// Network listeners the host owns on behalf of plugins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenersSection {
    http: Option<HttpListenerConfig>,
}

/// Checks a log filter while parsing, so a bad one is reported with its line.
fn log_filter<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let filter = String::deserialize(deserializer)?;
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|error| {
        serde::de::Error::custom(format!("invalid log-level `{filter}`: {error}"))
    })?;
    Ok(Some(filter))
}

/// `[registry.mirrors]`: both sides must be a registry, `HOST[:PORT]`.
fn checked_mirrors(mirrors: BTreeMap<String, String>) -> anyhow::Result<BTreeMap<String, String>> {
    for (upstream, mirror) in &mirrors {
        for registry in [upstream, mirror] {
            let parsed = crate::supply::oci::Reference::parse(&format!("{registry}/probe:latest"));
            if !parsed.is_ok_and(|parsed| parsed.registry() == registry) {
                anyhow::bail!(
                    "[registry.mirrors] {upstream:?} = {mirror:?}: {registry:?} is not a registry HOST[:PORT]"
                );
            }
        }
    }
    Ok(mirrors)
}

fn path_text(path: Option<&Path>) -> String {
    path.map_or_else(|| "(none)".to_string(), |path| path.display().to_string())
}

/// A device id is one topic level: printable, no `/`, `+`, `#`, braces or spaces.
fn device_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let id = String::deserialize(deserializer)?;
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '+' | '#' | '{' | '}'));
    if !valid {
        return Err(serde::de::Error::custom(format!(
            "invalid device-id `{id}`: 1 to 64 printable ASCII characters without `/`, `+`, `#`, `{{`, `}}` or spaces"
        )));
    }
    Ok(Some(id))
}

/// Parses `"10ms"`-style durations while parsing, so a bad one is reported with its line.
pub(crate) fn positive_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let duration = humantime::parse_duration(&text)
        .map_err(|error| serde::de::Error::custom(format!("invalid duration `{text}`: {error}")))?;
    if duration.is_zero() {
        return Err(serde::de::Error::custom("the duration must be above zero"));
    }
    Ok(Some(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> (tempfile::TempDir, anyhow::Result<DaemonConfig>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, text).unwrap();
        let config = DaemonConfig::load(&path);
        (dir, config)
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        let (_dir, config) = load_text("");
        assert_eq!(config.unwrap(), DaemonConfig::default());
        assert_eq!(
            DaemonConfig::default().admin_socket,
            Path::new("/var/lib/cairn/admin.sock")
        );
    }

    #[test]
    fn reads_every_key_and_resolves_relative_paths_against_the_file() {
        let (dir, config) = load_text(
            r#"
state-dir = "state"
policy-dir = "/etc/cairn/policies"
admin-socket = "run/admin.sock"
allow-unsigned = true
log-level = "debug,cairn::runtime=trace"

[trust.keys]
dev = "keys/dev.pub"
release = "/etc/cairn/keys/release.pub"

[runtime]
max-instances = 8
epoch-tick = "25ms"

[listeners]
"#,
        );
        let config = config.unwrap();
        let base = std::path::absolute(dir.path()).unwrap();
        assert_eq!(config.state_dir, base.join("state"));
        assert_eq!(config.policy_dir, Path::new("/etc/cairn/policies"));
        assert_eq!(config.admin_socket, base.join("run/admin.sock"));
        assert!(config.allow_unsigned);
        assert_eq!(config.log_level, "debug,cairn::runtime=trace");
        assert_eq!(config.trust_keys["dev"], base.join("keys/dev.pub"));
        assert_eq!(
            config.trust_keys["release"],
            Path::new("/etc/cairn/keys/release.pub")
        );
        assert_eq!(config.runtime.max_instances, 8);
        assert_eq!(config.runtime.epoch_tick, Duration::from_millis(25));
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        for (text, line) in [
            ("state-dir = \"/x\"\nstate-dri = \"/y\"\n", 2),
            ("[runtime]\nmax-instance = 4\n", 2),
            ("\n\n[listeners]\nftp = 8080\n", 4),
            ("[trust]\nkeys = {}\nsigners = 1\n", 3),
        ] {
            let (_dir, config) = load_text(text);
            let message = format!("{:#}", config.unwrap_err());
            assert!(message.contains("unknown field"), "{message}");
            assert!(message.contains(&format!("line {line}")), "{message}");
        }
    }

    #[test]
    fn bad_values_are_errors_with_their_line() {
        for text in [
            "[runtime]\nepoch-tick = \"soon\"\n",
            "[runtime]\nepoch-tick = \"0s\"\n",
            "[runtime]\nmax-instances = 0\n",
            "log-level = \"info,=[\"\n",
        ] {
            let (_dir, config) = load_text(text);
            let message = format!("{:#}", config.unwrap_err());
            assert!(message.contains("line "), "{message}");
        }
    }

    #[test]
    fn command_line_overrides_win_and_move_the_default_socket() {
        let overrides = ConfigOverrides {
            state_dir: Some(PathBuf::from("/tmp/cairn-state")),
            allow_unsigned: true,
            ..ConfigOverrides::default()
        };
        let config = DaemonConfig::resolve(None, &overrides).unwrap();
        assert_eq!(config.state_dir, Path::new("/tmp/cairn-state"));
        assert_eq!(
            config.admin_socket,
            Path::new("/tmp/cairn-state/admin.sock")
        );
        assert!(config.allow_unsigned);

        let (dir, _) = load_text("admin-socket = \"/run/cairn/admin.sock\"\n");
        let path = dir.path().join("cairn.toml");
        let overrides = ConfigOverrides {
            admin_socket: Some(PathBuf::from("/tmp/other.sock")),
            ..ConfigOverrides::default()
        };
        let config = DaemonConfig::resolve(Some(&path), &overrides).unwrap();
        assert_eq!(config.admin_socket, Path::new("/tmp/other.sock"));
    }

    #[test]
    fn reads_mqtt_brokers_and_the_device_id() {
        let (dir, config) = load_text(
            r#"
device-id = "pump-7"

[mqtt.brokers.local]
url = "mqtt://127.0.0.1:1884"

[mqtt.brokers.cloud]
url = "mqtts://broker.example"
client-id = "edge-{device}"
username = "pump"
password-file = "secrets/mqtt.pass"
ca-file = "ca.pem"
cert-file = "client.pem"
key-file = "/etc/cairn/client.key"
keep-alive = "45s"
clean-session = false
reconnect-min = "500ms"
reconnect-max = "5m"

[mqtt.brokers.cloud.last-will]
topic = "devices/{device}/status"
payload = "offline"
qos = 1
retain = true
"#,
        );
        let config = config.unwrap();
        let base = std::path::absolute(dir.path()).unwrap();
        assert_eq!(config.device_id, "pump-7");
        let local = &config.mqtt.brokers["local"];
        assert_eq!(
            (local.host.as_str(), local.port, local.tls),
            ("127.0.0.1", 1884, false)
        );
        assert_eq!(local.client_id, "cairn-{device}");
        assert_eq!(local.keep_alive, Duration::from_secs(30));
        assert!(local.clean_session);
        assert!(local.last_will.is_none());
        let cloud = &config.mqtt.brokers["cloud"];
        assert_eq!((cloud.port, cloud.tls), (8883, true));
        assert_eq!(cloud.client_id, "edge-{device}");
        assert_eq!(cloud.username.as_deref(), Some("pump"));
        assert_eq!(
            cloud.password_file.as_deref(),
            Some(base.join("secrets/mqtt.pass").as_path())
        );
        assert_eq!(
            cloud.ca_file.as_deref(),
            Some(base.join("ca.pem").as_path())
        );
        assert_eq!(
            cloud.client_auth,
            Some((
                base.join("client.pem"),
                PathBuf::from("/etc/cairn/client.key")
            ))
        );
        assert_eq!(cloud.keep_alive, Duration::from_secs(45));
        assert!(!cloud.clean_session);
        assert_eq!(cloud.reconnect_min, Duration::from_millis(500));
        assert_eq!(cloud.reconnect_max, Duration::from_secs(300));
        let will = cloud.last_will.as_ref().unwrap();
        assert_eq!(
            (
                will.topic.as_str(),
                will.payload.as_str(),
                will.qos,
                will.retain
            ),
            ("devices/{device}/status", "offline", 1, true)
        );
    }

    #[test]
    fn registry_mirrors_and_ca_file_are_read_and_checked() {
        let (dir, config) = load_text(
            "[registry]\nca-file = \"site-ca.pem\"\n[registry.mirrors]\n\"ghcr.io\" = \"gw.site:5000\"\n",
        );
        let registry = config.unwrap().registry;
        assert_eq!(registry.ca_file, Some(dir.path().join("site-ca.pem")));
        assert_eq!(registry.mirrors["ghcr.io"], "gw.site:5000");
        for bad in ["gw.site/path", "", "gw site"] {
            let text = format!("[registry.mirrors]\n\"ghcr.io\" = {bad:?}\n");
            let (_dir, config) = load_text(&text);
            let err = format!("{:#}", config.unwrap_err());
            assert!(
                err.contains("is not a registry HOST[:PORT]"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bad_mqtt_settings_are_errors_naming_the_broker() {
        for (text, expected) in [
            ("[mqtt.brokers.a]\nurl = \"tcp://x\"\n", "line 2"),
            ("[mqtt.brokers.a]\nurl = \"mqtt://x\"\nport = 1\n", "line 3"),
            ("[mqtt.brokers.a]\n", "missing field `url`"),
            (
                "[mqtt.brokers.a]\nurl = \"mqtts://x\"\ncert-file = \"c.pem\"\n",
                "[mqtt.brokers.a] cert-file and key-file go together",
            ),
            (
                "[mqtt.brokers.a]\nurl = \"mqtt://x\"\nca-file = \"ca.pem\"\n",
                "need an mqtts:// url",
            ),
            (
                "[mqtt.brokers.a]\nurl = \"mqtt://x\"\npassword-file = \"p\"\n",
                "password-file needs a username",
            ),
            (
                "[mqtt.brokers.a]\nurl = \"mqtt://x\"\nreconnect-min = \"10s\"\nreconnect-max = \"1s\"\n",
                "reconnect-max",
            ),
            (
                "[mqtt.brokers.a]\nurl = \"mqtt://x\"\n[mqtt.brokers.a.last-will]\ntopic = \"a/+\"\n",
                "last-will topic",
            ),
            (
                "[mqtt.brokers.a]\nurl = \"mqtt://x\"\n[mqtt.brokers.a.last-will]\ntopic = \"a\"\nqos = 3\n",
                "qos must be 0, 1 or 2",
            ),
            ("[mqtt.brokers.Bad]\nurl = \"mqtt://x\"\n", "broker name"),
            ("device-id = \"a/b\"\n", "invalid device-id"),
        ] {
            let (_dir, config) = load_text(text);
            let message = format!("{:#}", config.unwrap_err());
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let error = DaemonConfig::load(Path::new("/nonexistent/cairn.toml")).unwrap_err();
        assert!(format!("{error:#}").contains("/nonexistent/cairn.toml"));
    }
}
