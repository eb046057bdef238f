//! Serving plugins over HTTP through the host's listener: routing by granted
//! prefix, limits, faults contained, instances reused, and hot swaps without a
//! failed request.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use harness::http::{get, request};
use harness::{Daemon, Options, plugin_wasm, variant};

fn http_daemon() -> (Daemon, String) {
    http_daemon_with("")
}

/// A daemon whose `[listeners.http]` has test limits plus `extra` lines, with
/// `http-hello` installed; and the listener's address.
fn http_daemon_with(extra: &str) -> (Daemon, String) {
    let daemon = Daemon::start_with(Options {
        extra_config: format!(
            "[listeners.http]\naddress = \"127.0.0.1:0\"\nmax-body-size = \"64KiB\"\nmax-header-size = \"8KiB\"\nheader-timeout = \"1s\"\nrequest-timeout = \"10s\"\n{extra}"
        ),
        ..Options::default()
    });
    let address = daemon.http_address();
    let hello = daemon.signed_copy(&plugin_wasm("http_hello"), "dev");
    daemon.install(&hello).expect("install http-hello");
    (daemon, address)
}

#[test]
fn serves_granted_routes_and_reuses_instances() {
    let (daemon, address) = http_daemon();
    let first = get(&address, "/hello").unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    assert!(
        first
            .text()
            .starts_with("hello from http-hello 0.1.0 at /hello"),
        "{}",
        first.text()
    );
    // Sequential requests land on the same, reused instance.
    let second = get(&address, "/hello/x?y=1").unwrap();
    assert!(
        second
            .text()
            .contains("at /hello/x?y=1 (request 2 of this instance)"),
        "{}",
        second.text()
    );

    let missing = get(&address, "/nothing").unwrap();
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "not-found")
    );
    let beside = get(&address, "/hellox").unwrap();
    assert_eq!(beside.status, 404, "a prefix matches whole path segments");

    // The component has no commands: asking is a clear error, not a crash.
    let err = daemon.call("http-hello", "anything", "null").unwrap_err();
    assert!(err.contains("only serves HTTP"), "{err}");
}

#[test]
fn bodies_heads_and_slow_clients_are_bounded() {
    let (_daemon, address) = http_daemon();
    let small = vec![b'a'; 1000];
    let echoed = request(
        &address,
        &format!("POST /hello/echo HTTP/1.1\r\nHost: {address}"),
        &small,
    )
    .unwrap();
    assert_eq!((echoed.status, echoed.body.len()), (200, 1000));

    let big = vec![b'b'; 100 * 1024];
    let refused = request(
        &address,
        &format!("POST /hello/echo HTTP/1.1\r\nHost: {address}"),
        &big,
    )
    .unwrap();
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (413, "too-large")
    );

    let long_header = "x".repeat(16 * 1024);
    let head = format!("GET /hello HTTP/1.1\r\nHost: {address}\r\nX-Long: {long_header}");
    let refused = request(&address, &head, b"").unwrap();
    assert_eq!(refused.status, 431, "{refused:?}");

    // A client that never finishes its head is disconnected after header-timeout.
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "slow client not cut off"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "{rest:?}"
    );

    assert_eq!(get(&address, "/hello").unwrap().status, 200);
}

#[test]
fn traps_and_runaway_handlers_fail_one_request_only() {
    let (daemon, address) = http_daemon();
    let trapped = get(&address, "/hello/trap").unwrap();
    assert_eq!(
        (trapped.status, trapped.error_code().as_str()),
        (500, "plugin-fault")
    );
    let spun = get(&address, "/hello/spin").unwrap();
    assert_eq!(spun.status, 500, "{spun:?}");
    assert!(
        spun.text().contains("deadline") || spun.text().contains("CPU"),
        "{}",
        spun.text()
    );
    let after = get(&address, "/hello").unwrap();
    assert_eq!(after.status, 200, "{after:?}");
    assert!(daemon.daemon_log().contains("HTTP handler fault"));
}

#[test]
fn a_hot_swap_under_load_fails_no_request() {
    let (daemon, address) = http_daemon();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, failures, served, address) = (
                stop.clone(),
                failures.clone(),
                served.clone(),
                address.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match get(&address, "/hello") {
                        Ok(reply) if reply.status == 200 => served.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("failed: {other:?}");
                            failures.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let v2 = daemon.signed_copy(&variant("http-hello", "0.2.0", "ok"), "dev");
    daemon.install(&v2).expect("swap to 0.2.0");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(served.load(Ordering::SeqCst) > 10);
    let now = get(&address, "/hello").unwrap();
    assert!(now.text().contains("http-hello 0.2.0"), "{}", now.text());
}

#[test]
fn serves_https_and_requires_client_certificates_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let certs = harness::certs::make_certs(dir.path());
    let (_daemon, address) = http_daemon_with(&format!(
        "tls-cert-file = {:?}\ntls-key-file = {:?}\nclient-ca-file = {:?}\n",
        certs.server_cert, certs.server_key, certs.ca
    ));
    let url = format!("https://{address}/hello");
    let curl = |with_client_cert: bool| {
        let mut command = std::process::Command::new("curl");
        command
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&certs.ca);
        if with_client_cert {
            command.arg("--cert").arg(&certs.client_cert);
            command.arg("--key").arg(&certs.client_key);
        }
        command.arg(&url).output().unwrap()
    };
    let ok = curl(true);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("hello from http-hello"));
    let refused = curl(false);
    assert!(
        !refused.status.success(),
        "a client without a certificate got in: {refused:?}"
    );
    // Plain HTTP on the TLS port gets no answer from a plugin.
    assert!(get(&address, "/hello").map_or(true, |reply| reply.status != 200));
}

#[test]
fn a_new_release_whose_handler_keeps_faulting_is_rolled_back() {
    let (daemon, address) = http_daemon();
    let v2 = daemon.signed_copy(&variant("http-hello", "0.2.0", "ok"), "dev");
    daemon.install(&v2).expect("swap to 0.2.0");
    assert!(get(&address, "/hello").unwrap().text().contains("0.2.0"));
    // Faults within the soak window (policy default: 3 in 30 s) roll the swap back.
    for _ in 0..3 {
        assert_eq!(get(&address, "/hello/trap").unwrap().status, 500);
    }
    let rolled_back = daemon.eventually(Duration::from_secs(10), || {
        get(&address, "/hello").is_ok_and(|reply| reply.text().contains("http-hello 0.1.0"))
    });
    assert!(rolled_back, "{}", daemon.daemon_log());
}

#[test]
fn a_component_without_an_identity_installs_under_the_name_it_is_given() {
    let (mut daemon, address) = http_daemon();
    daemon
        .cli_json(&["plugin", "remove", "http-hello"])
        .unwrap();
    let anonymous = daemon.signed_copy(&variant("http-hello", "0.1.0", "anonymous"), "dev");
    let path = anonymous.to_str().unwrap();
    let err = daemon.cli_json(&["plugin", "install", path]).unwrap_err();
    assert!(err.contains("--name"), "{err}");

    let installed = daemon
        .cli_json(&[
            "plugin",
            "install",
            path,
            "--name",
            "http-hello",
            "--version",
            "1.2.0",
        ])
        .expect("install as http-hello 1.2.0");
    assert_eq!(installed["version"], "1.2.0");
    assert_eq!(get(&address, "/hello").unwrap().status, 200);
    // The recorded identity brings it back after a restart.
    daemon.restart();
    let address = daemon.http_address();
    assert_eq!(get(&address, "/hello").unwrap().status, 200);

    // A component that names itself cannot be installed as something else.
    let named = daemon.signed_copy(&plugin_wasm("http_hello"), "dev");
    let err = daemon
        .cli_json(&[
            "plugin",
            "install",
            named.to_str().unwrap(),
            "--name",
            "other",
            "--version",
            "9.0.0",
        ])
        .unwrap_err();
    assert!(err.contains("says it is http-hello"), "{err}");
}
