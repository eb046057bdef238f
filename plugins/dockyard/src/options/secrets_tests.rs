//! No secret value in any error, `Debug` output or dry run.

use serde_json::json;

use super::fixtures::*;
use super::*;

/// Asserts that none of `secrets` appears in `text`.
fn assert_hidden(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} leaked into {text}");
    }
}

/// Asserts the error hides `secrets` in both its message and its `Debug`.
fn assert_error_hides(error: &ResolveError, secrets: &[&str]) {
    assert_hidden(&error.to_string(), secrets);
    assert_hidden(&format!("{error:?}"), secrets);
    assert!(
        error.to_string().contains(MASK),
        "{error} should show the mask"
    );
}

#[test]
fn the_dry_run_masks_generated_secrets_everywhere() {
    let resolved = resolved(&nanocloud(GITEA_LABEL), &[("port_http", "3000")]);
    let password = resolved
        .value("secret_database_password")
        .unwrap_or_default()
        .to_string();
    assert_eq!(password.len(), 24);
    let masked = resolved.masked();
    assert_hidden(&masked.to_string(), &[&password]);
    assert_hidden(&format!("{resolved:?}"), &[&password]);
    assert_eq!(
        masked,
        json!({
            "options": [
                {"name": "database", "value": "mariadb", "secret": false, "origin": "choice"},
                {"name": "database_user", "value": "gitea", "secret": false, "origin": "default"},
                {"name": "secret_database_password", "value": "<secret>", "secret": true,
                 "origin": "macro"},
                {"name": "port_http", "value": "3000", "secret": false, "origin": "provided"},
                {"name": "database_port", "value": "3306", "secret": false,
                 "origin": "import:mariadb"},
            ],
            "services": [{"option": "database", "service": "mariadb"}],
            "bindings": [{"id": "bindings.create_user", "service": "mariadb",
                          "argv": ["create_user.sh", "gitea", "<secret>"]}],
            "runtime": {
                "ports": [{"option": "port_http", "host_ip": null, "host_port": 3000,
                           "container_ip": null, "container_port": 3000, "protocol": "tcp"}],
                "volumes": [], "secret_env": [], "command": [], "args": [],
            },
            "tls": [],
        })
    );
}

#[test]
fn imported_secrets_are_masked_including_nanocloud_s_missed_prefix() {
    let declared = nanocloud(
        r#"{"db=&mariadb": ["*db_secret_password", "*db_user",
                            "&bindings.login login $db_user $db_secret_password"]}"#,
    );
    let resolved = resolved(&declared, &[]);
    assert_eq!(
        resolved.value("db_secret_password"),
        Some("mariadb-root-pw")
    );
    assert!(
        resolved
            .option("db_secret_password")
            .is_some_and(|option| option.secret)
    );
    assert_eq!(
        resolved.bindings[0].argv(),
        ["login", "root", "mariadb-root-pw"]
    );
    assert_eq!(resolved.bindings[0].shown_argv(), ["login", "root", MASK]);
    assert_hidden(&resolved.masked().to_string(), &["mariadb-root-pw"]);
    assert_hidden(&format!("{resolved:?}"), &["mariadb-root-pw"]);
}

#[test]
fn binding_words_equal_to_a_secret_are_masked() {
    let declared = nanocloud(
        r#"{"db=&mariadb": ["&run literal-pw $copy $secret_pw $other"],
            "secret_pw": [], "copy": [], "other": []}"#,
    );
    let resolved = resolved(
        &declared,
        &[
            ("secret_pw", "literal-pw"),
            ("copy", "literal-pw"),
            ("other", "fine"),
        ],
    );
    let binding = &resolved.bindings[0];
    assert_eq!(
        binding.argv(),
        ["run", "literal-pw", "literal-pw", "literal-pw", "fine"]
    );
    assert_eq!(binding.shown_argv(), ["run", MASK, MASK, MASK, "fine"]);
    // `copy` is not declared secret, but showing it would show the secret.
    assert!(resolved.option("copy").is_some_and(|option| option.secret));
    assert!(
        resolved
            .option("other")
            .is_some_and(|option| !option.secret)
    );
    let masked = resolved.masked();
    assert_eq!(
        masked["bindings"][0]["argv"],
        json!(["run", MASK, MASK, MASK, "fine"])
    );
    assert_hidden(&masked.to_string(), &["literal-pw"]);
    assert_hidden(&format!("{resolved:?}"), &["literal-pw"]);
}

const SECRET_LABEL: &str = r#"{"options": [
  {"name": "token", "type": "secret", "pattern": "[a-f0-9]{8}", "optional": true},
  {"name": "db", "type": "service", "choices": [
    {"service": "mariadb", "requires": ["token=abcdef12"],
     "imports": [{"key": "secret_password", "secret": true}, "user"]},
    {"value": "none"}]},
  {"name": "port_admin", "secret": true, "optional": true}
]}"#;

#[test]
fn type_errors_on_secrets_hide_the_value() {
    let declared = cairn(SECRET_LABEL);
    let error = resolve_error(&declared, &[("db", "none"), ("token", "HUNTER2-not-hex")]);
    assert!(matches!(error, ResolveError::Invalid { .. }), "{error}");
    assert_error_hides(&error, &["HUNTER2-not-hex"]);
}

#[test]
fn conflicting_secret_imports_hide_both_values() {
    let declared = cairn(SECRET_LABEL);
    let error = resolve_error(
        &declared,
        &[
            ("token", "abcdef12"),
            ("db_secret_password", "my-own-secret"),
        ],
    );
    assert!(
        matches!(error, ResolveError::ConflictingImport { .. }),
        "{error}"
    );
    assert_error_hides(&error, &["my-own-secret", "mariadb-root-pw"]);
}

#[test]
fn unmet_requirements_on_secrets_hide_the_current_value() {
    let declared = cairn(SECRET_LABEL);
    let error = resolve_error(&declared, &[("token", "deadbeef")]);
    assert!(
        matches!(error, ResolveError::RequirementNotMet { .. }),
        "{error}"
    );
    assert_error_hides(&error, &["deadbeef", "abcdef12"]);
}

#[test]
fn runtime_errors_on_secrets_hide_the_value() {
    let declared = cairn(SECRET_LABEL);
    let error = resolve_error(&declared, &[("db", "none"), ("port_admin", "s3cr3t-port")]);
    assert!(matches!(error, ResolveError::Runtime { .. }), "{error}");
    assert_error_hides(&error, &["s3cr3t-port"]);

    let resolved = resolved(
        &declared,
        &[("db", "none"), ("port_admin", "127.0.0.1:9999->99")],
    );
    let masked = resolved.masked();
    assert_eq!(masked["runtime"]["ports"], json!([MASK]));
    assert_hidden(&masked.to_string(), &["9999", "127.0.0.1"]);
}

#[test]
fn errors_hide_values_that_equal_a_secret() {
    let declared = cairn(
        r#"{"options": [{"name": "key", "type": "secret"},
                        {"name": "count", "type": "integer"}]}"#,
    );
    let error = resolve_error(&declared, &[("key", "same-text"), ("count", "same-text")]);
    assert!(matches!(error, ResolveError::Invalid { .. }), "{error}");
    assert_error_hides(&error, &["same-text"]);
}

#[test]
fn a_secret_outside_the_choices_is_hidden() {
    let declared = nanocloud(r#"{"secret_mode=a": [], "secret_mode=b": []}"#);
    let error = resolve_error(&declared, &[("secret_mode", "topsecretvalue")]);
    assert!(matches!(error, ResolveError::NotAChoice { .. }), "{error}");
    assert_error_hides(&error, &["topsecretvalue"]);
}

#[test]
fn given_secrets_never_reach_the_dry_run() {
    let declared = cairn(SECRET_LABEL);
    let resolved = resolved(&declared, &[("token", "abcdef12")]);
    let masked = resolved.masked().to_string();
    assert_hidden(&masked, &["abcdef12", "mariadb-root-pw"]);
    assert!(
        masked.contains("\"db_user\",\"origin\":\"import:mariadb\""),
        "{masked}"
    );
}
