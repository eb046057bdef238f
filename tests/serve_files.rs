//! `cairn serve-files` as a real process: health endpoint, whole and ranged
//! downloads, refusals, and a clean exit on SIGTERM.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::cairn_bin;
use harness::http::{Reply, get, request};

/// A running `cairn serve-files` whose stderr goes to `log`.
struct Server {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts on a free port (port 0), learning the address from the start-up line.
    fn start(root: &std::path::Path, log: std::path::PathBuf) -> Server {
        let mut child = Command::new(cairn_bin())
            .args(["serve-files", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let prefix = format!("serving {} on http://", root.display());
        let address = line
            .trim_end()
            .strip_prefix(&prefix)
            .unwrap_or_else(|| {
                panic!(
                    "unexpected start-up line {line:?}; stderr:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child,
            address,
            log,
        }
    }

    fn get_range(&self, path: &str, range: &str) -> Reply {
        request(
            &self.address,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nRange: {range}",
                self.address
            ),
            b"",
        )
        .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header(reply: &Reply, name: &str) -> Option<String> {
    reply.headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

#[test]
fn serves_files_ranges_and_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let artifact: Vec<u8> = (0..1000u32).map(|n| (n % 251) as u8).collect();
    std::fs::write(root.join("artifact.bin"), &artifact).unwrap();
    std::fs::write(root.parent().unwrap().join("secret.txt"), "secret").unwrap();
    let mut server = Server::start(&root, dir.path().join("server.log"));
    let address = server.address.clone();

    let health = get(&address, "/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));

    let whole = get(&address, "/artifact.bin").unwrap();
    assert_eq!(whole.status, 200, "{whole:?}");
    assert_eq!(whole.body, artifact);
    assert_eq!(header(&whole, "content-length").as_deref(), Some("1000"));
    assert_eq!(header(&whole, "accept-ranges").as_deref(), Some("bytes"));

    let part = server.get_range("/artifact.bin", "bytes=100-199");
    assert_eq!(part.status, 206, "{part:?}");
    assert_eq!(part.body, &artifact[100..200]);
    assert_eq!(
        header(&part, "content-range").as_deref(),
        Some("bytes 100-199/1000")
    );
    assert_eq!(header(&part, "content-length").as_deref(), Some("100"));
    let tail = server.get_range("/artifact.bin", "bytes=900-");
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &artifact[900..]);

    let beyond = server.get_range("/artifact.bin", "bytes=1000-");
    assert_eq!(beyond.status, 416, "{beyond:?}");
    assert_eq!(
        header(&beyond, "content-range").as_deref(),
        Some("bytes */1000")
    );

    for refused in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/../../secret.txt",
        "/sub",
        "/missing.bin",
    ] {
        let reply = get(&address, refused).unwrap();
        assert_eq!(reply.status, 404, "{refused}: {reply:?}");
        assert!(!reply.text().contains("secret"), "{refused}");
    }

    let head = request(
        &address,
        &format!("HEAD /artifact.bin HTTP/1.1\r\nHost: {address}"),
        b"",
    )
    .unwrap();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(header(&head, "content-length").as_deref(), Some("1000"));
    assert!(head.body.is_empty());

    // SAFETY: signalling our own child process.
    unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve-files ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));

    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("\"GET /artifact.bin\" 200 1000"), "{log}");
    assert!(log.contains("\"GET /artifact.bin\" 206 100"), "{log}");
    assert!(log.contains("\"GET /healthz\" 200 2"), "{log}");
}
