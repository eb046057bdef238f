//! The plugin's `[config]`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// How the registry serves HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// A certificate issued by a CA the plugin generates for the device.
    DeviceCa,
    /// The `certificate` and `key` files given.
    Provided,
    /// Plain HTTP: every client must be told the registry is insecure. For
    /// development on one machine only.
    PlainHttpDevelopment,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The `docker-registry` executable.
    #[serde(default = "default_executable")]
    pub executable: String,
    /// Credentials, TLS material and the registry's config: a directory the
    /// policy grants as `private`.
    pub state: String,
    /// Where the registry stores images: a directory the policy grants as
    /// `write` (a mounted volume, typically).
    pub storage: String,
    /// `ip:port` the registry listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The name clients use; in the certificate and in the registry's URL.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// With `tls = "provided"`: the certificate chain (PEM).
    #[serde(default)]
    pub certificate: Option<String>,
    /// With `tls = "provided"`: its private key (PEM).
    #[serde(default)]
    pub key: Option<String>,
    /// Environments artifacts are published for.
    #[serde(default = "default_environments")]
    pub environments: Vec<String>,
    /// Successful artifacts kept per environment by retention.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// The plugin that probes the registry's port; `""` for none.
    #[serde(default = "default_health_plugin")]
    pub health_plugin: String,
    /// How often to prune (`"24h"`); `""` for only on command.
    #[serde(default)]
    pub prune_interval: String,
    /// A pause between prune steps (`"2s"`), to watch a prune go by; none by default.
    #[serde(default)]
    pub prune_step_pause: String,
    /// Upstream registries (`HOST[:PORT]`) devices fetch through this one
    /// instead; only used in the config `device-config` suggests.
    #[serde(default)]
    pub mirror_for: Vec<String>,
    /// Token auth: the URL where clients get tokens, served by this plugin
    /// on the daemon's HTTP listener. Without it the registry uses htpasswd,
    /// which cannot keep the `runtime` user from pushing.
    #[serde(default)]
    pub token_realm: Option<String>,
}

fn default_health_plugin() -> String {
    "health".into()
}

fn default_environments() -> Vec<String> {
    vec!["production".into()]
}

fn default_keep() -> usize {
    3
}

fn default_executable() -> String {
    "/usr/bin/docker-registry".into()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5000))
}

fn default_hostname() -> String {
    "localhost".into()
}

fn default_tls() -> TlsMode {
    TlsMode::DeviceCa
}

impl Settings {
    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), String> {
        for (key, path) in [("state", &self.state), ("storage", &self.storage)] {
            if !path.starts_with('/') {
                return Err(format!("`{key}` must be an absolute path, not `{path}`"));
            }
        }
        if self.keep == 0 {
            return Err("`keep` must be at least 1: retention keeps the latest `keep` artifacts of each environment".into());
        }
        if self.environments.is_empty() {
            return Err("`environments` must name at least one environment".into());
        }
        for (key, text) in [
            ("prune-interval", &self.prune_interval),
            ("prune-step-pause", &self.prune_step_pause),
        ] {
            if !text.is_empty() {
                humantime::parse_duration(text)
                    .map_err(|err| format!("`{key}` = `{text}` is not a duration: {err}"))?;
            }
        }
        if self
            .prune_interval()
            .is_some_and(|every| every < Duration::from_secs(60))
        {
            return Err("`prune-interval` must be at least 1m".into());
        }
        if let Some(bad) = self.mirror_for.iter().find(|upstream| {
            upstream.is_empty()
                || !upstream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'))
        }) {
            return Err(format!(
                "`mirror-for` entry `{bad}` is not a registry HOST[:PORT]"
            ));
        }
        if let Some(realm) = &self.token_realm {
            let path = self.token_path().unwrap_or_default();
            let scheme_ok = realm.starts_with("https://") || realm.starts_with("http://");
            if !scheme_ok || !path.ends_with("/token") || path.contains(['?', '#', ' ']) {
                return Err(format!(
                    "`token-realm` `{realm}` is not an http(s) URL whose path ends in /token, such as https://gateway:8443/registry/token"
                ));
            }
        }
        if self.state == self.storage {
            return Err("`state` and `storage` must be different directories".into());
        }
        let valid_host = !self.hostname.is_empty()
            && self
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        if !valid_host {
            return Err(format!("`hostname` `{}` is not a host name", self.hostname));
        }
        match (self.tls, &self.certificate, &self.key) {
            (TlsMode::Provided, Some(_), Some(_)) => Ok(()),
            (TlsMode::Provided, _, _) => {
                Err("`tls = \"provided\"` needs `certificate` and `key`".into())
            }
            (_, None, None) => Ok(()),
            _ => Err("`certificate` and `key` are only used with `tls = \"provided\"`".into()),
        }
    }

    /// The registry's base URL, as clients reach it.
    pub fn url(&self) -> String {
        let scheme = match self.tls {
            TlsMode::PlainHttpDevelopment => "http",
            _ => "https",
        };
        format!("{scheme}://{}:{}", self.hostname, self.listen.port())
    }

    /// The name tokens are issued for (their `aud`): the registry's `host:port`.
    pub fn service(&self) -> String {
        format!("{}:{}", self.hostname, self.listen.port())
    }

    /// The path of `token-realm`.
    pub fn token_path(&self) -> Option<String> {
        let realm = self.token_realm.as_deref()?;
        let after_scheme = realm.split_once("://").map_or(realm, |(_, rest)| rest);
        Some(
            after_scheme
                .find('/')
                .map_or("", |at| &after_scheme[at..])
                .to_string(),
        )
    }

    /// The IP addresses to put in the certificate beside the host name.
    pub fn certificate_ips(&self) -> Vec<IpAddr> {
        let mut ips = vec![self.listen.ip()];
        if let Ok(ip) = self.hostname.parse::<IpAddr>() {
            ips.push(ip);
        }
        ips.retain(|ip| !ip.is_unspecified());
        ips.dedup();
        ips
    }

    /// The interval of scheduled pruning, if any.
    pub fn prune_interval(&self) -> Option<Duration> {
        humantime::parse_duration(&self.prune_interval).ok()
    }

    pub fn prune_step_pause(&self) -> Duration {
        humantime::parse_duration(&self.prune_step_pause).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.state)
    }
}
