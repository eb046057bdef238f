//! Process output: stdout and stderr go to files under the state directory
//! (never pipes to the daemon, so a process outlives a daemon crash without
//! dying of SIGPIPE), which the host tails into a bounded ring per stream and
//! into its log, rate-limited.
//!
//! The files do not grow on disk while the daemon runs: what has been read is
//! released with `FALLOC_FL_PUNCH_HOLE` (or, where the file system cannot punch
//! holes, the file is truncated once it passes [`TRUNCATE_AT`]; the process
//! writes with `O_APPEND`, so it carries on at the new end).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes each ring keeps.
pub const RING_BYTES: usize = 64 * 1024;
/// How often the files are read.
const POLL: Duration = Duration::from_millis(100);
/// Log lines per process per second; the rest are counted and reported.
const LINES_PER_SECOND: u32 = 50;
/// Longest line logged as is.
const MAX_LINE: usize = 1024;
/// Release read bytes once this many have accumulated.
const RELEASE_EVERY: u64 = 64 * 1024;
/// Without hole punching, truncate a file once it is this large.
const TRUNCATE_AT: u64 = 1024 * 1024;

/// The last bytes of one stream.
#[derive(Default)]
struct Ring(VecDeque<u8>);

impl Ring {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(RING_BYTES)..];
        let overflow = (self.0.len() + bytes.len()).saturating_sub(RING_BYTES);
        self.0.drain(..overflow);
        self.0.extend(bytes);
    }

    fn tail(&self, max: usize) -> Vec<u8> {
        let skip = self.0.len().saturating_sub(max);
        self.0.iter().skip(skip).copied().collect()
    }
}

/// What the host holds of a process's output.
#[derive(Default)]
pub struct Output {
    rings: Mutex<(Ring, Ring, u64)>,
}

impl Output {
    /// The last `max` bytes of stdout and stderr, and the total written.
    pub fn tail(&self, max: usize) -> (Vec<u8>, Vec<u8>, u64) {
        match self.rings.lock() {
            Ok(rings) => (rings.0.tail(max), rings.1.tail(max), rings.2),
            Err(_) => (Vec::new(), Vec::new(), 0),
        }
    }

    fn push(&self, stderr: bool, bytes: &[u8]) {
        if let Ok(mut rings) = self.rings.lock() {
            if stderr {
                rings.1.push(bytes);
            } else {
                rings.0.push(bytes);
            }
            rings.2 += bytes.len() as u64;
        }
    }
}

/// Paths of a process's output files.
pub fn paths(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("{id}.out")), dir.join(format!("{id}.err")))
}

/// One output file being followed.
struct Follow {
    file: File,
    offset: u64,
    released: u64,
    stderr: bool,
    partial: Vec<u8>,
}

impl Follow {
    /// Opens `path`; `resume` starts at its last [`RING_BYTES`] of data (a
    /// process re-adopted after a crash) instead of the beginning.
    fn open(path: &Path, stderr: bool, resume: bool) -> Option<Follow> {
        let file = File::open(path).ok()?;
        let mut offset = 0;
        if resume {
            let len = file.metadata().ok()?.len();
            // SAFETY: lseek on a descriptor we own.
            let data = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_DATA) };
            let data = u64::try_from(data).unwrap_or(len);
            offset = data.max(len.saturating_sub(RING_BYTES as u64));
        }
        Some(Follow {
            file,
            offset,
            released: offset,
            stderr,
            partial: Vec::new(),
        })
    }

    /// Reads what was appended; returns it.
    fn read_new(&mut self) -> Vec<u8> {
        let len = self.file.metadata().map(|meta| meta.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated (by us, below): start over.
            self.offset = 0;
            self.released = 0;
        }
        let mut new = Vec::new();
        if self.file.seek(SeekFrom::Start(self.offset)).is_ok() {
            let _ = (&self.file)
                .take(4 * RING_BYTES as u64)
                .read_to_end(&mut new);
        }
        self.offset += new.len() as u64;
        self.release();
        new
    }

    fn release(&mut self) {
        if self.offset - self.released < RELEASE_EVERY {
            return;
        }
        let Ok(length) = libc::off_t::try_from(self.offset) else {
            return;
        };
        // SAFETY: fallocate on a descriptor we own; the range was read already.
        let punched = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                length,
            )
        } == 0;
        if punched {
            self.released = self.offset;
        } else if self.offset >= TRUNCATE_AT {
            // File opened read-only: truncate through a second, writable handle.
            let path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
            if std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|file| file.set_len(0))
                .is_ok()
            {
                self.offset = 0;
                self.released = 0;
            }
        }
    }
}

/// Rate-limited logging of complete lines.
struct LineLog {
    plugin: String,
    name: String,
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl LineLog {
    fn line(&mut self, stderr: bool, line: &[u8]) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.flush_suppressed();
            self.window = Instant::now();
            self.logged = 0;
        }
        if self.logged >= LINES_PER_SECOND {
            self.suppressed += 1;
            return;
        }
        self.logged += 1;
        let shown = &line[..line.len().min(MAX_LINE)];
        let text = String::from_utf8_lossy(shown);
        let text = text.trim_end_matches('\r');
        let cut = if line.len() > MAX_LINE { " […]" } else { "" };
        let stream = if stderr { "stderr" } else { "stdout" };
        tracing::info!(target: "cairn::process", plugin = %self.plugin, process = %self.name, stream, "{text}{cut}");
    }

    fn flush_suppressed(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(target: "cairn::process", plugin = %self.plugin, process = %self.name, "{} output lines not logged (more than {LINES_PER_SECOND} a second)", self.suppressed);
            self.suppressed = 0;
        }
    }
}

fn split_lines(follow: &mut Follow, new: &[u8], log: &mut LineLog) {
    follow.partial.extend_from_slice(new);
    while let Some(at) = follow.partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = follow.partial.drain(..=at).collect();
        log.line(follow.stderr, &line[..line.len() - 1]);
    }
    if follow.partial.len() > MAX_LINE {
        let line = std::mem::take(&mut follow.partial);
        log.line(follow.stderr, &line);
    }
}

/// Follows a process's output files until `exited` reports the exit, then
/// reads what is left, logs an unterminated last line and removes the files.
/// `exited` is any watched status; `ended` says whether it reports the end.
pub async fn tail<T>(
    output: std::sync::Arc<Output>,
    files: (PathBuf, PathBuf),
    resume: bool,
    plugin: String,
    name: String,
    mut exited: tokio::sync::watch::Receiver<T>,
    ended: fn(&T) -> bool,
) {
    let mut follows: Vec<Follow> = [(&files.0, false), (&files.1, true)]
        .into_iter()
        .filter_map(|(path, stderr)| Follow::open(path, stderr, resume))
        .collect();
    let mut log = LineLog {
        plugin,
        name,
        window: Instant::now(),
        logged: 0,
        suppressed: 0,
    };
    let mut closed = false;
    loop {
        let done = closed || ended(&exited.borrow());
        for follow in &mut follows {
            loop {
                let new = follow.read_new();
                if new.is_empty() {
                    break;
                }
                output.push(follow.stderr, &new);
                split_lines(follow, &new, &mut log);
            }
        }
        if done {
            break;
        }
        if let Ok(Err(_)) = tokio::time::timeout(POLL, exited.changed()).await {
            closed = true;
        }
    }
    for follow in &mut follows {
        if !follow.partial.is_empty() {
            let line = std::mem::take(&mut follow.partial);
            log.line(follow.stderr, &line);
        }
    }
    log.flush_suppressed();
    let _ = std::fs::remove_file(&files.0);
    let _ = std::fs::remove_file(&files.1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_bytes() {
        let mut ring = Ring::default();
        ring.push(&vec![b'a'; RING_BYTES - 2]);
        ring.push(b"bcde");
        assert_eq!(ring.0.len(), RING_BYTES);
        assert_eq!(ring.tail(3), b"cde");
        ring.push(&vec![b'z'; RING_BYTES * 2]);
        assert_eq!(ring.0.len(), RING_BYTES);
        assert!(ring.tail(10).iter().all(|b| *b == b'z'));
    }
}
