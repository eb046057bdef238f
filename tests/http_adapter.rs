//! The `http-adapter` plugin against a real daemon: authentication, every
//! endpoint, installs over the air (from a registry and as bytes, including
//! a new release of the adapter itself), refused releases, rollback and
//! removal. Every request a scenario sends names its operation in
//! `docs/openapi.json`; the reply's status must be one documented for that
//! operation and its JSON body must fit the documented schema, and the suite
//! fails if a documented operation was never exercised.

#[path = "http_adapter/client.rs"]
mod client;
mod harness;
#[path = "http_adapter/openapi.rs"]
mod openapi;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use client::{
    SPEC, TOKEN, assert_error, bare_device, call, call_as, component_request, device, header,
    json_of, send,
};
use harness::registry::TestRegistry;
use harness::{Options, plugin_wasm, variant};
use serde_json::{Value, json};

fn auth_and_reads() {
    let device = bare_device(Options::default());
    let err = device
        .daemon
        .install(&plugin_wasm("http_adapter"))
        .unwrap_err();
    assert!(err.contains("cannot read the token file"), "{err}");
    std::fs::write(device.token_file(), format!("{TOKEN}\n")).unwrap();
    device.install(&plugin_wasm("http_adapter"));
    device.install(&plugin_wasm("echo"));
    let address = device.address.as_str();

    let healthz = call_as(address, None, "healthz", "/healthz", b"");
    assert_eq!(
        (healthz.status, json_of(&healthz)["status"].clone()),
        (200, json!("ok"))
    );
    assert_eq!(
        header(&healthz, "x-cairn-adapter-version").as_deref(),
        Some("0.1.0")
    );

    for auth in [
        None,
        Some("Bearer wrong"),
        Some(&*format!("Basic {TOKEN}")),
        Some("Bearer "),
    ] {
        let refused = call_as(address, auth, "listPlugins", "/v1/plugins", b"");
        assert_error(&refused, 401, "unauthorized");
        let challenge = header(&refused, "www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // Without a token nothing is revealed, not even which paths exist.
    assert_error(
        &send(address, "GET", "/v1/nothing", None, b""),
        401,
        "unauthorized",
    );
    assert_error(
        &call_as(address, None, "metrics", "/metrics", b""),
        401,
        "unauthorized",
    );

    let listed = json_of(&call(&device, "listPlugins", "/v1/plugins", b""));
    let names: BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["echo", "http-adapter"]));
    let echo = call(&device, "getPlugin", "/v1/plugins/echo", b"");
    assert_eq!(echo.status, 200);
    let echo = json_of(&echo);
    assert_eq!(
        (echo["version"].as_str(), echo["state"].as_str()),
        (Some("0.1.0"), Some("running"))
    );
    assert_error(
        &call(&device, "getPlugin", "/v1/plugins/nothing", b""),
        404,
        "not-found",
    );

    let health = call(&device, "getHealth", "/v1/health", b"");
    assert_eq!(health.status, 200);
    let health = json_of(&health);
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        health["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "echo"),
        "{health}"
    );
    let metrics = call(&device, "metrics", "/metrics", b"");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("cairn_uptime_seconds"),
        "{}",
        metrics.text()
    );

    let wrong_method = send(
        address,
        "PUT",
        "/v1/plugins",
        Some(&format!("Bearer {TOKEN}")),
        b"{}",
    );
    assert_error(&wrong_method, 405, "method-not-allowed");
    assert_eq!(header(&wrong_method, "allow").as_deref(), Some("GET, POST"));
    let unknown = send(
        address,
        "GET",
        "/v1/nothing",
        Some(&format!("Bearer {TOKEN}")),
        b"",
    );
    assert_error(&unknown, 404, "not-found");

    // Rotation: the file is read on every request.
    std::fs::write(device.token_file(), "rotated-token").unwrap();
    assert_error(
        &call(&device, "listPlugins", "/v1/plugins", b""),
        401,
        "unauthorized",
    );
    let rotated = call_as(
        address,
        Some("Bearer rotated-token"),
        "listPlugins",
        "/v1/plugins",
        b"",
    );
    assert_eq!(rotated.status, 200);
    // An empty or missing token file closes the API; /healthz stays open.
    for broken in [Some("\n"), None] {
        match broken {
            Some(text) => std::fs::write(device.token_file(), text).unwrap(),
            None => std::fs::remove_file(device.token_file()).unwrap(),
        }
        for auth in [Some("Bearer rotated-token"), Some("Bearer "), None] {
            let closed = call_as(address, auth, "listPlugins", "/v1/plugins", b"");
            assert_error(&closed, 503, "misconfigured");
        }
        assert_eq!(
            call_as(address, None, "healthz", "/healthz", b"").status,
            200
        );
    }
}

fn commands_and_bad_requests() {
    let device = device(Options::default());
    device.install(&plugin_wasm("echo"));
    device.install(&plugin_wasm("counter"));
    let payload = json!({"hello": ["wörld", 1, null], "nested": {"x": true}});
    let echoed = call(
        &device,
        "callCommand",
        "/v1/plugins/echo/commands/echo",
        payload.to_string().as_bytes(),
    );
    assert_eq!((echoed.status, json_of(&echoed)), (200, payload));
    let counted = call(
        &device,
        "callCommand",
        "/v1/plugins/counter/commands/increment",
        br#"{"by": 2}"#,
    );
    assert_eq!(json_of(&counted)["count"], 2, "{}", counted.text());

    let missing = call(
        &device,
        "callCommand",
        "/v1/plugins/nothing/commands/echo",
        b"{}",
    );
    assert_error(&missing, 404, "not-found");
    let unknown = call(
        &device,
        "callCommand",
        "/v1/plugins/echo/commands/nothing",
        b"{}",
    );
    let body = assert_error(&unknown, 422, "plugin-error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown command"),
        "{body}"
    );

    for bad in [
        &b"not json"[..],
        b"{}",
        br#"{"source": "ftp://example.com/x"}"#,
        br#"{"component": "%%%"}"#,
        br#"{"source": "oci://a/b:1", "component": ""}"#,
        br#"{"source": "oci://a/b:1", "forced": true}"#,
    ] {
        assert_error(
            &call(&device, "installPlugin", "/v1/plugins", bad),
            400,
            "bad-request",
        );
    }
    let huge = vec![b' '; 3 * 1024 * 1024];
    assert_error(
        &call(&device, "installPlugin", "/v1/plugins", &huge),
        413,
        "too-large",
    );
    assert_error(
        &call(
            &device,
            "callCommand",
            "/v1/plugins/echo/commands/echo",
            &huge,
        ),
        413,
        "too-large",
    );
    // Still serving after all that.
    assert_eq!(
        call(&device, "getPlugin", "/v1/plugins/counter", b"").status,
        200
    );
}

fn over_the_air_and_refusals() {
    let registry = TestRegistry::start();
    let device = Arc::new(device(Options {
        insecure_registries: vec![registry.address.clone()],
        ..Options::default()
    }));
    device.install(&plugin_wasm("versioned"));
    let v2 = registry.reference("plugins/versioned:0.2.0");
    device
        .daemon
        .push(&variant("versioned", "0.2.0", "ok"), &v2, "dev", &[])
        .expect("push");

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hammer = {
        let (device, stop, served, failed) =
            (device.clone(), stop.clone(), served.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let reply = call(
                    &device,
                    "callCommand",
                    "/v1/plugins/versioned/commands/get",
                    b"",
                );
                if reply.status == 200 {
                    served.fetch_add(1, Ordering::SeqCst);
                } else {
                    eprintln!(
                        "failed call during the swap: {} {}",
                        reply.status,
                        reply.text()
                    );
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let request = json!({"source": v2, "force": false}).to_string();
    let installed = call(&device, "installPlugin", "/v1/plugins", request.as_bytes());
    assert_eq!(installed.status, 200, "{}", installed.text());
    let installed = json_of(&installed);
    assert_eq!(
        (
            installed["version"].as_str(),
            installed["previous_version"].as_str()
        ),
        (Some("0.2.0"), Some("0.1.0"))
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    hammer.join().unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "calls failed during the swap"
    );
    assert!(served.load(Ordering::SeqCst) > 5, "the hammer hardly ran");
    let version = call(
        &device,
        "callCommand",
        "/v1/plugins/versioned/commands/version",
        b"",
    );
    assert_eq!(json_of(&version)["version"], "0.2.0");

    // Back to 0.1.0 without `force` is a conflict.
    let older = component_request(&device.daemon, &plugin_wasm("versioned"), false);
    assert_error(
        &call(&device, "installPlugin", "/v1/plugins", &older),
        409,
        "conflict",
    );

    // A release that never becomes ready changes nothing, and says so.
    let unhealthy = component_request(
        &device.daemon,
        &variant("versioned", "0.3.0", "unhealthy"),
        false,
    );
    let refused = call(&device, "installPlugin", "/v1/plugins", &unhealthy);
    let body = assert_error(&refused, 422, "not-ready");
    assert_eq!(body["error"]["serving"], "0.2.0", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keeps serving"),
        "{body}"
    );
    let version = call(
        &device,
        "callCommand",
        "/v1/plugins/versioned/commands/version",
        b"",
    );
    assert_eq!(json_of(&version)["version"], "0.2.0");

    let rolled = call(
        &device,
        "rollbackPlugin",
        "/v1/plugins/versioned/rollback",
        b"",
    );
    assert_eq!(rolled.status, 200, "{}", rolled.text());
    assert_eq!(json_of(&rolled)["version"], "0.1.0");
    let version = call(
        &device,
        "callCommand",
        "/v1/plugins/versioned/commands/version",
        b"",
    );
    assert_eq!(json_of(&version)["version"], "0.1.0");
    assert_error(
        &call(
            &device,
            "rollbackPlugin",
            "/v1/plugins/nothing/rollback",
            b"",
        ),
        404,
        "not-found",
    );

    assert_eq!(
        call(&device, "removePlugin", "/v1/plugins/versioned", b"").status,
        204
    );
    assert_error(
        &call(&device, "getPlugin", "/v1/plugins/versioned", b""),
        404,
        "not-found",
    );
    assert_error(
        &call(&device, "removePlugin", "/v1/plugins/versioned", b""),
        404,
        "not-found",
    );
    assert_error(
        &call(
            &device,
            "callCommand",
            "/v1/plugins/versioned/commands/get",
            b"",
        ),
        404,
        "not-found",
    );
}

fn replaces_itself() {
    let device = device(Options::default());
    let v2 = component_request(
        &device.daemon,
        &variant("http-adapter", "0.2.0", "ok"),
        false,
    );
    let replaced = call(&device, "installPlugin", "/v1/plugins", &v2);
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(json_of(&replaced)["version"], "0.2.0");
    // The reply came from the release that was serving when the request arrived.
    assert_eq!(
        header(&replaced, "x-cairn-adapter-version").as_deref(),
        Some("0.1.0")
    );
    let now = call(&device, "getPlugin", "/v1/plugins/http-adapter", b"");
    assert_eq!(json_of(&now)["version"], "0.2.0");
    assert_eq!(
        header(&now, "x-cairn-adapter-version").as_deref(),
        Some("0.2.0")
    );
    assert_eq!(
        call_as(&device.address, None, "healthz", "/healthz", b"").status,
        200
    );
}

/// Runs the scenarios side by side (each on its own daemon), then checks that
/// together they exercised every documented operation.
#[test]
fn the_api_behaves_as_documented() {
    let scenarios: [(&str, fn()); 4] = [
        ("auth_and_reads", auth_and_reads),
        ("commands_and_bad_requests", commands_and_bad_requests),
        ("over_the_air_and_refusals", over_the_air_and_refusals),
        ("replaces_itself", replaces_itself),
    ];
    // Build what the scenarios need before they race for it.
    plugin_wasm("http_adapter");
    let failed: Vec<&str> = std::thread::scope(|scope| {
        let running: Vec<_> = scenarios
            .iter()
            .map(|(name, scenario)| (*name, scope.spawn(scenario)))
            .collect();
        running
            .into_iter()
            .filter_map(|(name, handle)| handle.join().is_err().then_some(name))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "scenarios failed (see their panics above): {failed:?}"
    );
    let documented: BTreeSet<String> = SPEC.operations().into_iter().map(|op| op.id).collect();
    let missing: Vec<_> = documented.difference(&SPEC.exercised()).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented operations never exercised: {missing:?}"
    );
}

/// The validator is strict enough to catch drift between the API and the document.
#[test]
fn the_validator_rejects_what_the_document_forbids() {
    let info = json!({"name": "echo", "version": "0.1.0", "digest": "sha256:00", "state": "running", "previous_version": null, "restarts": 0});
    let schema = SPEC.schema("PluginInfo");
    assert_eq!(SPEC.validate(schema, &info), Ok(()));
    for (key, value) in [
        ("state", json!("dancing")),
        ("restarts", json!(-1)),
        ("restarts", json!("1")),
        ("extra", json!(1)),
        ("previous_version", json!(3)),
    ] {
        let mut wrong = info.clone();
        wrong[key] = value;
        assert!(SPEC.validate(schema, &wrong).is_err(), "{wrong}");
    }
    let mut missing = info.clone();
    missing.as_object_mut().unwrap().remove("digest");
    assert!(SPEC.validate(schema, &missing).is_err());
    let error = json!({"error": {"code": "no-such-code", "message": "x"}});
    assert!(SPEC.validate(SPEC.schema("Error"), &error).is_err());
    assert!(
        SPEC.validate(
            &json!({"type": "array", "items": {"type": "string"}}),
            &json!(["a", 1])
        )
        .is_err()
    );
}

/// Every error code in the document is explained in docs/http-api.md, and the
/// other way round.
#[test]
fn every_error_code_is_documented_for_people() {
    let page = std::fs::read_to_string(harness::workspace().join("docs/http-api.md")).unwrap();
    let codes: BTreeSet<&str> = SPEC.schema("ErrorCode")["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in &codes {
        assert!(
            page.contains(&format!("| `{code}` |")),
            "docs/http-api.md does not explain `{code}`"
        );
    }
    let listed: BTreeSet<&str> = page
        .lines()
        .filter_map(|line| {
            line.strip_prefix("| `")?
                .split_once("` |")
                .map(|(code, _)| code)
        })
        .collect();
    assert_eq!(
        listed, codes,
        "docs/http-api.md's error table and the ErrorCode enum differ"
    );
}
