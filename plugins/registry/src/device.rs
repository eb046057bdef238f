//! What a device of the site needs to use this registry as a mirror: a
//! credentials file with the `runtime` login and the CA to trust, written
//! owner-only into `<state>/device/`, and the `cairn.toml` lines that use
//! them. The password is only ever in that file, never in the reply.

use serde::Serialize;

use crate::secrets::{Credentials, User, write_atomic};
use crate::settings::{Settings, TlsMode};

/// The reply of `device-config`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeviceConfig {
    /// The registry as devices name it, `HOST:PORT`.
    pub registry: String,
    /// The owner-only credentials file to copy to each device.
    pub credentials_file: String,
    /// The CA devices trust (absent with a provided certificate or plain HTTP).
    pub ca_file: Option<String>,
    /// Upstream registries this gateway serves as a mirror for.
    pub mirror_for: Vec<String>,
    /// The `[registry]` section of a device's `cairn.toml`, with the files at
    /// `/etc/cairn/site-registry/credentials.toml` and `/etc/cairn/site-registry/ca.pem`.
    pub config: String,
}

/// Where a device keeps the files, in the suggested config.
const DEVICE_CREDENTIALS: &str = "/etc/cairn/site-registry/credentials.toml";
const DEVICE_CA: &str = "/etc/cairn/site-registry/ca.pem";

/// Writes the device files (again: after a rotation they change) and
/// describes how to use them.
pub fn write(settings: &Settings, credentials: &Credentials) -> Result<DeviceConfig, String> {
    let dir = settings.path("device");
    std::fs::create_dir_all(&dir).map_err(|err| format!("cannot create {dir}: {err}"))?;
    let registry = format!("{}:{}", settings.hostname, settings.listen.port());
    let credentials_file = format!("{dir}/credentials.toml");
    let text = credentials_toml(&registry, credentials);
    write_atomic(&credentials_file, text.as_bytes())?;
    let ca_file = match settings.tls {
        TlsMode::DeviceCa => {
            let path = format!("{dir}/ca.pem");
            let ca = std::fs::read(settings.path("tls/ca.pem"))
                .map_err(|err| format!("cannot read the device CA: {err}"))?;
            write_atomic(&path, &ca)?;
            Some(path)
        }
        TlsMode::Provided | TlsMode::PlainHttpDevelopment => None,
    };
    Ok(DeviceConfig {
        config: device_toml(settings, &registry, ca_file.is_some()),
        registry,
        credentials_file,
        ca_file,
        mirror_for: settings.mirror_for.clone(),
    })
}

/// A TOML basic string: JSON's string syntax is a subset of it, so
/// `serde_json` escapes it correctly.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A credentials file in the host's format.
fn credentials_toml(registry: &str, credentials: &Credentials) -> String {
    format!(
        "[registries.{}]\nusername = {}\npassword = {}\n",
        quote(registry),
        quote(User::Runtime.name()),
        quote(credentials.password(User::Runtime).expose()),
    )
}

fn device_toml(settings: &Settings, registry: &str, with_ca: bool) -> String {
    let mut text = format!("[registry]\ncredentials = {}\n", quote(DEVICE_CREDENTIALS));
    if with_ca {
        text.push_str(&format!("ca-file = {}\n", quote(DEVICE_CA)));
    }
    if settings.tls == TlsMode::PlainHttpDevelopment {
        text.push_str(&format!("insecure = [{}]\n", quote(registry)));
    }
    if !settings.mirror_for.is_empty() {
        text.push_str("\n[registry.mirrors]\n");
        for upstream in &settings.mirror_for {
            text.push_str(&format!("{} = {}\n", quote(upstream), quote(registry)));
        }
    }
    text
}
