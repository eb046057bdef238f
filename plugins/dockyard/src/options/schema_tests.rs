//! Reading `dev.cairn.options`, choosing between labels, and both label forms
//! declaring the same thing.

use super::fixtures::*;
use super::*;

fn option<'d>(declared: &'d Declared, name: &str) -> &'d OptionDecl {
    match declared.option(name) {
        Some(option) => option,
        None => panic!("{name} should be declared"),
    }
}

/// A one-option Cairn label.
fn one(option: &str) -> String {
    format!(r#"{{"options": [{option}]}}"#)
}

#[test]
fn the_documented_example_reads_into_the_model() {
    let declared = cairn(CAIRN_EXAMPLE);
    assert_eq!(declared.source, LabelKind::Cairn);
    let names: Vec<&str> = declared
        .options
        .iter()
        .map(|option| option.name.as_str())
        .collect();
    assert_eq!(names, ["port", "password", "mode", "database", "workers"]);

    let port = option(&declared, "port");
    assert_eq!(port.kind, OptionKind::Port(IntRange::default()));
    assert_eq!(port.default, Some(DefaultValue::Literal("5432".into())));
    assert_eq!(port.doc.as_deref(), Some("Port to listen on"));

    let password = option(&declared, "password");
    assert_eq!(
        password.kind,
        OptionKind::String,
        "type secret is a secret string"
    );
    assert!(password.secret);

    let mode = option(&declared, "mode");
    let values: Vec<&str> = mode.choices().iter().map(Choice::value).collect();
    assert_eq!(values, ["a", "b"]);

    let database = &option(&declared, "database").choices()[0];
    assert_eq!(database.service(), Some("db"));
    let keys: Vec<&str> = database
        .imports
        .iter()
        .map(|import| import.key.as_str())
        .collect();
    assert_eq!(keys, ["port", "user"]);
    assert_eq!(database.bindings[0].id_string(), "bindings.create_user");
    assert_eq!(database.bindings[0].service, "db");
    assert_eq!(
        option(&declared, "database").default,
        Some(DefaultValue::Literal("db".into()))
    );

    let workers = option(&declared, "workers");
    let range = IntRange {
        min: Some(1),
        max: Some(64),
    };
    assert_eq!(workers.kind, OptionKind::Integer(range));
    assert!(workers.optional);
}

#[test]
fn both_forms_of_the_gitea_label_declare_the_same() {
    let from_nanocloud = nanocloud(GITEA_LABEL);
    let from_cairn = cairn(GITEA_CAIRN_LABEL);
    assert_eq!(from_nanocloud.options, from_cairn.options);
}

#[test]
fn secrecy_comes_from_the_type_or_the_flag_never_the_name() {
    let declared = cairn(
        r#"{"options": [{"name": "secret_plain"}, {"name": "token", "secret": true},
                        {"name": "key", "type": "secret", "secret": true}]}"#,
    );
    assert!(!option(&declared, "secret_plain").secret);
    assert!(option(&declared, "token").secret);
    assert!(option(&declared, "key").secret);
    let error = cairn_error(&one(r#"{"name": "k", "type": "secret", "secret": false}"#));
    assert_label_error(&error, "k", "cannot say \"secret\": false");
    let error = cairn_error(&one(
        r#"{"name": "m", "type": "enum", "values": ["a"], "secret": true}"#,
    ));
    assert_label_error(&error, "m", "cannot be secret");
}

#[test]
fn imports_may_be_marked_secret() {
    let declared = cairn(&one(
        r#"{"name": "db", "type": "service", "choices": [{"service": "pg",
            "imports": ["port", {"key": "password", "secret": true}, {"key": "user"}]}]}"#,
    ));
    let imports = &option(&declared, "db").choices()[0].imports;
    let secret: Vec<(&str, bool)> = imports
        .iter()
        .map(|import| (import.key.as_str(), import.secret))
        .collect();
    assert_eq!(
        secret,
        [("port", false), ("password", true), ("user", false)]
    );
    let error = cairn_error(&one(
        r#"{"name": "db", "type": "service", "choices": [{"service": "pg",
            "imports": [{"key": "password", "hidden": true}]}]}"#,
    ));
    assert_label_error(&error, "db", "unknown field `hidden`");
    let error = cairn_error(&one(
        r#"{"name": "db", "type": "service", "choices": [{"service": "pg", "imports": [5]}]}"#,
    ));
    assert_label_error(&error, "db", "a profile key, or");
}

#[test]
fn choice_options_default_to_their_first_choice_unless_optional() {
    let declared = cairn(
        r#"{"options": [{"name": "a", "type": "enum", "values": ["x", "y"]},
                        {"name": "b", "type": "enum", "values": ["x", "y"], "optional": true},
                        {"name": "c", "type": "enum", "values": ["x", "y"], "default": "y"}]}"#,
    );
    assert_eq!(
        option(&declared, "a").default,
        Some(DefaultValue::Literal("x".into()))
    );
    assert_eq!(option(&declared, "b").default, None);
    assert_eq!(
        option(&declared, "c").default,
        Some(DefaultValue::Literal("y".into()))
    );
}

#[test]
fn malformed_json_and_shapes_are_refused() {
    let error = cairn_error("{\"options\": [\n  {\"name\": \"a\",}\n]}");
    assert!(matches!(error, LabelError::Json { line: 2, .. }), "{error}");
    let error = cairn_error(r#"{"options": [], "version": 2}"#);
    assert!(
        error.to_string().contains("unknown field `version`"),
        "{error}"
    );
    let error = cairn_error(r#"{}"#);
    assert!(
        error.to_string().contains("missing field `options`"),
        "{error}"
    );
    let error = cairn_error(r#"{"options": [{"type": "string"}]}"#);
    assert!(
        error
            .to_string()
            .contains("option #1: missing field `name`"),
        "{error}"
    );
    let error = cairn_error(r#"{"options": [{"name": "a", "name": "b"}]}"#);
    assert!(
        error.to_string().contains("\"name\" appears twice"),
        "{error}"
    );
    let error = cairn_error(r#"{"options": [{"name": "a"}, {"name": "a"}]}"#);
    assert_label_error(&error, "a", "is declared twice");
    let error = cairn_error(&one(r#"{"name": "a b"}"#));
    assert_label_error(&error, "a b", "may only contain");
}

#[test]
fn option_fields_are_checked_against_the_type() {
    let cases = [
        (r#"{"name": "o", "typo": 1}"#, "unknown field `typo`"),
        (
            r#"{"name": "o", "type": "float"}"#,
            "unknown variant `float`",
        ),
        (
            r#"{"name": "o", "default": 4}"#,
            "invalid type: integer `4`, expected a string",
        ),
        (
            r#"{"name": "o", "min": 1}"#,
            "\"min\"/\"max\" does not apply to type \"string\"",
        ),
        (
            r#"{"name": "o", "type": "boolean", "pattern": "x"}"#,
            "\"pattern\" does not apply",
        ),
        (
            r#"{"name": "o", "values": ["a"]}"#,
            "\"values\" does not apply",
        ),
        (
            r#"{"name": "o", "type": "path", "choices": []}"#,
            "\"choices\" does not apply",
        ),
        (
            r#"{"name": "o", "type": "integer", "min": 5, "max": 1}"#,
            "min 5 is greater than max 1",
        ),
        (
            r#"{"name": "o", "type": "port", "max": 70000}"#,
            "bound 70000 is outside 1..65535",
        ),
        (
            r#"{"name": "o", "pattern": "(unclosed"}"#,
            "is not a valid regular expression",
        ),
        (
            r#"{"name": "o", "type": "enum"}"#,
            "exactly one of \"values\" and \"choices\"",
        ),
        (
            r#"{"name": "o", "type": "enum", "values": []}"#,
            "at least one choice",
        ),
        (
            r#"{"name": "o", "type": "enum", "values": ["a"], "choices": [{"value": "b"}]}"#,
            "exactly one of \"values\" and \"choices\"",
        ),
        (
            r#"{"name": "o", "type": "enum", "choices": [{"service": "s"}]}"#,
            "use type \"service\"",
        ),
        (
            r#"{"name": "o", "type": "service", "choices": [{"value": "v"}]}"#,
            "at least one {\"service\"",
        ),
        (
            r#"{"name": "o", "type": "service"}"#,
            "at least one {\"service\"",
        ),
        (
            r#"{"name": "o", "type": "service", "choices": [{"service": "s", "value": "v"}]}"#,
            "exactly one of \"value\" and \"service\"",
        ),
        (
            r#"{"name": "o", "type": "enum", "choices": [{"value": "v", "bindings": [{"id": "x", "run": ["a"]}]}]}"#,
            "only a service choice can run",
        ),
        (
            r#"{"name": "o", "type": "enum", "choices": [{"value": "v", "imports": ["k"]}]}"#,
            "only a service choice can do",
        ),
        (
            r#"{"name": "o", "type": "service", "choices": [{"service": "s", "bindings": [{"id": "x", "run": []}]}]}"#,
            "has no command",
        ),
        (
            r#"{"name": "o", "type": "service", "choices": [{"service": "s", "bindings": [{"id": "x", "run": ["a"]}, {"id": "x", "run": ["b"]}]}]}"#,
            "is declared twice",
        ),
        (
            r#"{"name": "o", "type": "service", "choices": [{"service": "s", "bindings": [{"run": ["a"]}]}]}"#,
            "missing field `id`",
        ),
        (
            r#"{"name": "o", "type": "service", "choices": [{"service": "s", "requires": ["nothing"]}]}"#,
            "requires option 'nothing'",
        ),
    ];
    for (spec, needle) in cases {
        let error = cairn_error(&one(spec));
        assert_label_error(&error, "o", needle);
    }
}

#[test]
fn defaults_are_checked_against_the_type() {
    let cases = [
        (
            r#"{"name": "o", "type": "integer", "default": "four"}"#,
            "must be a decimal integer",
        ),
        (
            r#"{"name": "o", "type": "integer", "max": 3, "default": "4"}"#,
            "must be at most 3",
        ),
        (
            r#"{"name": "o", "type": "port", "default": "0"}"#,
            "must be a port number",
        ),
        (
            r#"{"name": "o", "type": "boolean", "default": "yes"}"#,
            "must be true or false",
        ),
        (
            r#"{"name": "o", "type": "path", "default": "data"}"#,
            "must be an absolute path",
        ),
        (
            r#"{"name": "o", "pattern": "[a-z]+", "default": "ABC"}"#,
            "must match the pattern",
        ),
        (
            r#"{"name": "o", "type": "enum", "values": ["a"], "default": "b"}"#,
            "must be one of: a",
        ),
        (
            r#"{"name": "o", "type": "enum", "values": ["a"], "default": "!dns"}"#,
            "not a macro",
        ),
        (r#"{"name": "o", "default": "!rand 0"}"#, "at least 1"),
        (r#"{"name": "o", "default": "!nope"}"#, "unknown macro"),
    ];
    for (spec, needle) in cases {
        let error = cairn_error(&one(spec));
        assert_label_error(&error, "o", needle);
    }
    let error = cairn_error(&one(
        r#"{"name": "o", "type": "secret", "pattern": "[a-z]+", "default": "HUNTER2"}"#,
    ));
    assert!(!error.to_string().contains("HUNTER2"), "{error}");
}

#[test]
fn read_labels_prefers_cairn_and_says_so() {
    let both = map(&[
        (CAIRN_LABEL, GITEA_CAIRN_LABEL),
        (NANOCLOUD_LABEL, REAL_LABEL),
    ]);
    let declared = match read_labels(&both) {
        Ok(Some(declared)) => declared,
        other => panic!("expected a declaration, got {other:?}"),
    };
    assert_eq!(declared.source, LabelKind::Cairn);
    assert_eq!(
        declared.notes,
        ["label io.nanocloud.options ignored: dev.cairn.options takes precedence"]
    );

    let nanocloud_only = map(&[(NANOCLOUD_LABEL, GITEA_LABEL), ("other", "x")]);
    let declared = read_labels(&nanocloud_only);
    assert!(matches!(
        declared,
        Ok(Some(Declared {
            source: LabelKind::Nanocloud,
            ..
        }))
    ));

    assert_eq!(
        read_labels(&map(&[("org.opencontainers.image.title", "x")])),
        Ok(None)
    );

    // A broken Cairn label is an error even when the Nanocloud one is fine.
    let broken = map(&[(CAIRN_LABEL, "{"), (NANOCLOUD_LABEL, GITEA_LABEL)]);
    assert!(matches!(
        read_labels(&broken),
        Err(LabelError::Json {
            label: CAIRN_LABEL,
            ..
        })
    ));
}

#[test]
fn a_service_choice_says_what_its_providers_restart_does() {
    let declared = cairn(&one(r#"{"name": "db", "type": "service", "choices": [
            {"service": "pg", "on-restart": "rebind"}, {"service": "mysql"},
            {"service": "redis", "on-restart": "ignore"}]}"#));
    let policies: Vec<OnRestart> = option(&declared, "db")
        .choices()
        .iter()
        .map(|choice| choice.on_restart)
        .collect();
    assert_eq!(
        policies,
        [OnRestart::Rebind, OnRestart::Restart, OnRestart::Ignore]
    );
    for (choice, problem) in [
        (r#"{"service": "pg", "on-restart": "reboot"}"#, "\"reboot\""),
        (
            r#"{"value": "none", "on-restart": "restart"}"#,
            "only a service choice",
        ),
    ] {
        let label = one(&format!(
            r#"{{"name": "db", "type": "service", "choices": [{choice}, {{"service": "x"}}]}}"#
        ));
        let error = parse_cairn(&label).unwrap_err().to_string();
        assert!(error.contains(problem) && error.contains("db"), "{error}");
    }
}

#[test]
fn a_ready_check_is_read_with_its_defaults_and_checked() {
    let declared =
        cairn(r#"{"options": [], "ready": {"check": "tcp://{ip}:5432", "interval": "250ms"}}"#);
    assert_eq!(
        declared.ready,
        Some(ReadyCheck {
            check: "tcp://{ip}:5432".into(),
            interval_ms: 250,
            timeout_ms: 1_000,
            start_timeout_ms: 60_000,
        })
    );
    assert_eq!(cairn(r#"{"options": []}"#).ready, None);
    for (ready, problem) in [
        (r#"{"check": "cmd:/bin/true"}"#, "must start with tcp://"),
        (
            r#"{"check": "tcp://{ip}:1", "timeout": "5m"}"#,
            "ready.timeout",
        ),
        (
            r#"{"check": "tcp://{ip}:1", "start-timeout": "soon"}"#,
            "ready.start-timeout",
        ),
        (
            r#"{"check": "tcp://{ip}:1", "every": "1s"}"#,
            "unknown field `every`",
        ),
    ] {
        let label = format!(r#"{{"options": [], "ready": {ready}}}"#);
        let error = parse_cairn(&label).unwrap_err().to_string();
        assert!(error.contains(problem), "{error}");
    }
}
