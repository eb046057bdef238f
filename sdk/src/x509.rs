//! Certificates made inside a plugin (P-256, pure Rust), so that no private
//! key ever passes through a process argument or a shell: a device CA kept
//! in two files, and the server certificates it issues. Behind the `x509`
//! feature.
//!
//! ```ignore
//! let ca = cairn_sdk::x509::Authority::load_or_create(
//!     "/var/lib/app/tls/ca.pem",
//!     "/var/lib/app/tls/ca-key.pem",
//!     "CN=App device CA",
//! )?;
//! let issued = ca.issue_server("db", &["db", "db.local"], &[], SERVER_LIFETIME)?;
//! ```

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

pub use p256::ecdsa::SigningKey;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
pub use x509_cert::Certificate;
pub use x509_cert::builder::Profile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der::asn1::Ia5String;
use x509_cert::der::{DecodePem, EncodePem};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
pub use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use crate::fs::write_atomic;

/// How long a CA made by [`Authority::load_or_create`] is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86400);

/// A new random P-256 key.
pub fn new_key() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

/// Signs a certificate for `public` as `subject`: a root when `profile` is
/// [`Profile::Root`] (then `signer` is its own key), else a leaf of the
/// issuer the profile names. `names` become its subject alternative names.
pub fn issue(
    profile: Profile,
    subject: Name,
    signer: &SigningKey,
    public: VerifyingKey,
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

/// A distinguished name from its text form (`CN=gateway,O=Site`).
pub fn name(text: &str) -> Result<Name, String> {
    Name::from_str(text).map_err(|err| format!("`{text}` is not a name: {err}"))
}

/// A certificate as PEM.
pub fn pem(cert: &Certificate) -> Result<String, String> {
    cert.to_pem(LineEnding::LF).map_err(|err| err.to_string())
}

/// A private key as PKCS#8 PEM.
pub fn pem_key(key: &SigningKey) -> Result<String, String> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|err| err.to_string())
}

/// The subject and issuer of a PEM certificate (`CN=…`), `None` when it
/// does not parse.
pub fn names_of(pem: &[u8]) -> Option<(String, String)> {
    let cert = Certificate::from_pem(pem).ok()?;
    let tbs = &cert.tbs_certificate;
    Some((tbs.subject.to_string(), tbs.issuer.to_string()))
}

/// A server certificate and its key, both PEM.
pub struct Issued {
    /// The certificate, signed by the CA.
    pub certificate: String,
    /// Its private key (PKCS#8): keep it owner-only.
    pub key: String,
}

/// A certificate authority whose certificate and key live in two files
/// (the key's written owner-only where the plugin's private directory is).
pub struct Authority {
    certificate: Certificate,
    key: SigningKey,
}

impl Authority {
    /// The CA in `cert_path` and `key_path`, made once (as `subject`) when
    /// either is missing. A damaged file is an error, never replaced: what it
    /// issued would no longer verify.
    pub fn load_or_create(
        cert_path: &str,
        key_path: &str,
        subject: &str,
    ) -> Result<Authority, String> {
        match (
            std::fs::read_to_string(cert_path),
            std::fs::read_to_string(key_path),
        ) {
            (Ok(cert), Ok(key)) => {
                let certificate = Certificate::from_pem(cert.as_bytes())
                    .map_err(|err| format!("{cert_path} is damaged: {err}"))?;
                let key = SigningKey::from_pkcs8_pem(&key)
                    .map_err(|err| format!("{key_path} is damaged: {err}"))?;
                Ok(Authority { certificate, key })
            }
            _ => {
                let key = new_key();
                let certificate = issue(
                    Profile::Root,
                    name(subject)?,
                    &key,
                    *key.verifying_key(),
                    CA_LIFETIME,
                    Vec::new(),
                )?;
                // The key first: a certificate on disk always has its key.
                write_atomic(key_path, pem_key(&key)?.as_bytes())?;
                write_atomic(cert_path, pem(&certificate)?.as_bytes())?;
                Ok(Authority { certificate, key })
            }
        }
    }

    /// The CA's subject (`CN=…`): the issuer of what it issues.
    pub fn subject(&self) -> String {
        self.certificate.tbs_certificate.subject.to_string()
    }

    /// The CA's certificate, PEM: what clients trust.
    pub fn certificate_pem(&self) -> Result<String, String> {
        pem(&self.certificate)
    }

    /// A new key and a certificate for it, subject `CN=<common_name>`, valid
    /// for the host names `dns` and addresses `ips`.
    pub fn issue_server(
        &self,
        common_name: &str,
        dns: &[&str],
        ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<Issued, String> {
        let key = new_key();
        let mut names = Vec::new();
        for host in dns {
            names.push(GeneralName::DnsName(
                Ia5String::new(host).map_err(|err| format!("`{host}`: {err}"))?,
            ));
        }
        names.extend(ips.iter().map(|ip| GeneralName::from(*ip)));
        let profile = Profile::Leaf {
            issuer: self.certificate.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let certificate = issue(
            profile,
            name(&format!("CN={common_name}"))?,
            &self.key,
            *key.verifying_key(),
            lifetime,
            names,
        )?;
        Ok(Issued {
            certificate: pem(&certificate)?,
            key: pem_key(&key)?,
        })
    }
}
