//! `cairn serve-files`: a small static file server, so demos and tests have
//! somewhere to download artifacts from (with byte ranges, as resumed
//! downloads need) and a local service with a health endpoint to watch.
//!
//! Only regular files under the root are served: `..`, symbolic links that
//! lead out of the root, directories and anything else answer 404, so the
//! server never says what exists outside the root.

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::output::Outcome;
use super::{failure, io_failure};
use crate::admin::api::{AdminError, ErrorCode};

/// Arguments of `cairn serve-files`.
#[derive(Debug, Args)]
pub struct ServeFilesArgs {
    /// The directory whose files are served
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Address and port to listen on (port 0 picks a free one)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
}

/// The path answered with `ok` whatever the root holds.
const HEALTH_PATH: &str = "/healthz";

/// Bytes read from a file per body frame.
const CHUNK_BYTES: usize = 64 * 1024;

/// Time a client has to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

type Body = BoxBody<Bytes, std::io::Error>;

/// `cairn serve-files`: serves until SIGTERM or SIGINT, then exits 0.
pub(crate) fn run(args: ServeFilesArgs) -> Result<Outcome, AdminError> {
    // Canonical, so a resolved request path can be checked with a prefix test.
    let root = std::fs::canonicalize(&args.root)
        .map_err(|error| io_failure(format!("cannot serve {}", args.root.display()), &error))?;
    if !root.is_dir() {
        return Err(failure(
            ErrorCode::Invalid,
            format!("cannot serve {}: not a directory", args.root.display()),
        ));
    }
    super::block_on(serve(root, args.listen))
}

async fn serve(root: PathBuf, listen: SocketAddr) -> Result<Outcome, AdminError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| io_failure(format!("cannot listen on {listen}"), &error))?;
    let address = listener
        .local_addr()
        .map_err(|error| io_failure("cannot read the listening address", &error))?;
    // Registered before announcing, so a stop sent as soon as the line appears
    // still ends the server cleanly instead of killing it.
    let signals = signal(SignalKind::terminate()).and_then(|term| {
        let interrupt = signal(SignalKind::interrupt())?;
        Ok((term, interrupt))
    });
    let (mut term, mut interrupt) =
        signals.map_err(|error| io_failure("cannot listen for stop signals", &error))?;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "serving {} on http://{address}", root.display());
    let _ = stdout.flush();
    drop(stdout);
    let root = Arc::new(root);
    loop {
        let (stream, peer) = tokio::select! {
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    log(&format!("accept failed: {error}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, peer, Arc::clone(&root)));
    }
    Ok(Outcome::silent())
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, root: Arc<PathBuf>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let root = Arc::clone(&root);
        async move {
            let (response, bytes) = respond(&request, &root).await;
            log(&format!(
                "{peer} \"{} {}\" {} {bytes}",
                request.method(),
                request.uri().path(),
                response.status().as_u16()
            ));
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        log(&format!("{peer} connection ended: {error}"));
    }
}

/// One line on stderr; a closed stderr is no reason to stop serving.
fn log(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The response to one request and the number of body bytes it carries.
async fn respond(request: &Request<Incoming>, root: &Path) -> (Response<Body>, u64) {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return (response, 0);
    }
    let head_only = method == Method::HEAD;
    let path = request.uri().path();
    if path == HEALTH_PATH {
        return (text(StatusCode::OK, "ok"), if head_only { 0 } else { 2 });
    }
    let Some((file, length)) = open_under(root, path).await else {
        return (text(StatusCode::NOT_FOUND, "not found\n"), 0);
    };
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    let (status, start, end) = match byte_range(range, length) {
        ByteRange::Whole => (StatusCode::OK, 0, length),
        ByteRange::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last + 1),
        ByteRange::Unsatisfiable => {
            let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, "");
            set(
                &mut response,
                header::CONTENT_RANGE,
                format!("bytes */{length}"),
            );
            return (response, 0);
        }
    };
    let count = end - start;
    let body = if head_only {
        empty()
    } else {
        match file_body(file, start, count).await {
            Ok(body) => body,
            Err(error) => {
                log(&format!("cannot read {path}: {error}"));
                return (text(StatusCode::INTERNAL_SERVER_ERROR, "read error\n"), 0);
            }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    set(&mut response, header::CONTENT_LENGTH, count.to_string());
    set(&mut response, header::ACCEPT_RANGES, "bytes".to_string());
    set(
        &mut response,
        header::CONTENT_TYPE,
        content_type(path).to_string(),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut response,
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{length}", end - 1),
        );
    }
    (response, if head_only { 0 } else { count })
}

/// Opens the regular file a request path names under `root`, with its length;
/// `None` for anything that is not one, or that lies outside the root.
pub(crate) async fn open_under(root: &Path, request_path: &str) -> Option<(tokio::fs::File, u64)> {
    let mut path = root.to_path_buf();
    let decoded = percent_decode(request_path)?;
    for segment in decoded.split(|byte| *byte == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return None,
            segment if segment.contains(&0) => return None,
            segment => path.push(OsStr::from_bytes(segment)),
        }
    }
    // Symbolic links inside the root are fine; the resolved path must still be under it.
    let resolved = tokio::fs::canonicalize(&path).await.ok()?;
    if !resolved.starts_with(root) {
        return None;
    }
    let file = tokio::fs::File::open(&resolved).await.ok()?;
    // Checked on the open file, so what is served is what was checked.
    let metadata = file.metadata().await.ok()?;
    metadata.is_file().then_some((file, metadata.len()))
}

/// `%XX` escapes decoded; `None` for a malformed one.
pub(crate) fn percent_decode(path: &str) -> Option<Vec<u8>> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(text, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    Some(decoded)
}

/// What a `Range` header asks of a file of `length` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// No usable range: send the whole file with 200.
    Whole,
    /// Bytes `first..=last`, with 206.
    Part { first: u64, last: u64 },
    /// Nothing of the file matches: 416.
    Unsatisfiable,
}

/// Reads one `bytes=` range (`a-b`, `a-` or the suffix form `-n`). Several
/// ranges, other units and malformed headers are ignored, which RFC 9110
/// allows: the client then gets the whole file.
pub(crate) fn byte_range(header: Option<&str>, length: u64) -> ByteRange {
    let Some(spec) = header.and_then(|value| value.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    let Some((first, last)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return match last.parse::<u64>() {
            Ok(0) => ByteRange::Unsatisfiable,
            Ok(_) if length == 0 => ByteRange::Unsatisfiable,
            Ok(suffix) => ByteRange::Part {
                first: length - suffix.min(length),
                last: length - 1,
            },
            Err(_) => ByteRange::Whole,
        };
    }
    let Ok(first) = first.parse::<u64>() else {
        return ByteRange::Whole;
    };
    let last = match last {
        "" => None,
        text => match text.parse::<u64>() {
            Ok(last) => Some(last),
            Err(_) => return ByteRange::Whole,
        },
    };
    if first >= length || last.is_some_and(|last| last < first) {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part {
        first,
        last: last.map_or(length - 1, |last| last.min(length - 1)),
    }
}

/// `count` bytes of `file` from `start`, read as the client takes them.
async fn file_body(mut file: tokio::fs::File, start: u64, count: u64) -> std::io::Result<Body> {
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let frames = futures_util::stream::try_unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut chunk = vec![0; CHUNK_BYTES.min(usize::try_from(left).unwrap_or(CHUNK_BYTES))];
        let read = file.read(&mut chunk).await?;
        if read == 0 {
            // The file shrank after its length was sent: end the response broken, not short.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while being served",
            ));
        }
        chunk.truncate(read);
        Ok(Some((
            Frame::data(Bytes::from(chunk)),
            (file, left - read as u64),
        )))
    });
    Ok(StreamBody::new(frames).boxed())
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    set(
        &mut response,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".to_string(),
    );
    response
}

fn set(response: &mut Response<Body>, name: header::HeaderName, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
}

/// Enough types for a browser or `curl` to do the right thing with demo files.
fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map(|(_, extension)| extension);
    match extension.map(str::to_ascii_lowercase).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "toml" | "md" | "log") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("gz" | "tgz") => "application/gzip",
        Some("tar") => "application/x-tar",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let range = |header| byte_range(Some(header), 10);
        assert_eq!(range("bytes=2-5"), ByteRange::Part { first: 2, last: 5 });
        assert_eq!(range("bytes=2-"), ByteRange::Part { first: 2, last: 9 });
        assert_eq!(range("bytes=8-100"), ByteRange::Part { first: 8, last: 9 });
        assert_eq!(range("bytes=-3"), ByteRange::Part { first: 7, last: 9 });
        assert_eq!(range("bytes=-30"), ByteRange::Part { first: 0, last: 9 });
        assert_eq!(range("bytes=10-"), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=5-2"), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=-0"), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=0-1,4-5"), ByteRange::Whole);
        assert_eq!(range("items=0-1"), ByteRange::Whole);
        assert_eq!(range("bytes=x-1"), ByteRange::Whole);
        assert_eq!(byte_range(None, 10), ByteRange::Whole);
        assert_eq!(byte_range(Some("bytes=0-"), 0), ByteRange::Unsatisfiable);
    }

    #[test]
    fn escapes_are_decoded_and_malformed_ones_refused() {
        assert_eq!(percent_decode("/a%20b").unwrap(), b"/a b");
        assert_eq!(percent_decode("/%2e%2E/x").unwrap(), b"/../x");
        assert_eq!(percent_decode("/bad%2"), None);
        assert_eq!(percent_decode("/bad%zz"), None);
    }

    #[tokio::test]
    async fn only_regular_files_under_the_root_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("secret.txt");
        std::fs::write(&outside, "secret").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a file.txt"), "hello").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a file.txt"), root.join("inside")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();

        let opened = |path: &'static str| {
            let root = root.clone();
            async move { open_under(&root, path).await.map(|(_, length)| length) }
        };
        assert_eq!(opened("/sub/a%20file.txt").await, Some(5));
        assert_eq!(opened("//sub/./a%20file.txt").await, Some(5));
        assert_eq!(opened("/inside").await, Some(5));
        for refused in [
            "/../secret.txt",
            "/sub/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/escape",
            "/sub",
            "/",
            "/missing",
            "/sub/a%00",
        ] {
            assert_eq!(opened(refused).await, None, "{refused}");
        }
    }
}
