//! Registry credentials: a TOML file of per-registry logins, kept out of every log line,
//! `Debug` output and error message.
//!
//! ```toml
//! [registries."127.0.0.1:5000"]
//! username = "alice"
//! password = "secret"
//!
//! [registries."ghcr.io"]
//! token = "..."      # bearer token
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret string whose `Debug` and `Display` print `***`, so it can sit inside
/// structures that are logged or formatted into errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is handed to the registry client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// How to log in to one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryCredential {
    /// HTTP basic authentication (also used to obtain bearer tokens from token servers).
    Basic {
        /// The user name (not secret: it may appear in error messages).
        username: String,
        /// The password.
        password: Secret,
    },
    /// A ready-made bearer token.
    Bearer {
        /// The token.
        token: Secret,
    },
}

impl RegistryCredential {
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            RegistryCredential::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(
                    username.clone(),
                    password.expose().to_owned(),
                )
            }
            RegistryCredential::Bearer { token } => {
                oci_client::secrets::RegistryAuth::Bearer(token.expose().to_owned())
            }
        }
    }

    /// Who is logging in, for messages: the user name, or `bearer token`.
    pub fn identity(&self) -> String {
        match self {
            RegistryCredential::Basic { username, .. } => format!("user {username:?}"),
            RegistryCredential::Bearer { .. } => "bearer token".to_owned(),
        }
    }
}

/// Logins by registry (`HOST[:PORT]`, matched exactly). Registries without an entry are
/// accessed anonymously.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    registries: BTreeMap<String, RegistryCredential>,
}

/// Why a credentials file could not be used. Messages never include secret values.
#[derive(thiserror::Error, Debug)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("credentials file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Other users can read the file.
    #[error(
        "credentials file {} is accessible by group or others (mode {mode:03o}): \
         run `chmod 600 {}`",
        .path.display(), .path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("credentials file{}: {reason}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong (with any quoted values removed).
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    registries: BTreeMap<String, EntryFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFormat {
    username: Option<String>,
    password: Option<Secret>,
    token: Option<Secret>,
}

impl Credentials {
    /// No logins: every registry is accessed anonymously.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the login for `registry` (`HOST[:PORT]`).
    pub fn insert(&mut self, registry: impl Into<String>, credential: RegistryCredential) {
        self.registries.insert(registry.into(), credential);
    }

    /// The login for `registry`, if any.
    pub fn get(&self, registry: &str) -> Option<&RegistryCredential> {
        self.registries.get(registry)
    }

    /// Reads a credentials file, refusing one that group or others can access.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let io = |source| CredentialsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CredentialsError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map_err(|e| match e {
            CredentialsError::Invalid { reason, .. } => CredentialsError::Invalid {
                path: Some(path.to_path_buf()),
                reason,
            },
            other => other,
        })
    }

    /// Parses the TOML text of a credentials file (no permission check).
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let invalid = |reason: String| CredentialsError::Invalid { path: None, reason };
        let file: FileFormat = toml::from_str(text).map_err(|e| {
            // toml's full Display quotes the offending source line, which may be a
            // password: keep only the position and a scrubbed message.
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            invalid(format!("{at}{}", scrub_quoted(e.message())))
        })?;
        let mut registries = BTreeMap::new();
        for (registry, entry) in file.registries {
            let credential = match entry {
                EntryFormat {
                    username: Some(username),
                    password: Some(password),
                    token: None,
                } => RegistryCredential::Basic { username, password },
                EntryFormat {
                    username: None,
                    password: None,
                    token: Some(token),
                } => RegistryCredential::Bearer { token },
                _ => {
                    return Err(invalid(format!(
                        "registry {registry:?} needs either `username` and `password`, \
                         or `token` alone"
                    )));
                }
            };
            // Sent in an HTTP header: control characters would break the request
            // (and oci-client panics on a token it cannot put in a header).
            let unprintable = match &credential {
                RegistryCredential::Basic { username, password } => {
                    has_control(username) || has_control(password.expose())
                }
                RegistryCredential::Bearer { token } => has_control(token.expose()),
            };
            if unprintable {
                return Err(invalid(format!(
                    "registry {registry:?}: the credential contains control characters \
                     (a newline, say), which cannot be sent to a registry"
                )));
            }
            registries.insert(registry, credential);
        }
        Ok(Credentials { registries })
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Replaces quoted fragments (`"..."`, `` `...` ``, `'...'`) with `…`, since parser messages
/// quote the values they reject.
fn scrub_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if matches!(c, '"' | '`' | '\'') => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let creds = Credentials::parse(
            "[registries.\"h:1\"]\nusername = \"alice\"\npassword = \"hunter2\"\n\
             [registries.\"ghcr.io\"]\ntoken = \"tok-xyz\"\n",
        )
        .unwrap();
        let debug = format!("{creds:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("tok-xyz"),
            "{debug}"
        );
        assert!(debug.contains("alice"), "{debug}");
        assert!(matches!(
            creds.get("ghcr.io"),
            Some(RegistryCredential::Bearer { .. })
        ));
        assert!(creds.get("other").is_none());
    }

    #[test]
    fn invalid_files_are_explained_without_values() {
        let err = Credentials::parse("[registries.\"h\"]\nusername = \"a\"\n").unwrap_err();
        assert!(err.to_string().contains("either `username`"), "{err}");
        let err = Credentials::parse("[registries.\"h\"]\ntoken = 12345678\n").unwrap_err();
        assert!(!err.to_string().contains("12345678"), "{err}");
        let err = Credentials::parse("[registries.\"h\"]\npassword = \"pw-oops\nx").unwrap_err();
        assert!(!err.to_string().contains("pw-oops"), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
        let err =
            Credentials::parse("[registries.\"h\"]\ntoken = \"tok\\nen-secret\"\n").unwrap_err();
        assert!(err.to_string().contains("control characters"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn group_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        std::fs::write(&path, "[registries.\"h\"]\ntoken = \"t\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Credentials::load(&path).unwrap_err();
        assert!(matches!(
            err,
            CredentialsError::InsecurePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Credentials::load(&path).unwrap().get("h").is_some());
    }
}
