//! `wasi:http`: serving HTTP requests on path prefixes the policy grants
//! (`[grants.http-server]`), through the host's listener (see [`listener`]).
//!
//! Outgoing requests are refused with `HTTP-request-denied` until egress policy
//! exists: the default `wasi:http` hooks would send anything anywhere.

pub mod listener;
mod routes;
pub mod tls;

use serde::Deserialize;
use wasmtime::component::Linker;

use super::Capability;
use crate::runtime::InstanceState;

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

/// The `wasi:http` hooks of every instance: no outgoing request leaves the host.
pub struct Egress {
    plugin: std::sync::Arc<str>,
}

impl Egress {
    pub fn for_plugin(plugin: std::sync::Arc<str>) -> Egress {
        Egress { plugin }
    }
}

impl wasmtime_wasi_http::WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::warn!(target: "cairn::audit", plugin = %self.plugin, capability = "http-client", uri = %request.uri(), "denied: outgoing HTTP is not granted");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
