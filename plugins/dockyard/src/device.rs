//! What macros and providers need from the device, over host calls: the
//! resolver's [`Environment`] and the installed services' profiles.

use std::collections::BTreeMap;

use cairn_sdk::kv;

use crate::options::{Environment, Providers, TlsPart};
use crate::seal::Sealer;
use crate::settings::Settings;

/// Where a service finds its TLS material inside its container.
pub const TLS_DIR: &str = "/run/cairn/dockyard/tls";
/// kv prefix of the installed services' resolved profiles.
pub const PROFILE_PREFIX: &str = "profile/";

pub struct DeviceEnvironment<'a> {
    pub settings: &'a Settings,
}

impl Environment for DeviceEnvironment<'_> {
    fn nameserver(&mut self) -> Result<String, String> {
        self.settings
            .nameserver
            .clone()
            .ok_or_else(|| "set `nameserver` in the dockyard plugin's config".to_string())
    }

    fn local_ip(&mut self) -> Result<String, String> {
        self.settings
            .local_ip
            .clone()
            .ok_or_else(|| "set `local-ip` in the dockyard plugin's config".to_string())
    }

    fn random_bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut bytes = vec![0u8; n];
        getrandom::getrandom(&mut bytes).map_err(|err| format!("no randomness: {err}"))?;
        Ok(bytes)
    }

    fn tls_path(&mut self, which: TlsPart) -> String {
        format!("{TLS_DIR}/{}.pem", which.name())
    }
}

/// The profiles of installed services, sealed in kv.
pub struct InstalledServices<'a> {
    pub sealer: &'a Sealer,
}

impl Providers for InstalledServices<'_> {
    fn profile(&self, service: &str) -> Option<BTreeMap<String, String>> {
        let sealed: String = kv::get_json(&format!("{PROFILE_PREFIX}{service}"))
            .ok()
            .flatten()?;
        match self.sealer.open_json(&sealed) {
            Ok(profile) => Some(profile),
            Err(err) => {
                cairn_sdk::warn!("the profile of service {service} does not open: {err}");
                None
            }
        }
    }
}
