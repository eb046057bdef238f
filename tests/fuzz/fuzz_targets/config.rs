//! The daemon's config file (`DaemonConfig::load`) and the registry
//! credentials file it names (`Credentials::parse`), on any text.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use cairn::config::DaemonConfig;
use cairn::supply::oci::Credentials;
use libfuzzer_sys::fuzz_target;

/// The config is read from a file (relative paths resolve against its
/// directory), so each input is written to one scratch file.
fn scratch() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cairn-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir.join("cairn.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = scratch();
    let mut file = std::fs::File::create(path).expect("scratch file");
    file.write_all(data).expect("scratch write");
    drop(file);
    match DaemonConfig::load(path) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(error) => {
            let _ = format!("{error:#}");
        }
    }
    if let Err(error) = Credentials::parse(text) {
        let _ = error.to_string();
    }
});
