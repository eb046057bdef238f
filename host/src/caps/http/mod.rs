//! `wasi:http`: serving HTTP requests on path prefixes the policy grants
//! (`[grants.http-server]`), through the host's listener (see [`listener`]),
//! and sending them to the URLs it allows (`[grants.http-client]`, see [`egress`]).

pub mod egress;
pub mod listener;
mod routes;
pub mod tls;

use serde::Deserialize;
use wasmtime::component::Linker;

use super::Capability;
use crate::runtime::InstanceState;

pub use egress::{Egress, HttpClient, HttpClientGrant};
pub use routes::{Route, RouteTable};

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
    const INTERFACE: &'static str = "wasi:http/incoming-handler";
    type Grant = HttpServerGrant;

    fn validate(grant: &HttpServerGrant) -> Result<(), String> {
        if grant.routes.is_empty() {
            return Err("routes is empty: list at least one path prefix".into());
        }
        for route in &grant.routes {
            routes::check_prefix(route)?;
        }
        Ok(())
    }

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
    }
}
