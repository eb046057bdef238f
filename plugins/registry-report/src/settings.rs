//! The plugin's `[config]`, and the login it reads from the credentials file.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The gateway's in-use endpoint: `https://GATEWAY:PORT/registry/in-use`.
    pub url: String,
    /// The credentials file `cairn registry device-config` writes (the host's
    /// `[registries."HOST:PORT"]` format), read on every report so that a
    /// replaced file counts at once.
    pub credentials_file: String,
    /// Which `[registries."…"]` entry to use; needed only when there are several.
    #[serde(default)]
    pub registry: Option<String>,
    /// The name the gateway knows this device by; the host name when empty.
    #[serde(default)]
    pub device: String,
    /// How often to report (at least `1m`).
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Plugins whose `in-use` command adds what they run (`recipes`).
    #[serde(default)]
    pub ask: Vec<String>,
}

fn default_interval() -> String {
    "10m".into()
}

/// A login from the credentials file: printed only as its user name.
pub struct Login {
    username: String,
    password: String,
}

impl Login {
    pub fn basic_auth(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(default)]
    registries: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    username: String,
    password: String,
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(format!("`url` `{}` is not an http(s) URL", self.url));
        }
        let every = humantime::parse_duration(&self.interval)
            .map_err(|err| format!("`interval` = `{}` is not a duration: {err}", self.interval))?;
        if every < Duration::from_secs(60) {
            return Err("`interval` must be at least 1m".into());
        }
        if let Some(bad) = self
            .ask
            .iter()
            .find(|name| name.is_empty() || name.contains('/'))
        {
            return Err(format!("`ask` entry `{bad}` is not a plugin name"));
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        humantime::parse_duration(&self.interval).unwrap_or(Duration::from_secs(600))
    }

    pub fn device(&self) -> String {
        if !self.device.is_empty() {
            return self.device.clone();
        }
        cairn_sdk::system::facts()
            .map(|facts| facts.hostname)
            .unwrap_or_else(|_| "unknown-device".into())
    }

    /// The login for the gateway; errors name the file, never its contents.
    pub fn login(&self) -> Result<Login, String> {
        let path = &self.credentials_file;
        let text =
            std::fs::read_to_string(path).map_err(|err| format!("cannot read {path}: {err}"))?;
        let file: CredentialsFile = toml::from_str(&text).map_err(|_| {
            format!(
                "{path} is not a credentials file ([registries.\"HOST:PORT\"] username, password)"
            )
        })?;
        let mut entries = file.registries.into_iter();
        let entry = match &self.registry {
            Some(registry) => entries
                .find(|(name, _)| name == registry)
                .ok_or_else(|| format!("{path} has no login for {registry}"))?,
            None => match (entries.next(), entries.next()) {
                (Some(only), None) => only,
                (None, _) => return Err(format!("{path} holds no login")),
                (Some(_), Some(_)) => {
                    return Err(format!("{path} holds several logins: set `registry`"));
                }
            },
        };
        Ok(Login {
            username: entry.1.username,
            password: entry.1.password,
        })
    }
}
