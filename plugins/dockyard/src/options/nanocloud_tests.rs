//! Reading `io.nanocloud.options`: the note's labels, every decorator, and
//! every malformed thing Nanocloud would have swallowed.

use std::collections::BTreeMap;

use super::fixtures::*;
use super::*;

fn names(declared: &Declared) -> Vec<&str> {
    declared
        .options
        .iter()
        .map(|option| option.name.as_str())
        .collect()
}

fn option<'d>(declared: &'d Declared, name: &str) -> &'d OptionDecl {
    match declared.option(name) {
        Some(option) => option,
        None => panic!("{name} should be declared"),
    }
}

#[test]
fn the_real_fixture_label_reads_in_declaration_order() {
    let declared = nanocloud(REAL_LABEL);
    assert_eq!(declared.source, LabelKind::Nanocloud);
    assert_eq!(
        names(&declared),
        [
            "runtime_command",
            "runtime_args",
            "macro_dns",
            "macro_rand",
            "macro_tls"
        ]
    );
    let default = |name| option(&declared, name).default.clone();
    assert_eq!(
        default("runtime_command"),
        Some(DefaultValue::Literal("/bin/sh".into()))
    );
    // Two plain tokens: the last wins, as in Nanocloud (so "-c" is lost).
    assert_eq!(
        default("runtime_args"),
        Some(DefaultValue::Literal("echo conformance".into()))
    );
    assert_eq!(declared.notes.len(), 1);
    assert!(declared.notes[0].contains("'runtime_args' has 2 default tokens"));
    assert_eq!(default("macro_dns"), Some(DefaultValue::Macro(Macro::Dns)));
    let rand = Macro::Rand {
        len: 8,
        charset: Charset::Hex,
    };
    assert_eq!(default("macro_rand"), Some(DefaultValue::Macro(rand)));
    assert_eq!(
        default("macro_tls"),
        Some(DefaultValue::Macro(Macro::Tls(TlsPart::Cert)))
    );
    for option in &declared.options {
        assert_eq!(option.kind, OptionKind::String);
        assert!(!option.optional && !option.secret);
    }
}

#[test]
fn the_real_fixture_reads_from_the_stored_image_config() {
    let labels: BTreeMap<String, String> = match serde_json::from_str(REAL_IMAGE_CONFIG_LABELS) {
        Ok(labels) => labels,
        Err(error) => panic!("fixture: {error}"),
    };
    let declared = read_labels(&labels);
    assert_eq!(declared, Ok(Some(nanocloud(REAL_LABEL))));
}

#[test]
fn the_gitea_label_reads_into_the_model() {
    let declared = nanocloud(GITEA_LABEL);
    assert_eq!(
        names(&declared),
        [
            "database",
            "database_user",
            "secret_database_password",
            "port_http"
        ]
    );
    let database = option(&declared, "database");
    let mariadb = Choice {
        target: ChoiceTarget::Service("mariadb".into()),
        requires: vec![Requirement {
            option: "database_port".into(),
            equals: None,
        }],
        imports: vec![Import {
            key: "port".into(),
            secret: false,
        }],
        bindings: vec![BindingTemplate {
            id: BindingId::Named("create_user".into()),
            service: "mariadb".into(),
            words: vec![
                "create_user.sh".into(),
                "$database_user".into(),
                "$secret_database_password".into(),
            ],
            unbind: Vec::new(),
        }],
        on_restart: OnRestart::Restart,
    };
    let sqlite = Choice {
        target: ChoiceTarget::Value("sqlite".into()),
        requires: vec![],
        imports: vec![],
        bindings: vec![],
        on_restart: OnRestart::Restart,
    };
    assert_eq!(database.kind, OptionKind::Choice(vec![mariadb, sqlite]));
    assert_eq!(
        database.default,
        Some(DefaultValue::Literal("mariadb".into()))
    );
    assert!(!database.optional);

    let password = option(&declared, "secret_database_password");
    assert!(password.secret);
    let rand = Macro::Rand {
        len: 24,
        charset: Charset::Charset26,
    };
    assert_eq!(password.default, Some(DefaultValue::Macro(rand)));

    let port = option(&declared, "port_http");
    assert!(port.optional && !port.secret);
    assert_eq!(port.default, Some(DefaultValue::Literal("3000".into())));
    assert!(declared.notes.is_empty());
}

#[test]
fn declaration_order_is_kept_not_sorted() {
    let declared = nanocloud(r#"{"zeta": ["1"], "alpha": ["2"], "m=b": [], "mid": [], "m=a": []}"#);
    assert_eq!(names(&declared), ["zeta", "alpha", "m", "mid"]);
    let choices: Vec<&str> = option(&declared, "m")
        .choices()
        .iter()
        .map(Choice::value)
        .collect();
    assert_eq!(choices, ["b", "a"]);
    // The first declared choice is the default, not the smallest.
    assert_eq!(
        option(&declared, "m").default,
        Some(DefaultValue::Literal("b".into()))
    );
}

#[test]
fn question_mark_makes_free_options_and_choice_sets_optional() {
    let declared = nanocloud(r#"{"?free": [], "?m=a": [], "?m=b": [], "needed": []}"#);
    assert!(option(&declared, "free").optional);
    assert_eq!(option(&declared, "free").default, None);
    assert!(option(&declared, "m").optional);
    assert!(!option(&declared, "needed").optional);
}

#[test]
fn requirements_with_and_without_values() {
    let declared =
        nanocloud(r#"{"t=tls": ["*cert", "*mode=strict"], "t=plain": [], "cert": [], "mode": []}"#);
    let tls = &option(&declared, "t").choices()[0];
    assert_eq!(
        tls.requires,
        [
            Requirement {
                option: "cert".into(),
                equals: None
            },
            Requirement {
                option: "mode".into(),
                equals: Some("strict".into())
            },
        ]
    );
    assert!(tls.imports.is_empty(), "only service choices import");
}

#[test]
fn service_choices_import_prefixed_requirements_and_mark_secret_ones() {
    let declared = nanocloud(
        r#"{"db=&mariadb": ["*db_port=3306", "*db_secret_password", "*db_user", "*other"],
            "other": ["x"]}"#,
    );
    let mariadb = &option(&declared, "db").choices()[0];
    let import = |key: &str, secret| Import {
        key: key.into(),
        secret,
    };
    assert_eq!(
        mariadb.imports,
        [
            import("port", false),
            import("secret_password", true),
            import("user", false)
        ]
    );
    assert_eq!(mariadb.requires.len(), 4);
    assert_eq!(mariadb.requires[0].equals.as_deref(), Some("3306"));
}

#[test]
fn unnamed_bindings_are_numbered_by_position() {
    let declared =
        nanocloud(r#"{"db=&pg": ["&first  a   b", "&bindings.named run it", "&third"]}"#);
    let templates = &option(&declared, "db").choices()[0].bindings;
    let ids: Vec<String> = templates.iter().map(BindingTemplate::id_string).collect();
    assert_eq!(ids, ["pg#0", "bindings.named", "pg#2"]);
    assert_eq!(
        templates[0].words,
        ["first", "a", "b"],
        "split on any whitespace"
    );
    assert_eq!(templates[1].words, ["run", "it"]);
}

#[test]
fn secrets_follow_the_name_prefix_except_secret_env() {
    let declared = nanocloud(r#"{"secret_key": [], "secret_env_TOKEN": [], "key_secret": []}"#);
    assert!(option(&declared, "secret_key").secret);
    assert!(!option(&declared, "secret_env_TOKEN").secret);
    assert!(!option(&declared, "key_secret").secret);
}

#[test]
fn a_label_without_keys_declares_nothing() {
    assert!(nanocloud("{}").options.is_empty());
    assert!(nanocloud(" { } ").options.is_empty());
}

#[test]
fn invalid_json_reports_line_and_column() {
    for label in [
        "{\"a\": [\n",
        "",
        "{\"a\": [\"x\"],}",
        "{\"a\": []} trailing",
        "nope",
    ] {
        match nanocloud_error(label) {
            LabelError::Json { line, column, .. } => {
                assert!(line >= 1 && column <= label.len() + 1)
            }
            other => panic!("{label:?}: expected a JSON error, got {other}"),
        }
    }
    let error = nanocloud_error("{\"a\": [],\n \"b\": [}");
    assert!(matches!(error, LabelError::Json { line: 2, .. }), "{error}");
}

#[test]
fn the_label_must_be_an_object_without_duplicate_keys() {
    for label in [r#"["a"]"#, r#""text""#, "42", "null"] {
        let error = nanocloud_error(label);
        assert!(error.to_string().contains("a JSON object"), "{error}");
    }
    let error = nanocloud_error(r#"{"a": [], "a": ["x"]}"#);
    assert!(error.to_string().contains("\"a\" appears twice"), "{error}");
}

#[test]
fn values_must_be_arrays_of_strings() {
    let error = nanocloud_error(r#"{"ok": [], "port": "5432"}"#);
    assert_label_error(&error, "port", "must be an array of strings, not a string");
    let error = nanocloud_error(r#"{"port": {"default": "1"}}"#);
    assert_label_error(&error, "port", "not an object");
    let error = nanocloud_error(r#"{"?m=a": ["*x", 5]}"#);
    assert_label_error(
        &error,
        "m",
        "element 1 of the value must be a string, not a number",
    );
    let error = nanocloud_error(r#"{"n": [null]}"#);
    assert_label_error(&error, "n", "not null");
}

#[test]
fn keys_need_a_well_formed_name() {
    for key in ["", "?", "=x", "?=x", "=&svc"] {
        let error = nanocloud_error(&format!(r#"{{"{key}": []}}"#));
        assert!(
            matches!(error, LabelError::Label { .. }),
            "{key:?}: {error}"
        );
        assert!(error.to_string().contains("empty option name"), "{error}");
    }
    let error = nanocloud_error(r#"{"a b": []}"#);
    assert_label_error(&error, "a b", "may only contain");
    let error = nanocloud_error(r#"{"??a": []}"#);
    assert_label_error(&error, "?a", "may only contain");
    let error = nanocloud_error(r#"{"&db": []}"#);
    assert_label_error(&error, "&db", "must come right after '='");
    let error = nanocloud_error(r#"{"db=a&b": []}"#);
    assert_label_error(&error, "db", "may only start a choice's value");
    let error = nanocloud_error(r#"{"db=&": []}"#);
    assert_label_error(&error, "db", "the service name is empty");
    let error = nanocloud_error(r#"{"db=&&pg": []}"#);
    assert_label_error(&error, "db", "the service name \"&pg\"");
}

#[test]
fn keys_sharing_a_name_must_agree() {
    let error = nanocloud_error(r#"{"?m=a": [], "m=b": []}"#);
    assert_label_error(
        &error,
        "m",
        "'?' is on some of its choice keys but not others",
    );
    let error = nanocloud_error(r#"{"m=a": [], "?m=b": []}"#);
    assert_label_error(&error, "m", "'?' is on some");
    let error = nanocloud_error(r#"{"m": ["a"], "m=a": []}"#);
    assert_label_error(
        &error,
        "m",
        "makes it a choice set, but key \"m\" declares a free option",
    );
    let error = nanocloud_error(r#"{"m=a": [], "m": ["a"]}"#);
    assert_label_error(&error, "m", "declares a free option, but key \"m=a\"");
    let error = nanocloud_error(r#"{"x": [], "?x": []}"#);
    assert_label_error(&error, "x", "keys \"x\" and \"?x\" both declare it");
    let error = nanocloud_error(r#"{"db=pg": [], "db=&pg": []}"#);
    assert_label_error(&error, "db", "choice \"pg\" is declared twice");
}

#[test]
fn macros_are_checked_when_the_label_is_read() {
    let cases = [
        ("!foo", "unknown macro \"!foo\""),
        ("!", "unknown macro \"!\""),
        ("!dns now", "!dns takes no arguments"),
        ("!local_ip eth0", "!local_ip takes no arguments"),
        ("!rand 8 hex2", "unknown !rand charset \"hex2\""),
        ("!rand 8 HEX", "unknown !rand charset \"HEX\""),
        ("!rand abc", "!rand length \"abc\" is not a number"),
        ("!rand -1", "!rand length \"-1\" is not a number"),
        ("!rand +8", "!rand length \"+8\" is not a number"),
        ("!rand 0", "at least 1"),
        ("!rand 4097", "more than 4096"),
        ("!rand 99999999999999999999999", "more than 4096"),
        ("!rand 8 hex extra", "at most a length and a charset"),
        ("!tls", "exactly one of key, cert or ca"),
        ("!tls keys", "exactly one of key, cert or ca"),
        ("!tls key cert", "exactly one of key, cert or ca"),
        ("!if", "expected !if key=value THEN ELSE"),
        ("!if mode a b", "!if condition \"mode\" is not key=value"),
        ("!if mode=a b c d", "expected !if key=value THEN ELSE"),
        ("!if =a b c", "the !if key is empty"),
    ];
    for (token, needle) in cases {
        let label = format!(r#"{{"mode": [], "opt": ["{token}"]}}"#);
        let error = nanocloud_error(&label);
        assert_label_error(&error, "opt", needle);
        assert!(
            error.to_string().contains(&format!("{token:?}")),
            "names the token: {error}"
        );
    }
}

#[test]
fn if_must_compare_a_declared_or_imported_option() {
    let error = nanocloud_error(r#"{"opt": ["!if nothing=x a b"]}"#);
    assert_label_error(&error, "opt", "!if compares option 'nothing'");
    nanocloud(r#"{"db=&pg": ["*db_port"], "opt": ["!if db_port=5432 a b"]}"#);
}

#[test]
fn binding_templates_are_checked() {
    let cases = [
        ("&", "no command to run"),
        ("&   ", "no command to run"),
        ("&bindings.create", "no command to run"),
        (
            "&bindings. cmd",
            "the binding id after 'bindings.' is empty",
        ),
        ("&bindings.a$b cmd", "may only contain"),
    ];
    for (token, needle) in cases {
        let error = nanocloud_error(&format!(r#"{{"db=&pg": ["{token}"]}}"#));
        assert_label_error(&error, "db", needle);
        assert!(
            error.to_string().contains(&format!("{token:?}")),
            "names the token: {error}"
        );
    }
}

#[test]
fn duplicate_binding_ids_are_refused() {
    let error = nanocloud_error(r#"{"db=&pg": ["&bindings.x a", "&bindings.x b"]}"#);
    assert_label_error(
        &error,
        "db",
        "binding id \"bindings.x\" for service \"pg\" is declared twice",
    );
    // Two options choosing the same provider would both number from #0.
    let error = nanocloud_error(r#"{"db=&pg": ["&a"], "cache=&pg": ["&b"]}"#);
    assert_label_error(&error, "cache", "\"pg#0\"");
    // The same id for different providers of one option is fine.
    nanocloud(r#"{"db=&pg": ["&bindings.x a"], "db=&mariadb": ["&bindings.x a"]}"#);
}

#[test]
fn tokens_must_fit_their_key() {
    let error = nanocloud_error(r#"{"free": ["*other"], "other": []}"#);
    assert_label_error(&error, "free", "requirement \"*other\" on a free option");
    let error = nanocloud_error(r#"{"free": ["&cmd"]}"#);
    assert_label_error(&error, "free", "binding template \"&cmd\" on a free option");
    let error = nanocloud_error(r#"{"m=a": ["&cmd"]}"#);
    assert_label_error(&error, "m", "binding template \"&cmd\" on choice \"a\"");
    let error = nanocloud_error(r#"{"m=a": ["default"]}"#);
    assert_label_error(&error, "m", "a choice key takes no default");
    let error = nanocloud_error(r#"{"m=a": ["!dns"]}"#);
    assert_label_error(&error, "m", "a choice key takes no default");
}

#[test]
fn requirements_must_name_something() {
    let error = nanocloud_error(r#"{"m=a": ["*"]}"#);
    assert_label_error(
        &error,
        "m",
        "requirement \"*\": the required option is empty",
    );
    let error = nanocloud_error(r#"{"m=a": ["*=x"]}"#);
    assert_label_error(&error, "m", "the required option is empty");
    let error = nanocloud_error(r#"{"m=a": ["*nothing"]}"#);
    assert_label_error(
        &error,
        "m",
        "requires option 'nothing', which is neither declared nor imported",
    );
    // On a plain choice a prefixed name is not an import, so it must be declared.
    let error = nanocloud_error(r#"{"m=a": ["*m_port"]}"#);
    assert_label_error(&error, "m", "'m_port'");
    let error = nanocloud_error(r#"{"m=a": ["*t=fast"], "t=tls": [], "t=plain": []}"#);
    assert_label_error(
        &error,
        "m",
        "requires t=\"fast\", which can never hold: must be one of: tls, plain",
    );
}
