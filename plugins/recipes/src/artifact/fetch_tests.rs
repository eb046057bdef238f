use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Cursor;
use std::rc::Rc;

use super::*;
use crate::artifact::ArtifactErrorKind;
use crate::artifact::test_support::{sha256_hex, write};

/// What the scripted server answers, in order.
pub(crate) enum Reply {
    Status(u16, Vec<u8>),
    /// 206 with `Content-Range: bytes <start>-…`.
    Partial(u64, Vec<u8>),
    Redirect(u16, &'static str),
    /// The body breaks after these bytes.
    Broken(u16, Vec<u8>),
    /// Claims a Content-Length longer than the body.
    Short(u16, Vec<u8>, u64),
    Unreachable,
    Denied,
}

/// One request as the transport saw it: URL and headers.
pub(crate) type Seen = Rc<RefCell<Vec<(String, Vec<(String, String)>)>>>;

pub(crate) struct Scripted {
    pub replies: VecDeque<Reply>,
    pub seen: Seen,
}

pub(crate) fn scripted(replies: Vec<Reply>) -> (Scripted, Seen) {
    let seen = Seen::default();
    let transport = Scripted {
        replies: replies.into(),
        seen: Rc::clone(&seen),
    };
    (transport, seen)
}

struct BrokenBody(Cursor<Vec<u8>>);

impl Read for BrokenBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::Error::other("connection reset")),
            n => Ok(n),
        }
    }
}

impl Transport for Scripted {
    fn get(
        &mut self,
        url: &HttpUrl,
        headers: &[(String, String)],
        _timeout: Duration,
    ) -> Result<Response, TransportError> {
        self.seen
            .borrow_mut()
            .push((url.to_url(), headers.to_vec()));
        let response = |status, body: Box<dyn Read>| Response {
            status,
            location: None,
            content_range: None,
            content_length: None,
            body,
        };
        let cursor = |bytes: Vec<u8>| -> Box<dyn Read> { Box::new(Cursor::new(bytes)) };
        Ok(
            match self.replies.pop_front().expect("an unscripted request") {
                Reply::Status(status, body) => response(status, cursor(body)),
                Reply::Partial(start, body) => Response {
                    content_range: Some(format!("bytes {start}-{}/*", start + body.len() as u64)),
                    ..response(206, cursor(body))
                },
                Reply::Redirect(status, to) => Response {
                    location: Some(to.to_string()),
                    ..response(status, cursor(Vec::new()))
                },
                Reply::Broken(status, body) => {
                    response(status, Box::new(BrokenBody(Cursor::new(body))))
                }
                Reply::Short(status, body, length) => Response {
                    content_length: Some(length),
                    ..response(status, cursor(body))
                },
                Reply::Unreachable => {
                    return Err(TransportError {
                        retryable: true,
                        message: "connection refused".into(),
                    });
                }
                Reply::Denied => {
                    return Err(TransportError {
                        retryable: false,
                        message: "not allowed by [grants.http-client]".into(),
                    });
                }
            },
        )
    }
}

thread_local! {
    static SLEPT: RefCell<Vec<Duration>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn record_sleep(duration: Duration) {
    SLEPT.with(|slept| slept.borrow_mut().push(duration));
}

fn slept() -> Vec<Duration> {
    SLEPT.with(|slept| slept.borrow().clone())
}

const URI: &str = "https://example.com/dl/tool.tar.gz";
const CONTENT: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn run(
    replies: Vec<Reply>,
    limits: Limits,
    partial: &Path,
) -> (Result<(String, u64), ArtifactError>, Seen) {
    let (mut transport, seen) = scripted(replies);
    let mut headers = BTreeMap::new();
    headers.insert("Authorization".to_string(), "Bearer t".to_string());
    let result = Downloader {
        transport: &mut transport,
        limits: &limits,
        sleep: record_sleep,
    }
    .download(URI, &headers, partial, &sha256_hex(CONTENT));
    (result, seen)
}

fn range_of(seen: &Seen, request: usize) -> Option<String> {
    seen.borrow()[request]
        .1
        .iter()
        .find(|(name, _)| name == "range")
        .map(|(_, value)| value.clone())
}

#[test]
fn resumes_a_partial_file_from_an_earlier_process() {
    let dir = tempfile::tempdir().unwrap();
    let partial = write(&dir.path().join("p"), &CONTENT[..10]);
    let (result, seen) = run(
        vec![Reply::Partial(10, CONTENT[10..].to_vec())],
        Limits::default(),
        &partial,
    );
    assert_eq!(result.unwrap(), (sha256_hex(CONTENT), CONTENT.len() as u64));
    assert_eq!(range_of(&seen, 0).as_deref(), Some("bytes=10-"));
    assert_eq!(fs::read(&partial).unwrap(), CONTENT);
}

#[test]
fn a_broken_body_is_retried_from_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("p");
    let (result, seen) = run(
        vec![
            Reply::Broken(200, CONTENT[..7].to_vec()),
            Reply::Short(206, CONTENT[7..20].to_vec(), 100),
            Reply::Partial(20, CONTENT[20..].to_vec()),
        ],
        Limits::default(),
        &partial,
    );
    assert_eq!(result.unwrap().0, sha256_hex(CONTENT));
    assert_eq!(range_of(&seen, 0), None);
    assert_eq!(range_of(&seen, 1).as_deref(), Some("bytes=7-"));
    assert_eq!(range_of(&seen, 2).as_deref(), Some("bytes=20-"));
    assert_eq!(
        slept(),
        vec![Duration::from_millis(200), Duration::from_millis(400)]
    );
}

#[test]
fn a_server_ignoring_the_range_restarts_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let partial = write(&dir.path().join("p"), b"stale junk");
    let (result, _) = run(
        vec![Reply::Status(200, CONTENT.to_vec())],
        Limits::default(),
        &partial,
    );
    assert_eq!(result.unwrap().0, sha256_hex(CONTENT));
    assert_eq!(fs::read(&partial).unwrap(), CONTENT);
}

#[test]
fn range_not_satisfiable_restarts_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let partial = write(
        &dir.path().join("p"),
        b"longer than the real file, somehow......",
    );
    let (result, seen) = run(
        vec![
            Reply::Status(416, Vec::new()),
            Reply::Status(200, CONTENT.to_vec()),
        ],
        Limits::default(),
        &partial,
    );
    assert_eq!(result.unwrap().0, sha256_hex(CONTENT));
    assert_eq!(range_of(&seen, 1), None);
}

#[test]
fn a_complete_partial_needs_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let partial = write(&dir.path().join("p"), CONTENT);
    let (result, seen) = run(Vec::new(), Limits::default(), &partial);
    assert_eq!(result.unwrap().0, sha256_hex(CONTENT));
    assert!(seen.borrow().is_empty());
}

#[test]
fn server_errors_and_refused_connections_are_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("p");
    let limits = Limits {
        attempts: 3,
        ..Limits::default()
    };
    let (result, seen) = run(
        vec![
            Reply::Unreachable,
            Reply::Status(503, Vec::new()),
            Reply::Status(502, Vec::new()),
        ],
        limits,
        &partial,
    );
    let err = result.unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Download);
    assert!(
        err.message.contains("3 attempts") && err.message.contains("502"),
        "{err}"
    );
    assert_eq!(seen.borrow().len(), 3);
    assert_eq!(slept().len(), 2);
}

#[test]
fn client_errors_and_denials_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("p");
    let (result, seen) = run(
        vec![Reply::Status(404, Vec::new())],
        Limits::default(),
        &partial,
    );
    let err = result.unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::Download);
    assert!(
        err.to_string().contains("404") && err.to_string().contains(URI),
        "{err}"
    );
    assert_eq!(seen.borrow().len(), 1);
    let (result, _) = run(vec![Reply::Denied], Limits::default(), &partial);
    assert!(result.unwrap_err().message.contains("grants.http-client"));
    assert!(slept().is_empty());
}

#[test]
fn backoff_doubles_and_is_capped() {
    let delays: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
    assert_eq!(delays, vec![200, 400, 800, 1600, 3200, 5000, 5000]);
}

#[test]
fn redirects_are_followed_and_credentials_stay_with_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("p");
    let (result, seen) = run(
        vec![
            Reply::Redirect(302, "../mirror/tool.tar.gz"),
            Reply::Redirect(307, "https://cdn.example.net/blob?sig=1"),
            Reply::Status(200, CONTENT.to_vec()),
        ],
        Limits::default(),
        &partial,
    );
    assert_eq!(result.unwrap().0, sha256_hex(CONTENT));
    let seen = seen.borrow();
    let urls: Vec<&str> = seen.iter().map(|(url, _)| url.as_str()).collect();
    assert_eq!(
        urls,
        vec![
            URI,
            "https://example.com/mirror/tool.tar.gz",
            "https://cdn.example.net/blob?sig=1"
        ]
    );
    let has_auth = |i: usize| seen[i].1.iter().any(|(name, _)| name == "Authorization");
    assert!(has_auth(0) && has_auth(1) && !has_auth(2));
}

#[test]
fn more_than_five_redirects_fail() {
    let dir = tempfile::tempdir().unwrap();
    let replies = (0..6).map(|_| Reply::Redirect(301, "/again")).collect();
    let (result, seen) = run(replies, Limits::default(), &dir.path().join("p"));
    let err = result.unwrap_err();
    assert!(err.message.contains("redirects"), "{err}");
    assert_eq!(seen.borrow().len(), 6);
}

#[test]
fn too_many_bytes_stop_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("p");
    let limits = Limits {
        max_download_bytes: 20,
        ..Limits::default()
    };
    let (result, _) = run(vec![Reply::Status(200, CONTENT.to_vec())], limits, &partial);
    assert_eq!(result.unwrap_err().kind, ArtifactErrorKind::TooLarge);
    assert!(!partial.exists());
}

#[test]
fn small_bodies_are_capped() {
    let (mut transport, _) = scripted(vec![
        Reply::Status(200, vec![b'x'; 11]),
        Reply::Status(200, vec![b'y'; 10]),
    ]);
    let limits = Limits::default();
    let mut downloader = Downloader {
        transport: &mut transport,
        limits: &limits,
        sleep: record_sleep,
    };
    let err = downloader
        .fetch_small("https://h/sig", &BTreeMap::new(), 10)
        .unwrap_err();
    assert_eq!(err.kind, ArtifactErrorKind::TooLarge);
    let body = downloader.fetch_small("https://h/sig", &BTreeMap::new(), 10);
    assert_eq!(body.unwrap(), vec![b'y'; 10]);
}
