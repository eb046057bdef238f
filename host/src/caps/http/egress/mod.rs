//! `[grants.http-client]`: outgoing `wasi:http` requests, only to the URLs the
//! policy allows and only to public addresses (or the private ranges it lists).
//!
//! The URL is matched first; then the host is resolved once, every address is
//! checked, and the connection goes to a checked address (never to a second
//! resolution, so DNS rebinding cannot swap in another one). See [`send`].

mod addr;
mod pattern;
mod send;

use std::time::Duration;

use serde::Deserialize;
use wasmtime::component::Linker;

use crate::caps::{Capability, CapsData, HostSetup, InstanceSetup};

pub use addr::{Cidr, non_public, refused};
pub use pattern::{HostPattern, UrlPattern};
pub use send::Egress;

/// Sending HTTP requests: the plugin imports `wasi:http/outgoing-handler`.
pub struct HttpClient;

/// `[grants.http-client]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpClientGrant {
    /// `scheme://host[:port][/path-prefix]` patterns; a request must match one.
    pub allow: Vec<UrlPattern>,
    /// Non-public ranges the plugin may reach anyway (e.g. `"10.0.0.0/8"`).
    #[serde(default)]
    pub allow_private: Vec<Cidr>,
    /// Largest response body the plugin may read; larger ones fail mid-body.
    #[serde(default, deserialize_with = "optional_size")]
    pub max_response_size: Option<u64>,
    /// Bound on connecting, on waiting for the response head, and on every
    /// wait between body chunks (the guest's request options may only shorten it).
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::policy::serde_duration::deserialize"
    )]
    pub timeout: Duration,
    /// A CA (PEM, absolute path) trusted for `https://` beside the public roots,
    /// for services with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// The TLS client configuration with `ca_file`, built on first use.
    #[serde(skip)]
    pub(crate) tls: std::sync::OnceLock<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn optional_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::policy::serde_size::deserialize(d).map(Some)
}

impl Capability for HttpClient {
    const NAME: &'static str = "http-client";
    const INTERFACES: &'static [&'static str] = &["wasi:http/outgoing-handler"];
    type Grant = HttpClientGrant;
    type Shared = ();
    /// Every outgoing request of the instance goes through these hooks.
    type Local = Egress;

    fn validate(grant: &HttpClientGrant) -> Result<(), String> {
        if grant.allow.is_empty() {
            return Err("allow is empty: list at least one URL pattern".into());
        }
        if grant.timeout.is_zero() {
            return Err("timeout must be more than zero".into());
        }
        if grant.timeout > Duration::from_secs(3600) {
            return Err("timeout must be at most 1h".into());
        }
        if let Some(path) = &grant.ca_file {
            if !path.is_absolute() {
                return Err(format!(
                    "ca-file {} must be an absolute path",
                    path.display()
                ));
            }
            // A CA a plugin makes itself (the registry's device CA) does not
            // exist before the plugin first runs; it is read at first use.
            if path.exists() {
                crate::caps::pem::read_certs(path).map_err(|err| format!("ca-file: {err:#}"))?;
            }
        }
        Ok(())
    }

    /// All of `wasi:http` but the incoming handler: `types` is baseline, and
    /// `outgoing-handler` sends through the instance's [`Egress`] hooks,
    /// which refuse everything without this grant.
    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
    }

    fn build(_: &HostSetup) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare(_: &(), _: Option<&HttpClientGrant>, instance: &mut InstanceSetup<'_>) -> Egress {
        Egress::new(
            instance.ctx.plugin.clone(),
            instance.grants.clone(),
            instance.ctx.audit.clone(),
        )
    }
}

impl HttpClientGrant {
    /// The first pattern the request matches.
    pub fn allowed(&self, scheme: &str, host: &str, port: u16, path: &str) -> Option<&UrlPattern> {
        self.allow
            .iter()
            .find(|pattern| pattern.matches(scheme, host, port, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::Grants;
    use crate::policy::Policy;

    fn grants(table: &str) -> Result<Grants, String> {
        let text =
            format!("[plugin]\nname = \"p\"\nsigners = [\"dev\"]\n[grants.http-client]\n{table}");
        let policy = Policy::parse(&text, None).map_err(|e| e.to_string())?;
        Grants::from_policy(&policy).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_grant_parses() {
        let grants = grants(
            "allow = [\"https://api.example.com\", \"https://*.example.com:8443/v1/\", \"http://10.0.0.5:9000\"]\nallow-private = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\nmax-response-size = \"1MiB\"\ntimeout = \"5s\"\n",
        )
        .unwrap();
        let grant = grants.http_client.as_ref().unwrap();
        assert_eq!(grant.allow.len(), 3);
        assert_eq!(grant.allow_private.len(), 2);
        assert_eq!(grant.max_response_size, Some(1 << 20));
        assert_eq!(grant.timeout, Duration::from_secs(5));
        assert!(grant.allowed("http", "10.0.0.5", 9000, "/x").is_some());
        assert!(
            grant
                .allowed("https", "a.example.com", 8443, "/v1/x")
                .is_some()
        );
        assert!(
            grant
                .allowed("https", "a.example.com", 443, "/v1/x")
                .is_none()
        );
        assert!(grants.names().contains(&"http-client"));
    }

    #[test]
    fn defaults() {
        let grant = grants("allow = [\"https://api.example.com\"]\n")
            .unwrap()
            .http_client
            .unwrap();
        assert!(grant.allow_private.is_empty());
        assert_eq!(grant.max_response_size, None);
        assert_eq!(grant.timeout, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_table_and_the_problem() {
        for (table, expected) in [
            ("allow = []\n", "allow is empty"),
            (
                "allow = [\"ftp://x.example.com\"]\n",
                "is not http or https",
            ),
            ("allow = [\"https://*.com\"]\n", "too broad"),
            (
                "allow = [\"https://a.example.com\"]\nallow-private = [\"10.0.0.1/8\"]\n",
                "host bits",
            ),
            (
                "allow = [\"https://a.example.com\"]\ntimeout = \"0s\"\n",
                "more than zero",
            ),
            (
                "allow = [\"https://a.example.com\"]\nproxy = \"x\"\n",
                "unknown key",
            ),
            ("allow-private = [\"10.0.0.0/8\"]\n", "allow"),
        ] {
            let err = grants(table).err().unwrap_or_default();
            assert!(err.contains("http-client"), "{table}: {err}");
            assert!(err.contains(expected), "{table}: {err}");
        }
    }
}
