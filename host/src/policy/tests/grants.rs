//! GrantSlice::parse with typed grants and the serde helpers.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::*;

// The real grants: policy parsing is tested with what capabilities use.
pub(super) use crate::caps::events::EventsGrant;
pub(super) use crate::caps::kv::KvGrant;
use crate::caps::system::SystemGrant;
use crate::caps::timer::TimerGrant;

#[test]
fn grant_slices_parse_into_typed_grants() {
    let p = parse(FULL).unwrap();
    assert_eq!(
        p.grant("kv").unwrap().parse::<KvGrant>().unwrap().quota,
        64 << 10
    );
    let events: EventsGrant = p.grant("events").unwrap().parse().unwrap();
    assert_eq!(events.publish, [TopicPattern::parse("counter/#").unwrap()]);
    assert!(events.subscribe[0].matches("sensors/kitchen/temp"));
    let p = parse(&with(
        "[grants.kv]\n[grants.timer]\nmax-timers = 4\nmin-interval = \"250ms\"\n",
    ))
    .unwrap();
    assert_eq!(
        p.grant("kv").unwrap().parse::<KvGrant>().unwrap().quota,
        1 << 20
    );
    let timer = p.grant("timer").unwrap().parse::<TimerGrant>().unwrap();
    assert_eq!(
        (timer.max_timers, timer.min_interval),
        (4, Duration::from_millis(250))
    );
    let p = parse(&with("[grants.system]\n")).unwrap();
    assert!(p.grant("system").unwrap().parse::<SystemGrant>().is_ok());
}

fn grant_err<G: serde::de::DeserializeOwned + std::fmt::Debug>(
    text: &str,
    grant: &str,
) -> PolicyError {
    let p = parse(text).unwrap();
    match p.grant(grant).unwrap().parse::<G>() {
        Ok(g) => panic!("expected an error, got {g:?}"),
        Err(e) => e,
    }
}

fn grant_key(e: &PolicyError) -> (&str, Option<&str>) {
    match e {
        PolicyError::Grant { grant, key, .. } => (grant, key.as_deref()),
        other => panic!("expected a grant error, got {other:?}"),
    }
}

#[test]
fn grant_errors_name_file_grant_key_and_line() {
    let e = grant_err::<KvGrant>(&with("[grants.kv]\nquota = \"1MiB\"\nqouta = 5\n"), "kv");
    assert_eq!(grant_key(&e), ("kv", Some("qouta")));
    assert_eq!(position(&e), (6, 1));
    assert_eq!(e.file(), Some(Path::new("counter.toml")));
    assert!(
        e.to_string().starts_with(
            "counter.toml:6:1: in [grants.kv], key `qouta`: unknown key `qouta`, expected `quota`"
        ),
        "{e}"
    );

    let e = grant_err::<KvGrant>(&with("[grants.kv]\nquota = \"64 kilobytes\"\n"), "kv");
    assert_eq!(grant_key(&e), ("kv", Some("quota")));
    assert_eq!(position(&e), (5, 9));
    assert!(
        e.to_string().contains("invalid size \"64 kilobytes\""),
        "{e}"
    );

    let e = grant_err::<KvGrant>(&with("[grants.kv]\nquota = -5\n"), "kv");
    assert!(e.to_string().contains("must not be negative"), "{e}");

    let e = grant_err::<TimerGrant>(&with("[grants.timer]\nmin-interval = \"soon\"\n"), "timer");
    assert_eq!(
        (grant_key(&e), position(&e).0),
        (("timer", Some("min-interval")), 5)
    );

    let text = with(
        "[grants.events]\npublish = [\"a/#\"]\nsubscribe = [\n  \"ok/+\",\n  \"bad//x\",\n]\n",
    );
    let e = grant_err::<EventsGrant>(&text, "events");
    // Errors inside an array point at the array.
    assert_eq!(
        (grant_key(&e), position(&e)),
        (("events", Some("subscribe")), (6, 13))
    );
    assert!(e.to_string().contains("empty level"), "{e}");

    let e = grant_err::<SystemGrant>(&with("\n[grants.system]\nfull = true\n"), "system");
    assert_eq!(
        (grant_key(&e), position(&e).0),
        (("system", Some("full")), 6)
    );

    // Inline tables point into the line too.
    let e = grant_err::<KvGrant>(&format!("grants.kv = {{ quota = 1, x = 2 }}\n{HEAD}"), "kv");
    assert_eq!((grant_key(&e), position(&e)), (("kv", Some("x")), (1, 26)));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Needs {
    level: String,
}

#[test]
fn grant_missing_field_and_built_slices() {
    let e = grant_err::<Needs>(&with("\n[grants.log]\n"), "log");
    assert_eq!(grant_key(&e), ("log", Some("level")));
    assert_eq!(position(&e).0, 5);
    assert!(e.to_string().contains("missing field `level`"), "{e}");

    let mut table = toml::Table::new();
    table.insert("quota".into(), toml::Value::String("2KiB".into()));
    let g = GrantSlice::new("kv", table.clone());
    assert_eq!(g.parse::<KvGrant>().unwrap().quota, 2048);
    table.insert("bogus".into(), toml::Value::Boolean(true));
    let e = GrantSlice::new("kv", table).parse::<KvGrant>().unwrap_err();
    assert_eq!(grant_key(&e), ("kv", Some("bogus")));
    assert!(
        e.to_string()
            .starts_with("<policy>:0:0: in [grants.kv], key `bogus`"),
        "{e}"
    );
}

#[test]
fn known_grants() {
    let p = parse(&with("[grants.log]\n[grants.kv]\n[grants.teleport]\n")).unwrap();
    assert!(p.check_known_grants(&["log", "kv", "teleport"]).is_ok());
    let e = p.check_known_grants(&["log", "kv"]).unwrap_err();
    assert!(matches!(&e, PolicyError::UnknownKey { key, .. } if key == "teleport"));
    assert_eq!(position(&e), (6, 9));
    assert!(
        e.to_string()
            .contains("unknown key `teleport` in [grants] (allowed: log, kv)"),
        "{e}"
    );
}

#[test]
fn edited_values_are_what_gets_parsed() {
    let mut p = parse(&with("[grants.kv]\nquota = \"1KiB\"\n")).unwrap();
    let kv = p.grants.get_mut("kv").unwrap();
    kv.value
        .insert("quota".into(), toml::Value::String("2KiB".into()));
    assert_eq!(kv.parse::<KvGrant>().unwrap().quota, 2048);
    kv.value.insert("extra".into(), toml::Value::Integer(1));
    let e = kv.parse::<KvGrant>().unwrap_err();
    // No position inside the file any more: the grant's own line is used.
    assert_eq!(
        (grant_key(&e), position(&e)),
        (("kv", Some("extra")), (4, 9))
    );
}
