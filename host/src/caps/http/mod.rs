//! `wasi:http`: serving HTTP requests on path prefixes the policy grants
//! (`[grants.http-server]`), through the host's listener (see [`listener`]),
//! and sending them to the URLs it allows (`[grants.http-client]`, see [`egress`]).

pub mod egress;
pub mod listener;
mod routes;
pub mod tls;

use serde::Deserialize;
use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiHttpCtxView;

use super::{
    Candidate, Capability, CapsData, HostSetup, InstanceCaps, InstanceSetup, Refusal, Serving,
};

pub use egress::{Egress, HttpClient, HttpClientGrant};
pub use routes::{Route, RouteTable, Routing};

/// Serving HTTP: the plugin exports `wasi:http/incoming-handler`.
pub struct HttpServer;

/// `[grants.http-server]`: the path prefixes the plugin serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerGrant {
    /// Path prefixes, each starting with `/` (`"/"` serves everything unclaimed).
    pub routes: Vec<String>,
}

impl Capability for HttpServer {
    const NAME: &'static str = "http-server";
    /// Serving is an export (`wasi:http/incoming-handler`), not an import:
    /// the grant decides the routes the plugin is sent.
    const INTERFACES: &'static [&'static str] = &[];
    type Grant = HttpServerGrant;
    /// The table of which plugin serves which path.
    type Shared = Routing;
    type Local = ();

    fn validate(grant: &HttpServerGrant) -> Result<(), String> {
        if grant.routes.is_empty() {
            return Err("routes is empty: list at least one path prefix".into());
        }
        for route in &grant.routes {
            routes::check_prefix(route)?;
        }
        Ok(())
    }

    /// Nothing to link: `wasi:http` is linked by [`HttpClient`].
    fn add_to_linker<T: CapsData>(_: &mut Linker<T>) -> wasmtime::Result<()> {
        Ok(())
    }

    fn build(_: &HostSetup) -> anyhow::Result<Routing> {
        Ok(Routing::default())
    }

    fn prepare(_: &Routing, _: Option<&HttpServerGrant>, _: &mut InstanceSetup<'_>) {}

    /// A component that only serves HTTP needs routes, and a route may have
    /// only one owner.
    fn vet(
        routing: &Routing,
        plugin: &Candidate<'_>,
        grant: Option<&HttpServerGrant>,
        serving: &Serving,
    ) -> Result<(), Refusal> {
        let serves_http = plugin
            .exports
            .iter()
            .any(|export| export.starts_with("wasi:http/incoming-handler"));
        let has_handlers = plugin
            .exports
            .iter()
            .any(|export| export.starts_with("cairn:plugin/handlers"));
        let Some(grant) = grant else {
            if serves_http && !has_handlers {
                return Err(Refusal::Policy(
                    "it only serves HTTP, but its policy has no [grants.http-server] routes".into(),
                ));
            }
            return Ok(());
        };
        let routes = routing.table(serving);
        for prefix in &grant.routes {
            if let Some(owner) = routes.owner_of(prefix, plugin.name) {
                return Err(Refusal::Conflict(format!(
                    "the HTTP route {prefix} is served by {owner}"
                )));
            }
        }
        Ok(())
    }
}

impl InstanceCaps {
    /// The `wasi:http` view of the instance: outgoing requests go through the
    /// [`HttpClient`] capability's per-instance [`Egress`].
    pub fn wasi_http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.locals.http_client,
        }
    }
}
