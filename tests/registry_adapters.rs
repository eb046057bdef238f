//! The site registry's operations reach every adapter: the same commands
//! (status, fingerprints, smoke, rotate, publish, artifacts, retention, a
//! prune's dry run) through the REST API and over MQTT give the replies the
//! CLI gives, refuse bad input with the same typed errors, and never carry a
//! password.

mod harness;

use std::time::{Duration, Instant};

use harness::http::{Reply, request};
use harness::mosquitto::{Auth, Mosquitto};
use harness::site_registry::Gateway;
use harness::{Daemon, Options};
use serde_json::{Value, json};

const TOKEN: &str = "registry-adapters-token";
const DEVICE: &str = "gateway-1";

/// A gateway whose daemon also runs the HTTP and MQTT adapters.
struct Site {
    gateway: Gateway,
    broker: Mosquitto,
    http: String,
    replies: harness::mosquitto::Subscriber,
}

impl Site {
    fn start() -> Site {
        let broker = Mosquitto::start(Auth::Anonymous);
        let daemon = Daemon::start_with(Options {
            device_id: Some(DEVICE.into()),
            extra_config: format!(
                "[listeners.http]\naddress = \"127.0.0.1:0\"\nrequest-timeout = \"60s\"\n\
                 [mqtt.brokers.local]\nurl = \"{}\"\n",
                broker.url()
            ),
            ..Options::default()
        });
        let http = daemon.http_address();
        let mut replies = None;
        daemon.install_adapters(TOKEN, || {
            replies = Some(broker.subscribe(&format!("cairn/{DEVICE}/resp/#"), None));
        });
        let replies = replies.unwrap();
        let gateway = Gateway::start_on(daemon, tempfile::tempdir().unwrap(), "", "");
        Site {
            gateway,
            broker,
            http,
            replies,
        }
    }

    /// `POST /v1/plugins/registry/commands/COMMAND`.
    fn over_http(&self, command: &str, payload: &Value) -> Reply {
        let body = payload.to_string();
        let head = format!(
            "POST /v1/plugins/registry/commands/{command} HTTP/1.1\r\nHost: {}\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json",
            self.http
        );
        request(&self.http, &head, body.as_bytes()).unwrap()
    }

    /// `cairn/<device>/cmd/registry/COMMAND`; the reply envelope.
    fn over_mqtt(&self, command: &str, id: &str, payload: &Value) -> Value {
        let message = json!({"id": id, "payload": payload}).to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        // The first command may beat the adapter's subscription: resend until answered.
        let mut next_send = Instant::now();
        loop {
            if Instant::now() >= next_send {
                self.broker.publish(
                    &format!("cairn/{DEVICE}/cmd/registry/{command}"),
                    &message,
                    None,
                );
                next_send = Instant::now() + Duration::from_secs(5);
            }
            let found = self.replies.messages().into_iter().find_map(|line| {
                let (_, body) = line.split_once(' ')?;
                let body: Value = serde_json::from_str(body).ok()?;
                (body["id"] == id).then_some(body)
            });
            if let Some(found) = found {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no MQTT reply to {command}:\n{}",
                self.gateway.daemon.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The command's result through both adapters, checked to be equal
    /// where the command is deterministic; the HTTP one.
    fn both(&self, command: &str, payload: Value) -> Value {
        let http = self.over_http(command, &payload);
        assert_eq!(http.status, 200, "{command} over HTTP: {}", http.text());
        let http: Value = serde_json::from_slice(&http.body).unwrap();
        let mqtt = self.over_mqtt(command, &format!("{command}-{}", rand_id()), &payload);
        assert_eq!(mqtt["ok"], true, "{command} over MQTT: {mqtt}");
        for reply in [&http, &mqtt] {
            let text = reply.to_string();
            for secret in [&self.gateway.build, &self.gateway.runtime] {
                assert!(
                    !text.contains(secret.as_str()),
                    "a password in {command}'s reply"
                );
            }
        }
        if !matches!(command, "status" | "smoke" | "rotate") {
            assert_eq!(http, mqtt["result"], "{command}: the adapters disagree");
        }
        http
    }
}

/// A 422 `plugin-error` whose plugin code is `invalid`.
fn assert_plugin_refused(reply: &Reply) {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    assert_eq!(
        (
            reply.status,
            &body["error"]["code"],
            &body["error"]["plugin-code"]
        ),
        (422, &json!("plugin-error"), &json!("invalid")),
        "{}",
        reply.text()
    );
}

fn rand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn registry_operations_reach_the_http_and_mqtt_adapters() {
    let site = Site::start();
    let gateway = &site.gateway;

    let status = site.both("status", json!(null));
    assert_eq!(status["ready"], true, "{status}");
    let fingerprints = site.both("credentials-fingerprint", json!(null));
    let cli = gateway
        .daemon
        .cli_json(&["registry", "fingerprints"])
        .unwrap();
    assert_eq!(fingerprints, cli);
    let smoke = site.both("smoke", json!(null));
    assert_eq!(smoke["ok"], true, "{smoke}");

    let digest = harness::site_registry::push_image(
        &gateway.ca,
        &gateway.base,
        &gateway.build,
        "apps/web",
        "1",
    );
    let publish = json!({"repository": "apps/web", "tag": "1", "environment": "production"});
    let http = site.over_http("publish", &publish);
    assert_eq!(http.status, 200, "{}", http.text());
    let published: Value = serde_json::from_slice(&http.body).unwrap();
    assert_eq!(published["digest"], digest.as_str(), "{published}");
    let again = site.over_mqtt("publish", "publish-2", &json!({"repository": "apps/web", "tag": "1", "environment": "production", "revision": "abc"}));
    assert_eq!(again["result"]["digest"], digest.as_str(), "{again}");

    let artifacts = site.both("artifacts", json!(null));
    assert_eq!(artifacts.as_array().unwrap().len(), 2, "{artifacts}");
    let retention = site.both("retention", json!(null));
    assert!(
        !retention["keep"]["apps/web"][&digest].is_null(),
        "{retention}"
    );
    let dry_run = site.both("prune", json!({"dry-run": true}));
    assert_eq!(dry_run["dry-run"], true, "{dry_run}");
    assert_eq!(dry_run["plan"], retention);

    // Bad input is the same typed error through both (the REST API reports a
    // plugin's refusal as 422 `plugin-error` with the plugin's code).
    let unknown = json!({"repository": "apps/web", "tag": "1", "environment": "staging"});
    let http = site.over_http("publish", &unknown);
    assert_plugin_refused(&http);
    assert!(http.text().contains("staging"), "{}", http.text());
    let mqtt = site.over_mqtt("publish", "bad-1", &unknown);
    assert_eq!(mqtt["ok"], false, "{mqtt}");
    assert_eq!(mqtt["error"]["code"], "plugin-error", "{mqtt}");
    assert_eq!(mqtt["error"]["plugin-code"], "invalid", "{mqtt}");
    assert!(
        mqtt["error"]["message"]
            .as_str()
            .unwrap()
            .contains("staging"),
        "{mqtt}"
    );
    let http = site.over_http("rotate", &json!({"user": "root"}));
    assert_plugin_refused(&http);

    // A rotation through one adapter is seen through the other.
    let rotated = site.over_http("rotate", &json!({"user": "runtime"}));
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated: Value = serde_json::from_slice(&rotated.body).unwrap();
    assert_ne!(rotated["runtime"], fingerprints["runtime"]);
    let seen = site.over_mqtt("credentials-fingerprint", "fp-2", &json!(null));
    assert_eq!(seen["result"], rotated, "{seen}");
    let (_, fresh) = harness::site_registry::passwords(&gateway.state);
    assert!(
        !site.replies.messages().concat().contains(&fresh),
        "the new password over MQTT"
    );
}
