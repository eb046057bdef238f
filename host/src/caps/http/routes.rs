//! Which plugin serves a request path: the longest granted prefix wins.

use std::sync::{Arc, Mutex};

use crate::caps::Serving;

/// One granted prefix and the plugin it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub plugin: String,
}

/// Every route of the running plugins.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        // Longest first, so the first match is the most specific.
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        RouteTable { routes }
    }

    /// The route serving `path`, if any.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| prefix_matches(&route.prefix, path))
    }

    /// The plugin other than `plugin` that already serves exactly `prefix`.
    pub fn owner_of(&self, prefix: &str, plugin: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|route| route.prefix == prefix && route.plugin != plugin)
            .map(|route| route.plugin.as_str())
    }
}

/// `/api` serves `/api` and `/api/…` but not `/apix`; `/api/` and `/` serve
/// everything below them.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Checks one granted prefix.
pub(super) fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("route {prefix:?} must start with `/`"));
    }
    if prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '*' | '%'))
    {
        return Err(format!(
            "route {prefix:?} must be a plain path prefix (no spaces, `?`, `#`, `*` or `%`)"
        ));
    }
    if prefix
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(format!(
            "route {prefix:?} must not contain `.` or `..` segments"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let route = |prefix: &str, plugin: &str| Route {
            prefix: prefix.into(),
            plugin: plugin.into(),
        };
        RouteTable::new(vec![
            route("/", "fallback"),
            route("/api", "api"),
            route("/api/admin/", "admin"),
        ])
    }

    #[test]
    fn the_longest_matching_prefix_serves_on_segment_boundaries() {
        let table = table();
        let served = |path| table.find(path).map(|route| route.plugin.as_str());
        assert_eq!(served("/api"), Some("api"));
        assert_eq!(served("/api/users"), Some("api"));
        assert_eq!(served("/apix"), Some("fallback"));
        assert_eq!(served("/api/admin/x"), Some("admin"));
        assert_eq!(served("/api/admin"), Some("api"));
        assert_eq!(served("/"), Some("fallback"));
        assert_eq!(RouteTable::default().find("/"), None);
    }

    #[test]
    fn prefixes_are_plain_paths() {
        assert!(check_prefix("/api/v1").is_ok());
        for bad in ["api", "/a b", "/a?x", "/a/../b", "/*", "/%2e"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_prefix_held_by_another_plugin_is_reported() {
        let table = table();
        assert_eq!(table.owner_of("/api", "other"), Some("api"));
        assert_eq!(table.owner_of("/api", "api"), None);
    }
}

/// The route table of the serving releases, rebuilt only when the set of
/// serving releases changes, not per request.
#[derive(Default)]
pub struct Routing {
    cache: Mutex<Option<(u64, Arc<RouteTable>)>>,
}

impl Routing {
    /// The routes of `serving`, from the cache when its fingerprint is unchanged.
    pub fn table(&self, serving: &Serving) -> Arc<RouteTable> {
        self.cached(serving.fingerprint)
            .unwrap_or_else(|| self.rebuild(serving))
    }

    /// The routes for `fingerprint`; `serving` is asked only when the cached
    /// table is for other releases (a request pays for a hash, not a rebuild).
    pub fn table_for(
        &self,
        fingerprint: u64,
        serving: impl FnOnce() -> Serving,
    ) -> Arc<RouteTable> {
        self.cached(fingerprint)
            .unwrap_or_else(|| self.rebuild(&serving()))
    }

    fn cached(&self, fingerprint: u64) -> Option<Arc<RouteTable>> {
        let cache = self.cache.lock().ok()?;
        let (cached, table) = cache.as_ref()?;
        (*cached == fingerprint).then(|| table.clone())
    }

    fn rebuild(&self, serving: &Serving) -> Arc<RouteTable> {
        let routes = serving
            .plugins
            .iter()
            .filter(|plugin| plugin.serves_http)
            .filter_map(|plugin| {
                let grant = plugin.grants.http_server.as_ref()?;
                let routes = grant.routes.iter().map(|prefix| Route {
                    prefix: prefix.clone(),
                    plugin: plugin.name.clone(),
                });
                Some(routes.collect::<Vec<_>>())
            })
            .flatten()
            .collect();
        let table = Arc::new(RouteTable::new(routes));
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((serving.fingerprint, table.clone()));
        }
        table
    }
}
