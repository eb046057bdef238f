//! Resolution: Nanocloud's order, every error, and both label forms giving
//! the same result.

use super::fixtures::*;
use super::*;

fn origin_of(resolved: &Resolved, name: &str) -> Origin {
    match resolved.option(name) {
        Some(option) => option.origin.clone(),
        None => panic!("{name} should have a value"),
    }
}

#[test]
fn gitea_resolves_with_its_first_choice_and_mariadb_installed() {
    let resolved = resolved(&nanocloud(GITEA_LABEL), &[]);
    let names: Vec<&str> = resolved
        .options
        .iter()
        .map(|option| option.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "database",
            "database_user",
            "secret_database_password",
            "database_port"
        ],
        "declared options in order, then imports; optional port_http stays unset"
    );
    assert_eq!(resolved.value("database"), Some("mariadb"));
    assert_eq!(origin_of(&resolved, "database"), Origin::Choice);
    assert_eq!(resolved.value("database_user"), Some("gitea"));
    assert_eq!(origin_of(&resolved, "database_user"), Origin::Default);
    assert_eq!(resolved.value("database_port"), Some("3306"));
    let import = Origin::Import {
        service: "mariadb".into(),
    };
    assert_eq!(origin_of(&resolved, "database_port"), import);

    let password = match resolved.option("secret_database_password") {
        Some(password) => password,
        None => panic!("the password should be generated"),
    };
    assert!(password.secret);
    assert_eq!(password.origin, Origin::Macro);
    assert_eq!(password.value.len(), 24);
    assert!(password.value.bytes().all(|byte| byte.is_ascii_lowercase()));

    let service = RequiredService {
        option: "database".into(),
        service: "mariadb".into(),
        on_restart: OnRestart::Restart,
    };
    assert_eq!(resolved.services, [service]);
    assert_eq!(resolved.bindings.len(), 1);
    let binding = &resolved.bindings[0];
    assert_eq!(binding.id, "bindings.create_user");
    assert_eq!(binding.service, "mariadb");
    assert_eq!(
        binding.argv(),
        ["create_user.sh", "gitea", password.value.as_str()]
    );
    assert_eq!(binding.shown_argv(), ["create_user.sh", "gitea", MASK]);
    assert_eq!(resolved.runtime, RuntimeSpec::default());
    assert!(resolved.tls.is_empty());
}

#[test]
fn a_plain_choice_needs_no_provider() {
    let declared = nanocloud(GITEA_LABEL);
    let provided = map(&[("database", "sqlite"), ("port_http", "8080")]);
    let resolved = match resolve(&declared, &provided, &no_providers(), &mut FakeEnv::new()) {
        Ok(resolved) => resolved,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(origin_of(&resolved, "database"), Origin::Provided);
    assert!(resolved.services.is_empty() && resolved.bindings.is_empty());
    assert_eq!(resolved.value("database_port"), None);
    assert_eq!(resolved.runtime.ports.len(), 1);
    assert_eq!(resolved.runtime.ports[0].container_port, 8080);
}

#[test]
fn the_real_fixture_resolves_its_macros_and_runtime_options() {
    let resolved = resolved(&nanocloud(REAL_LABEL), &[]);
    assert_eq!(resolved.value("macro_dns"), Some(NAMESERVER));
    assert_eq!(
        resolved.value("macro_tls"),
        Some("/var/run/nanocloud.io/tls/cert.pem")
    );
    let random = resolved.value("macro_rand").unwrap_or_default();
    assert_eq!(random.len(), 16, "8 bytes as hex");
    assert_eq!(origin_of(&resolved, "macro_rand"), Origin::Macro);
    assert_eq!(resolved.runtime.command, ["/bin/sh"]);
    assert_eq!(
        resolved.runtime.args,
        ["echo", "conformance"],
        "the last default wins"
    );
    assert_eq!(resolved.tls, [TlsPart::Cert]);
}

/// Choices, imports and defaults feeding `!if` and requirements.
const ORDER_LABEL: &str = r#"{
  "transport=tls": [], "transport=plain": [],
  "db=&mariadb": ["*db_engine", "*db_port", "*cache_size"], "db=none": [],
  "plain_default": ["x"],
  "?cache_size": ["64"],
  "tls_flag": ["!if transport=tls on off"],
  "engine_flag": ["!if db_engine=innodb yes no"],
  "default_flag": ["!if plain_default=x seen unseen"],
  "?given": [],
  "given_flag": ["!if given=1 yes no"]
}"#;

#[test]
fn if_sees_given_chosen_and_imported_options_but_not_defaults() {
    let declared = nanocloud(ORDER_LABEL);
    let resolved = resolved(&declared, &[("given", "1")]);
    assert_eq!(resolved.value("tls_flag"), Some("on"), "chosen by default");
    assert_eq!(resolved.value("engine_flag"), Some("yes"), "imported");
    assert_eq!(resolved.value("given_flag"), Some("yes"), "given");
    assert_eq!(resolved.value("plain_default"), Some("x"));
    assert_eq!(
        resolved.value("default_flag"),
        Some("unseen"),
        "defaults are invisible"
    );

    let resolved = super::fixtures::resolved(&declared, &[("transport", "plain"), ("db", "none")]);
    assert_eq!(resolved.value("tls_flag"), Some("off"));
    assert_eq!(resolved.value("engine_flag"), Some("no"));
    assert_eq!(
        resolved.value("given_flag"),
        Some("no"),
        "missing compares unequal"
    );
}

#[test]
fn a_chosen_choice_requires_and_imports() {
    let declared = nanocloud(ORDER_LABEL);
    let resolved = resolved(&declared, &[]);
    assert_eq!(resolved.value("db_engine"), Some("innodb"));
    assert_eq!(resolved.value("db_port"), Some("3306"));
    // Optional, but required by db=mariadb: defaulted.
    assert_eq!(resolved.value("cache_size"), Some("64"));
    assert_eq!(origin_of(&resolved, "cache_size"), Origin::Default);
    let resolved = super::fixtures::resolved(&declared, &[("db", "none")]);
    assert_eq!(
        resolved.value("cache_size"),
        None,
        "nothing requires it now"
    );
    assert_eq!(resolved.value("db_port"), None);
}

#[test]
fn value_requirements_count_given_and_chosen_values_only() {
    let declared = nanocloud(
        r#"{"mode=strict": ["*level=high"], "mode=lax": [], "level=low": [], "level=high": []}"#,
    );
    let error = resolve_error(&declared, &[]);
    assert_eq!(
        error.to_string(),
        "option mode=strict requires level=\"high\", but level is \"low\" (defaults do not count: \
         give it explicitly)"
    );
    resolved(&declared, &[("level", "high")]);
    resolved(&declared, &[("mode", "lax")]);

    let declared =
        nanocloud(r#"{"mode=strict": ["*level=high"], "mode=lax": [], "level": ["high"]}"#);
    let error = resolve_error(&declared, &[]);
    assert!(
        matches!(&error, ResolveError::RequirementNotMet { found, .. } if found == "unset"),
        "{error}"
    );
    resolved(&declared, &[("level", "high")]);
}

#[test]
fn a_required_option_without_value_or_default_is_an_error() {
    let declared = nanocloud(r#"{"needed": [], "?spare": []}"#);
    let error = resolve_error(&declared, &[]);
    assert_eq!(
        error.to_string(),
        "option 'needed' is required but has no value and no default"
    );
    resolved(&declared, &[("needed", "x")]);

    let declared = nanocloud(r#"{"m=a": ["*extra"], "?extra": []}"#);
    let error = resolve_error(&declared, &[]);
    assert_eq!(
        error.to_string(),
        "option 'extra' is required (m=a requires it) but has no value and no default"
    );

    let declared = nanocloud(r#"{"db=&mariadb": ["*db_nothing"]}"#);
    let error = resolve_error(&declared, &[]);
    assert_eq!(
        error,
        ResolveError::MissingRequired {
            option: "db_nothing".into(),
            reason: Some("db=mariadb requires it; provider 'mariadb' has no 'nothing'".into()),
        }
    );
    // Declared as well: its default stands in for the missing import.
    let declared = nanocloud(r#"{"db=&mariadb": ["*db_nothing"], "db_nothing": ["fallback"]}"#);
    assert_eq!(
        resolved(&declared, &[]).value("db_nothing"),
        Some("fallback")
    );
}

#[test]
fn a_value_outside_the_choices_is_an_error() {
    let error = resolve_error(&nanocloud(GITEA_LABEL), &[("database", "postgres")]);
    assert_eq!(
        error.to_string(),
        "invalid value for 'database': \"postgres\" is not one of: mariadb, sqlite"
    );
}

#[test]
fn a_chosen_service_must_be_installed() {
    let declared = nanocloud(GITEA_LABEL);
    let error = resolve(&declared, &map(&[]), &no_providers(), &mut FakeEnv::new());
    assert_eq!(
        error,
        Err(ResolveError::MissingProvider {
            option: "database".into(),
            service: "mariadb".into(),
        })
    );
}

#[test]
fn imports_win_over_nothing_and_conflict_with_a_different_given_value() {
    let declared = nanocloud(GITEA_LABEL);
    let resolved = resolved(&declared, &[("database_port", "3306")]);
    assert_eq!(origin_of(&resolved, "database_port"), Origin::Provided);
    let error = resolve_error(&declared, &[("database_port", "3307")]);
    assert_eq!(
        error.to_string(),
        "option 'database_port' is \"3307\" here but provider 'mariadb' has \"3306\": leave it \
         unset to take the provider's value"
    );
}

#[test]
fn options_nobody_declares_are_refused() {
    let declared = nanocloud(GITEA_LABEL);
    let error = resolve_error(
        &declared,
        &[("typo", "1"), ("also", "2"), ("database_user", "u")],
    );
    assert_eq!(error.to_string(), "unknown option(s): also, typo");
    // An import is known only when its choice is taken.
    let error = resolve_error(&declared, &[("database", "sqlite"), ("database_port", "1")]);
    assert_eq!(
        error,
        ResolveError::UnknownOptions {
            names: vec!["database_port".into()]
        }
    );
}

const TYPED_LABEL: &str = r#"{"options": [
  {"name": "workers", "type": "integer", "min": 1, "max": 64, "default": "4"},
  {"name": "port", "type": "port", "default": "5432"},
  {"name": "debug", "type": "boolean", "default": "false"},
  {"name": "data", "type": "path", "default": "/data"},
  {"name": "mode", "type": "enum", "values": ["a", "b"]},
  {"name": "slug", "pattern": "[a-z][a-z0-9-]*", "default": "app"}
]}"#;

#[test]
fn every_value_is_checked_against_its_type() {
    let declared = cairn(TYPED_LABEL);
    let resolved = resolved(&declared, &[("workers", "64"), ("slug", "my-app")]);
    assert_eq!(resolved.value("mode"), Some("a"));
    assert_eq!(resolved.value("port"), Some("5432"));
    let cases = [
        (
            "workers",
            "0",
            "option 'workers': \"0\" is not valid: must be from 1 to 64",
        ),
        ("workers", "65", "must be from 1 to 64"),
        ("workers", "many", "must be a decimal integer"),
        (
            "port",
            "70000",
            "option 'port': \"70000\" is not valid: must be a port number, 1 to 65535",
        ),
        ("port", "0", "must be a port number"),
        ("debug", "yes", "must be true or false"),
        ("data", "data", "must be an absolute path"),
        ("data", "/srv/../etc", "must not contain '..' components"),
        (
            "slug",
            "Bad_Slug",
            "must match the pattern \"[a-z][a-z0-9-]*\"",
        ),
        ("slug", "app!", "must match the pattern"),
        (
            "mode",
            "c",
            "invalid value for 'mode': \"c\" is not one of: a, b",
        ),
    ];
    for (name, value, needle) in cases {
        let error = resolve_error(&declared, &[(name, value)]);
        assert!(
            error.to_string().contains(needle),
            "{name}={value}: {error}"
        );
    }
}

#[test]
fn an_import_into_a_typed_option_is_checked_too() {
    let declared = cairn(
        r#"{"options": [
          {"name": "db", "type": "service", "choices": [{"service": "mariadb", "imports": ["user"]}]},
          {"name": "db_user", "type": "integer", "optional": true}]}"#,
    );
    let error = resolve_error(&declared, &[]);
    assert_eq!(
        error.to_string(),
        "option 'db_user': \"root\" is not valid: must be a decimal integer"
    );
}

#[test]
fn a_failing_macro_names_the_option_and_the_macro() {
    let declared = nanocloud(REAL_LABEL);
    let mut env = FakeEnv::new();
    env.no_nameserver = true;
    let error = resolve(&declared, &map(&[]), &providers(), &mut env);
    assert_eq!(
        error.map_err(|error| error.to_string()),
        Err("option 'macro_dns': !dns failed: no nameserver in /etc/resolv.conf".to_string())
    );
    // Given, the macro is not evaluated at all.
    let given = map(&[("macro_dns", "9.9.9.9")]);
    assert!(resolve(&declared, &given, &providers(), &mut env).is_ok());
}

#[test]
fn bindings_substitute_whole_words_only() {
    let declared = nanocloud(
        r#"{"db=&mariadb": ["*db_port", "&init $db_port $nothing $ x$user plain",
                            "&bindings.grant grant $user"],
            "user": ["app"]}"#,
    );
    let resolved = resolved(&declared, &[]);
    let bindings: Vec<(&str, Vec<&str>)> = resolved
        .bindings
        .iter()
        .map(|binding| (binding.id.as_str(), binding.argv()))
        .collect();
    assert_eq!(
        bindings,
        [
            (
                "mariadb#0",
                vec!["init", "3306", "$nothing", "$", "x$user", "plain"]
            ),
            ("bindings.grant", vec!["grant", "app"]),
        ]
    );
}

#[test]
fn given_values_are_not_regenerated() {
    let declared = nanocloud(GITEA_LABEL);
    let first = resolved(&declared, &[]);
    // Feeding the profile back, as a reconcile would, changes nothing.
    let profile = first.profile();
    let again = match resolve(&declared, &profile, &providers(), &mut FakeEnv::new()) {
        Ok(again) => again,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(again.profile(), profile);
    assert!(
        again
            .options
            .iter()
            .all(|option| option.origin == Origin::Provided)
    );
}

#[test]
fn both_label_forms_resolve_to_the_same_result() {
    let from_nanocloud = nanocloud(GITEA_LABEL);
    let from_cairn = cairn(GITEA_CAIRN_LABEL);
    for provided in [
        vec![],
        vec![("database", "sqlite")],
        vec![
            ("port_http", "127.0.0.1:8080->3000/tcp"),
            ("database_user", "git"),
        ],
        vec![("database", "mariadb"), ("database_port", "3306")],
    ] {
        assert_eq!(
            resolved(&from_nanocloud, &provided),
            resolved(&from_cairn, &provided)
        );
    }
    for provided in [
        vec![("database", "pg")],
        vec![("nope", "1")],
        vec![("port_http", "x")],
    ] {
        assert_eq!(
            resolve_error(&from_nanocloud, &provided),
            resolve_error(&from_cairn, &provided)
        );
    }
}
