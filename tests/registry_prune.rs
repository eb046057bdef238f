//! Pruning the site registry under a maintenance lock, against the real
//! `docker-registry` the plugin runs: what retention drops is deleted and
//! garbage-collected on a read-only registry, every kept digest still pulls
//! whole, publishing is refused while the lock is held, and a daemon killed
//! with SIGKILL at any step finishes the prune after it restarts.

mod harness;

use harness::site_registry::{Gateway, WAIT, curl, curl_get, status, wait_ready};
use serde_json::{Value, json};

/// (repository, digest) pairs of a plan's `keep` or `delete`.
fn plan_digests(plan: &Value, which: &str) -> Vec<(String, String)> {
    match which {
        "keep" => plan["keep"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(repository, digests)| {
                digests
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(digest, _)| (repository.clone(), digest.clone()))
            })
            .collect(),
        _ => plan["delete"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|gone| {
                (
                    gone["repository"].as_str().unwrap().to_string(),
                    gone["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    }
}

/// A plugin metric's value (`cairn_plugin_<name>{plugin="registry"...}`).
fn metric(text: &str, name: &str) -> f64 {
    let name = format!("cairn_plugin_{name}{{");
    text.lines()
        .find(|line| line.starts_with(&name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[test]
fn a_prune_deletes_what_retention_drops_and_every_kept_digest_still_pulls() {
    let gateway = Gateway::start(r#"environments = ["production", "staging"]"#);
    let daemon = &gateway.daemon;
    let mut web = Vec::new();
    for n in 1..=5 {
        web.push(gateway.publish("apps/web", &format!("prod-{n}"), "production"));
    }
    let api: Vec<String> = (1..=3)
        .map(|n| gateway.publish("apps/api", &format!("stage-{n}"), "staging"))
        .collect();
    // web[0] runs on a device; web[1] also carries a tag nobody published.
    daemon
        .call(
            "registry",
            "report-in-use",
            &json!({"device": "gw-2", "digests": {&web[0]: ["container web"]}}).to_string(),
        )
        .unwrap();
    let login = ("build", gateway.build.as_str());
    let web1 = format!("{}/v2/apps/web/manifests/{}", gateway.base, web[1]);
    let (_, manifest) = curl_get(&gateway.ca, login, "GET", &web1);
    let pinned = format!("{}/v2/apps/web/manifests/pinned", gateway.base);
    let content_type = "Content-Type: application/vnd.oci.image.manifest.v1+json";
    let (code, reply) = curl(
        &gateway.ca,
        login,
        &["-X", "PUT", "-H", content_type, &pinned],
        &manifest,
    );
    assert_eq!(code, 201, "{reply}");

    // A manifest naming a blob nobody uploaded is refused by the registry,
    // and publishing its tag says it is not there.
    let broken = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
        "layers": [],
    });
    let (status_code, reply) = curl(
        &gateway.ca,
        login,
        &[
            "-X",
            "PUT",
            "-H",
            content_type,
            &format!("{}/v2/apps/web/manifests/broken", gateway.base),
        ],
        broken.to_string().as_bytes(),
    );
    assert_eq!(status_code, 400, "{reply}");
    assert!(reply.contains("MANIFEST_BLOB_UNKNOWN"), "{reply}");
    let refused = daemon
        .call(
            "registry",
            "publish",
            r#"{"repository":"apps/web","tag":"broken","environment":"production"}"#,
        )
        .unwrap_err();
    assert!(refused.contains("push it first"), "{refused}");

    // The dry run names exactly what goes: keep = 2 keeps web 4 and 5 and
    // api 2 and 3; web 1 is in use and web 2 has a tag of its own.
    let dry = daemon
        .cli_json(&["registry", "prune", "--dry-run"])
        .unwrap();
    let plan = &dry["plan"];
    let mut doomed = plan_digests(plan, "delete");
    doomed.sort();
    let mut expected = vec![
        ("apps/web".to_string(), web[2].clone()),
        ("apps/api".to_string(), api[0].clone()),
    ];
    expected.sort();
    assert_eq!(doomed, expected, "{plan}");
    let kept = plan_digests(plan, "keep");
    assert_eq!(kept.len(), 6, "{plan}");
    assert!(daemon.call("registry", "status", "null").unwrap()["maintenance"].is_null());

    let outcome = daemon.cli_json(&["registry", "prune", "--wait"]).unwrap();
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["manifests-deleted"], 2, "{outcome}");
    assert_eq!(outcome["verified"], 6, "{outcome}");
    assert_eq!(outcome["missing"], json!([]), "{outcome}");
    // Each deleted image had its own manifest, config and layer blob.
    assert!(outcome["blobs-freed"].as_u64().unwrap() >= 6, "{outcome}");
    assert!(outcome["bytes-freed"].as_u64().unwrap() > 0, "{outcome}");
    assert!(
        outcome["gc-summary"]
            .as_str()
            .unwrap()
            .contains("eligible for deletion"),
        "{outcome}"
    );
    assert!(outcome["read-only-ms"].as_u64().unwrap() > 0, "{outcome}");

    for (repository, digest) in &kept {
        gateway.pulls(repository, digest).unwrap();
    }
    for (repository, digest) in &expected {
        assert_eq!(gateway.manifest_status(repository, digest), 404);
    }
    let after = status(daemon);
    assert_eq!(after["mode"], "read-write", "{after}");
    assert_eq!(after["ready"], true, "{after}");
    // Publishing works again, and the next prune has nothing to delete.
    gateway.publish("apps/web", "prod-6", "production");
    let metrics = String::from_utf8_lossy(&daemon.cli(&["metrics"]).stdout).into_owned();
    assert!(metric(&metrics, "registry_prune_blobs_freed_total") >= 6.0);
    assert!(metric(&metrics, "registry_stored_bytes") > 0.0);
    assert!(metric(&metrics, "registry_last_prune_timestamp_seconds") > 1.0e9);
    assert_eq!(metric(&metrics, "registry_prune_ok"), 1.0);
    assert_eq!(metric(&metrics, "registry_artifacts"), 9.0);
    let shown = String::from_utf8_lossy(&daemon.cli(&["registry", "status"]).stdout).into_owned();
    assert!(
        shown.contains("last prune: ok: 2 manifests deleted"),
        "{shown}"
    );

    // No password in any reply, in the metrics or in the log.
    let mut seen = vec![metrics, shown, daemon.daemon_log()];
    for command in [
        "status",
        "credentials-fingerprint",
        "smoke",
        "artifacts",
        "retention",
        "device-config",
    ] {
        seen.push(
            daemon
                .call("registry", command, "null")
                .unwrap()
                .to_string(),
        );
    }
    seen.push(
        daemon
            .call("registry", "prune", r#"{"dry-run": true}"#)
            .unwrap()
            .to_string(),
    );
    for text in &seen {
        for secret in [&gateway.build, &gateway.runtime] {
            assert!(!text.contains(secret.as_str()), "a password in: {text}");
        }
    }
}

/// Kills the daemon once the prune shows `step`, restarts it, and checks the
/// prune finished with every kept digest whole.
fn crash_at(gateway: &mut Gateway, round: usize, step: &str) {
    let repository = "apps/site";
    for n in 0..3 {
        gateway.publish(repository, &format!("r{round}-{n}"), "production");
    }
    let started = gateway.daemon.call("registry", "prune", "null").unwrap();
    let started_ms = started["started-ms"].as_u64().unwrap();
    let kept = plan_digests(&started["plan"], "keep");
    let deleted = plan_digests(&started["plan"], "delete");
    assert!(!deleted.is_empty(), "{started}");
    let mut seen = Value::Null;
    let reached = gateway.daemon.eventually(WAIT, || {
        seen = status(&gateway.daemon);
        seen["maintenance"]["step"] == step
    });
    assert!(reached, "the prune never showed step {step}: {seen}");

    // While the lock is held, publishing is refused, saying why.
    let refused = gateway
        .daemon
        .call(
            "registry",
            "publish",
            &json!({"repository": repository, "tag": format!("r{round}-0"), "environment": "production"})
                .to_string(),
        )
        .unwrap_err();
    assert!(refused.contains("under maintenance"), "{refused}");
    if step == "collecting" {
        // Garbage collection runs on a read-only registry: pushes get 405.
        let (code, reply) = curl(
            &gateway.ca,
            ("build", &gateway.build),
            &[
                "-X",
                "POST",
                &format!("{}/v2/{repository}/blobs/uploads/", gateway.base),
            ],
            b"",
        );
        assert_eq!(code, 405, "{reply}");
    }

    gateway.daemon.restart();
    let outcome = gateway.wait_pruned(started_ms);
    assert_eq!(outcome["ok"], true, "killed at {step}: {outcome}");
    assert_eq!(outcome["missing"], json!([]), "killed at {step}: {outcome}");
    for (repository, digest) in &kept {
        gateway
            .pulls(repository, digest)
            .unwrap_or_else(|err| panic!("killed at {step}: {err}"));
    }
    for (repository, digest) in &deleted {
        assert_eq!(
            gateway.manifest_status(repository, digest),
            404,
            "killed at {step}"
        );
    }
    let now = wait_ready(&gateway.daemon);
    assert_eq!(now["mode"], "read-write", "killed at {step}: {now}");
}

#[test]
fn a_daemon_killed_at_any_prune_step_finishes_the_prune_after_restart() {
    let mut gateway = Gateway::start("prune-step-pause = \"1500ms\"");
    for (round, step) in [
        "deleting",
        "read-only",
        "collecting",
        "read-write",
        "verifying",
    ]
    .into_iter()
    .enumerate()
    {
        crash_at(&mut gateway, round, step);
    }
    let log = gateway.daemon.daemon_log();
    assert!(log.contains("resuming the prune"), "{log}");
    for secret in [&gateway.build, &gateway.runtime] {
        assert!(!log.contains(secret.as_str()), "a password reached the log");
    }
}

/// A plugin installed on the gateway itself keeps the manifest it was
/// published as, though retention would drop it: its component is that
/// manifest's layer.
#[test]
fn retention_keeps_what_runs_on_the_gateway() {
    let gateway = Gateway::start(r#"environments = ["production"]"#);
    let daemon = &gateway.daemon;
    let wasm = harness::plugin_wasm("counter");
    let counter = gateway.push_plugin(daemon, &wasm, "plugins/counter:1");
    let request = json!({
        "repository": "plugins/counter", "tag": "1", "environment": "production",
        "kind": "plugin", "digest": counter,
    });
    daemon
        .call("registry", "publish", &request.to_string())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    gateway.publish("apps/web", "1", "production");
    gateway.publish("apps/web", "2", "production");

    // Not installed here: the oldest of three with keep = 2, so it goes.
    let plan = daemon.call("registry", "retention", "null").unwrap();
    assert!(
        plan_digests(&plan, "delete").contains(&("plugins/counter".to_string(), counter.clone())),
        "{plan:#}"
    );
    daemon.install(&wasm).unwrap();
    let plan = daemon.call("registry", "retention", "null").unwrap();
    let reasons = plan["keep"]["plugins/counter"][&counter].to_string();
    assert!(
        reasons.contains("in use by plugin counter 0.1.0 on this gateway"),
        "{plan:#}"
    );
    assert!(plan_digests(&plan, "delete").is_empty(), "{plan:#}");
}
