//! The wire format: command topics, request and reply payloads.
//!
//! A command is published on `cairn/{device}/cmd/{target}/{command}` with a JSON
//! payload `{"id": "<correlation id>", "payload": <any JSON>}`; the reply goes to
//! `cairn/{device}/resp/{target}/{command}` as
//! `{"id": .., "ok": true, "result": <JSON>, "served_by": "<adapter version>"}` or
//! `{"id": .., "ok": false, "error": {"code": .., "message": ..}, "served_by": ..}`.
//! The target `host` stands for the device itself (list, health, metrics,
//! install, rollback, remove); any other target is a plugin whose
//! `on-command` receives `payload` as JSON.

use serde::Deserialize;
use serde_json::{Value, json};

/// The version answering, so a caller can see which release replied.
pub const SERVED_BY: &str = cairn_sdk::plugin_version!();

/// A command topic, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub target: &'a str,
    pub command: &'a str,
}

/// Splits `cairn/<device>/cmd/<target>/<command>`; `None` for any other shape.
pub fn parse_topic(topic: &str) -> Option<Route<'_>> {
    let mut levels = topic.split('/');
    let (Some("cairn"), Some(_device), Some("cmd"), Some(target), Some(command), None) = (
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
    ) else {
        return None;
    };
    (!target.is_empty() && !command.is_empty()).then_some(Route { target, command })
}

/// Where the reply to a command topic goes: `cmd` becomes `resp`.
pub fn reply_topic(command_topic: &str) -> String {
    match command_topic.split_once("/cmd/") {
        Some((device, rest)) => format!("{device}/resp/{rest}"),
        None => "cairn/{device}/resp/error".into(),
    }
}

/// A command's payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: String,
    #[serde(default)]
    pub payload: Value,
}

/// A failure with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    /// For `plugin-error`: the code of the plugin's own error, when it gave one.
    pub plugin_code: Option<String>,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            plugin_code: None,
        }
    }
}

impl From<cairn_sdk::Error> for Failure {
    fn from(err: cairn_sdk::Error) -> Self {
        Failure::new(err.kind(), err.message())
    }
}

/// Reads a request; the id (when one can be found) comes back even when the
/// rest is malformed, so the caller can match the error reply.
pub fn parse_request(payload: &[u8]) -> Result<Request, (Option<String>, Failure)> {
    serde_json::from_slice::<Request>(payload).map_err(|err| {
        let id = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|value| value.get("id")?.as_str().map(str::to_string));
        let message =
            format!(r#"a command is JSON {{"id": "<correlation id>", "payload": ..}}: {err}"#);
        (id, Failure::new("invalid", message))
    })
}

/// A reply's JSON text.
pub fn reply(id: Option<&str>, outcome: Result<Value, Failure>) -> Vec<u8> {
    let body = match outcome {
        Ok(result) => json!({"id": id, "ok": true, "result": result, "served_by": SERVED_BY}),
        Err(failure) => {
            let mut error = json!({"code": failure.code, "message": failure.message});
            if let Some(code) = failure.plugin_code {
                error["plugin-code"] = json!(code);
            }
            json!({"id": id, "ok": false, "error": error, "served_by": SERVED_BY})
        }
    };
    body.to_string().into_bytes()
}

/// A plugin's reply bytes as JSON: parsed when they are JSON, else a string.
pub fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_topics_split_into_target_and_command() {
        assert_eq!(
            parse_topic("cairn/pump-7/cmd/counter/increment"),
            Some(Route {
                target: "counter",
                command: "increment"
            })
        );
        for bad in [
            "cairn/pump-7/cmd/counter",
            "cairn/pump-7/cmd/counter/increment/extra",
            "cairn/pump-7/cmd//increment",
            "cairn/pump-7/resp/counter/increment",
            "other/pump-7/cmd/counter/increment",
        ] {
            assert_eq!(parse_topic(bad), None, "{bad}");
        }
        assert_eq!(
            reply_topic("cairn/pump-7/cmd/counter/increment"),
            "cairn/pump-7/resp/counter/increment"
        );
    }

    #[test]
    fn a_malformed_request_keeps_its_id_when_it_has_one() {
        let request = parse_request(br#"{"id": "a1", "payload": {"by": 2}}"#).unwrap();
        assert_eq!(
            (request.id.as_str(), &request.payload),
            ("a1", &json!({"by": 2}))
        );
        let (id, failure) = parse_request(br#"{"id": "a2", "extra": 1}"#).unwrap_err();
        assert_eq!(
            (id.as_deref(), failure.code.as_str()),
            (Some("a2"), "invalid")
        );
        let (id, _) = parse_request(b"not json").unwrap_err();
        assert_eq!(id, None);
        let (id, _) = parse_request(br#"{"payload": 1}"#).unwrap_err();
        assert_eq!(id, None);
    }

    #[test]
    fn replies_carry_the_id_and_the_outcome() {
        let ok: Value = serde_json::from_slice(&reply(Some("a"), Ok(json!(3)))).unwrap();
        assert_eq!(
            (ok["id"].as_str(), ok["ok"].as_bool(), &ok["result"]),
            (Some("a"), Some(true), &json!(3))
        );
        let failed: Value =
            serde_json::from_slice(&reply(None, Err(Failure::new("not-found", "no")))).unwrap();
        assert!(failed["id"].is_null());
        assert_eq!(failed["error"]["code"], "not-found");
        assert_eq!(as_json(b"{\"a\":1}"), json!({"a": 1}));
        assert_eq!(as_json(b"plain"), json!("plain"));
    }
}
