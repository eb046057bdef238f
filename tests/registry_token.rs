//! With `token-realm` the site registry checks tokens the plugin issues on
//! the daemon's HTTP listener, so the `runtime` credential only ever pulls:
//! the token service grants it nothing else, the registry refuses its pushes
//! (to `curl` and to `cairn plugin push` alike), while devices still install
//! through the gateway with it. Passwords and tokens never reach the log.

mod harness;

use base64::Engine as _;
use serde_json::Value;

use harness::site_registry::{Gateway, curl_bearer, curl_get, curl_status, status};
use harness::{plugin_wasm, write_owner_only};

/// Asks the token service for `scope` as `login`; (status, reply).
fn token(gateway: &Gateway, realm: &str, login: (&str, &str), scope: &str) -> (u16, Value) {
    let url = format!(
        "{realm}?service=localhost%3A{}&scope={}",
        gateway.port,
        scope.replace(':', "%3A").replace(',', "%2C")
    );
    let (status, body) = curl_get(&gateway.ca, login, "GET", &url);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The `access` claim of a token (its signature is the registry's to check).
fn access(reply: &Value) -> Value {
    let token = reply["token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    serde_json::from_slice::<Value>(&claims).unwrap()["access"].clone()
}

#[test]
fn the_runtime_credential_only_pulls_when_the_plugin_issues_tokens() {
    let (gateway, realm) = Gateway::start_with_tokens("prune-step-pause = \"1s\"");
    let status = status(&gateway.daemon);
    assert_eq!(status["auth"], "token", "{status}");
    let steps: Vec<&str> = status["smoke"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"runtime-push-refused"), "{status}");

    // The token service grants each user its part of what it asks.
    let runtime = ("runtime", gateway.runtime.as_str());
    let build = ("build", gateway.build.as_str());
    let (code, pull_only) = token(&gateway, &realm, runtime, "repository:app:pull,push,delete");
    assert_eq!(code, 200, "{pull_only}");
    assert_eq!(
        access(&pull_only),
        serde_json::json!([{"type": "repository", "name": "app", "actions": ["pull"]}])
    );
    let (code, catalog) = token(&gateway, &realm, runtime, "registry:catalog:*");
    assert_eq!((code, access(&catalog)), (200, serde_json::json!([])));
    let (code, pusher) = token(&gateway, &realm, build, "repository:app:pull,push");
    assert_eq!(code, 200, "{pusher}");
    assert_eq!(
        access(&pusher)[0]["actions"],
        serde_json::json!(["pull", "push"])
    );

    // Wrong logins, no login, another service: refused with a reason.
    let (code, wrong) = token(
        &gateway,
        &realm,
        ("runtime", "wrong"),
        "repository:app:pull",
    );
    assert_eq!(code, 401, "{wrong}");
    assert_eq!(wrong["error"]["code"], "denied", "{wrong}");
    let (code, _) = token(&gateway, &realm, ("nobody", "x"), "repository:app:pull");
    assert_eq!(code, 401);
    let unknown = format!("{realm}?service=elsewhere%3A1&scope=repository%3Aapp%3Apull");
    let (code, body) = curl_get(&gateway.ca, build, "GET", &unknown);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(curl_status(&gateway.ca, &realm, None), 401);

    // The registry itself no longer takes passwords, and enforces the tokens.
    let base = &gateway.base;
    assert_eq!(
        curl_status(&gateway.ca, &format!("{base}/v2/"), Some(build)),
        401
    );
    let upload = format!("{base}/v2/app/blobs/uploads/");
    let runtime_token = pull_only["token"].as_str().unwrap();
    let (code, headers) = curl_bearer(&gateway.ca, runtime_token, &["-X", "POST", &upload], b"");
    assert_eq!(code, 401, "a runtime push was not refused: {headers}");
    assert!(headers.contains("insufficient_scope"), "{headers}");
    let build_token = pusher["token"].as_str().unwrap();
    let (code, headers) = curl_bearer(&gateway.ca, build_token, &["-X", "POST", &upload], b"");
    assert_eq!(code, 202, "{headers}");

    // Real clients follow the token flow. A device logs in as `runtime`:
    let registry = gateway.registry();
    let runtime_login = gateway.runtime_login();
    let device = gateway.device();
    // the build pushes a plugin (signed with the device's trusted key)...
    let wasm = plugin_wasm("counter");
    let digest = gateway.push_plugin(&device, &wasm, "plugins/counter:1.0");
    // ...the runtime login cannot...
    let runtime_file = device.root().join("runtime.toml");
    write_owner_only(&runtime_file, &runtime_login);
    let key = device.root().join("dev.key");
    let refused = device.cli(&[
        "plugin",
        "push",
        wasm.to_str().unwrap(),
        &format!("{registry}/plugins/counter:evil"),
        "--key",
        key.to_str().unwrap(),
        "--credentials",
        runtime_file.to_str().unwrap(),
        "--ca-file",
        gateway.ca.to_str().unwrap(),
    ]);
    assert!(!refused.status.success(), "the runtime login pushed");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains(&registry), "{said}");
    let (_, reader) = token(&gateway, &realm, build, "repository:plugins/counter:pull");
    let evil = format!("{base}/v2/plugins/counter/manifests/evil");
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let reader = reader["token"].as_str().unwrap();
    let (code, headers) = curl_bearer(
        &gateway.ca,
        reader,
        &["-X", "GET", "-H", accept, &evil],
        b"",
    );
    assert_eq!(code, 404, "{headers}");

    // ...and the device installs with it, from the gateway, by digest.
    let installed = device
        .cli_json(&[
            "plugin",
            "install",
            &format!("oci://{registry}/plugins/counter@{digest}"),
        ])
        .unwrap_or_else(|err| {
            panic!(
                "install with the runtime login: {err}\n{}",
                device.daemon_log()
            )
        });
    assert_eq!(installed["name"], "counter", "{installed}");
    assert_eq!(
        device.call("counter", "increment", "null").unwrap()["count"],
        1
    );

    // A rotated password counts at once; the old one is refused.
    let old = gateway.runtime.clone();
    gateway
        .daemon
        .call("registry", "rotate", r#"{"user":"runtime"}"#)
        .unwrap();
    let (code, _) = token(&gateway, &realm, ("runtime", &old), "repository:app:pull");
    assert_eq!(code, 401);
    let (_, fresh) = harness::site_registry::passwords(&gateway.state);
    let (code, _) = token(&gateway, &realm, ("runtime", &fresh), "repository:app:pull");
    assert_eq!(code, 200);

    // While a prune holds the maintenance lock, no client gets to push; pulls go on.
    let started = gateway.daemon.call("registry", "prune", "{}").unwrap();
    let build = ("build", gateway.build.as_str());
    let (code, locked) = token(&gateway, &realm, build, "repository:app:pull,push");
    assert_eq!(code, 503, "{locked}");
    let reason = locked["error"]["message"].as_str().unwrap_or_default();
    assert!(reason.contains("under maintenance"), "{locked}");
    let (code, _) = token(&gateway, &realm, ("runtime", &fresh), "repository:app:pull");
    assert_eq!(code, 200);
    gateway.wait_pruned(started["started-ms"].as_u64().unwrap());
    let (code, _) = token(&gateway, &realm, build, "repository:app:pull,push");
    assert_eq!(code, 200);

    let log = gateway.daemon.daemon_log();
    let secrets = [&gateway.build, &gateway.runtime, &fresh];
    for secret in secrets
        .iter()
        .map(|s| s.as_str())
        .chain([runtime_token, build_token])
    {
        assert!(!log.contains(secret), "a secret in the log");
    }
    assert!(
        log.contains("token for runtime: granted [repository:app:pull]"),
        "no audit line"
    );
}
