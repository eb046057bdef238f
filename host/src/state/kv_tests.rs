use super::*;
use crate::state::crash_test;
use std::collections::BTreeMap;
use std::time::Duration;

const BIG: u64 = u64::MAX;

fn open() -> (tempfile::TempDir, KvStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(&dir.path().join("kv.redb")).unwrap();
    (dir, store)
}

#[test]
fn round_trip_and_delete() {
    let (_dir, kv) = open();
    assert_eq!(kv.get("p", "k").unwrap(), None);
    kv.set("p", "k", b"v1", BIG).unwrap();
    assert_eq!(kv.get("p", "k").unwrap().as_deref(), Some(&b"v1"[..]));
    kv.set("p", "k", b"", BIG).unwrap();
    assert_eq!(kv.get("p", "k").unwrap().as_deref(), Some(&b""[..]));
    assert!(kv.delete("p", "k").unwrap());
    assert!(!kv.delete("p", "k").unwrap());
    assert_eq!(kv.get("p", "k").unwrap(), None);
    assert_eq!(kv.usage("p").unwrap(), 0);
}

#[test]
fn namespaces_are_isolated() {
    let (_dir, kv) = open();
    kv.set("a", "x", b"from-a", BIG).unwrap();
    kv.set("ab", "x", b"from-ab", BIG).unwrap();
    kv.set("a-b", "x", b"from-a-b", BIG).unwrap();
    assert_eq!(kv.get("a", "x").unwrap().unwrap(), b"from-a");
    assert_eq!(kv.get("ab", "x").unwrap().unwrap(), b"from-ab");
    assert_eq!(kv.list_keys("a", "").unwrap(), ["x"]);
    assert_eq!(kv.get("b", "x").unwrap(), None);
    // A key containing NUL cannot reach into another namespace.
    assert_eq!(kv.get("a", "b\0x").unwrap(), None);
    assert_eq!(kv.usage("a").unwrap(), 7);
    assert_eq!(kv.usage("ab").unwrap(), 8);
    assert_eq!(kv.clear_namespace("a").unwrap(), 7);
    assert_eq!(kv.get("a", "x").unwrap(), None);
    assert_eq!(kv.get("ab", "x").unwrap().unwrap(), b"from-ab");
    assert_eq!(kv.get("a-b", "x").unwrap().unwrap(), b"from-a-b");
}

#[test]
fn invalid_namespaces_and_sizes_are_refused() {
    let (_dir, kv) = open();
    for ns in ["", "A", "1a", "a\0b", "a/b", "a_b"] {
        assert!(
            matches!(kv.get(ns, "k"), Err(KvError::InvalidNamespace(_))),
            "{ns:?}"
        );
    }
    assert!(matches!(kv.set("p", "", b"v", BIG), Err(KvError::EmptyKey)));
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    assert!(matches!(
        kv.set("p", &long_key, b"v", BIG),
        Err(KvError::KeyTooLarge)
    ));
    kv.set("p", &"k".repeat(MAX_KEY_LEN), b"v", BIG).unwrap();
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    assert!(matches!(
        kv.set("p", "k", &big, BIG),
        Err(KvError::ValueTooLarge)
    ));
    kv.set("p", "k", &big[..MAX_VALUE_LEN], BIG).unwrap();
}

#[test]
fn quota_boundary_and_replacement() {
    let (_dir, kv) = open();
    // key "k" (1) + value (9) = 10 bytes: exactly the quota.
    kv.set("p", "k", b"123456789", 10).unwrap();
    assert_eq!(kv.usage("p").unwrap(), 10);
    let err = kv.set("p", "j", b"", 10).unwrap_err();
    match &err {
        KvError::QuotaExceeded {
            namespace,
            used,
            requested,
            quota,
        } => {
            assert_eq!(
                (namespace.as_str(), *used, *requested, *quota),
                ("p", 10, 1, 10)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("quota"), "{err}");
    // Replacing frees the old value's size first, so a same-size rewrite fits...
    kv.set("p", "k", b"abcdefghi", 10).unwrap();
    // ...a shrink frees room for another key...
    kv.set("p", "k", b"1234", 10).unwrap();
    kv.set("p", "j", b"1234", 10).unwrap();
    assert_eq!(kv.usage("p").unwrap(), 10);
    // ...and growing past it is refused without changing anything.
    assert!(kv.set("p", "k", b"12345", 10).is_err());
    assert_eq!(kv.get("p", "k").unwrap().unwrap(), b"1234");
    assert_eq!(kv.usage("p").unwrap(), 10);
    assert!(kv.delete("p", "k").unwrap());
    assert_eq!(kv.usage("p").unwrap(), 5);
    // Quota is per namespace.
    kv.set("q", "k", b"123456789", 10).unwrap();
}

#[test]
fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    {
        let kv = KvStore::open(&path).unwrap();
        kv.set("p", "a", b"1", BIG).unwrap();
        kv.set("p", "b", b"22", BIG).unwrap();
        kv.delete("p", "a").unwrap();
    }
    let kv = KvStore::open(&path).unwrap();
    assert_eq!(kv.get("p", "a").unwrap(), None);
    assert_eq!(kv.get("p", "b").unwrap().unwrap(), b"22");
    assert_eq!(kv.usage("p").unwrap(), 3);
}

#[test]
fn list_by_prefix_is_sorted_and_capped() {
    let (_dir, kv) = open();
    for k in ["user/2", "user/10", "user/1", "users", "config", "user0"] {
        kv.set("p", k, b"", BIG).unwrap();
    }
    kv.set("pp", "user/3", b"", BIG).unwrap();
    assert_eq!(
        kv.list_keys("p", "user/").unwrap(),
        ["user/1", "user/10", "user/2"]
    );
    assert_eq!(kv.list_keys("p", "").unwrap().len(), 6);
    assert!(kv.list_keys("p", "zzz").unwrap().is_empty());

    let txn = kv.begin_write().unwrap();
    {
        let mut t = txn.open_table(ENTRIES).unwrap();
        for i in 0..LIST_CAP + 5 {
            t.insert(entry_key("many", &format!("{i:06}")).as_slice(), &b""[..])
                .unwrap();
        }
    }
    kv.commit(txn).unwrap();
    let keys = kv.list_keys("many", "").unwrap();
    assert_eq!(keys.len(), LIST_CAP);
    assert_eq!(keys[0], "000000");
}

#[test]
fn usable_from_many_threads() {
    let (_dir, kv) = open();
    let kv = std::sync::Arc::new(kv);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    kv.set("p", &format!("{t}-{i}"), b"xx", BIG).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(kv.list_keys("p", "").unwrap().len(), 80);
    assert_eq!(kv.usage("p").unwrap(), 80 * 2 + (40 * 3 + 40 * 4));
}

fn value_for(key: &str) -> Vec<u8> {
    let len = 50 + key.len() * 997 % 30_000;
    key.bytes().cycle().take(len).collect()
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Some((dir, round)) = crash_test::child() {
        let kv = KvStore::open(&dir.join("kv.redb")).unwrap();
        crash_test::say(crash_test::READY);
        for i in 0.. {
            let ns = ["alpha", "beta", "gamma"][i % 3];
            let key = format!("r{round}-k{i}");
            kv.set(ns, &key, &value_for(&key), BIG).unwrap();
            // Overwrites and deletes exercise the usage counter too.
            if i % 5 == 4 {
                kv.delete(ns, &format!("r{round}-k{}", i - 3)).unwrap();
            }
            crash_test::say(&format!("{}{ns}/{key}", crash_test::ACK));
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = crash_test::test_name(module_path!(), "acknowledged_writes_survive_sigkill");
    let mut acked = 0;
    crash_test::kill_rounds(
        &name,
        dir.path(),
        60,
        Duration::from_millis(40),
        |round, acks| {
            let kv = KvStore::open(&dir.path().join("kv.redb")).unwrap();
            for ack in &acks {
                let (ns, key) = ack.split_once('/').unwrap();
                let i: usize = key.rsplit_once('k').unwrap().1.parse().unwrap();
                let got = kv.get(ns, key).unwrap();
                if i % 5 == 1 {
                    // Deleted while writing key i + 3; before that write was acknowledged
                    // the delete may or may not have happened.
                    let deleter = format!("{ns}/r{round}-k{}", i + 3);
                    if acks.contains(&deleter) {
                        assert_eq!(got, None, "{ack} was deleted, but is back");
                    }
                } else {
                    assert_eq!(got, Some(value_for(key)), "acknowledged {ack} lost");
                }
            }
            // The usage counters must match the data exactly.
            let mut sizes = BTreeMap::new();
            for ns in ["alpha", "beta", "gamma"] {
                for key in kv.list_keys(ns, "").unwrap() {
                    let v = kv.get(ns, &key).unwrap().unwrap();
                    assert_eq!(v, value_for(&key), "{ns}/{key} holds a wrong value");
                    *sizes.entry(ns).or_insert(0u64) += (key.len() + v.len()) as u64;
                }
                assert_eq!(
                    kv.usage(ns).unwrap(),
                    sizes.get(ns).copied().unwrap_or(0),
                    "{ns}"
                );
            }
            acked += acks.len();
        },
    );
    assert!(acked >= 50, "children acknowledged too few writes: {acked}");
}
