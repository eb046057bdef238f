//! Test harness that kills a writer process at random moments.
//!
//! A test re-executes its own test binary filtered to itself with [`CHILD_ENV`] set; in
//! that child the same test function runs the write loop instead of the checks. SIGKILL
//! cannot be caught, so the child stops at an arbitrary instruction, which is the
//! closest a test can get to a power cut without a virtual machine (the page cache
//! survives a kill, so fsync ordering itself is not exercised here).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};

/// Set in the child process.
pub const CHILD_ENV: &str = "CAIRN_CHILD";
/// The directory the child writes into.
pub const DIR_ENV: &str = "CAIRN_CHILD_DIR";
/// Which kill round the child belongs to, so it can make its writes unique.
pub const ROUND_ENV: &str = "CAIRN_CHILD_ROUND";

/// Line the child prints once it is about to start writing.
pub const READY: &str = "READY";
/// Prefix of the lines by which the child acknowledges a completed write.
pub const ACK: &str = "ACK ";

/// In the child, returns the directory to write into and the round number.
pub fn child() -> Option<(PathBuf, u64)> {
    std::env::var_os(CHILD_ENV)?;
    let dir = PathBuf::from(std::env::var_os(DIR_ENV)?);
    let round = std::env::var(ROUND_ENV).ok()?.parse().ok()?;
    Some((dir, round))
}

/// Prints a protocol line and flushes it before the child goes on.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Full test name (as `cargo test --exact` expects) of `name` in module `module`.
pub fn test_name(module: &str, name: &str) -> String {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    format!("{module}::{name}")
}

/// Runs `rounds` children of test `test`, killing each after a random delay of up to
/// `max_delay` once it is ready, and calls `check(round, acks)` after each kill with
/// the payloads of the acknowledgements the child completed.
pub fn kill_rounds(
    test: &str,
    dir: &Path,
    rounds: u64,
    max_delay: Duration,
    mut check: impl FnMut(u64, Vec<String>),
) {
    let exe = std::env::current_exe().unwrap();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env(DIR_ENV, dir)
            .env(ROUND_ENV, round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || read_acks(stdout, ready_tx));
        let ready = ready_rx.recv_timeout(Duration::from_secs(60)).is_ok();
        if ready {
            let micros = OsRng.next_u64() % (max_delay.as_micros() as u64 + 1);
            std::thread::sleep(Duration::from_micros(micros));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let acks = reader.join().unwrap();
        if status.signal() != Some(libc::SIGKILL) || !ready {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("child of round {round} ended by itself ({status}): {err}");
        }
        check(round, acks);
    }
}

/// Collects acknowledged payloads; a line cut short by the kill does not count.
fn read_acks(stdout: impl Read, ready: mpsc::Sender<()>) -> Vec<String> {
    let mut reader = BufReader::new(stdout);
    let mut acks = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return acks,
            Ok(_) => {}
        }
        let Some(text) = line.strip_suffix(b"\n") else {
            return acks;
        };
        let text = String::from_utf8_lossy(text);
        // The harness prints `test <name> ... ` without a newline before the child's
        // first line, so READY shares its line.
        if text.ends_with(READY) {
            let _ = ready.send(());
        } else if let Some(payload) = text.strip_prefix(ACK) {
            acks.push(payload.to_owned());
        }
    }
}
