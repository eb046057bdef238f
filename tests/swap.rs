//! Hot swap: state handover, no failed calls, refusal of broken releases,
//! automatic and manual rollback.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use harness::{Daemon, plugin_wasm, variant};

#[test]
fn swap_hands_over_state_and_fails_no_call() {
    let daemon = Arc::new(Daemon::start());
    daemon.install(&plugin_wasm("counter")).unwrap();
    daemon.call("counter", "increment", r#"{"by": 5}"#).unwrap();
    let v2 = variant("counter", "0.2.0", "ok");

    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let caller = {
        let (daemon, running, ok, failed) =
            (daemon.clone(), running.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                match daemon.call("counter", "get", "null") {
                    Ok(reply) if reply["count"] == 5 => ok.fetch_add(1, Ordering::SeqCst),
                    Ok(reply) => panic!("wrong count during swap: {reply}"),
                    Err(err) => {
                        eprintln!("failed call: {err}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let swapped = daemon.install(&v2).expect("install v2");
    assert_eq!(swapped["version"], "0.2.0");
    std::thread::sleep(Duration::from_millis(200));
    running.store(false, Ordering::SeqCst);
    caller.join().unwrap();

    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "calls failed during the swap"
    );
    assert!(ok.load(Ordering::SeqCst) > 2);
    assert_eq!(
        daemon.call("counter", "version", "null").unwrap()["version"],
        "0.2.0"
    );
    assert_eq!(daemon.call("counter", "get", "null").unwrap()["count"], 5);
    let listed = daemon.cli_json(&["plugin", "list"]).unwrap();
    assert_eq!(listed[0]["previous_version"], "0.1.0");
}

#[test]
fn release_that_fails_init_is_refused_and_old_keeps_serving() {
    let daemon = Daemon::start();
    daemon
        .install(&variant("versioned", "0.1.0", "ok"))
        .unwrap();
    let err = daemon
        .install(&variant("versioned", "0.2.0", "fail-init"))
        .unwrap_err();
    assert!(err.contains("init failed"), "{err}");
    assert_eq!(
        daemon.call("versioned", "version", "null").unwrap()["version"],
        "0.1.0"
    );
    assert_eq!(daemon.plugins()[0].1, "0.1.0");
}

#[test]
fn release_that_is_not_ready_is_refused() {
    let daemon = Daemon::start();
    daemon
        .install(&variant("versioned", "0.1.0", "ok"))
        .unwrap();
    let err = daemon
        .install(&variant("versioned", "0.2.0", "unhealthy"))
        .unwrap_err();
    assert!(err.contains("not ready"), "{err}");
    assert_eq!(
        daemon.call("versioned", "version", "null").unwrap()["version"],
        "0.1.0"
    );
}

#[test]
fn release_that_keeps_trapping_is_rolled_back_automatically() {
    let mut daemon = Daemon::start();
    daemon
        .install(&variant("versioned", "0.1.0", "ok"))
        .unwrap();
    daemon.call("versioned", "increment", "null").unwrap();
    daemon
        .install(&variant("versioned", "0.2.0", "trap-after-swap"))
        .expect("the trapping release passes readiness");
    let rolled_back = daemon.eventually(Duration::from_secs(20), || {
        let _ = daemon.call("versioned", "get", "null");
        daemon.plugins()[0].1 == "0.1.0"
    });
    assert!(
        rolled_back,
        "no automatic rollback:\n{}",
        daemon.daemon_log()
    );
    assert_eq!(
        daemon.call("versioned", "version", "null").unwrap()["version"],
        "0.1.0"
    );
    assert_eq!(daemon.call("versioned", "get", "null").unwrap()["count"], 1);
    let logs = daemon.cli_json(&["logs", "versioned"]).unwrap().to_string();
    assert!(logs.contains("auto-rollback"), "{logs}");
    // The rollback is journaled: a restart keeps the good release.
    daemon.restart();
    assert_eq!(daemon.plugins()[0].1, "0.1.0");
}

#[test]
fn manual_rollback_goes_back_and_forth() {
    let daemon = Daemon::start();
    daemon
        .install(&variant("versioned", "0.1.0", "ok"))
        .unwrap();
    daemon
        .install(&variant("versioned", "0.2.0", "ok"))
        .unwrap();
    let back = daemon
        .cli_json(&["plugin", "rollback", "versioned"])
        .unwrap();
    assert_eq!(back["version"], "0.1.0");
    assert_eq!(
        daemon.call("versioned", "version", "null").unwrap()["version"],
        "0.1.0"
    );
    let forth = daemon
        .cli_json(&["plugin", "rollback", "versioned"])
        .unwrap();
    assert_eq!(forth["version"], "0.2.0");
    let err = daemon
        .cli_json(&["plugin", "rollback", "counter"])
        .unwrap_err();
    assert!(err.contains("counter"), "{err}");
}
