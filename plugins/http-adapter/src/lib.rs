//! `http-adapter`: the device's REST API.
//!
//! The component is two things at once:
//!
//! - a Cairn plugin (lifecycle through the SDK): its `init` checks that the
//!   API token file named by `[config] token-file` is readable, so a device
//!   without a token never starts an open API, and its `health` reports a
//!   token file that went missing since;
//! - a `wasi:http/incoming-handler`, served by the host's HTTP listener at
//!   the routes its policy grants (`/healthz`, `/metrics`, `/v1`). Requests
//!   run on pooled instances where `init` never ran: they read the
//!   configuration from `CAIRN_CONFIG` and the token file on every request,
//!   so a rotated token takes effect at once.
//!
//! The API is described in `docs/openapi.json` and `docs/http-api.md`.

mod api;
mod auth;
mod errors;
mod install;
mod routes;

use cairn_sdk::http::server::{Handler, Request, Response};
use cairn_sdk::{Config, Health, Plugin};

/// The version this build reports, in every response's `x-cairn-adapter-version`.
pub(crate) const VERSION: &str = cairn_sdk::plugin_version!();

/// The plugin side: it holds no state; it checks the configuration at start.
struct Adapter;

impl Plugin for Adapter {
    fn init(config: Config) -> Result<Self, String> {
        let settings = auth::Settings::parse(&config).map_err(|e| e.message)?;
        auth::read_token(&settings).map_err(|e| format!("refusing to start: {}", e.message))?;
        cairn_sdk::info!(
            "http-adapter {VERSION} ready; the token is read from {}",
            settings.token_file.as_deref().unwrap_or_default()
        );
        Ok(Adapter)
    }

    fn health(&self) -> Health {
        let token = auth::Settings::parse(&Config::from_env()).and_then(|s| auth::read_token(&s));
        match token {
            Ok(_) => Health::Ok,
            Err(err) => Health::Degraded(err.message),
        }
    }
}

cairn_sdk::export_plugin!(Adapter);

/// The HTTP side: one request at a time per instance.
struct HttpApi;

impl Handler for HttpApi {
    fn handle(request: Request) -> Response {
        routes::handle(&request).with_header("x-cairn-adapter-version", VERSION)
    }
}

cairn_sdk::export_http_handler!(HttpApi);
