//! Which running plugin serves an HTTP path. The route table is rebuilt only
//! when the set of serving releases changes, not per request.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::Kernel;
use crate::caps::http::{Route, RouteTable};
use crate::runtime::http_instances::HttpInstances;

impl Kernel {
    /// The HTTP routes of the running plugins.
    pub fn http_routes(&self) -> Arc<RouteTable> {
        let Ok(slots) = self.slots.read() else {
            return Arc::default();
        };
        // Release ids are never reused, so equal fingerprints mean equal routes.
        let mut hasher = DefaultHasher::new();
        for (name, slot) in slots.iter() {
            (name, slot.active.load().id).hash(&mut hasher);
        }
        let fingerprint = hasher.finish();
        if let Ok(cache) = self.route_cache.lock()
            && let Some((cached, table)) = cache.as_ref()
            && *cached == fingerprint
        {
            return table.clone();
        }
        let routes = slots
            .iter()
            .filter_map(|(name, slot)| {
                let release = slot.active.load();
                release.http.as_ref()?;
                let grant = release.grants.http_server.as_ref()?;
                let routes: Vec<Route> = grant
                    .routes
                    .iter()
                    .map(|prefix| Route {
                        prefix: prefix.clone(),
                        plugin: name.clone(),
                    })
                    .collect();
                Some(routes)
            })
            .flatten()
            .collect();
        let table = Arc::new(RouteTable::new(routes));
        if let Ok(mut cache) = self.route_cache.lock() {
            *cache = Some((fingerprint, table.clone()));
        }
        table
    }

    /// The plugin serving HTTP requests for `path`, and its instances.
    pub fn http_handler(&self, path: &str) -> Option<(String, Arc<HttpInstances>)> {
        let plugin = self.http_routes().find(path)?.plugin.clone();
        let release = self.slot(&plugin)?.active.load_full();
        let instances = release.http.clone()?;
        Some((plugin, instances))
    }
}
