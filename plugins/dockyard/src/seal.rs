//! Secrets at rest: what the plugin keeps in kv that may hold a secret (the
//! options users gave, the values macros generated, a service's profile) is
//! sealed with ChaCha20-Poly1305 under a device key made once, kept
//! owner-only in `<state>/keys/data.key`. A sealed value that was tampered
//! with, or sealed under another key, does not open: an error, never a
//! wrong value.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

const VERSION: &str = "v1:";
const NONCE_LEN: usize = 12;

pub struct Sealer {
    cipher: ChaCha20Poly1305,
    /// Names the key without revealing it, to tell which key sealed an export.
    pub key_id: String,
}

impl Sealer {
    /// The device key in `<state>/keys`, made when there is none.
    pub fn load_or_create(state: &str) -> Result<Sealer, String> {
        let dir = format!("{state}/keys");
        let path = format!("{dir}/data.key");
        let key = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(bytes) => {
                return Err(format!(
                    "{path} is damaged ({} bytes, not 32): restore it from a backup",
                    bytes.len()
                ));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                getrandom::getrandom(&mut key).map_err(|err| format!("no randomness: {err}"))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|err| format!("cannot create {dir}: {err}"))?;
                cairn_sdk::fs::write_atomic(&path, &key)?;
                cairn_sdk::info!("made the device key that seals services' secrets: {path}");
                key
            }
            Err(err) => return Err(format!("cannot read {path}: {err}")),
        };
        let cipher = ChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| format!("{path} is not a 32-byte key"))?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(
            [b"cairn-dockyard-key-id:".as_slice(), &key].concat(),
        );
        let key_id = digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(Sealer { cipher, key_id })
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|err| format!("no randomness: {err}"))?;
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .map_err(|_| "sealing failed".to_string())?;
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        Ok(format!(
            "{VERSION}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, String> {
        let encoded = sealed
            .strip_prefix(VERSION)
            .ok_or_else(|| "not a sealed value".to_string())?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "a sealed value is damaged".to_string())?;
        if bytes.len() < NONCE_LEN {
            return Err("a sealed value is damaged".into());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| "a sealed value is damaged".to_string())?;
        self.cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| "a sealed value does not open under this device's key".to_string())
    }

    /// Seals `value` as JSON.
    pub fn seal_json<T: serde::Serialize>(&self, value: &T) -> Result<String, String> {
        self.seal(&serde_json::to_vec(value).map_err(|err| err.to_string())?)
    }

    /// Opens JSON sealed by [`Sealer::seal_json`].
    pub fn open_json<T: serde::de::DeserializeOwned>(&self, sealed: &str) -> Result<T, String> {
        serde_json::from_slice(&self.open(sealed)?).map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_whole_and_under_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_str().unwrap();
        let sealer = Sealer::load_or_create(state).unwrap();
        let sealed = sealer.seal(b"hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(sealer.open(&sealed).unwrap(), b"hunter2");
        assert_ne!(
            sealer.seal(b"hunter2").unwrap(),
            sealed,
            "a nonce is never reused"
        );
        // The same key after a reload; another device's key does not open it.
        assert_eq!(
            Sealer::load_or_create(state)
                .unwrap()
                .open(&sealed)
                .unwrap(),
            b"hunter2"
        );
        let other = tempfile::tempdir().unwrap();
        let stranger = Sealer::load_or_create(other.path().to_str().unwrap()).unwrap();
        assert!(stranger.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.replace_range(sealed.len() - 3.., "AAA");
        assert!(sealer.open(&tampered).is_err());
        assert!(sealer.open("plain").is_err());
    }
}
