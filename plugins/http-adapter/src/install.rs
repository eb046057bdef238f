//! `POST /v1/plugins`: installs a release from a registry, the host's cache
//! or bytes in the request, and explains a release that did not become ready.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cairn_sdk::plugins::{self, Source};
use serde::Deserialize;

use crate::api;
use crate::errors::ApiError;
use cairn_sdk::http::server::Response;

/// The request body: exactly one of `source` and `component`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallRequest {
    /// `oci://HOST/REPO:TAG`, `oci://HOST/REPO@sha256:…`, or a cached `sha256:…`.
    source: Option<String>,
    /// The component's bytes, base64 (standard alphabet, padded).
    component: Option<String>,
    /// The detached signature (`cairn plugin sign`'s `.sig` text); empty or absent: none.
    signature: Option<String>,
    #[serde(default)]
    force: bool,
}

pub fn install(body: &[u8]) -> Result<Response, ApiError> {
    let request: InstallRequest = serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("the install request is not valid: {err}")))?;
    let source = source_of(request.source, request.component, request.signature)?;
    match plugins::install(source, request.force) {
        Ok(info) => Ok(Response::json(200, &api::info_json(&info))),
        Err(err) => Err(explain(ApiError::from_host(err))),
    }
}

fn source_of(
    source: Option<String>,
    component: Option<String>,
    signature: Option<String>,
) -> Result<Source, ApiError> {
    match (source, component) {
        (Some(source), None) => {
            if signature.is_some() {
                return Err(ApiError::bad_request(
                    "`signature` goes with `component`; a registry source carries its own",
                ));
            }
            if source.starts_with("oci://") {
                Ok(Source::Oci(source))
            } else if source.starts_with("sha256:") {
                Ok(Source::Cached(source))
            } else {
                Err(ApiError::bad_request(format!(
                    "`source` must be oci://HOST/REPO:TAG or a cached sha256:… digest, not {source:?}"
                )))
            }
        }
        (None, Some(component)) => {
            let component = STANDARD.decode(component.trim()).map_err(|err| {
                ApiError::bad_request(format!("`component` is not valid base64: {err}"))
            })?;
            let signature = signature.unwrap_or_default().trim().to_string();
            Ok(Source::Bytes {
                component,
                signature,
            })
        }
        _ => Err(ApiError::bad_request(
            "give exactly one of `source` and `component`",
        )),
    }
}

/// A release that did not become ready changed nothing: say which version
/// still serves (the host's message names the plugin first, `NAME: …`).
fn explain(mut err: ApiError) -> ApiError {
    if err.code == "not-ready" {
        let name = err.message.split(':').next().unwrap_or_default().trim();
        err.serving = Some(api::find(name).ok().flatten().map(|info| info.version));
    }
    err
}
