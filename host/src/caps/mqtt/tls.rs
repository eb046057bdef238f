//! TLS for `mqtts://` brokers: rustls with the configured CA (or the system
//! roots) and, for mutual TLS, a client certificate.

use std::sync::Arc;

use anyhow::Context;
use rumqttc::tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::config::BrokerConfig;
use crate::caps::pem::{read_certs, read_key};

/// The rustls client configuration for one broker.
pub fn client_config(config: &BrokerConfig) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .with_context(|| format!("ca-file {}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // Unusable system certificates are skipped, as every TLS client does.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                anyhow::bail!("no system CA certificates found; set ca-file");
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots);
    match &config.client_auth {
        Some((cert_file, key_file)) => {
            let certs = read_certs(cert_file)?;
            let key =
                read_key(key_file).with_context(|| format!("key-file {}", key_file.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .with_context(|| format!("cert-file {}", cert_file.display()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}
