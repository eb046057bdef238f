//! The releases serving now, as capabilities see them (install checks, HTTP
//! routing), and the HTTP handler of one of them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::Kernel;
use crate::caps::{Serving, ServingPlugin};
use crate::contract::HttpHandler;
use crate::runtime::Release;

impl Kernel {
    /// Each plugin's serving release, with a fingerprint of the set.
    pub fn serving(&self) -> Serving {
        let Ok(slots) = self.slots.read() else {
            return Serving {
                fingerprint: 0,
                plugins: Vec::new(),
            };
        };
        let releases: Vec<(&String, Arc<Release>)> = slots
            .iter()
            .map(|(name, slot)| (name, slot.active.load_full()))
            .collect();
        Serving {
            fingerprint: fingerprint(releases.iter().map(|(name, release)| (*name, release.id))),
            plugins: releases
                .iter()
                .map(|(name, release)| ServingPlugin {
                    name: name.to_string(),
                    grants: release.grants.clone(),
                    serves_http: release.http.is_some(),
                })
                .collect(),
        }
    }

    /// The fingerprint of the set of serving releases alone (cheap: no copies).
    pub fn serving_fingerprint(&self) -> u64 {
        let Ok(slots) = self.slots.read() else {
            return 0;
        };
        fingerprint(
            slots
                .iter()
                .map(|(name, slot)| (name, slot.active.load().id)),
        )
    }

    /// The `wasi:http/incoming-handler` of `plugin`'s serving release.
    pub fn http_handler(&self, plugin: &str) -> Option<Arc<dyn HttpHandler>> {
        let release = self.slot(plugin)?.active.load_full();
        let handler: Arc<dyn HttpHandler> = release.http.clone()?;
        Some(handler)
    }
}

/// Release ids are never reused, so equal fingerprints mean equal releases.
fn fingerprint<'a>(releases: impl Iterator<Item = (&'a String, u64)>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for release in releases {
        release.hash(&mut hasher);
    }
    hasher.finish()
}
