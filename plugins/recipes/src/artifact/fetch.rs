//! Downloading with redirects, resume and retries, over any `Transport`.
//!
//! The wasi:http code (`http.rs`) only sends one request; all decisions live
//! here so the tests can drive them with a scripted transport.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::Path;
use std::time::Duration;

use cairn_sdk::http::Resumed;
use sha2::{Digest as _, Sha256};

use super::Limits;
use super::error::{ArtifactError, Errs};
use super::url::HttpUrl;
use super::verify::{hash_into, to_hex};

const MAX_REDIRECTS: usize = 5;
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Not forwarded when a redirect leaves the origin (e.g. to a CDN).
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// One response, its body still to be read.
pub(crate) struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub content_range: Option<String>,
    pub content_length: Option<u64>,
    pub body: Box<dyn Read>,
}

/// A request that produced no response.
#[derive(Debug, Clone)]
pub(crate) struct TransportError {
    /// Connection problems and timeouts are worth another try; a request the
    /// host's policy refuses is not.
    pub retryable: bool,
    pub message: String,
}

/// Sends one GET; `timeout` bounds connecting and waiting for each byte.
pub(crate) trait Transport {
    fn get(
        &mut self,
        url: &HttpUrl,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Response, TransportError>;
}

enum Failure {
    Retry(String),
    Fatal(ArtifactError),
}

/// Delay before the next attempt after `failures` failed ones.
pub(crate) fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (BACKOFF_START * factor).min(BACKOFF_CAP)
}

pub(crate) struct Downloader<'a> {
    pub transport: &'a mut dyn Transport,
    pub limits: &'a Limits,
    pub sleep: fn(Duration),
}

impl Downloader<'_> {
    /// Downloads `uri` into `partial`, resuming from what an earlier attempt
    /// (or process) left there. Returns the hex sha256 and size of the file,
    /// which the caller still has to compare with the pinned digest.
    pub fn download(
        &mut self,
        uri: &str,
        headers: &BTreeMap<String, String>,
        partial: &Path,
        expected: &str,
    ) -> Result<(String, u64), ArtifactError> {
        self.with_retries(uri, |this| {
            this.download_once(uri, headers, partial, expected, true)
        })
    }

    /// A small body held in memory (a detached signature).
    pub fn fetch_small(
        &mut self,
        uri: &str,
        headers: &BTreeMap<String, String>,
        max: u64,
    ) -> Result<Vec<u8>, ArtifactError> {
        self.with_retries(uri, |this| {
            let response = this.request(uri, headers, None)?;
            check_status(uri, response.status)?;
            let mut body = Vec::new();
            let read = response.body.take(max + 1).read_to_end(&mut body);
            read.map_err(|e| Failure::Retry(format!("reading the body: {e}")))?;
            if body.len() as u64 > max {
                return Err(Failure::Fatal(
                    Errs(uri).too_large(format!("more than {max} bytes")),
                ));
            }
            Ok(body)
        })
    }

    fn with_retries<T>(
        &mut self,
        uri: &str,
        mut attempt: impl FnMut(&mut Self) -> Result<T, Failure>,
    ) -> Result<T, ArtifactError> {
        let attempts = self.limits.attempts.max(1);
        let mut last = String::new();
        for failures in 1..=attempts {
            match attempt(self) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::Retry(why)) => last = why,
            }
            if failures < attempts {
                (self.sleep)(backoff(failures));
            }
        }
        Err(Errs(uri).download(format!("gave up after {attempts} attempts: {last}")))
    }

    fn download_once(
        &mut self,
        uri: &str,
        headers: &BTreeMap<String, String>,
        partial: &Path,
        expected: &str,
        may_restart: bool,
    ) -> Result<(String, u64), Failure> {
        let errs = Errs(uri);
        let fatal_io = |what: &str, e: io::Error| {
            Failure::Fatal(errs.io(format_args!("{what} {}", partial.display()), &e))
        };
        let max = self.limits.max_download_bytes;
        let (mut hasher, mut have) = match File::open(partial) {
            Ok(mut file) => {
                let mut hasher = Sha256::new();
                let have = hash_into(&mut hasher, &mut file).map_err(|e| fatal_io("reading", e))?;
                (hasher, have)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Sha256::new(), 0),
            Err(e) => return Err(fatal_io("opening", e)),
        };
        if have > 0 && to_hex(&hasher.clone().finalize()) == expected {
            return Ok((expected.to_string(), have));
        }
        if have > max {
            (hasher, have) = (Sha256::new(), 0);
        }
        let response = self.request(uri, headers, (have > 0).then_some(have))?;
        // What the server sends continues the partial file only when it says so.
        let resumed = match have {
            0 => Resumed::FromStart,
            _ => Resumed::classify(response.status, response.content_range.as_deref(), have),
        };
        let append = match resumed {
            Resumed::Continues => true,
            Resumed::Elsewhere(start) => {
                let _ = fs::remove_file(partial);
                return Err(Failure::Retry(format!(
                    "the server resumed at byte {start:?} instead of {have}"
                )));
            }
            Resumed::NotSatisfiable if may_restart => {
                let _ = fs::remove_file(partial);
                return self.download_once(uri, headers, partial, expected, false);
            }
            Resumed::NotSatisfiable | Resumed::FromStart => {
                check_status(uri, response.status)?;
                (hasher, have) = (Sha256::new(), 0);
                false
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .map_err(|e| fatal_io("opening", e))?;
        let mut body = response.body;
        let mut received = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let outcome = loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(Failure::Retry(format!("reading the body: {e}"))),
            };
            if have + received + n as u64 > max {
                drop(file);
                let _ = fs::remove_file(partial);
                return Err(Failure::Fatal(errs.too_large(format!(
                    "the download exceeds max_download_bytes ({max} bytes)"
                ))));
            }
            file.write_all(&buf[..n])
                .map_err(|e| fatal_io("writing", e))?;
            hasher.update(&buf[..n]);
            received += n as u64;
        };
        // What arrived stays on disk for the next attempt to resume from.
        file.sync_all().map_err(|e| fatal_io("syncing", e))?;
        outcome?;
        if let Some(length) = response.content_length.filter(|&len| received < len) {
            return Err(Failure::Retry(format!(
                "the connection closed after {received} of {length} bytes"
            )));
        }
        Ok((to_hex(&hasher.finalize()), have + received))
    }

    /// Sends the GET and follows redirects; credentials are dropped once a
    /// redirect leaves the original origin.
    fn request(
        &mut self,
        uri: &str,
        headers: &BTreeMap<String, String>,
        range_from: Option<u64>,
    ) -> Result<Response, Failure> {
        let errs = Errs(uri);
        let mut url = HttpUrl::parse(uri)
            .ok_or_else(|| Failure::Fatal(errs.invalid("not an http:// or https:// URL")))?;
        let origin = url.origin();
        let timeout = Duration::from_millis(self.limits.timeout_ms);
        for hop in 0..=MAX_REDIRECTS {
            let same_origin = url.origin() == origin;
            let mut sent: Vec<(String, String)> = headers
                .iter()
                .filter(|(name, _)| {
                    same_origin || !CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            if let Some(from) = range_from {
                sent.push(("range".to_string(), format!("bytes={from}-")));
            }
            let response =
                self.transport
                    .get(&url, &sent, timeout)
                    .map_err(|err| match err.retryable {
                        true => Failure::Retry(err.message),
                        false => Failure::Fatal(errs.download(err.message)),
                    })?;
            let redirect = (300..400).contains(&response.status) && response.status != 304;
            let Some(location) = response.location.as_deref().filter(|_| redirect) else {
                return Ok(response);
            };
            if hop == MAX_REDIRECTS {
                break;
            }
            url = url.join(location).ok_or_else(|| {
                Failure::Fatal(errs.download(format!(
                    "redirect to `{location}`, which is not an http(s) URL"
                )))
            })?;
        }
        Err(Failure::Fatal(
            errs.download(format!("more than {MAX_REDIRECTS} redirects")),
        ))
    }
}

/// 2xx passes; 5xx is worth retrying; anything else is final.
fn check_status(uri: &str, status: u16) -> Result<(), Failure> {
    match status {
        200..=299 => Ok(()),
        500..=599 => Err(Failure::Retry(format!("HTTP status {status}"))),
        _ => Err(Failure::Fatal(
            Errs(uri).download(format!("HTTP status {status}")),
        )),
    }
}

/// Copies a local `file://` artifact into `partial`, hashing it on the way.
pub(crate) fn copy_local(
    uri: &str,
    source: &Path,
    partial: &Path,
    max: u64,
) -> Result<(String, u64), ArtifactError> {
    let errs = Errs(uri);
    let mut input = File::open(source)
        .map_err(|e| errs.io(format_args!("opening {}", source.display()), &e))?;
    let mut output = File::create(partial)
        .map_err(|e| errs.io(format_args!("creating {}", partial.display()), &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(errs.io(format_args!("reading {}", source.display()), &e)),
        };
        total += n as u64;
        if total > max {
            drop(output);
            let _ = fs::remove_file(partial);
            return Err(
                errs.too_large(format!("the file exceeds max_download_bytes ({max} bytes)"))
            );
        }
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(|e| errs.io(format_args!("writing {}", partial.display()), &e))?;
    }
    output
        .sync_all()
        .map_err(|e| errs.io(format_args!("syncing {}", partial.display()), &e))?;
    Ok((to_hex(&hasher.finalize()), total))
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
pub(crate) mod tests;
