//! `!tls`: a service's TLS material, issued by one device CA that the
//! plugin makes once (`<state>/tls/ca.pem`, its key owner-only beside it).
//!
//! A service that uses `!tls` gets `key.pem`, `cert.pem` (for its name and
//! `local-ip`) and `ca.pem` in `<state>/services/<name>/tls`, mounted at
//! `/run/cairn/dockyard/tls`. Unlike Nanocloud, nothing is made again at a
//! re-install, a restart or a swap: a certificate is issued only when there
//! is none, or it no longer names the service or was not issued by this CA.
//! Every service's `!tls ca` is the same CA, so a consumer trusts its
//! providers with its own `!tls ca`.

use std::net::IpAddr;
use std::time::Duration;

use cairn_sdk::CommandError;
use cairn_sdk::fs::write_atomic;
use cairn_sdk::x509::{self, Authority};
use serde::{Deserialize, Serialize};

use crate::settings::Settings;

const SERVICE_LIFETIME: Duration = Duration::from_secs(825 * 86400);

/// A service's TLS files, read back for a backup.
#[derive(Debug, Serialize, Deserialize)]
pub struct Material {
    pub certificate: String,
    pub key: String,
}

fn ca_paths(settings: &Settings) -> (String, String) {
    let dir = format!("{}/tls", settings.state);
    (format!("{dir}/ca.pem"), format!("{dir}/ca-key.pem"))
}

/// The device CA, made when there is none.
fn authority(settings: &Settings) -> Result<Authority, String> {
    let (cert, key) = ca_paths(settings);
    let dir = format!("{}/tls", settings.state);
    std::fs::create_dir_all(&dir).map_err(|err| format!("cannot create {dir}: {err}"))?;
    let made = std::fs::metadata(&cert).is_err();
    // A tag of its own: a certificate of another device's CA never passes
    // for one of this CA's (the issuer names differ).
    let mut tag = [0u8; 6];
    getrandom::getrandom(&mut tag).map_err(|err| format!("no randomness: {err}"))?;
    let tag: String = tag.iter().map(|byte| format!("{byte:02x}")).collect();
    let authority = Authority::load_or_create(&cert, &key, &format!("CN=Cairn dockyard CA {tag}"))?;
    if made {
        cairn_sdk::info!("made the CA that issues services' TLS certificates: {cert}");
    }
    Ok(authority)
}

fn dir_of(settings: &Settings, service: &str) -> String {
    format!("{}/services/{service}/tls", settings.state)
}

/// Makes what `service` lacks of its TLS material; keeps what fits.
pub fn ensure(settings: &Settings, service: &str) -> Result<(), CommandError> {
    let authority = authority(settings).map_err(CommandError::internal)?;
    let ca = authority
        .certificate_pem()
        .map_err(CommandError::internal)?;
    let dir = dir_of(settings, service);
    std::fs::create_dir_all(&dir)
        .map_err(|err| CommandError::internal(format!("cannot create {dir}: {err}")))?;
    let fits = std::fs::metadata(format!("{dir}/key.pem")).is_ok()
        && std::fs::read(format!("{dir}/cert.pem")).is_ok_and(|cert| {
            x509::names_of(&cert).is_some_and(|(subject, issuer)| {
                subject == format!("CN={service}") && issuer == authority.subject()
            })
        });
    if fits {
        if std::fs::read_to_string(format!("{dir}/ca.pem")).map_or(true, |held| held != ca) {
            write_atomic(&format!("{dir}/ca.pem"), ca.as_bytes())?;
        }
        return Ok(());
    }
    let ips: Vec<IpAddr> = settings
        .local_ip
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let issued = authority
        .issue_server(service, &[service], &ips, SERVICE_LIFETIME)
        .map_err(CommandError::internal)?;
    write_atomic(&format!("{dir}/key.pem"), issued.key.as_bytes())?;
    write_atomic(&format!("{dir}/cert.pem"), issued.certificate.as_bytes())?;
    write_atomic(&format!("{dir}/ca.pem"), ca.as_bytes())?;
    cairn_sdk::info!("issued the TLS certificate of service {service}");
    Ok(())
}

/// The service's certificate and key, when it has them.
pub fn read(settings: &Settings, service: &str) -> Option<Material> {
    let dir = dir_of(settings, service);
    Some(Material {
        certificate: std::fs::read_to_string(format!("{dir}/cert.pem")).ok()?,
        key: std::fs::read_to_string(format!("{dir}/key.pem")).ok()?,
    })
}

/// Puts back a service's certificate and key from a backup; [`ensure`]
/// keeps them when this device's CA issued them, else issues new ones.
pub fn restore(
    settings: &Settings,
    service: &str,
    material: &Material,
) -> Result<(), CommandError> {
    let dir = dir_of(settings, service);
    std::fs::create_dir_all(&dir)
        .map_err(|err| CommandError::internal(format!("cannot create {dir}: {err}")))?;
    write_atomic(&format!("{dir}/key.pem"), material.key.as_bytes())?;
    write_atomic(&format!("{dir}/cert.pem"), material.certificate.as_bytes())?;
    Ok(())
}
