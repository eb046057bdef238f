//! Content digests: the identity of every blob the host stores.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A SHA-256 digest in its canonical text form `sha256:<64 lowercase hex>`.
///
/// Only well-formed values can be constructed, so a `Digest` can be used directly as a
/// file name without path-traversal checks.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

/// A string that is not a canonical `sha256:<hex>` digest.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid digest {input:?}: expected `sha256:` followed by 64 lowercase hex digits")]
pub struct DigestParseError {
    /// The rejected input (truncated to 100 characters).
    pub input: String,
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("{PREFIX}{}", hex::encode(Sha256::digest(bytes))))
    }

    /// Parses the canonical form `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, DigestParseError> {
        match s.strip_prefix(PREFIX) {
            Some(hex) if is_lower_hex(hex) => Ok(Digest(s.to_owned())),
            _ => Err(DigestParseError {
                input: s.chars().take(100).collect(),
            }),
        }
    }

    /// Builds a digest from its bare 64-character lowercase hex part.
    pub fn from_hex(hex: &str) -> Result<Self, DigestParseError> {
        Self::parse(&format!("{PREFIX}{hex}"))
    }

    /// The 64-character lowercase hex part, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// The full canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.len() == HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_matches_known_vector() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(Digest::from_hex(d.hex()).unwrap(), d);
    }

    #[test]
    fn rejects_non_canonical() {
        let good = Digest::of(b"x").hex().to_owned();
        for bad in [
            String::new(),
            good.clone(),
            format!("sha256:{}", good.to_uppercase()),
            format!("sha256:{}", &good[1..]),
            format!("sha256:{good}0"),
            format!("sha512:{good}"),
            format!("sha256:../{}", &good[3..]),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_is_the_string() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
