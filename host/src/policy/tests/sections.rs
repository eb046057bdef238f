//! The [plugin], [limits], [config] and [grants] sections.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn full_example() {
    let p = parse(FULL).unwrap();
    assert_eq!(p.plugin.name, "counter");
    assert_eq!(p.plugin.signers, ["dev", "release"]);
    assert_eq!(p.plugin.description.as_deref(), Some("Counts things"));
    assert_eq!(
        p.limits,
        Limits {
            memory: 64 << 20,
            call_timeout: Duration::from_millis(250),
            reply_wait: Duration::from_secs(30),
            restart_backoff: Duration::from_secs(2),
            restart_backoff_max: Duration::from_secs(120),
            soak: Duration::from_secs(45),
            soak_max_faults: 5,
        }
    );
    assert_eq!(
        p.config,
        json!({
            "greeting": "hi", "count": 3, "ratio": 0.5, "on": true,
            "when": "1979-05-27T07:32:00Z", "list": [1, "two"], "nested": {"deep": {"x": 1}},
        })
    );
    assert_eq!(p.grants.keys().collect::<Vec<_>>(), ["events", "kv", "log"]);
    let log = p.grant("log").unwrap();
    assert_eq!(
        (log.name.as_str(), log.line, log.value.len()),
        ("log", 24, 0)
    );
    assert_eq!(p.grant("kv").unwrap().line, 26);
    assert_eq!(
        p.grant("kv").unwrap().value["quota"].as_str(),
        Some("64KiB")
    );
    assert_eq!(p.grant("events").unwrap().line, 29);
    assert!(p.is_granted("log") && !p.is_granted("timer"));
    assert!(p.grant("timer").is_none());
    assert_eq!(p.path.as_deref(), Some(Path::new("counter.toml")));
}

#[test]
fn defaults() {
    let p = Policy::parse(HEAD, None).unwrap();
    assert_eq!(p.limits, Limits::default());
    assert_eq!(p.limits.memory, 32 << 20);
    assert_eq!(p.limits.call_timeout, Duration::from_secs(5));
    assert_eq!(p.limits.restart_backoff, Duration::from_secs(1));
    assert_eq!(p.limits.restart_backoff_max, Duration::from_secs(60));
    assert_eq!(p.limits.soak, Duration::from_secs(30));
    assert_eq!(p.limits.soak_max_faults, 3);
    assert_eq!(p.config, json!({}));
    assert!(p.grants.is_empty());
    assert_eq!(p.plugin.description, None);
    assert_eq!(p.path, None);
    // Empty sections are the same as absent ones.
    let p = parse(&with("[limits]\n[config]\n[grants]\n")).unwrap();
    assert_eq!(p.limits, Limits::default());
    assert_eq!(p.config, json!({}));
}

#[test]
fn reply_wait_is_bounded() {
    let p = parse(&with("[limits]\nreply-wait = \"15m\"\n")).unwrap();
    assert_eq!(p.limits.reply_wait, Duration::from_secs(900));
    for wrong in ["500ms", "2h"] {
        let e = err(&with(&format!("[limits]\nreply-wait = \"{wrong}\"\n")));
        assert!(e.to_string().contains("reply-wait"), "{e}");
    }
}

#[test]
fn other_toml_shapes() {
    let text = "plugin = { name = \"counter\", signers = [\"dev\"] }\nlimits.memory = 2097152\ngrants.kv = { quota = 10 }\n";
    let p = parse(text).unwrap();
    assert_eq!(p.limits.memory, 2 << 20);
    assert_eq!(p.grant("kv").unwrap().line, 3);
    let p = parse(&with("[grants]\nlog = {}\ntimer = { max-timers = 2 }\n")).unwrap();
    assert_eq!(p.grant("log").unwrap().line, 5);
    assert_eq!(p.grant("timer").unwrap().line, 6);
}

#[test]
fn broken_toml() {
    let e = err("[plugin]\nname = \"counter\"\nsigners = [\"dev\"\n");
    assert!(matches!(e, PolicyError::Syntax { .. }), "{e:?}");
    assert_eq!(position(&e).0, 3);
    let e = err("[plugin\n");
    assert!(e.to_string().starts_with("counter.toml:1:"), "{e}");
    assert!(e.to_string().contains("invalid TOML"), "{e}");
    let e = err(&with("[limits]\nmemory = \"1MiB\"\nmemory = \"2MiB\"\n"));
    assert!(matches!(e, PolicyError::Syntax { .. }), "{e:?}");
    assert_eq!(position(&e).0, 6);
}

#[test]
fn unknown_keys_name_key_section_and_line() {
    let cases = [
        (format!("\nfoo = 1\n{HEAD}"), "foo", "the top level", (2, 1)),
        (
            with("[pluginz]\nx = 1\n"),
            "pluginz",
            "the top level",
            (4, 2),
        ),
        (
            "[plugin]\nname = \"counter\"\n  signer = [\"dev\"]\n".to_string(),
            "signer",
            "[plugin]",
            (3, 3),
        ),
        (
            with("[limits]\nmemory = \"2MiB\"\nmemroy = \"2MiB\"\n"),
            "memroy",
            "[limits]",
            (6, 1),
        ),
        (
            format!("limits.timeout = \"1s\"\n{HEAD}"),
            "timeout",
            "[limits]",
            (1, 8),
        ),
        (with("grants.kv = {}\n"), "grants", "[plugin]", (4, 1)),
    ];
    for (text, key, section, pos) in cases {
        match err(&text) {
            e @ PolicyError::UnknownKey { .. } => {
                let PolicyError::UnknownKey {
                    key: k, section: s, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(
                    (k.as_str(), s.as_str(), position(&e)),
                    (key, section, pos),
                    "{text}"
                );
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(
        err(&with("[limits]\nmemroy = 1\n")).to_string(),
        "counter.toml:5:1: unknown key `memroy` in [limits] (allowed: memory, call-timeout, \
         reply-wait, restart-backoff, restart-backoff-max, soak, soak-max-faults)"
    );
    // Keys in [config] are free-form.
    assert!(parse(&with("[config]\nanything = 1\n")).is_ok());
}

#[test]
fn bad_sizes() {
    let (msg, pos) = invalid(&with("[limits]\nmemory = \"32mb\"\n"));
    assert_eq!(pos, (5, 10));
    assert!(
        msg.contains("[limits] memory: invalid size \"32mb\""),
        "{msg}"
    );
    for bad in [
        "\"512KiB\"",
        "\"5GiB\"",
        "-1",
        "1048575",
        "true",
        "\"1.5MiB\"",
        "\"\"",
    ] {
        let (msg, pos) = invalid(&with(&format!("[limits]\nmemory = {bad}\n")));
        assert_eq!(pos.0, 5, "{bad}: {msg}");
        assert!(msg.contains("[limits] memory"), "{msg}");
    }
    assert!(
        invalid(&with("[limits]\nmemory = \"512KiB\"\n"))
            .0
            .contains("between 1MiB and 4GiB, found 512KiB")
    );
    for ok in ["\"1MiB\"", "\"4GiB\"", "1048576", "\"2MB\"", "\"1 GiB\""] {
        assert!(
            parse(&with(&format!("[limits]\nmemory = {ok}\n"))).is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn bad_durations() {
    let (msg, pos) = invalid(&with("[limits]\ncall-timeout = \"5 parsecs\"\n"));
    assert_eq!(pos, (5, 16));
    assert!(
        msg.contains("[limits] call-timeout: invalid duration"),
        "{msg}"
    );
    let (msg, _) = invalid(&with("[limits]\nsoak = 30\n"));
    assert!(
        msg.contains("must be a duration string such as \"5s\", found integer"),
        "{msg}"
    );
    for (key, bad) in [
        ("call-timeout", "9ms"),
        ("call-timeout", "11m"),
        ("restart-backoff", "0s"),
        ("restart-backoff", "2h"),
        ("restart-backoff-max", "2d"),
        ("soak", "25h"),
    ] {
        let (msg, _) = invalid(&with(&format!("[limits]\n{key} = \"{bad}\"\n")));
        assert!(
            msg.contains(&format!("[limits] {key} must be between")),
            "{msg}"
        );
    }
    let p = parse(&with("[limits]\ncall-timeout = \"10ms\"\nsoak = \"0s\"\n")).unwrap();
    assert_eq!(p.limits.call_timeout, Duration::from_millis(10));
    assert_eq!(p.limits.soak, Duration::ZERO);
    assert!(parse(&with("[limits]\ncall-timeout = \"10m\"\n")).is_ok());
}

#[test]
fn backoff_max_below_backoff() {
    let (msg, pos) = invalid(&with(
        "[limits]\nrestart-backoff-max = \"1s\"\nrestart-backoff = \"5s\"\n",
    ));
    assert_eq!(pos.0, 5);
    assert!(
        msg.contains("restart-backoff-max (1s) must not be less than restart-backoff (5s)"),
        "{msg}"
    );
    // Against the default cap of 60s, pointing at the backoff.
    let (msg, pos) = invalid(&with("[limits]\n\nrestart-backoff = \"2m\"\n"));
    assert_eq!(pos.0, 6);
    assert!(
        msg.contains("restart-backoff (2m) is above the default restart-backoff-max (1m)"),
        "{msg}"
    );
    assert!(
        parse(&with(
            "[limits]\nrestart-backoff = \"5s\"\nrestart-backoff-max = \"5s\"\n"
        ))
        .is_ok()
    );
}

#[test]
fn soak_max_faults() {
    for bad in ["0", "-1", "4294967296", "\"3\"", "1.0"] {
        let (msg, pos) = invalid(&with(&format!("[limits]\nsoak-max-faults = {bad}\n")));
        assert_eq!(pos.0, 5, "{bad}");
        assert!(msg.contains("soak-max-faults"), "{msg}");
    }
    assert_eq!(
        parse(&with("[limits]\nsoak-max-faults = 1\n"))
            .unwrap()
            .limits
            .soak_max_faults,
        1
    );
}

#[test]
fn plugin_section_errors() {
    let (msg, pos) = invalid("[plugin]\nname = \"counter\"\nsigners = []\n");
    assert_eq!(pos, (3, 11));
    assert!(msg.contains("signers is empty"), "{msg}");
    let (msg, pos) = invalid("[plugin]\nname = \"counter\"\n");
    assert_eq!(pos.0, 1);
    assert!(msg.contains("missing the required key `signers`"), "{msg}");
    let (msg, _) = invalid("[plugin]\nsigners = [\"dev\"]\n");
    assert!(msg.contains("missing the required key `name`"), "{msg}");
    let (msg, pos) = invalid("[limits]\n");
    assert_eq!(msg, "counter.toml: missing the required [plugin] section");
    assert_eq!(pos, (0, 0));
    for bad in [
        "\"Counter\"",
        "\"1x\"",
        "\"a_b\"",
        "\"\"",
        "5",
        &format!("\"{}\"", "a".repeat(65)),
    ] {
        let (msg, pos) = invalid(&format!("[plugin]\nname = {bad}\nsigners = [\"dev\"]\n"));
        assert_eq!(pos, (2, 8), "{msg}");
    }
    for bad in [
        "\"dev\"",
        "[\"dev\", \"dev\"]",
        "[\"\"]",
        "[\" dev\"]",
        "[1]",
    ] {
        let (msg, pos) = invalid(&format!("[plugin]\nname = \"counter\"\nsigners = {bad}\n"));
        assert_eq!(pos.0, 3, "{bad}: {msg}");
    }
    let (msg, _) = invalid("[plugin]\nname = \"counter\"\nsigners = [\"a\"]\ndescription = 3\n");
    assert!(
        msg.contains("description must be a string, found integer"),
        "{msg}"
    );
    let (msg, _) = invalid("plugin = 3\n");
    assert!(
        msg.contains("[plugin] must be a table, found integer"),
        "{msg}"
    );
    let (msg, _) = invalid("[[plugin]]\nname = \"counter\"\n");
    assert!(msg.contains("found an array of tables"), "{msg}");
}

#[test]
fn config_and_grant_shape_errors() {
    let (msg, _) = invalid(&format!("config = 3\n{HEAD}"));
    assert!(msg.contains("[config] must be a table"), "{msg}");
    let (msg, _) = invalid(&with("[config]\nx = nan\n"));
    assert!(
        msg.contains("config.x: NaN cannot be represented in JSON"),
        "{msg}"
    );
    let (msg, pos) = invalid(&with("[grants]\nlog = true\n"));
    assert_eq!(pos.0, 5);
    assert!(
        msg.contains("[grants.log] must be a table, found boolean"),
        "{msg}"
    );
    let (msg, _) = invalid(&with("[[grants.kv]]\nquota = 1\n"));
    assert!(
        msg.contains("[grants.kv] must be a table, found an array of tables"),
        "{msg}"
    );
    let (msg, pos) = invalid(&with("[grants.Log]\n"));
    assert_eq!(pos, (4, 9));
    assert!(msg.contains("capability name"), "{msg}");
    let (msg, _) = invalid(&format!("grants = []\n{HEAD}"));
    assert!(
        msg.contains("[grants] must be a table, found array"),
        "{msg}"
    );
}
