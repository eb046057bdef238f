//! Test fixtures: the labels from the Dockyard note, a fake device and fake
//! providers.

use std::collections::BTreeMap;

use super::{Declared, Environment, LabelError, ResolveError, Resolved, TlsPart};

/// The one public Nanocloud options label: the conformance test image's
/// config, with the label value still JSON-escaped as stored.
pub const REAL_IMAGE_CONFIG_LABELS: &str = r#"{"io.nanocloud.options": "{\"runtime_command\":[\"/bin/sh\"],\"runtime_args\":[\"-c\",\"echo conformance\"],\"macro_dns\":[\"!dns\"],\"macro_rand\":[\"!rand 8 hex\"],\"macro_tls\":[\"!tls cert\"]}"}"#;

/// The same label, unescaped.
pub const REAL_LABEL: &str = r#"{"runtime_command":["/bin/sh"],"runtime_args":["-c","echo conformance"],"macro_dns":["!dns"],"macro_rand":["!rand 8 hex"],"macro_tls":["!tls cert"]}"#;

/// The note's illustrative gitea label (written from the parser's rules).
pub const GITEA_LABEL: &str = r#"{"database=&mariadb": ["*database_port",
   "&bindings.create_user create_user.sh $database_user $secret_database_password"],
 "database=sqlite": [], "database_user": ["gitea"],
 "secret_database_password": ["!rand 24 charset26"], "?port_http": ["3000"]}"#;

/// The gitea label in Cairn's typed form, declaring exactly the same.
pub const GITEA_CAIRN_LABEL: &str = r#"{"options": [
  {"name": "database", "type": "service", "choices": [
    {"service": "mariadb", "requires": ["database_port"], "imports": ["port"],
     "bindings": [{"id": "create_user",
                   "run": ["create_user.sh", "$database_user", "$secret_database_password"]}]},
    {"value": "sqlite"}]},
  {"name": "database_user", "default": "gitea"},
  {"name": "secret_database_password", "type": "secret", "default": "!rand 24 charset26"},
  {"name": "port_http", "optional": true, "default": "3000"}
]}"#;

/// The example from the Cairn schema's documentation.
pub const CAIRN_EXAMPLE: &str = r#"{"options": [
  {"name": "port", "type": "port", "default": "5432", "doc": "Port to listen on"},
  {"name": "password", "type": "secret", "default": "!rand 24 charset26"},
  {"name": "mode", "type": "enum", "values": ["a", "b"], "default": "a"},
  {"name": "database", "type": "service", "choices": [
    {"service": "db", "requires": ["database_port"], "imports": ["port", "user"],
     "bindings": [{"id": "create_user", "run": ["create_user.sh", "$database_user"]}]},
    {"value": "sqlite"}]},
  {"name": "workers", "type": "integer", "min": 1, "max": 64, "default": "4", "optional": true}
]}"#;

/// What the fake device answers.
pub const NAMESERVER: &str = "10.0.0.53";
pub const LOCAL_IP: &str = "192.0.2.10";

/// A device with fixed answers and a deterministic "random" source.
pub struct FakeEnv {
    /// The next "random" byte.
    next_byte: u8,
    /// Bytes handed out before the counter starts, to test rejection.
    pub queued: Vec<u8>,
    /// Whether `nameserver` fails.
    pub no_nameserver: bool,
    /// How many random bytes were asked for in all.
    pub random_requested: usize,
}

impl FakeEnv {
    pub fn new() -> FakeEnv {
        FakeEnv {
            next_byte: 0,
            queued: Vec::new(),
            no_nameserver: false,
            random_requested: 0,
        }
    }
}

impl Environment for FakeEnv {
    fn nameserver(&mut self) -> Result<String, String> {
        if self.no_nameserver {
            Err("no nameserver in /etc/resolv.conf".to_string())
        } else {
            Ok(NAMESERVER.to_string())
        }
    }

    fn local_ip(&mut self) -> Result<String, String> {
        Ok(LOCAL_IP.to_string())
    }

    fn random_bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        self.random_requested += n;
        let mut bytes = Vec::with_capacity(n);
        while bytes.len() < n {
            if self.queued.is_empty() {
                bytes.push(self.next_byte);
                // 37 is odd: the counter visits every byte value.
                self.next_byte = self.next_byte.wrapping_add(37);
            } else {
                bytes.push(self.queued.remove(0));
            }
        }
        Ok(bytes)
    }

    fn tls_path(&mut self, which: TlsPart) -> String {
        format!("/var/run/nanocloud.io/tls/{}.pem", which.name())
    }
}

/// The mariadb provider's profile.
pub fn mariadb_profile() -> BTreeMap<String, String> {
    map(&[
        ("port", "3306"),
        ("user", "root"),
        ("secret_password", "mariadb-root-pw"),
        ("engine", "innodb"),
    ])
}

/// Installed services: just mariadb.
pub fn providers() -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::from([("mariadb".to_string(), mariadb_profile())])
}

/// No installed services.
pub fn no_providers() -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::new()
}

/// A map from string pairs.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Reads a Nanocloud label that must be valid.
pub fn nanocloud(label: &str) -> Declared {
    match super::parse_nanocloud(label) {
        Ok(declared) => declared,
        Err(error) => panic!("label should parse: {error}"),
    }
}

/// Reads a Cairn label that must be valid.
pub fn cairn(label: &str) -> Declared {
    match super::parse_cairn(label) {
        Ok(declared) => declared,
        Err(error) => panic!("label should parse: {error}"),
    }
}

/// The error reading a Nanocloud label that must be invalid.
pub fn nanocloud_error(label: &str) -> LabelError {
    match super::parse_nanocloud(label) {
        Ok(declared) => panic!("label should fail: {label}\nparsed as {declared:?}"),
        Err(error) => error,
    }
}

/// The error reading a Cairn label that must be invalid.
pub fn cairn_error(label: &str) -> LabelError {
    match super::parse_cairn(label) {
        Ok(declared) => panic!("label should fail: {label}\nparsed as {declared:?}"),
        Err(error) => error,
    }
}

/// Resolves with the fake device; must succeed.
pub fn resolved(declared: &Declared, provided: &[(&str, &str)]) -> Resolved {
    match super::resolve(declared, &map(provided), &providers(), &mut FakeEnv::new()) {
        Ok(resolved) => resolved,
        Err(error) => panic!("should resolve: {error}"),
    }
}

/// Resolves with the fake device; must fail.
pub fn resolve_error(declared: &Declared, provided: &[(&str, &str)]) -> ResolveError {
    match super::resolve(declared, &map(provided), &providers(), &mut FakeEnv::new()) {
        Ok(resolved) => panic!("should fail, resolved to {resolved:?}"),
        Err(error) => error,
    }
}

/// Asserts that an error is about `option` and its message says `needle`.
pub fn assert_label_error(error: &LabelError, option: &str, needle: &str) {
    assert_eq!(error.option(), Some(option), "wrong option in: {error}");
    let message = error.to_string();
    assert!(
        message.contains(needle),
        "{message:?} should say {needle:?}"
    );
}
