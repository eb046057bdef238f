//! The named public keys an installation trusts, and policy-driven verification.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::signing::{KeyError, SignatureError, VerifyingKey, decode_signature, verify_decoded};

/// Named public keys trusted to sign plugins.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustStore {
    /// Loads every named public key file; the first failure names its file.
    pub fn load(map: &BTreeMap<String, PathBuf>) -> Result<Self, KeyError> {
        let keys = map
            .iter()
            .map(|(name, path)| Ok((name.clone(), VerifyingKey::load(path)?)))
            .collect::<Result<_, KeyError>>()?;
        Ok(TrustStore { keys })
    }

    /// A store of already parsed keys.
    pub fn from_keys(keys: BTreeMap<String, VerifyingKey>) -> Self {
        TrustStore { keys }
    }

    /// The key configured under `name`.
    pub fn get(&self, name: &str) -> Option<&VerifyingKey> {
        self.keys.get(name)
    }

    /// Names of the configured keys, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Verifies `signature` over `bytes` against the keys of `signers` (names from
    /// policy) and returns the name of the first key that accepts it.
    pub fn verify_by_any(
        &self,
        signers: &[String],
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<String, SignatureError> {
        if signers.is_empty() {
            return Err(SignatureError::NoSignersNamed);
        }
        let Some(signature) = signature else {
            return Err(SignatureError::Missing {
                signers: signers.to_vec(),
            });
        };
        let (configured, unconfigured): (Vec<&String>, Vec<&String>) = signers
            .iter()
            .partition(|name| self.keys.contains_key(*name));
        if configured.is_empty() {
            return Err(SignatureError::NotConfigured {
                named: signers.to_vec(),
                configured: self.keys.keys().cloned().collect(),
            });
        }
        let signature = decode_signature(signature)?;
        for name in &configured {
            if let Some(key) = self.keys.get(*name)
                && verify_decoded(key, bytes, &signature).is_ok()
            {
                return Ok((*name).clone());
            }
        }
        Err(SignatureError::NoMatch {
            tried: configured.into_iter().cloned().collect(),
            unconfigured: unconfigured.into_iter().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supply::signing::{SigningKey, generate_key_pair, sign_blob};
    use std::path::Path;

    fn pair(dir: &Path, name: &str) -> SigningKey {
        let (key, _) = generate_key_pair(&dir.join(name)).unwrap();
        SigningKey::load(&key).unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn trust_store_errors_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let alice = pair(dir.path(), "alice");
        let bob = pair(dir.path(), "bob");
        let mallory = pair(dir.path(), "mallory");
        let map = BTreeMap::from([
            ("alice".to_string(), dir.path().join("alice.pub")),
            ("bob".to_string(), dir.path().join("bob.pub")),
        ]);
        let store = TrustStore::load(&map).unwrap();
        assert_eq!(store.names(), ["alice", "bob"]);
        assert!(store.get("alice").is_some() && store.get("carol").is_none());

        let data = b"component";
        let by_bob = sign_blob(&bob, data);
        let ok = store.verify_by_any(&names(&["alice", "bob"]), data, Some(&by_bob));
        assert_eq!(ok.unwrap(), "bob");

        let err = store
            .verify_by_any(&names(&["alice", "bob"]), data, None)
            .unwrap_err();
        assert!(matches!(err, SignatureError::Missing { .. }), "{err}");
        let err = store.verify_by_any(&[], data, Some(&by_bob)).unwrap_err();
        assert_eq!(err, SignatureError::NoSignersNamed);

        let err = store
            .verify_by_any(&names(&["carol"]), data, Some(&by_bob))
            .unwrap_err();
        assert!(matches!(err, SignatureError::NotConfigured { .. }), "{err}");
        assert!(
            err.to_string().contains("carol") && err.to_string().contains("alice, bob"),
            "{err}"
        );

        let by_mallory = sign_blob(&mallory, data);
        let signers = names(&["alice", "bob", "carol"]);
        let err = store
            .verify_by_any(&signers, data, Some(&by_mallory))
            .unwrap_err();
        assert_eq!(
            err,
            SignatureError::NoMatch {
                tried: names(&["alice", "bob"]),
                unconfigured: names(&["carol"]),
            }
        );
        assert!(err.to_string().contains("alice, bob"), "{err}");
        // Only the named keys count, even when another configured key would verify.
        let by_alice = sign_blob(&alice, data);
        let err = store
            .verify_by_any(&names(&["bob"]), data, Some(&by_alice))
            .unwrap_err();
        assert!(matches!(err, SignatureError::NoMatch { .. }), "{err}");
        let err = store
            .verify_by_any(&names(&["bob"]), data, Some("zz"))
            .unwrap_err();
        assert!(matches!(err, SignatureError::Malformed(_)), "{err}");

        let missing = BTreeMap::from([("x".to_string(), dir.path().join("nope.pub"))]);
        let err = TrustStore::load(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.pub"), "{err}");
    }
}
