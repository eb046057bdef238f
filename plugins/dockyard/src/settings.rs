//! The plugin's `[config]`.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Where a service's image is: `{service}` is replaced by its name, as in
    /// `registry.site:5000/dockyard/{service}:latest`. The tag is resolved
    /// once; what runs is the digest it resolved to.
    pub images: String,
    /// Services' option and secret files and volumes: a directory granted
    /// `private` in `[grants.files]` and as a mount in `[grants.container]`.
    pub state: String,
    /// The host's first non-loopback IPv4 address, for `!local_ip` (the
    /// host does not tell plugins its addresses). Without it `!local_ip`
    /// is an error naming the option.
    #[serde(default)]
    pub local_ip: Option<String>,
    /// The DNS server `!dns` gives (the host does not tell plugins its
    /// resolver). Without it `!dns` is an error naming the option.
    #[serde(default)]
    pub nameserver: Option<String>,
    /// How long a binding step may run before it is killed.
    #[serde(default = "default_binding_timeout")]
    pub binding_timeout: String,
    /// The plugin that runs services' ready checks (grant `[grants.commands]`
    /// `call` its `status`, `add`, `get` and `remove`).
    #[serde(default = "default_health_plugin")]
    pub health_plugin: String,
}

fn default_binding_timeout() -> String {
    "90s".into()
}

fn default_health_plugin() -> String {
    "health".into()
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if !self.state.starts_with('/') {
            return Err(format!(
                "`state` must be an absolute path, not `{}`",
                self.state
            ));
        }
        if !self.images.contains("{service}") {
            return Err(format!(
                "`images` = `{}` must contain `{{service}}`, e.g. registry.site:5000/dockyard/{{service}}:latest",
                self.images
            ));
        }
        if let Some(ip) = &self.local_ip
            && ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(format!("`local-ip` = `{ip}` is not an IPv4 address"));
        }
        match humantime::parse_duration(&self.binding_timeout) {
            Ok(limit)
                if limit >= std::time::Duration::from_secs(1)
                    && limit <= std::time::Duration::from_secs(600) => {}
            _ => {
                return Err(format!(
                    "`binding-timeout` = `{}` must be a duration from 1s to 10m",
                    self.binding_timeout
                ));
            }
        }
        if let Some(server) = &self.nameserver
            && server.parse::<std::net::IpAddr>().is_err()
        {
            return Err(format!("`nameserver` = `{server}` is not an IP address"));
        }
        Ok(())
    }

    pub fn binding_timeout(&self) -> std::time::Duration {
        humantime::parse_duration(&self.binding_timeout)
            .unwrap_or(std::time::Duration::from_secs(90))
    }

    /// The image reference of `service`.
    pub fn image_of(&self, service: &str) -> String {
        self.images.replace("{service}", service)
    }
}

/// Whether `name` can name a service (and a container, a kv key, a path).
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}
