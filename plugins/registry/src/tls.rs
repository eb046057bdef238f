//! The device CA and the registry's certificate, made here (P-256, pure
//! Rust) so that no key ever passes through a process argument or a shell.
//!
//! The CA is made once; the server certificate is made again when it is
//! missing or names another host. Clients trust `ca.pem`.

use std::fs;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::Ia5String;
use x509_cert::der::{DecodePem, EncodePem};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use crate::secrets::write_atomic;

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86400);
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
    let ca_key_path = format!("{dir}/ca-key.pem");
    let (ca_cert, ca_key) = match (
        fs::read_to_string(&files.ca),
        fs::read_to_string(&ca_key_path),
    ) {
        (Ok(cert), Ok(key)) => {
            let cert = Certificate::from_pem(cert.as_bytes())
                .map_err(|err| format!("{} is damaged: {err}", files.ca))?;
            let key = SigningKey::from_pkcs8_pem(&key)
                .map_err(|err| format!("{ca_key_path} is damaged: {err}"))?;
            (cert, key)
        }
        _ => {
            let key = SigningKey::random(&mut rand_core::OsRng);
            let subject = name(&format!("CN=Cairn registry CA {hostname}"))?;
            let cert = issue(
                Profile::Root,
                subject,
                &key,
                *key.verifying_key(),
                CA_LIFETIME,
                Vec::new(),
            )?;
            write_atomic(&ca_key_path, pem_key(&key)?.as_bytes())?;
            write_atomic(&files.ca, pem(&cert)?.as_bytes())?;
            cairn_sdk::info!("made a device CA for the registry: {}", files.ca);
            (cert, key)
        }
    };
    if !certificate_fits(&files, hostname) {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let mut names = vec![GeneralName::DnsName(
            Ia5String::new(hostname).map_err(|err| format!("`{hostname}`: {err}"))?,
        )];
        names.extend(ips.iter().map(|ip| GeneralName::from(*ip)));
        let profile = Profile::Leaf {
            issuer: ca_cert.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let cert = issue(
            profile,
            name(&format!("CN={hostname}"))?,
            &ca_key,
            *key.verifying_key(),
            SERVER_LIFETIME,
            names,
        )?;
        write_atomic(&files.key, pem_key(&key)?.as_bytes())?;
        write_atomic(&files.certificate, pem(&cert)?.as_bytes())?;
        cairn_sdk::info!("issued the registry's certificate for {hostname}");
    }
    Ok(files)
}

/// Whether the certificate on disk exists, parses and names `hostname`.
fn certificate_fits(files: &TlsFiles, hostname: &str) -> bool {
    let (Ok(cert), Ok(_)) = (fs::read(&files.certificate), fs::metadata(&files.key)) else {
        return false;
    };
    let Ok(cert) = Certificate::from_pem(&cert) else {
        return false;
    };
    cert.tbs_certificate.subject.to_string() == format!("CN={hostname}")
}

pub(crate) fn issue(
    profile: Profile,
    subject: Name,
    signer: &SigningKey,
    public: p256::ecdsa::VerifyingKey,
    lifetime: Duration,
    names: Vec<GeneralName>,
) -> Result<Certificate, String> {
    let spki = SubjectPublicKeyInfoOwned::from_key(public).map_err(|err| err.to_string())?;
    let validity = Validity::from_now(lifetime).map_err(|err| err.to_string())?;
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial).map_err(|err| err.to_string())?;
    serial[0] &= 0x7f;
    let serial = SerialNumber::new(&serial).map_err(|err| err.to_string())?;
    let mut builder = CertificateBuilder::new(profile, serial, validity, subject, spki, signer)
        .map_err(|err| format!("building a certificate: {err}"))?;
    if !names.is_empty() {
        builder
            .add_extension(&SubjectAltName(names))
            .map_err(|err| format!("adding the certificate's names: {err}"))?;
    }
    builder
        .build::<DerSignature>()
        .map_err(|err| format!("signing a certificate: {err}"))
}

pub(crate) fn name(text: &str) -> Result<Name, String> {
    Name::from_str(text).map_err(|err| format!("`{text}` is not a name: {err}"))
}

pub(crate) fn pem(cert: &Certificate) -> Result<String, String> {
    cert.to_pem(LineEnding::LF).map_err(|err| err.to_string())
}

pub(crate) fn pem_key(key: &SigningKey) -> Result<String, String> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|err| err.to_string())
}
