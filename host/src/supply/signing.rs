//! ECDSA P-256 keys and detached blob signatures, compatible with cosign.
//!
//! A signature is the base64 (standard alphabet) of the ASN.1 DER ECDSA-P256-SHA256
//! signature of the file: what `cosign sign-blob` prints and what
//! `cosign verify-blob --key KEY.pub --signature SIG FILE` accepts. Keys are PEM:
//! unencrypted PKCS#8 (or SEC1) private keys and SPKI public keys, the formats
//! `openssl` produces, so no cosign installation is needed on either side.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};

use crate::state::atomic::{write_atomic, write_atomic_mode};

// The trust store lives in its own file for size; callers know it as part of signing.
pub use super::trust::TrustStore;

/// Why a key could not be generated, read or parsed.
#[derive(thiserror::Error, Debug)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// [`generate_key_pair`] would overwrite a file.
    #[error("refusing to overwrite existing key file {}", .path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The private key is password-protected.
    #[error(
        "encrypted private keys ({label}) are not supported: use an unencrypted PKCS#8 key \
         (-----BEGIN PRIVATE KEY-----). An `ENCRYPTED PRIVATE KEY` converts with \
         `openssl pkey -in KEY -out key.pem`; a cosign-encrypted key cannot be exported, so \
         create a new pair with `openssl ecparam -genkey -name prime256v1 | openssl pkcs8 \
         -topk8 -nocrypt -out key.pem` and `openssl pkey -in key.pem -pubout -out key.pub`"
    )]
    Encrypted {
        /// The PEM label found.
        label: String,
    },
    /// The text is not a usable key of the expected kind.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// `private key` or `public key`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A private key file other users can read.
    #[error(
        "private key {} is accessible by group or others (mode {mode:03o}): \
         run `chmod 600 {}`",
        .path.display(), .path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file's contents are invalid.
    #[error("{}: {source}", .path.display())]
    InFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its contents.
        source: Box<KeyError>,
    },
}

/// Why a signature was not accepted.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature text is not base64 of a DER ECDSA signature.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signature is well-formed but does not match the content and key.
    #[error("signature does not match the content for key {fingerprint}")]
    Mismatch {
        /// Fingerprint of the key tried.
        fingerprint: String,
    },
    /// The policy requires a signature and none was supplied.
    #[error("the artifact is unsigned, but policy requires a signature by one of: {}", .signers.join(", "))]
    Missing {
        /// The signers policy accepts.
        signers: Vec<String>,
    },
    /// The policy requires a signature but names no signer.
    #[error("policy requires a signature but names no signer key")]
    NoSignersNamed,
    /// None of the signers the policy names has a key in the trust store.
    #[error(
        "none of the signers named in policy ({}) has a configured key (configured: {})",
        .named.join(", "), list_or_none(.configured)
    )]
    NotConfigured {
        /// Signers named by policy.
        named: Vec<String>,
        /// Key names present in the trust store.
        configured: Vec<String>,
    },
    /// The signature verifies with none of the configured keys policy names.
    #[error(
        "signature is valid for none of the keys {}{}",
        .tried.join(", "),
        if .unconfigured.is_empty() { String::new() } else {
            format!(" (named but not configured: {})", .unconfigured.join(", "))
        }
    )]
    NoMatch {
        /// Keys that were tried.
        tried: Vec<String>,
        /// Signers named by policy but absent from the trust store.
        unconfigured: Vec<String>,
    },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// A private ECDSA P-256 signing key.
#[derive(Clone)]
pub struct SigningKey(p256::ecdsa::SigningKey);

/// A public ECDSA P-256 key that verifies signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    key: p256::ecdsa::VerifyingKey,
    fingerprint: String,
}

/// Private key PEM labels that mean the key is password-protected.
const ENCRYPTED_LABELS: [&str; 3] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
];

impl SigningKey {
    /// Parses a PEM private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, also
    /// with the `EC PARAMETERS` block `openssl ecparam -genkey` puts before it).
    /// Encrypted keys are refused with advice on converting them.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            what: "private key",
            reason,
        };
        let blocks = pem_blocks(pem);
        let Some((label, block)) = blocks.iter().find(|(label, _)| *label != "EC PARAMETERS")
        else {
            return Err(invalid("no PEM block found".into()));
        };
        let key = match *label {
            "PRIVATE KEY" => p256::ecdsa::SigningKey::from_pkcs8_pem(block)
                .map_err(|e| invalid(format!("{e} (only ECDSA P-256 keys are supported)")))?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(block)
                .map(p256::ecdsa::SigningKey::from)
                .map_err(|e| invalid(format!("{e} (only ECDSA P-256 keys are supported)")))?,
            label if ENCRYPTED_LABELS.contains(&label) => {
                return Err(KeyError::Encrypted {
                    label: label.to_owned(),
                });
            }
            other => {
                return Err(invalid(format!(
                    "expected a PRIVATE KEY or EC PRIVATE KEY PEM block, found {other}"
                )));
            }
        };
        Ok(SigningKey(key))
    }

    /// Reads a PEM private key file, refusing one that group or others can access.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let pem = read(path)?;
        Self::from_pem(&pem).map_err(|e| in_file(path, e))
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::new(*self.0.verifying_key())
    }

    /// Fingerprint of the matching public key (see [`VerifyingKey::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        self.verifying_key()
            .map(|key| key.fingerprint())
            .unwrap_or_else(|_| "unknown".into())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret: the public half identifies the key well enough.
        match self.verifying_key() {
            Ok(public) => write!(f, "SigningKey({})", public.fingerprint()),
            Err(_) => f.write_str("SigningKey(..)"),
        }
    }
}

impl VerifyingKey {
    fn new(key: p256::ecdsa::VerifyingKey) -> Result<Self, KeyError> {
        let der = key.to_public_key_der().map_err(|e| KeyError::Invalid {
            what: "public key",
            reason: e.to_string(),
        })?;
        let fingerprint = format!("sha256:{}", hex::encode(Sha256::digest(der.as_bytes())));
        Ok(VerifyingKey { key, fingerprint })
    }

    /// Parses a PEM SPKI public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            what: "public key",
            reason,
        };
        let blocks = pem_blocks(pem);
        let Some((_, block)) = blocks.iter().find(|(label, _)| *label == "PUBLIC KEY") else {
            let found = blocks.first().map_or("no PEM block", |(label, _)| label);
            return Err(invalid(format!(
                "expected a PUBLIC KEY PEM block, found {found}"
            )));
        };
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(block)
            .map_err(|e| invalid(format!("{e} (only ECDSA P-256 keys are supported)")))?;
        Self::new(key)
    }

    /// Reads a PEM public key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = read(path)?;
        Self::from_pem(&pem).map_err(|e| in_file(path, e))
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo, the same as
    /// `openssl pkey -pubin -in KEY.pub -outform DER | sha256sum`.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The key as SPKI PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Invalid {
                what: "public key",
                reason: e.to_string(),
            })
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.fingerprint)
    }
}

/// Creates a new key pair: `<prefix>.key` (unencrypted PKCS#8 PEM, mode 0600) and
/// `<prefix>.pub` (SPKI PEM). Refuses to overwrite either file. Returns both paths.
pub fn generate_key_pair(out_prefix: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    let with_suffix = |suffix: &str| {
        let mut name = OsString::from(out_prefix.as_os_str());
        name.push(suffix);
        PathBuf::from(name)
    };
    let (key_path, pub_path) = (with_suffix(".key"), with_suffix(".pub"));
    for path in [&key_path, &pub_path] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    let key = p256::ecdsa::SigningKey::random(&mut OsRng);
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Invalid {
            what: "private key",
            reason: e.to_string(),
        })?;
    let public_pem = VerifyingKey::new(*key.verifying_key())?.to_pem()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    write_atomic_mode(&key_path, private_pem.as_bytes(), 0o600).map_err(io(&key_path))?;
    write_atomic(&pub_path, public_pem.as_bytes()).map_err(io(&pub_path))?;
    Ok((key_path, pub_path))
}

/// Signs `bytes`: base64 of the DER ECDSA-P256-SHA256 signature, as `cosign sign-blob`
/// writes it.
pub fn sign_blob(key: &SigningKey, bytes: &[u8]) -> String {
    let signature: p256::ecdsa::Signature = key.0.sign(bytes);
    BASE64.encode(signature.to_der().as_bytes())
}

/// Checks a base64 DER signature (surrounding whitespace ignored) of `bytes`.
pub fn verify_blob(
    key: &VerifyingKey,
    bytes: &[u8],
    signature_b64: &str,
) -> Result<(), SignatureError> {
    let signature = decode_signature(signature_b64)?;
    verify_decoded(key, bytes, &signature)
}

pub(super) fn decode_signature(
    signature_b64: &str,
) -> Result<p256::ecdsa::Signature, SignatureError> {
    let der = BASE64
        .decode(signature_b64.trim())
        .map_err(|e| SignatureError::Malformed(format!("not base64: {e}")))?;
    p256::ecdsa::Signature::from_der(&der).map_err(|_| {
        SignatureError::Malformed(format!(
            "{} bytes that are not a DER-encoded ECDSA P-256 signature",
            der.len()
        ))
    })
}

pub(super) fn verify_decoded(
    key: &VerifyingKey,
    bytes: &[u8],
    signature: &p256::ecdsa::Signature,
) -> Result<(), SignatureError> {
    key.key
        .verify(bytes, signature)
        .map_err(|_| SignatureError::Mismatch {
            fingerprint: key.fingerprint.clone(),
        })
}

pub(super) fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn in_file(path: &Path, source: KeyError) -> KeyError {
    KeyError::InFile {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

/// The PEM blocks in `text` as (label, block text from BEGIN to END line inclusive).
/// Files from openssl may hold several blocks (e.g. `EC PARAMETERS` before the key),
/// and the PEM decoders accept exactly one.
fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let end = start + end + end_marker.len();
        blocks.push((label, &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

#[cfg(test)]
#[path = "signing_tests.rs"]
mod tests;
