//! `wasi:http` through the bench: who may serve which routes (install-time
//! vetting), the two grants' validation, and outgoing requests refused before
//! any connection is made. Requests that reach a server are covered by the
//! end-to-end tests.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use wasmtime_wasi_http::{Error, WasiBody};

use crate::caps::bench::{Bench, grants_of};
use crate::caps::{Candidate, Grants, Refusal, Serving, ServingPlugin};

const HANDLER: &str = "wasi:http/incoming-handler@0.2.6";
const HANDLERS: &str = "cairn:plugin/handlers@0.1.0";

fn exports(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn serving(fingerprint: u64, plugins: Vec<(&str, &str, bool)>) -> Serving {
    Serving {
        fingerprint,
        plugins: plugins
            .into_iter()
            .map(|(name, grants, serves_http)| ServingPlugin {
                name: name.into(),
                grants: Arc::new(grants_of(grants).unwrap()),
                serves_http,
            })
            .collect(),
    }
}

fn vet(
    bench: &Bench,
    name: &str,
    exported: &[&str],
    grants: &str,
    serving: &Serving,
) -> Result<(), Refusal> {
    let exports = exports(exported);
    let grants: Grants = grants_of(grants).unwrap();
    let candidate = Candidate {
        name,
        exports: &exports,
    };
    bench.shared.vet(&candidate, &grants, serving)
}

#[test]
fn a_component_serving_only_http_needs_routes() {
    let bench = Bench::new("");
    let nobody = serving(1, Vec::new());
    assert_eq!(
        vet(&bench, "web", &[HANDLER], "", &nobody),
        Err(Refusal::Policy(
            "it only serves HTTP, but its policy has no [grants.http-server] routes".into()
        ))
    );
    // With handlers it is a plugin that may also export the HTTP handler unused.
    assert_eq!(
        vet(&bench, "web", &[HANDLER, HANDLERS], "", &nobody),
        Ok(())
    );
    assert_eq!(vet(&bench, "cli", &[HANDLERS], "", &nobody), Ok(()));
    let routed = "[grants.http-server]\nroutes = [\"/web\"]";
    assert_eq!(vet(&bench, "web", &[HANDLER], routed, &nobody), Ok(()));
}

#[test]
fn a_route_has_one_owner() {
    let bench = Bench::new("");
    let api = "[grants.http-server]\nroutes = [\"/api\", \"/\"]";
    let now = serving(2, vec![("api", api, true)]);
    let wanted = "[grants.http-server]\nroutes = [\"/status\", \"/api\"]";
    assert_eq!(
        vet(&bench, "newcomer", &[HANDLER], wanted, &now),
        Err(Refusal::Conflict(
            "the HTTP route /api is served by api".into()
        ))
    );
    let fallback = "[grants.http-server]\nroutes = [\"/\"]";
    assert_eq!(
        vet(&bench, "newcomer", &[HANDLER], fallback, &now),
        Err(Refusal::Conflict(
            "the HTTP route / is served by api".into()
        ))
    );
    // A longer prefix below someone else's is not a conflict.
    let below = "[grants.http-server]\nroutes = [\"/api/v2\"]";
    assert_eq!(vet(&bench, "newcomer", &[HANDLER], below, &now), Ok(()));
    // The owner itself may be installed again with its routes.
    assert_eq!(vet(&bench, "api", &[HANDLER], api, &now), Ok(()));
}

#[test]
fn routes_of_a_release_that_does_not_serve_http_are_free() {
    let bench = Bench::new("");
    let api = "[grants.http-server]\nroutes = [\"/api\"]";
    let idle = serving(3, vec![("api", api, false)]);
    assert_eq!(vet(&bench, "newcomer", &[HANDLER], api, &idle), Ok(()));
}

#[test]
fn server_grants_are_validated() {
    assert!(grants_of("[grants.http-server]\nroutes = [\"/\", \"/api/v1\"]").is_ok());
    for (table, needle) in [
        (
            "routes = []",
            "routes is empty: list at least one path prefix",
        ),
        ("routes = [\"api\"]", "route \"api\" must start with `/`"),
        ("routes = [\"/a?b\"]", "must be a plain path prefix"),
        (
            "routes = [\"/a/../b\"]",
            "must not contain `.` or `..` segments",
        ),
        ("routes = [\"/a\"]\nport = 80", "port"),
        ("", "routes"),
    ] {
        let err = grants_of(&format!("[grants.http-server]\n{table}"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("http-server"), "{table}: {err}");
        assert!(err.contains(needle), "{table}: {err}");
    }
}

#[test]
fn client_grants_are_validated() {
    let ok = "[grants.http-client]\nallow = [\"https://api.example.com\"]\ntimeout = \"5s\"";
    assert!(grants_of(ok).is_ok());
    for (table, needle) in [
        (
            "allow = []",
            "allow is empty: list at least one URL pattern",
        ),
        (
            "allow = [\"https://a.example.com\"]\ntimeout = \"0s\"",
            "timeout must be more than zero",
        ),
        (
            "allow = [\"https://a.example.com\"]\ntimeout = \"2h\"",
            "timeout must be at most 1h",
        ),
        (
            "allow = [\"https://a.example.com\"]\nca-file = \"certs/ca.pem\"",
            "ca-file certs/ca.pem must be an absolute path",
        ),
        (
            "allow = [\"https://a.example.com\"]\nca-file = \"/proc/version\"",
            "ca-file: ",
        ),
        ("allow = [\"ftp://a.example.com\"]", "is not http or https"),
    ] {
        let err = grants_of(&format!("[grants.http-client]\n{table}"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("[grants.http-client]"), "{table}: {err}");
        assert!(err.contains(needle), "{table}: {err}");
    }
    // A CA the plugin will make itself is read at first use, not at load.
    assert!(
        grants_of(
            "[grants.http-client]\nallow = [\"https://a.example.com\"]\nca-file = \"/nonexistent/cairn-ca.pem\""
        )
        .is_ok()
    );
}

fn request(method: &str, uri: &str) -> http::Request<WasiBody> {
    let body = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .unwrap()
}

/// Sends through the bench instance's `wasi:http` hooks; the error it fails with.
async fn refusal(bench: &mut Bench, method: &str, uri: &str) -> Error {
    let hooks = bench.caps.wasi_http().hooks;
    let io = Box::new(async { Ok(()) });
    let sent = Box::into_pin(hooks.send_request(request(method, uri), None, io)).await;
    match sent {
        Ok(_) => panic!("{method} {uri} was sent"),
        Err(err) => err,
    }
}

#[track_caller]
fn assert_request_denied(err: Error) {
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
}

#[tokio::test]
async fn requests_outside_the_client_grant_are_denied_and_audited() {
    let grant =
        "[grants.http-client]\nallow = [\"https://api.example.com/v1/\", \"http://127.0.0.1:9\"]";
    let mut bench = Bench::new(grant);
    let line = |detail: &str| format!("plugin=bench capability=http-client denied: {detail}");

    let err = refusal(&mut bench, "GET", "https://evil.example.com/v1/x?token=1").await;
    assert_request_denied(err);
    assert_eq!(bench.denials(), 1);
    assert_eq!(
        bench.shared.audit.recent().last().unwrap(),
        &line("the URL matches no allow pattern (https://evil.example.com/v1/x)")
    );

    assert_request_denied(refusal(&mut bench, "GET", "https://api.example.com/v2/x").await);
    assert_request_denied(refusal(&mut bench, "GET", "http://api.example.com/v1/x").await);
    assert_request_denied(refusal(&mut bench, "GET", "https://api.example.com:8443/v1/").await);
    assert_eq!(bench.denials(), 4);

    assert_request_denied(refusal(&mut bench, "GET", "https://me@api.example.com/v1/x").await);
    assert_eq!(
        bench.shared.audit.recent().last().unwrap(),
        &line("the URL carries user information (https://api.example.com/v1/x)")
    );
    assert_request_denied(refusal(&mut bench, "CONNECT", "https://api.example.com/v1/").await);
    assert_eq!(
        bench.shared.audit.recent().last().unwrap(),
        &line("CONNECT (tunnelling) is not allowed (https://api.example.com/v1/)")
    );
    // Allowed by a pattern, but a loopback address without allow-private.
    assert_request_denied(refusal(&mut bench, "GET", "http://127.0.0.1:9/x").await);
    assert_eq!(
        bench.shared.audit.recent().last().unwrap(),
        &line("127.0.0.1 is a loopback address (http://127.0.0.1:9/x)")
    );
    assert_eq!(bench.denials(), 7);
}

#[tokio::test]
async fn without_the_client_grant_no_request_leaves() {
    let mut bench = Bench::new("");
    assert_request_denied(refusal(&mut bench, "GET", "https://api.example.com/").await);
    assert_eq!(bench.denials(), 1);
    assert_eq!(
        bench.shared.audit.recent(),
        [
            "plugin=bench capability=http-client denied: outgoing HTTP is not granted ([grants.http-client]) (https://api.example.com/)"
        ]
    );
}
