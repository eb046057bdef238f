//! A device's `registry-report` plugin tells the gateway which digests it
//! runs, with the `runtime` login devices already hold; the gateway's
//! retention keeps them though they are older than the latest `keep`. Bad
//! logins and malformed reports are refused and change nothing.

mod harness;

use serde_json::{Value, json};

use harness::site_registry::{Gateway, curl};
use harness::{plugin_wasm, write_owner_only};

/// The reasons retention gives for keeping `repository@digest`, if it does.
fn kept_because(plan: &Value, repository: &str, digest: &str) -> Option<String> {
    let reasons = &plan["keep"][repository][digest];
    (!reasons.is_null()).then(|| reasons.to_string())
}

fn deleted(plan: &Value) -> Vec<String> {
    plan["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|gone| gone["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn retention_keeps_what_devices_report_they_run() {
    let (gateway, realm) = Gateway::start_with_tokens("");
    let listener = realm.trim_end_matches("/registry/token").to_string();
    let registry = gateway.registry();
    let runtime_login = gateway.runtime_login();
    let device = gateway.device();

    // Three releases of one repository; with keep = 2 the first would go.
    let mut digests = Vec::new();
    for (tag, plugin) in ["counter", "echo", "versioned"].iter().enumerate() {
        let tag = (tag + 1).to_string();
        let digest =
            gateway.push_plugin(&device, &plugin_wasm(plugin), &format!("plugins/app:{tag}"));
        let request = json!({
            "repository": "plugins/app", "tag": tag, "environment": "production",
            "kind": "plugin", "digest": digest,
        });
        gateway
            .daemon
            .call("registry", "publish", &request.to_string())
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
        digests.push(digest);
    }
    let plan = gateway
        .daemon
        .call("registry", "retention", "null")
        .unwrap();
    assert!(deleted(&plan).contains(&digests[0]), "{plan:#}");
    assert_eq!(
        deleted(&plan).len(),
        2,
        "the release and its signature: {plan:#}"
    );

    // The device runs the first release, from the gateway, and reports it.
    device
        .cli_json(&[
            "plugin",
            "install",
            &format!("oci://{registry}/plugins/app@{}", digests[0]),
        ])
        .unwrap_or_else(|err| panic!("install: {err}\n{}", device.daemon_log()));
    let site = device.root().join("site-registry");
    std::fs::create_dir_all(&site).unwrap();
    write_owner_only(&site.join("credentials.toml"), &runtime_login);
    device.write_policy(
        "registry-report",
        &format!(
            r#"[plugin]
name = "registry-report"
signers = ["dev"]
[config]
url = "{listener}/registry/in-use"
credentials-file = "{credentials}"
device = "device-7"
interval = "1m"
[grants.log]
[grants.timer]
max-timers = 1
[grants.metrics]
[grants.plugins]
read = true
[grants.system]
[grants.commands]
call = ["recipes/in-use"]
[grants.files]
read = ["{site}"]
[grants.http-client]
allow = ["{listener}"]
allow-private = ["127.0.0.0/8"]
"#,
            credentials = site.join("credentials.toml").display(),
            site = site.display(),
        ),
    );
    device.install(&plugin_wasm("registry_report")).unwrap();
    let mut plan = Value::Null;
    let kept = gateway.daemon.eventually(harness::site_registry::WAIT, || {
        plan = gateway
            .daemon
            .call("registry", "retention", "null")
            .unwrap();
        deleted(&plan).is_empty()
    });
    assert!(
        kept,
        "the device's plugin is still deleted: {plan:#}\n{}",
        device.daemon_log()
    );
    let reasons = kept_because(&plan, "plugins/app", &digests[0]).unwrap_or_default();
    assert!(
        reasons.contains("plugin counter 0.1.0 on device-7"),
        "{plan:#}"
    );
    let status = device.call("registry-report", "status", "null").unwrap();
    assert_eq!(status["last"]["ok"], true, "{status}");

    // Refused: a wrong login, a report that is not one. The last report stands.
    let url = format!("{listener}/registry/in-use");
    let (code, said) = curl(
        &gateway.ca,
        ("runtime", "wrong"),
        &["-X", "PUT", &url],
        br#"{"device":"device-7","digests":{}}"#,
    );
    assert_eq!(code, 401, "{said}");
    let runtime = ("runtime", gateway.runtime.as_str());
    let (code, said) = curl(&gateway.ca, runtime, &["-X", "PUT", &url], b"{\"device\":");
    assert_eq!(code, 400, "{said}");
    assert!(said.contains("not an in-use report"), "{said}");
    let (code, said) = curl(
        &gateway.ca,
        runtime,
        &["-X", "PUT", &url],
        br#"{"device":"a/b","digests":{}}"#,
    );
    assert_eq!(code, 400, "{said}");
    let plan = gateway
        .daemon
        .call("registry", "retention", "null")
        .unwrap();
    assert!(deleted(&plan).is_empty(), "{plan:#}");

    // Once the device stops running it and reports again, it may go.
    device.cli_json(&["plugin", "remove", "counter"]).unwrap();
    let reported = device.call("registry-report", "report", "null").unwrap();
    assert_eq!(reported["ok"], true, "{reported}");
    let plan = gateway
        .daemon
        .call("registry", "retention", "null")
        .unwrap();
    assert!(deleted(&plan).contains(&digests[0]), "{plan:#}");
    let log = gateway.daemon.daemon_log();
    assert!(log.contains("in-use report from device-7"), "no audit line");
    assert!(
        !device.daemon_log().contains(&gateway.runtime),
        "the password in the device's log"
    );
}
