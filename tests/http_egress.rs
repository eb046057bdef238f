//! Outgoing `wasi:http` requests under `[grants.http-client]`: allowed URLs go
//! through, everything else (unmatched URLs, loopback and other non-public
//! addresses, names that resolve to them) is refused with `HTTP-request-denied`
//! and an audit line, and never reaches the server.

mod harness;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::http::get;
use harness::{Daemon, Options, plugin_wasm};

/// What `http-fetch` answers when the host refused its request.
const DENIED: &str = "error ErrorCode::HttpRequestDenied";

/// A tiny upstream HTTP server on 127.0.0.1: answers every request with
/// `hello from upstream` and records the request heads it saw.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let head = harness::http::read_request_head(&mut stream);
                let head = String::from_utf8_lossy(&head).into_owned();
                record.lock().unwrap().push(head.clone());
                if head.starts_with("GET /slow ") {
                    std::thread::sleep(Duration::from_secs(3));
                }
                let big = "x".repeat(64 * 1024);
                let body = if head.starts_with("GET /big ") {
                    big.as_str()
                } else {
                    "hello from upstream"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Upstream { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A daemon with an HTTP listener; `http-fetch` installed with `grant` as its
/// `[grants.http-client]` table (or no such table when `grant` is `None`).
/// Returns the install result too.
fn daemon_with(grant: Option<&str>) -> (Daemon, String, Result<serde_json::Value, String>) {
    let daemon = Daemon::start_with(Options {
        extra_config: "[listeners.http]\naddress = \"127.0.0.1:0\"\nrequest-timeout = \"20s\"\n"
            .into(),
        ..Options::default()
    });
    let address = daemon.http_address();
    let client = grant
        .map(|table| format!("[grants.http-client]\n{table}\n"))
        .unwrap_or_default();
    daemon.write_policy(
        "http-fetch",
        &format!(
            "[plugin]\nname = \"http-fetch\"\nsigners = [\"dev\"]\n[limits]\nmemory = \"16MiB\"\ncall-timeout = \"1s\"\n[grants.http-server]\nroutes = [\"/fetch\"]\n{client}"
        ),
    );
    let installed = daemon.install(&plugin_wasm("http_fetch"));
    (daemon, address, installed)
}

fn fetch_daemon(grant: &str) -> (Daemon, String) {
    let (daemon, address, installed) = daemon_with(Some(grant));
    installed.expect("install http-fetch");
    (daemon, address)
}

/// Asks the plugin to GET `url`; returns the plugin's answer text.
fn fetch(address: &str, url: &str) -> String {
    let reply = get(address, &format!("/fetch?url={url}")).expect("ask http-fetch");
    reply.text()
}

fn audit_lines(daemon: &Daemon) -> Vec<String> {
    daemon
        .daemon_log()
        .lines()
        .filter(|line| line.contains("cairn::audit") && line.contains("http-client"))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_allowed_url_with_allow_private_reaches_the_server() {
    let upstream = Upstream::start();
    let port = upstream.port;
    let (_daemon, address) = fetch_daemon(&format!(
        "allow = [\"http://127.0.0.1:{port}/data\"]\nallow-private = [\"127.0.0.1/32\"]"
    ));
    let answer = fetch(&address, &format!("http://127.0.0.1:{port}/data/x?y=1"));
    assert_eq!(answer, "status 200\nhello from upstream");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /data/x?y=1 HTTP/1.1\r\n"),
        "{seen:?}"
    );
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{port}")),
        "{seen:?}"
    );
}

#[test]
fn loopback_is_refused_without_allow_private() {
    let upstream = Upstream::start();
    let port = upstream.port;
    let (daemon, address) = fetch_daemon(&format!("allow = [\"http://127.0.0.1:{port}\"]"));
    let answer = fetch(
        &address,
        &format!("http://127.0.0.1:{port}/data?token=secret"),
    );
    assert_eq!(answer, DENIED);
    assert!(
        upstream.requests().is_empty(),
        "the request reached the server"
    );
    let audit = audit_lines(&daemon);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains("http-fetch"), "{audit:?}");
    assert!(audit[0].contains("loopback"), "{audit:?}");
    assert!(
        audit[0].contains(&format!("http://127.0.0.1:{port}/data")),
        "{audit:?}"
    );
    assert!(
        !daemon.daemon_log().contains("secret"),
        "the query must not be logged"
    );
}

#[test]
fn urls_outside_the_patterns_are_refused() {
    let upstream = Upstream::start();
    let port = upstream.port;
    let (daemon, address) = fetch_daemon(&format!(
        "allow = [\"http://127.0.0.1:{port}/data/\"]\nallow-private = [\"127.0.0.1/32\"]"
    ));
    for url in [
        format!("http://127.0.0.1:{port}/other"),
        format!("http://127.0.0.1:{port}/data"),
        format!("http://127.0.0.1:{port}/data/../admin"),
        format!("https://127.0.0.1:{port}/data/x"),
        format!("http://127.0.0.2:{port}/data/x"),
        format!("http://127.0.0.1:{}/data/x", port.wrapping_add(1)),
    ] {
        assert_eq!(fetch(&address, &url), DENIED, "{url}");
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    let audit = audit_lines(&daemon);
    assert_eq!(audit.len(), 6, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|line| line.contains("matches no allow pattern")),
        "{audit:?}"
    );
    // The allowed prefix still works.
    assert_eq!(
        fetch(&address, &format!("http://127.0.0.1:{port}/data/x")),
        "status 200\nhello from upstream"
    );
}

#[test]
fn a_name_resolving_to_loopback_needs_allow_private() {
    let upstream = Upstream::start();
    let port = upstream.port;
    let url = format!("http://localhost:{port}/data");

    let (daemon, address) = fetch_daemon(&format!("allow = [\"http://localhost:{port}\"]"));
    assert_eq!(fetch(&address, &url), DENIED);
    assert!(upstream.requests().is_empty());
    let audit = audit_lines(&daemon);
    assert!(
        audit
            .iter()
            .any(|line| line.contains("localhost resolves to") && line.contains("loopback")),
        "{audit:?}"
    );
    drop(daemon);

    // `localhost` may also resolve to ::1: every address must be covered.
    let (_daemon, address) = fetch_daemon(&format!(
        "allow = [\"http://localhost:{port}\"]\nallow-private = [\"127.0.0.1/32\", \"::1/128\"]"
    ));
    assert_eq!(fetch(&address, &url), "status 200\nhello from upstream");
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn importing_outgoing_handler_needs_the_grant() {
    let (daemon, _address, installed) = daemon_with(None);
    let err = installed.expect_err("install without [grants.http-client]");
    assert!(err.contains("wasi:http/outgoing-handler"), "{err}");
    assert!(err.contains("[grants.http-client]"), "{err}");
    assert!(daemon.plugins().is_empty());
}

#[test]
fn response_size_and_time_limits_hold() {
    let upstream = Upstream::start();
    let (_daemon, address) = fetch_daemon(&format!(
        "allow = [\"http://127.0.0.1:{}\"]\nallow-private = [\"127.0.0.1/32\"]\nmax-response-size = \"1KiB\"\ntimeout = \"1s\"",
        upstream.port
    ));
    let base = format!("http://127.0.0.1:{}", upstream.port);
    assert!(fetch(&address, &format!("{base}/")).contains("hello from upstream"));
    let big = fetch(&address, &format!("{base}/big"));
    assert!(big.contains("HttpResponseBodySize"), "{big}");
    let slow = fetch(&address, &format!("{base}/slow"));
    assert!(slow.contains("Timeout"), "{slow}");
}

#[test]
fn https_is_verified_against_the_public_roots_and_the_grants_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = harness::certs::make_certs(dir.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .arg(&certs.server_cert)
        .arg("-key")
        .arg(&certs.server_key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://127.0.0.1:{port}/");
    let grant =
        format!("allow = [\"https://127.0.0.1:{port}\"]\nallow-private = [\"127.0.0.1/32\"]");

    // A private CA is not among the public roots: the handshake fails.
    let (_daemon, address) = fetch_daemon(&grant);
    let untrusted = fetch(&address, &url);
    assert!(untrusted.starts_with("error "), "{untrusted}");

    let (_daemon, address) = fetch_daemon(&format!("{grant}\nca-file = {:?}", certs.ca));
    let trusted = fetch(&address, &url);
    assert!(trusted.starts_with("status 200"), "{trusted}");
    let _ = server.kill();
    let _ = server.wait();
}
