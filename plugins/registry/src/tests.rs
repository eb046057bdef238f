//! Provisioning natively, on real files: settings checks, the registry's
//! config, credentials surviving a crash between their two files, and the
//! device CA and certificate.

use std::fs;

use crate::secrets::{Credentials, User};
use crate::service::{Mode, render_config};
use crate::settings::Settings;

fn settings(extra: &str) -> Result<Settings, String> {
    let text = format!("state = \"/var/lib/r\"\nstorage = \"/srv/images\"\n{extra}");
    let settings: Settings = config_table(&text)?;
    settings.check().map(|()| settings)
}

/// A `[config]` table from `key = <JSON value>` lines.
fn config_table(text: &str) -> Result<Settings, String> {
    let mut object = serde_json::Map::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) = line.split_once(" = ").ok_or("bad line")?;
        let value: serde_json::Value = serde_json::from_str(value).map_err(|e| e.to_string())?;
        object.insert(key.to_string(), value);
    }
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|err| err.to_string())
}

#[test]
fn settings_are_checked() {
    let good = settings("").unwrap();
    assert_eq!(good.url(), "https://localhost:5000");
    assert!(
        settings("tls = \"plain-http-development\"")
            .unwrap()
            .url()
            .starts_with("http://")
    );
    for (extra, needle) in [
        ("tls = \"provided\"", "needs `certificate` and `key`"),
        (
            "certificate = \"/c.pem\"\nkey = \"/k.pem\"",
            "only used with",
        ),
        ("hostname = \"bad host\"", "is not a host name"),
        ("listen = \"nowhere\"", "invalid socket address"),
        ("tls = \"http\"", "unknown variant"),
        ("retention = 3", "unknown field"),
        ("keep = 0", "must be at least 1"),
        ("prune-interval = \"daily\"", "is not a duration"),
        ("prune-interval = \"10s\"", "at least 1m"),
        (
            "token-realm = \"gateway/token\"",
            "whose path ends in /token",
        ),
        (
            "token-realm = \"https://gateway:8443/\"",
            "whose path ends in /token",
        ),
    ] {
        let err = settings(extra).err().unwrap_or_default();
        assert!(err.contains(needle), "{extra}: {err}");
    }
    let tokens = settings("token-realm = \"https://gw:8443/registry/token\"").unwrap();
    assert_eq!(tokens.token_path().as_deref(), Some("/registry/token"));
    assert_eq!(tokens.service(), "localhost:5000");
    let scheduled = settings("prune-interval = \"24h\"").unwrap();
    assert_eq!(
        scheduled.prune_interval(),
        Some(std::time::Duration::from_secs(86400))
    );
    assert_eq!(good.prune_interval(), None);
    let relative = config_table("state = \"rel\"\nstorage = \"/s\"").unwrap();
    assert!(relative.check().unwrap_err().contains("absolute"));
}

#[test]
fn credentials_are_made_once_and_a_torn_rotation_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let first = Credentials::load_or_create(dir).unwrap();
    let htpasswd = fs::read_to_string(format!("{dir}/htpasswd")).unwrap();
    assert!(htpasswd.starts_with("build:$2"), "{htpasswd}");
    assert!(!htpasswd.contains(first.build.expose()));
    let again = Credentials::load_or_create(dir).unwrap();
    assert_eq!(again.build, first.build);
    assert_eq!(
        fs::read_to_string(format!("{dir}/htpasswd")).unwrap(),
        htpasswd
    );

    // A crash after the credentials were written but before the htpasswd
    // file: the old file stays, and the next start writes it again.
    let mut rotated = again.clone();
    rotated.rotate(dir, User::Runtime).unwrap();
    fs::write(format!("{dir}/htpasswd"), &htpasswd).unwrap();
    let repaired = Credentials::load_or_create(dir).unwrap();
    assert_eq!(repaired.runtime, rotated.runtime);
    let rewritten = fs::read_to_string(format!("{dir}/htpasswd")).unwrap();
    assert_ne!(rewritten, htpasswd);
    let runtime_hash = rewritten
        .lines()
        .find_map(|line| line.strip_prefix("runtime:"))
        .unwrap();
    assert!(bcrypt::verify(rotated.runtime.expose(), runtime_hash).unwrap());

    fs::write(format!("{dir}/credentials.json"), b"{not json").unwrap();
    assert!(
        Credentials::load_or_create(dir)
            .unwrap_err()
            .contains("damaged")
    );
}

#[test]
fn the_registry_config_has_no_blob_cache_and_quotes_paths() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = Credentials::load_or_create(dir.path().to_str().unwrap()).unwrap();
    let text = render_config(
        &settings("").unwrap(),
        &credentials,
        None,
        None,
        Mode::ReadWrite,
    );
    assert!(text.contains("rootdirectory: \"/srv/images\""), "{text}");
    assert!(text.contains("readonly:\n      enabled: false"), "{text}");
    let read_only = render_config(
        &settings("").unwrap(),
        &credentials,
        None,
        None,
        Mode::ReadOnly,
    );
    assert!(
        read_only.contains("readonly:\n      enabled: true"),
        "{read_only}"
    );
    assert_eq!(
        read_only.replace("enabled: true", "enabled: false"),
        text.replace("enabled: true", "enabled: false"),
        "the modes differ only in read-only maintenance"
    );
    assert!(text.contains("addr: \"127.0.0.1:5000\""), "{text}");
    assert!(text.contains("path: \"/var/lib/r/htpasswd\""), "{text}");
    assert!(text.contains("delete:\n    enabled: true"), "{text}");
    assert!(!text.contains("cache") && !text.contains("tls:"), "{text}");
}

#[test]
fn the_device_ca_is_made_once_and_the_certificate_follows_the_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let ips = ["127.0.0.1".parse().unwrap()];
    let files = crate::tls::ensure(dir, "gateway.local", &ips).unwrap();
    let ca = fs::read(&files.ca).unwrap();
    let cert = fs::read(&files.certificate).unwrap();
    assert!(String::from_utf8_lossy(&fs::read(&files.key).unwrap()).contains("PRIVATE KEY"));

    crate::tls::ensure(dir, "gateway.local", &ips).unwrap();
    assert_eq!(fs::read(&files.ca).unwrap(), ca);
    assert_eq!(fs::read(&files.certificate).unwrap(), cert);

    crate::tls::ensure(dir, "other.local", &ips).unwrap();
    assert_eq!(fs::read(&files.ca).unwrap(), ca, "the CA must not change");
    assert_ne!(fs::read(&files.certificate).unwrap(), cert);
}
