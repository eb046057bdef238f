//! `[mqtt]` in the daemon config: the brokers the daemon keeps connections to.
//!
//! Parsed strictly (unknown keys refused, with their line); the cross-field
//! checks run in [`MqttSection::resolve`] and name the broker's table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Deserializer};

use rumqttc::QoS;

use super::broker::qos_from_number;
use super::outbox::Bounds;
use crate::policy::{TopicPattern, validate_topic};

/// Default `client-id`: `{device}` is replaced by the daemon's device id.
pub const DEFAULT_CLIENT_ID: &str = "cairn-{device}";
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
const DEFAULT_RECONNECT_MIN: Duration = Duration::from_secs(1);
const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(60);
const DEFAULT_OUTBOX_MESSAGES: usize = 1000;
const MAX_OUTBOX_MESSAGES: usize = 1_000_000;
const DEFAULT_OUTBOX_BYTES: u64 = 64 * 1024 * 1024;
const MAX_OUTBOX_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// The MQTT 3.1.1 keep-alive field is a 16-bit number of seconds.
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(65_535);

/// Every configured broker, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttConfig {
    pub brokers: BTreeMap<String, BrokerConfig>,
}

/// One broker connection, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS with rustls.
    pub tls: bool,
    /// May contain `{device}`.
    pub client_id: String,
    pub username: Option<String>,
    /// Owner-only file holding the password (read at start; never logged).
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) trusted for the broker; the system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and private key (PEM), for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub last_will: Option<Announcement>,
    /// Published by the host on every connect (e.g. a retained `online`).
    pub birth: Option<Announcement>,
    /// Bounds of the outbox for QoS 1/2 messages; `None` when disabled.
    pub outbox: Option<Bounds>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// A message announcing the daemon's state: the birth message the host
/// publishes on every connect, or the last will the broker publishes when the
/// daemon disappears without disconnecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// May contain `{device}`.
    pub topic: String,
    /// May contain `{device}`.
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
}

/// `[mqtt]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MqttSection {
    #[serde(default)]
    brokers: BTreeMap<String, BrokerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BrokerSection {
    #[serde(deserialize_with = "broker_url")]
    url: BrokerUrl,
    client_id: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::config::positive_duration")]
    keep_alive: Option<Duration>,
    clean_session: Option<bool>,
    last_will: Option<AnnouncementSection>,
    birth: Option<AnnouncementSection>,
    outbox_messages: Option<usize>,
    #[serde(
        default = "default_outbox_bytes",
        deserialize_with = "crate::policy::serde_size::deserialize"
    )]
    outbox_bytes: u64,
    #[serde(default, deserialize_with = "crate::config::positive_duration")]
    reconnect_min: Option<Duration>,
    #[serde(default, deserialize_with = "crate::config::positive_duration")]
    reconnect_max: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnouncementSection {
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default, deserialize_with = "qos_number")]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

#[derive(Debug)]
struct BrokerUrl {
    host: String,
    port: u16,
    tls: bool,
}

fn broker_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BrokerUrl, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_url(&text).map_err(serde::de::Error::custom)
}

fn parse_url(text: &str) -> Result<BrokerUrl, String> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("mqtt://") {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix("mqtts://") {
        (true, rest)
    } else {
        return Err(format!(
            "invalid broker url `{text}`: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        // [IPv6]:port
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("invalid broker url `{text}`: unclosed `[`"));
        };
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(format!("invalid broker url `{text}`")),
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("invalid broker url `{text}`: bad port `{port}`"))?,
        None => default_port,
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
        return Err(format!(
            "invalid broker url `{text}`: expected mqtt://HOST[:PORT] (no user, path or query)"
        ));
    }
    Ok(BrokerUrl { host, port, tls })
}

fn qos_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let qos = u8::deserialize(deserializer)?;
    if qos > 2 {
        return Err(serde::de::Error::custom("qos must be 0, 1 or 2"));
    }
    Ok(qos)
}

/// A broker name: what plugins pass and what `source = "mqtt:<name>"` carries.
fn valid_broker_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn default_outbox_bytes() -> u64 {
    DEFAULT_OUTBOX_BYTES
}

impl AnnouncementSection {
    /// Checks the topic (with a stand-in device id; the real one only replaces `{device}`).
    fn check(self, table: &str, what: &str) -> anyhow::Result<Announcement> {
        let sample = self.topic.replace(super::DEVICE_PLACEHOLDER, "device");
        validate_topic(&sample)
            .map_err(|err| anyhow::anyhow!("{table} {what} topic `{}`: {err}", self.topic))?;
        TopicPattern::parse(&self.topic)
            .map_err(|err| anyhow::anyhow!("{table} {what} topic `{}`: {err}", self.topic))?;
        Ok(Announcement {
            topic: self.topic,
            payload: self.payload,
            qos: self.qos,
            retain: self.retain,
        })
    }
}

impl Announcement {
    /// Topic and payload with `{device}` replaced: `(topic, payload, qos, retain)`.
    pub fn resolve(&self, device_id: &str) -> anyhow::Result<(String, Vec<u8>, QoS, bool)> {
        let topic = TopicPattern::parse(&self.topic)
            .map_err(|err| anyhow::anyhow!("topic `{}`: {err}", self.topic))?
            .resolve(device_id)
            .to_string();
        let payload = self.payload.replace(super::DEVICE_PLACEHOLDER, device_id);
        Ok((
            topic,
            payload.into_bytes(),
            qos_from_number(self.qos),
            self.retain,
        ))
    }
}

impl MqttSection {
    /// Checks what the types cannot and resolves paths against `base_dir`.
    pub(crate) fn resolve(self, base_dir: &Path) -> anyhow::Result<MqttConfig> {
        let mut brokers = BTreeMap::new();
        for (name, section) in self.brokers {
            let table = format!("[mqtt.brokers.{name}]");
            if !valid_broker_name(&name) {
                bail!("{table}: a broker name is 1 to 64 lowercase letters, digits, `-` or `_`");
            }
            let path = |path: Option<PathBuf>| path.map(|path| base_dir.join(path));
            let client_id = section
                .client_id
                .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_string());
            if client_id.is_empty() || client_id.len() > 256 {
                bail!("{table} client-id must be 1 to 256 bytes");
            }
            if section.password_file.is_some() && section.username.is_none() {
                bail!("{table} password-file needs a username");
            }
            let client_auth = match (path(section.cert_file), path(section.key_file)) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => bail!("{table} cert-file and key-file go together (mutual TLS)"),
            };
            let ca_file = path(section.ca_file);
            if !section.url.tls && (ca_file.is_some() || client_auth.is_some()) {
                bail!("{table} ca-file, cert-file and key-file need an mqtts:// url");
            }
            let keep_alive = section.keep_alive.unwrap_or(DEFAULT_KEEP_ALIVE);
            if keep_alive < Duration::from_secs(1) || keep_alive > MAX_KEEP_ALIVE {
                bail!("{table} keep-alive must be between 1s and 65535s");
            }
            let reconnect_min = section.reconnect_min.unwrap_or(DEFAULT_RECONNECT_MIN);
            let reconnect_max = section
                .reconnect_max
                .unwrap_or(DEFAULT_RECONNECT_MAX.max(reconnect_min));
            if reconnect_max < reconnect_min {
                bail!("{table} reconnect-max must not be below reconnect-min");
            }
            let last_will = section
                .last_will
                .map(|will| will.check(&table, "last-will"))
                .transpose()?;
            let birth = section
                .birth
                .map(|birth| birth.check(&table, "birth"))
                .transpose()?;
            let outbox_bytes = section.outbox_bytes;
            if outbox_bytes > MAX_OUTBOX_BYTES {
                bail!("{table} outbox-bytes must be at most {MAX_OUTBOX_BYTES}");
            }
            let outbox = match section.outbox_messages.unwrap_or(DEFAULT_OUTBOX_MESSAGES) {
                0 => None,
                messages if messages > MAX_OUTBOX_MESSAGES => {
                    bail!("{table} outbox-messages must be at most {MAX_OUTBOX_MESSAGES}")
                }
                messages => Some(Bounds {
                    messages,
                    bytes: outbox_bytes,
                }),
            };
            brokers.insert(
                name,
                BrokerConfig {
                    host: section.url.host,
                    port: section.url.port,
                    tls: section.url.tls,
                    client_id,
                    username: section.username,
                    password_file: path(section.password_file),
                    ca_file,
                    client_auth,
                    keep_alive,
                    clean_session: section.clean_session.unwrap_or(true),
                    last_will,
                    birth,
                    outbox,
                    reconnect_min,
                    reconnect_max,
                },
            );
        }
        Ok(MqttConfig { brokers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = parse_url("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.tls),
            ("127.0.0.1", 1884, false)
        );
        let url = parse_url("mqtts://broker.example").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.tls),
            ("broker.example", 8883, true)
        );
        let url = parse_url("mqtt://[::1]:1999/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 1999));
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://user@x",
            "mqtt://x/path",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
