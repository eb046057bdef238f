//! The releases serving now, as capabilities see them (install checks, HTTP
//! routing), and the HTTP handler of one of them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::Kernel;
use crate::caps::{Serving, ServingPlugin};
use crate::contract::HttpHandler;

impl Kernel {
    /// Each plugin's serving release, with a fingerprint of the set.
    pub fn serving(&self) -> Serving {
        let Ok(slots) = self.slots.read() else {
            return Serving {
                fingerprint: 0,
                plugins: Vec::new(),
            };
        };
        // Release ids are never reused, so equal fingerprints mean equal releases.
        let mut hasher = DefaultHasher::new();
        let plugins = slots
            .iter()
            .map(|(name, slot)| {
                let release = slot.active.load();
                (name, release.id).hash(&mut hasher);
                ServingPlugin {
                    name: name.clone(),
                    grants: release.grants.clone(),
                    serves_http: release.http.is_some(),
                }
            })
            .collect();
        Serving {
            fingerprint: hasher.finish(),
            plugins,
        }
    }

    /// The fingerprint of the set of serving releases alone (cheap: no copies).
    pub fn serving_fingerprint(&self) -> u64 {
        let Ok(slots) = self.slots.read() else {
            return 0;
        };
        let mut hasher = DefaultHasher::new();
        for (name, slot) in slots.iter() {
            (name, slot.active.load().id).hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The `wasi:http/incoming-handler` of `plugin`'s serving release.
    pub fn http_handler(&self, plugin: &str) -> Option<Arc<dyn HttpHandler>> {
        let release = self.slot(plugin)?.active.load_full();
        let handler: Arc<dyn HttpHandler> = release.http.clone()?;
        Some(handler)
    }
}
