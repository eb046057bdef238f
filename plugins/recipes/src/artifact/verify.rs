//! Checksums and detached signatures.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};

use super::error::{ArtifactError, Errs};

/// Signatures are a few hundred bytes at most; anything bigger is not one.
pub(crate) const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

/// The lowercase hex digest from a spec's `sha256`, which may carry a
/// `sha256:` prefix and any case, so it can name the cache files.
pub(crate) fn parse_sha256(uri: &str, text: &str) -> Result<String, ArtifactError> {
    let trimmed = text.trim();
    let hex = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Errs(uri).invalid(format!(
            "`{text}` is not a sha256 digest (64 hex digits, optionally prefixed `sha256:`)"
        )));
    }
    Ok(hex.to_ascii_lowercase())
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Parses 64 hex digits (already validated by `parse_sha256`).
pub(crate) fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Feeds everything `reader` yields into `hasher`; returns the byte count.
pub(crate) fn hash_into(hasher: &mut Sha256, reader: &mut impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// The hex sha256 and size of a file.
pub(crate) fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let size = hash_into(&mut hasher, &mut File::open(path)?)?;
    Ok((to_hex(&hasher.finalize()), size))
}

/// Makes a finished download a cache blob, but only if it has the pinned
/// digest: a mismatching file is deleted so a retry starts clean.
///
/// `actual` is the digest computed while downloading (hashed here if `None`).
/// The file is fsynced before the rename and the directory after it, so a
/// power cut leaves either no blob or a complete one.
pub(crate) fn verify_and_store(
    uri: &str,
    partial: &Path,
    expected: &str,
    actual: Option<String>,
    blob: &Path,
) -> Result<u64, ArtifactError> {
    let errs = Errs(uri);
    let (actual, size) = match actual {
        Some(digest) => {
            let size = fs::metadata(partial)
                .map_err(|e| errs.io(format_args!("reading {}", partial.display()), &e))?
                .len();
            (digest, size)
        }
        None => hash_file(partial)
            .map_err(|e| errs.io(format_args!("hashing {}", partial.display()), &e))?,
    };
    if actual != expected {
        let _ = fs::remove_file(partial);
        return Err(errs.checksum(format!(
            "expected sha256:{expected}, got sha256:{actual} ({size} bytes); download discarded"
        )));
    }
    File::open(partial)
        .and_then(|file| file.sync_all())
        .map_err(|e| errs.io(format_args!("syncing {}", partial.display()), &e))?;
    fs::rename(partial, blob).map_err(|e| {
        errs.io(
            format_args!("moving {} to {}", partial.display(), blob.display()),
            &e,
        )
    })?;
    if let Some(dir) = blob.parent() {
        sync_dir(dir);
    }
    Ok(size)
}

/// Best effort: WASI hosts and some filesystems cannot fsync a directory, and
/// the rename itself has already succeeded by then.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// The public keys whose signatures make an artifact trusted.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedKeys(Vec<VerifyingKey>);

impl TrustedKeys {
    /// Each string is one PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of a P-256 key,
    /// as `openssl ec -pubout` writes it.
    pub fn parse(pems: &[String]) -> Result<TrustedKeys, ArtifactError> {
        let mut keys = Vec::with_capacity(pems.len());
        for (i, pem) in pems.iter().enumerate() {
            let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|err| {
                Errs("").invalid(format!(
                    "trusted key #{} is not a P-256 `PUBLIC KEY` PEM: {err}",
                    i + 1
                ))
            })?;
            keys.push(key);
        }
        Ok(TrustedKeys(keys))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Accepts `signature` if any trusted key made it over the artifact whose
    /// sha256 is `digest` (what `openssl dgst -sha256 -sign` signs).
    pub fn verify(
        &self,
        uri: &str,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), ArtifactError> {
        let errs = Errs(uri);
        if self.0.is_empty() {
            return Err(errs.signature(
                "the spec has a signature but no trusted keys are configured to check it",
            ));
        }
        let signature = decode_signature(signature).map_err(|why| errs.signature(why))?;
        if self
            .0
            .iter()
            .any(|key| key.verify_prehash(digest, &signature).is_ok())
        {
            Ok(())
        } else {
            Err(errs.signature(format!(
                "no trusted key ({} configured) verifies the signature",
                self.0.len()
            )))
        }
    }
}

/// Binary DER (openssl's output), or base64 of DER or of raw `r || s`.
fn decode_signature(bytes: &[u8]) -> Result<Signature, String> {
    if let Ok(signature) = Signature::from_der(bytes) {
        return Ok(signature);
    }
    let text: Option<String> = std::str::from_utf8(bytes)
        .ok()
        .map(|text| text.chars().filter(|c| !c.is_whitespace()).collect());
    let decoded = text.and_then(|text| {
        STANDARD
            .decode(&text)
            .or_else(|_| STANDARD_NO_PAD.decode(&text))
            .ok()
    });
    let raw = decoded.as_deref().unwrap_or(bytes);
    let parsed = if raw.len() == 64 {
        Signature::from_slice(raw)
    } else {
        Signature::from_der(raw)
    };
    parsed.map_err(|_| {
        format!(
            "the signature ({} bytes) is neither DER nor base64 of DER or raw r||s ECDSA P-256",
            bytes.len()
        )
    })
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
