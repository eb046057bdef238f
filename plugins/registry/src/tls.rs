//! The device CA and the registry's certificate, made in the plugin through
//! the SDK's `x509` module, so that no key ever passes through a process
//! argument or a shell.
//!
//! The CA is made once; the server certificate is made again when it is
//! missing or names another host. Clients trust `ca.pem`.

use std::net::IpAddr;
use std::time::Duration;

use cairn_sdk::x509::{self, Authority};

use crate::secrets::write_atomic;

const SERVER_LIFETIME: Duration = Duration::from_secs(825 * 86400);

/// Paths of the TLS files in the state directory.
pub struct TlsFiles {
    pub ca: String,
    pub certificate: String,
    pub key: String,
}

impl TlsFiles {
    pub fn in_dir(dir: &str) -> TlsFiles {
        TlsFiles {
            ca: format!("{dir}/ca.pem"),
            certificate: format!("{dir}/cert.pem"),
            key: format!("{dir}/key.pem"),
        }
    }
}

/// Makes what is missing: the CA, and a certificate for `hostname` and `ips`.
pub fn ensure(dir: &str, hostname: &str, ips: &[IpAddr]) -> Result<TlsFiles, String> {
    let files = TlsFiles::in_dir(dir);
    let ca_key = format!("{dir}/ca-key.pem");
    let made = std::fs::metadata(&files.ca).is_err();
    let authority = Authority::load_or_create(
        &files.ca,
        &ca_key,
        &format!("CN=Cairn registry CA {hostname}"),
    )?;
    if made {
        cairn_sdk::info!("made a device CA for the registry: {}", files.ca);
    }
    if !certificate_fits(&files, hostname) {
        let issued = authority.issue_server(hostname, &[hostname], ips, SERVER_LIFETIME)?;
        write_atomic(&files.key, issued.key.as_bytes())?;
        write_atomic(&files.certificate, issued.certificate.as_bytes())?;
        cairn_sdk::info!("issued the registry's certificate for {hostname}");
    }
    Ok(files)
}

/// Whether the certificate on disk exists, parses and names `hostname`.
fn certificate_fits(files: &TlsFiles, hostname: &str) -> bool {
    let (Ok(cert), Ok(_)) = (
        std::fs::read(&files.certificate),
        std::fs::metadata(&files.key),
    ) else {
        return false;
    };
    x509::names_of(&cert).is_some_and(|(subject, _)| subject == format!("CN={hostname}"))
}
