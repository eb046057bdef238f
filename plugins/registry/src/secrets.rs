//! The registry's credentials: a `build` user that pushes and a `runtime`
//! user that pulls, and the `http.secret` that signs upload sessions.
//!
//! They are generated here and kept in the private state directory, never
//! by the registry (which would log a generated password). Only bcrypt
//! hashes reach the htpasswd file; passwords leave this module only as
//! fingerprints, or inside an `Authorization` header to the registry itself.

use std::fmt;
use std::fs;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use cairn_sdk::fs::write_atomic;

/// bcrypt cost: the least bcrypt allows. docker-registry checks the hash on
/// every request, so the cost is paid by every request (cost 10 took ~70 ms
/// each here); it buys nothing against guessing a password of 192 random
/// bits, which no cost-1 hash makes guessable.
const BCRYPT_COST: u32 = 4;

/// A password: printed only as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    fn generate() -> Result<Password, String> {
        Ok(Password(random_hex(24)?))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, irreversible identifier of the password, to tell versions apart.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("cairn-registry-credential:{}", self.0));
        hex(&digest[..8])
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The users of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum User {
    Build,
    Runtime,
}

impl User {
    pub fn name(self) -> &'static str {
        match self {
            User::Build => "build",
            User::Runtime => "runtime",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub build: Password,
    pub runtime: Password,
    pub http_secret: Password,
    /// SHA-256 of the htpasswd file written for these passwords: a file that
    /// differs (a crash between the two writes) is written again.
    #[serde(default)]
    htpasswd_sha256: String,
}

impl Credentials {
    fn generate() -> Result<Credentials, String> {
        Ok(Credentials {
            build: Password::generate()?,
            runtime: Password::generate()?,
            http_secret: Password::generate()?,
            htpasswd_sha256: String::new(),
        })
    }

    pub fn password(&self, user: User) -> &Password {
        match user {
            User::Build => &self.build,
            User::Runtime => &self.runtime,
        }
    }

    /// The `Authorization` header value that logs `user` in.
    pub fn basic_auth(&self, user: User) -> String {
        use base64::Engine as _;
        let login = format!("{}:{}", user.name(), self.password(user).expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(login)
        )
    }

    /// Loads the credentials in `dir`, or generates and stores them (with
    /// their htpasswd file) when there are none.
    pub fn load_or_create(dir: &str) -> Result<Credentials, String> {
        let path = format!("{dir}/credentials.json");
        match fs::read(&path) {
            Ok(bytes) => {
                let mut credentials: Credentials = serde_json::from_slice(&bytes)
                    .map_err(|err| format!("{path} is damaged: {err}"))?;
                let htpasswd = fs::read(format!("{dir}/htpasswd")).unwrap_or_default();
                if hex(&Sha256::digest(&htpasswd)) != credentials.htpasswd_sha256 {
                    credentials.store(dir)?;
                }
                Ok(credentials)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut credentials = Credentials::generate()?;
                credentials.store(dir)?;
                Ok(credentials)
            }
            Err(err) => Err(format!("cannot read {path}: {err}")),
        }
    }

    /// The stored credentials, read only: what the token service checks
    /// logins against.
    pub fn load(dir: &str) -> Result<Credentials, String> {
        let path = format!("{dir}/credentials.json");
        let bytes = fs::read(&path).map_err(|err| format!("cannot read {path}: {err}"))?;
        serde_json::from_slice(&bytes).map_err(|err| format!("{path} is damaged: {err}"))
    }

    /// A new password for `user`, stored with the htpasswd file; the
    /// registry notices the file's change without a restart.
    pub fn rotate(&mut self, dir: &str, user: User) -> Result<(), String> {
        let fresh = Password::generate()?;
        let mut next = self.clone();
        match user {
            User::Build => next.build = fresh,
            User::Runtime => next.runtime = fresh,
        }
        next.store(dir)?;
        *self = next;
        Ok(())
    }

    /// Writes the credentials (with the digest of their htpasswd file), then
    /// the htpasswd file, each atomically: after a crash in between the
    /// digest does not match and `load_or_create` writes the file again.
    fn store(&mut self, dir: &str) -> Result<(), String> {
        let mut htpasswd = String::new();
        for user in [User::Build, User::Runtime] {
            let hash = bcrypt::hash(self.password(user).expose(), BCRYPT_COST)
                .map_err(|err| format!("hashing a password: {err}"))?;
            htpasswd.push_str(&format!("{}:{hash}\n", user.name()));
        }
        self.htpasswd_sha256 = hex(&Sha256::digest(htpasswd.as_bytes()));
        let json = serde_json::to_vec_pretty(self).map_err(|err| err.to_string())?;
        write_atomic(&format!("{dir}/credentials.json"), &json)?;
        write_atomic(&format!("{dir}/htpasswd"), htpasswd.as_bytes())?;
        Ok(())
    }
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|err| format!("no randomness: {err}"))?;
    Ok(hex(&buf))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let password = Password("hunter2-secret".into());
        assert_eq!(format!("{password:?}"), "<redacted>");
        assert_eq!(password.fingerprint().len(), 16);
        assert!(!password.fingerprint().contains("hunter2"));
    }
}
