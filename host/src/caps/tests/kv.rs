//! `cairn:host/kv` through the bench: a private namespace, the quota, denials.

use crate::caps::bench::{Bench, assert_denied};
use crate::caps::kv::Kv;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::kv::Host as _;

#[tokio::test]
async fn values_round_trip_and_are_listed_by_prefix() {
    let mut bench = Bench::new("[grants.kv]");
    let mut kv = bench.view::<Kv>();
    kv.set("config/a".into(), b"1".to_vec()).await.unwrap();
    kv.set("config/b".into(), b"2".to_vec()).await.unwrap();
    kv.set("other".into(), b"3".to_vec()).await.unwrap();
    assert_eq!(
        kv.get("config/a".into()).await.unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(kv.get("missing".into()).await.unwrap(), None);
    assert_eq!(
        kv.list_keys("config/".into()).await.unwrap(),
        ["config/a", "config/b"]
    );
    assert!(kv.delete("config/a".into()).await.unwrap());
    assert!(!kv.delete("config/a".into()).await.unwrap());
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn writes_beyond_the_quota_are_refused_and_change_nothing() {
    let mut bench = Bench::new("[grants.kv]\nquota = \"16B\"");
    let mut kv = bench.view::<Kv>();
    kv.set("k".into(), b"0123456789".to_vec()).await.unwrap();
    let refused = kv.set("k2".into(), b"0123456789".to_vec()).await;
    assert!(
        matches!(refused, Err(CapError::QuotaExceeded(_))),
        "{refused:?}"
    );
    assert_eq!(kv.get("k2".into()).await.unwrap(), None);
    assert_eq!(
        kv.get("k".into()).await.unwrap(),
        Some(b"0123456789".to_vec())
    );
    // A quota is not a denial.
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn bad_keys_are_invalid_not_denied() {
    let mut bench = Bench::new("[grants.kv]");
    let refused = bench.view::<Kv>().set(String::new(), b"x".to_vec()).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn without_the_grant_every_call_is_denied_audited_and_counted() {
    let mut bench = Bench::new("");
    let mut kv = bench.view::<Kv>();
    assert_denied(kv.get("a".into()).await, "no [grants.kv]");
    assert_denied(kv.set("a".into(), vec![]).await, "no [grants.kv]");
    assert_denied(kv.delete("a".into()).await, "no [grants.kv]");
    assert_denied(kv.list_keys(String::new()).await, "no [grants.kv]");
    assert_eq!(bench.denials(), 4);
    let audit = bench.shared.audit.recent();
    assert_eq!(audit.len(), 4);
    assert!(
        audit[0].contains("plugin=bench capability=kv denied"),
        "{audit:?}"
    );
}

#[test]
fn the_quota_is_a_size() {
    assert!(crate::caps::bench::grants_of("[grants.kv]\nquota = \"1KiB\"").is_ok());
    let err = crate::caps::bench::grants_of("[grants.kv]\nquota = \"lots\"")
        .err()
        .unwrap();
    assert!(err.contains("quota"), "{err}");
    let err = crate::caps::bench::grants_of("[grants.kv]\nquotta = 1")
        .err()
        .unwrap();
    assert!(err.contains("quotta"), "{err}");
}
