//! `docker-registry serve`, as a supervised process: its config written from
//! the settings, started (or adopted after a swap or a daemon restart),
//! restarted with backoff when it exits; and `garbage-collect`.
//!
//! Read-only maintenance mode is only read when the registry starts, so the
//! two modes are two config files, and which one a running registry serves
//! is visible in its arguments: an adopted process tells its mode.

use std::fs;
use std::time::Duration;

use cairn_sdk::process::{self, ProcessId, ProcessInfo, Spec};

use crate::secrets::{Credentials, write_atomic};
use crate::settings::{Settings, TlsMode};
use crate::tls::TlsFiles;
use crate::token::{self, Signer};

/// The process's name among the plugin's processes.
pub const PROCESS: &str = "registry";
/// The garbage collector's process name.
pub const GC_PROCESS: &str = "registry-gc";
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Whether the registry accepts pushes and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    /// Pulls only: uploads, manifest puts and deletes answer 405.
    ReadOnly,
}

impl Mode {
    fn config_file(self) -> &'static str {
        match self {
            Mode::ReadWrite => "config.yml",
            Mode::ReadOnly => "config-readonly.yml",
        }
    }
}

/// The mode a running registry was started in, from its arguments.
pub fn mode_of(process: &ProcessInfo) -> Mode {
    if process
        .args
        .last()
        .is_some_and(|config| config.ends_with(Mode::ReadOnly.config_file()))
    {
        Mode::ReadOnly
    } else {
        Mode::ReadWrite
    }
}

/// The registry's config file. No blob descriptor cache: after a garbage
/// collection it would keep answering for deleted blobs. With a token
/// `signer` the registry checks tokens instead of the htpasswd file; the
/// config names the digest of the root it trusts, so a new root (read only
/// at start) changes the config and restarts the registry.
pub fn render_config(
    settings: &Settings,
    credentials: &Credentials,
    tls: Option<&TlsFiles>,
    signer: Option<&Signer>,
    mode: Mode,
) -> String {
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let tls = match tls {
        Some(files) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            quote(&files.certificate),
            quote(&files.key)
        ),
        None => String::new(),
    };
    let auth = match (signer, &settings.token_realm) {
        (Some(signer), Some(realm)) => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    \
             rootcertbundle: {root}\n# token root sha256:{digest}\n",
            realm = quote(realm),
            service = quote(&settings.service()),
            issuer = quote(token::ISSUER),
            root = quote(&token::root_path(&settings.path("token"))),
            digest = signer.root_sha256,
        ),
        _ => format!(
            "auth:\n  htpasswd:\n    realm: cairn-registry\n    path: {}\n",
            quote(&settings.path("htpasswd"))
        ),
    };
    format!(
        "version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: true\n      age: 168h\n      interval: 24h\n      dryrun: false\n    \
         readonly:\n      enabled: {read_only}\n\
         http:\n  addr: {addr}\n  secret: {secret}\n{tls}  headers:\n    X-Content-Type-Options: [nosniff]\n\
         {auth}",
        storage = quote(&settings.storage),
        addr = quote(&settings.listen.to_string()),
        secret = quote(credentials.http_secret.expose()),
        read_only = mode == Mode::ReadOnly,
    )
}

/// Writes both configs; `true` when either changed.
pub fn write_configs(
    settings: &Settings,
    credentials: &Credentials,
    tls: Option<&TlsFiles>,
    signer: Option<&Signer>,
) -> Result<bool, String> {
    let mut changed = false;
    for mode in [Mode::ReadWrite, Mode::ReadOnly] {
        let text = render_config(settings, credentials, tls, signer, mode);
        let path = settings.path(mode.config_file());
        if fs::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        write_atomic(&path, text.as_bytes())?;
        changed = true;
    }
    Ok(changed)
}

/// Starts the registry in `mode`, or keeps the one already running (from an
/// earlier release or before a daemon restart) unless its config changed or
/// it serves the other mode.
pub fn start(settings: &Settings, config_changed: bool, mode: Mode) -> Result<ProcessId, String> {
    if let Some(found) = process::find(PROCESS).map_err(|err| err.to_string())? {
        if found.running() {
            if !config_changed && mode_of(&found) == mode {
                return Ok(found.id);
            }
            cairn_sdk::info!(
                "restarting the registry ({mode:?}, config changed: {config_changed})"
            );
            stop(found.id)?;
        } else {
            // The name is free again for the new process.
            let _ = process::forget(found.id);
        }
    }
    spawn(settings, mode)
}

/// Stops the registry and forgets it, so its name is free.
pub fn stop(id: ProcessId) -> Result<(), String> {
    process::stop(id, STOP_GRACE).map_err(|err| format!("cannot stop the registry: {err}"))?;
    let _ = process::forget(id);
    Ok(())
}

/// Spawns the registry; the name must be free (its last process forgotten).
pub fn spawn(settings: &Settings, mode: Mode) -> Result<ProcessId, String> {
    let spec = Spec::new(PROCESS, &settings.executable)
        .args(["serve", &settings.path(mode.config_file())])
        .open_files(8192);
    process::spawn(&spec).map_err(|err| format!("cannot start {}: {err}", settings.executable))
}

/// Starts `garbage-collect` on the read-write config (it only reads the
/// storage section). Never `--delete-untagged`: it would delete the children
/// of tagged indexes and digest-pushed signatures.
pub fn spawn_gc(settings: &Settings) -> Result<ProcessId, String> {
    let spec = Spec::new(GC_PROCESS, &settings.executable)
        .args([
            "garbage-collect",
            &settings.path(Mode::ReadWrite.config_file()),
        ])
        .open_files(8192);
    process::spawn(&spec).map_err(|err| {
        format!(
            "cannot start {} garbage-collect: {err}",
            settings.executable
        )
    })
}

/// Which TLS files the config names, by mode.
pub fn tls_files(settings: &Settings) -> Result<Option<TlsFiles>, String> {
    match settings.tls {
        TlsMode::PlainHttpDevelopment => Ok(None),
        TlsMode::Provided => Ok(Some(TlsFiles {
            ca: String::new(),
            certificate: settings.certificate.clone().unwrap_or_default(),
            key: settings.key.clone().unwrap_or_default(),
        })),
        TlsMode::DeviceCa => {
            let dir = settings.path("tls");
            fs::create_dir_all(&dir).map_err(|err| format!("cannot create {dir}: {err}"))?;
            crate::tls::ensure(&dir, &settings.hostname, &settings.certificate_ips()).map(Some)
        }
    }
}
