//! The options the container runtime interprets, by name:
//!
//! - `port_<n>`: `[hostip:]hostport->[ip:]port[/proto]` or `port[/proto]`
//!   (proto `tcp`, the default, or `udp`; IPv6 addresses in brackets);
//! - `volume_<n>`: the absolute path a volume is mounted at;
//! - `volume_encrypted_<n>`: `key[:fs]`, encrypting volume `<n>`;
//! - `secret_env_<NAME>`: `[?]secret:key` (Nanocloud also takes
//!   `secret/key`), environment variable `NAME` from a Secret, optional with
//!   `?`;
//! - `runtime_command`, `runtime_args`: split on whitespace.
//!
//! An empty value means "none" (so an `!if` can switch a port off).
//! Nanocloud skips a malformed entry silently; here it is an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use super::check::{check_absolute_path, parse_port_number};
use super::error::{MASK, ResolveError, shown};
use super::resolved::ResolvedOption;

/// What the runtime makes of the options it interprets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeSpec {
    /// Published ports, in option order.
    pub ports: Vec<PortMapping>,
    /// Volumes, in option order.
    pub volumes: Vec<Volume>,
    /// Environment variables taken from Secrets, in option order.
    pub secret_env: Vec<SecretEnv>,
    /// `runtime_command`, split on whitespace; empty keeps the image's.
    pub command: Vec<String>,
    /// `runtime_args`, split on whitespace; empty keeps the image's.
    pub args: Vec<String>,
}

/// A `port_<n>` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The option it came from.
    pub option: String,
    /// The host address to listen on; `None` for all.
    pub host_ip: Option<IpAddr>,
    /// The host port; the container port when the option gives only one.
    pub host_port: u16,
    /// The container address, if the option names one.
    pub container_ip: Option<IpAddr>,
    /// The container port.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP, the default.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A `volume_<n>` option, with its `volume_encrypted_<n>` if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The option it came from.
    pub option: String,
    /// `<n>`, the volume's name.
    pub name: String,
    /// Where it is mounted in the container.
    pub path: String,
    /// How it is encrypted, if it is.
    pub encryption: Option<VolumeEncryption>,
}

/// A `volume_encrypted_<n>` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeEncryption {
    /// The option it came from.
    pub option: String,
    /// The encryption key's name.
    pub key: String,
    /// The filesystem to create, if not the default.
    pub filesystem: Option<String>,
}

/// A `secret_env_<NAME>` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    /// The option it came from.
    pub option: String,
    /// The environment variable, `NAME`.
    pub env: String,
    /// The Secret holding the value.
    pub secret: String,
    /// The key within the Secret.
    pub key: String,
    /// Whether a missing Secret or key leaves the variable unset rather than
    /// failing.
    pub optional: bool,
}

impl RuntimeSpec {
    /// The spec as a dry run shows it; entries from secret options masked.
    pub(crate) fn masked(&self, is_secret: &dyn Fn(&str) -> bool) -> Value {
        let mask_or = |option: &str, value: Value| {
            if is_secret(option) {
                json!(MASK)
            } else {
                value
            }
        };
        let ip = |ip: &Option<IpAddr>| ip.map(|ip| ip.to_string());
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|port| {
                mask_or(
                    &port.option,
                    json!({
                        "option": port.option,
                        "host_ip": ip(&port.host_ip),
                        "host_port": port.host_port,
                        "container_ip": ip(&port.container_ip),
                        "container_port": port.container_port,
                        "protocol": port.protocol.name(),
                    }),
                )
            })
            .collect();
        let volumes: Vec<Value> = self
            .volumes
            .iter()
            .map(|volume| {
                let encryption = volume.encryption.as_ref().map(|encryption| {
                    mask_or(
                        &encryption.option,
                        json!({"key": encryption.key, "filesystem": encryption.filesystem}),
                    )
                });
                mask_or(
                    &volume.option,
                    json!({"name": volume.name, "path": volume.path, "encryption": encryption}),
                )
            })
            .collect();
        let secret_env: Vec<Value> = self
            .secret_env
            .iter()
            .map(|entry| {
                mask_or(
                    &entry.option,
                    json!({
                        "env": entry.env,
                        "secret": entry.secret,
                        "key": entry.key,
                        "optional": entry.optional,
                    }),
                )
            })
            .collect();
        json!({
            "ports": ports,
            "volumes": volumes,
            "secret_env": secret_env,
            "command": mask_or("runtime_command", json!(self.command)),
            "args": mask_or("runtime_args", json!(self.args)),
        })
    }
}

/// Reads the runtime-interpreted options out of the resolved ones.
pub(crate) fn parse_runtime(options: &[ResolvedOption]) -> Result<RuntimeSpec, ResolveError> {
    let mut spec = RuntimeSpec::default();
    let mut encryptions = Vec::new();
    for option in options {
        let value = option.value.as_str();
        let fail = |what: &'static str, reason: String| ResolveError::Runtime {
            option: option.name.clone(),
            shown: shown(value, option.secret),
            what,
            reason,
        };
        let name = option.name.as_str();
        if name == "runtime_command" {
            spec.command = value.split_whitespace().map(str::to_string).collect();
        } else if name == "runtime_args" {
            spec.args = value.split_whitespace().map(str::to_string).collect();
        } else if value.is_empty() {
            // "None": see the module doc.
        } else if let Some(volume) = name.strip_prefix("volume_encrypted_") {
            let what = "volume encryption";
            let (key, filesystem) = parse_encryption(value).map_err(|reason| fail(what, reason))?;
            let encryption = VolumeEncryption {
                option: name.to_string(),
                key,
                filesystem,
            };
            let volume_name = suffix(volume).map_err(|reason| fail(what, reason))?;
            encryptions.push((volume_name, encryption, shown(value, option.secret)));
        } else if let Some(volume) = name.strip_prefix("volume_") {
            let what = "volume mount path";
            let volume_name = suffix(volume).map_err(|reason| fail(what, reason))?;
            check_absolute_path(value).map_err(|reason| fail(what, reason))?;
            spec.volumes.push(Volume {
                option: name.to_string(),
                name: volume_name,
                path: value.to_string(),
                encryption: None,
            });
        } else if let Some(port) = name.strip_prefix("port_") {
            let what = "port mapping";
            suffix(port).map_err(|reason| fail(what, reason))?;
            let mut mapping = parse_port_mapping(value).map_err(|reason| fail(what, reason))?;
            mapping.option = name.to_string();
            spec.ports.push(mapping);
        } else if let Some(env) = name.strip_prefix("secret_env_") {
            let what = "secret environment variable";
            let mut entry = parse_secret_env(env, value).map_err(|reason| fail(what, reason))?;
            entry.option = name.to_string();
            spec.secret_env.push(entry);
        }
    }
    for (volume_name, encryption, shown_value) in encryptions {
        let Some(volume) = spec
            .volumes
            .iter_mut()
            .find(|volume| volume.name == volume_name)
        else {
            return Err(ResolveError::Runtime {
                option: encryption.option,
                shown: shown_value,
                what: "volume encryption",
                reason: format!("there is no volume_{volume_name} to encrypt"),
            });
        };
        volume.encryption = Some(encryption);
    }
    Ok(spec)
}

fn suffix(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("the option name has nothing after its prefix".to_string())
    } else {
        Ok(text.to_string())
    }
}

/// `key[:fs]`.
fn parse_encryption(value: &str) -> Result<(String, Option<String>), String> {
    let (key, filesystem) = match value.split_once(':') {
        Some((key, filesystem)) => (key, Some(filesystem)),
        None => (value, None),
    };
    if key.is_empty() || filesystem.is_some_and(str::is_empty) {
        return Err("expected key[:filesystem]".to_string());
    }
    Ok((key.to_string(), filesystem.map(str::to_string)))
}

/// `[hostip:]hostport->[ip:]port[/proto]` or `port[/proto]`. Reasons never
/// quote the value: the caller shows it, masked if need be.
fn parse_port_mapping(value: &str) -> Result<PortMapping, String> {
    let (mapping, protocol) = match value.split_once('/') {
        None => (value, Protocol::Tcp),
        Some((mapping, protocol)) => match protocol.trim().to_ascii_lowercase().as_str() {
            "tcp" => (mapping, Protocol::Tcp),
            "udp" => (mapping, Protocol::Udp),
            _ => return Err("the protocol must be tcp or udp".to_string()),
        },
    };
    let ((host_ip, host_port), (container_ip, container_port)) = match mapping.split_once("->") {
        Some((host, container)) => (
            parse_endpoint(host, "host")?,
            parse_endpoint(container, "container")?,
        ),
        None => {
            let port = parse_port_number(mapping.trim()).map_err(|_| {
                "expected port[/proto] or [hostip:]hostport->[ip:]port[/proto]".to_string()
            })?;
            ((None, port), (None, port))
        }
    };
    Ok(PortMapping {
        option: String::new(),
        host_ip,
        host_port,
        container_ip,
        container_port,
        protocol,
    })
}

/// `port`, `ipv4:port` or `[ipv6]:port`.
fn parse_endpoint(text: &str, side: &str) -> Result<(Option<IpAddr>, u16), String> {
    let text = text.trim();
    let bad_port = |_| format!("the {side} port must be a number from 1 to 65535");
    if let Some(bracketed) = text.strip_prefix('[') {
        let (address, port) = bracketed
            .split_once("]:")
            .ok_or_else(|| format!("the {side} address must be written [ipv6]:port"))?;
        let address: Ipv6Addr = address
            .parse()
            .map_err(|_| format!("the {side} address is not an IPv6 address"))?;
        return Ok((
            Some(IpAddr::V6(address)),
            parse_port_number(port).map_err(bad_port)?,
        ));
    }
    match text.rsplit_once(':') {
        None => Ok((None, parse_port_number(text).map_err(bad_port)?)),
        Some((address, _)) if address.contains(':') => Err(format!(
            "the {side} IPv6 address must be in brackets: [ipv6]:port"
        )),
        Some((address, port)) => {
            let address: Ipv4Addr = address
                .parse()
                .map_err(|_| format!("the {side} address is not an IPv4 address"))?;
            Ok((
                Some(IpAddr::V4(address)),
                parse_port_number(port).map_err(bad_port)?,
            ))
        }
    }
}

/// `secret_env_<NAME>` = `[?]secret:key` (or `secret/key`).
fn parse_secret_env(env: &str, value: &str) -> Result<SecretEnv, String> {
    let mut chars = env.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(
            "the variable name (after secret_env_) must be letters, digits and '_', not starting \
             with a digit"
                .to_string(),
        );
    }
    let (optional, reference) = match value.strip_prefix('?') {
        Some(reference) => (true, reference),
        None => (false, value),
    };
    let (secret, key) = reference
        .split_once(':')
        .or_else(|| reference.split_once('/'))
        .filter(|(secret, key)| !secret.is_empty() && !key.is_empty())
        .ok_or_else(|| "expected [?]secret:key".to_string())?;
    if reference.chars().any(char::is_whitespace) {
        return Err("the Secret reference must not contain whitespace".to_string());
    }
    Ok(SecretEnv {
        option: String::new(),
        env: env.to_string(),
        secret: secret.to_string(),
        key: key.to_string(),
        optional,
    })
}
