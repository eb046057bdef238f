use std::time::{Duration, SystemTime};

use super::*;

fn hex(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// Puts a blob of `size` bytes on disk and in the index.
fn add(cache: &mut Cache, n: u8, size: usize) {
    fs::write(cache.blob_path(&hex(n)), vec![n; size]).unwrap();
    cache.insert(&hex(n), size as u64);
}

#[test]
fn evicts_least_recently_used_until_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    for n in 1..=4 {
        add(&mut cache, n, 100);
    }
    cache.touch(&hex(1));
    add(&mut cache, 5, 100);
    let evicted = cache.evict(250, &hex(5));
    assert_eq!(evicted, vec![hex(2), hex(3), hex(4)]);
    assert_eq!(cache.total_bytes(), 200);
    assert!(cache.lookup(&hex(1)).is_some() && cache.lookup(&hex(5)).is_some());
    assert!(!cache.blob_path(&hex(2)).exists());
}

#[test]
fn the_blob_just_fetched_is_kept_even_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    add(&mut cache, 1, 10);
    add(&mut cache, 2, 500);
    assert_eq!(cache.evict(100, &hex(2)), vec![hex(1)]);
    assert_eq!(cache.entries(), 1);
    assert!(cache.lookup(&hex(2)).is_some());
}

#[test]
fn eviction_also_drops_cached_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    add(&mut cache, 1, 10);
    let sig = cache.sig_path(&hex(1), "https://h/a.sig");
    fs::write(&sig, b"sig").unwrap();
    add(&mut cache, 2, 10);
    cache.evict(10, &hex(2));
    assert!(!sig.exists());
}

#[test]
fn use_order_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    add(&mut cache, 1, 10);
    add(&mut cache, 2, 10);
    cache.touch(&hex(1));
    cache.save().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.evict(10, "none"), vec![hex(2)]);
}

#[test]
fn lost_index_is_rebuilt_from_blobs_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    for n in 1..=3 {
        add(&mut cache, n, 10 * n as usize);
    }
    let now = SystemTime::now();
    // Modification times decide the rebuilt order: 2 is the oldest, then 3, 1.
    for (n, age) in [(1, 10), (2, 300), (3, 200)] {
        let file = File::options()
            .write(true)
            .open(cache.blob_path(&hex(n)))
            .unwrap();
        file.set_modified(now - Duration::from_secs(age)).unwrap();
    }
    fs::write(dir.path().join("blobs/not-a-blob"), b"ignored").unwrap();
    drop(cache);
    fs::remove_file(dir.path().join(INDEX)).unwrap();

    let mut cache = Cache::open(dir.path()).unwrap();
    assert!(dir.path().join(INDEX).exists());
    assert_eq!(cache.entries(), 3);
    assert_eq!(cache.total_bytes(), 60);
    assert_eq!(cache.entry(&hex(2)).map(|e| e.size), Some(20));
    assert_eq!(cache.evict(0, "none"), vec![hex(2), hex(3), hex(1)]);
}

#[test]
fn corrupt_index_is_rebuilt_and_new_blobs_come_in_as_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    add(&mut cache, 1, 10);
    cache.save().unwrap();
    // A blob the index does not know (e.g. the index write was lost).
    fs::write(cache.blob_path(&hex(2)), b"0123456789").unwrap();
    let mut reopened = Cache::open(dir.path()).unwrap();
    assert_eq!(reopened.entries(), 2);
    assert_eq!(reopened.evict(10, "none"), vec![hex(2)]);

    fs::write(dir.path().join(INDEX), b"{ not json").unwrap();
    let reopened = Cache::open(dir.path()).unwrap();
    assert_eq!(reopened.entries(), 1);
}

#[test]
fn blobs_that_changed_size_or_vanished_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    add(&mut cache, 1, 10);
    add(&mut cache, 2, 10);
    fs::write(cache.blob_path(&hex(1)), b"short").unwrap();
    assert_eq!(cache.lookup(&hex(1)), None);
    assert!(!cache.blob_path(&hex(1)).exists());
    fs::remove_file(cache.blob_path(&hex(2))).unwrap();
    cache.save().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.entries(), 0);
}

#[test]
fn leftover_partials_are_evicted_before_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = Cache::open(dir.path()).unwrap();
    add(&mut cache, 1, 100);
    fs::write(cache.partial_path(&hex(7)), vec![0; 100]).unwrap();
    add(&mut cache, 2, 100);
    assert!(cache.evict(200, &hex(2)).is_empty());
    assert!(!cache.partial_path(&hex(7)).exists());
    assert_eq!(cache.entries(), 2);
}
