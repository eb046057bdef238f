//! `docker-registry serve`, as a supervised process: its config written from
//! the settings, started (or adopted after a swap or a daemon restart),
//! restarted with backoff when it exits.

use std::fs;
use std::time::Duration;

use cairn_sdk::process::{self, ProcessId, Spec};

use crate::secrets::{Credentials, write_atomic};
use crate::settings::{Settings, TlsMode};
use crate::tls::TlsFiles;

/// The process's name among the plugin's processes.
pub const PROCESS: &str = "registry";
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The registry's config file. No blob descriptor cache: after a garbage
/// collection it would keep answering for deleted blobs.
pub fn render_config(
    settings: &Settings,
    credentials: &Credentials,
    tls: Option<&TlsFiles>,
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
    format!(
        "version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: true\n      age: 168h\n      interval: 24h\n      dryrun: false\n    \
         readonly:\n      enabled: false\n\
         http:\n  addr: {addr}\n  secret: {secret}\n{tls}  headers:\n    X-Content-Type-Options: [nosniff]\n\
         auth:\n  htpasswd:\n    realm: cairn-registry\n    path: {htpasswd}\n",
        storage = quote(&settings.storage),
        addr = quote(&settings.listen.to_string()),
        secret = quote(credentials.http_secret.expose()),
        htpasswd = quote(&settings.path("htpasswd")),
    )
}

/// Writes the config; `true` when it changed.
pub fn write_config(settings: &Settings, text: &str) -> Result<bool, String> {
    let path = settings.path("config.yml");
    if fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    write_atomic(&path, text.as_bytes())?;
    Ok(true)
}

/// Starts the registry, or keeps the one already running (from an earlier
/// release or before a daemon restart) unless its config changed.
pub fn start(settings: &Settings, config_changed: bool) -> Result<ProcessId, String> {
    if let Some(found) = process::find(PROCESS).map_err(|err| err.to_string())? {
        if found.running() {
            if !config_changed {
                return Ok(found.id);
            }
            cairn_sdk::info!("the registry's config changed; restarting it");
            process::stop(found.id, STOP_GRACE).map_err(|err| err.to_string())?;
        }
        // The name is free again for the new process.
        let _ = process::forget(found.id);
    }
    spawn(settings)
}

/// Spawns the registry; the name must be free (its last process forgotten).
pub fn spawn(settings: &Settings) -> Result<ProcessId, String> {
    let spec = Spec::new(PROCESS, &settings.executable)
        .args(["serve", &settings.path("config.yml")])
        .open_files(8192);
    process::spawn(&spec).map_err(|err| format!("cannot start {}: {err}", settings.executable))
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
