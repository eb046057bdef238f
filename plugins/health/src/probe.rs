//! Running one probe against a target, within its timeout.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use cairn_sdk::http::{HttpErrorKind, Request};
use cairn_sdk::net;
use cairn_sdk::process::{self, Spec};

use crate::check::Target;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The plugin's policy does not allow the target (a grant refused it).
    pub denied: bool,
    pub message: String,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            denied: false,
            message: message.into(),
        }
    }

    fn denied(message: impl Into<String>) -> Failure {
        Failure {
            denied: true,
            message: message.into(),
        }
    }
}

/// Probes `target` once; `expect_status` applies to HTTP.
pub fn run(
    check: &str,
    target: &Target,
    timeout: Duration,
    expect_status: Option<u16>,
) -> Result<(), Failure> {
    match target {
        Target::Http { url } => http(url, timeout, expect_status),
        Target::Tcp { host, port } => tcp(host, *port, timeout),
        Target::Cmd { exe, args } => cmd(check, exe, args, timeout),
    }
}

fn http(url: &str, timeout: Duration, expect_status: Option<u16>) -> Result<(), Failure> {
    // Only the status matters; the body is never read.
    let response = Request::get(url)
        .connect_timeout(timeout)
        .first_byte_timeout(timeout)
        .send()
        .map_err(|err| match err.kind {
            HttpErrorKind::Denied => Failure::denied(err.message),
            _ => Failure::new(err.message),
        })?;
    let status = response.status;
    let healthy = match expect_status {
        Some(expected) => status == expected,
        None => (200..400).contains(&status),
    };
    if healthy {
        Ok(())
    } else {
        let wanted = expect_status.map_or("2xx or 3xx".to_string(), |s| s.to_string());
        Err(Failure::new(format!(
            "HTTP status {status}, expected {wanted}"
        )))
    }
}

fn tcp(host: &str, port: u16, timeout: Duration) -> Result<(), Failure> {
    let addresses: Vec<_> = match (host, port).to_socket_addrs() {
        Ok(found) => found.collect(),
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Failure::denied(format!(
                "looking up `{host}` is not allowed by [grants.sockets] (resolve)"
            )));
        }
        Err(err) => return Err(Failure::new(format!("cannot resolve `{host}`: {err}"))),
    };
    if addresses.is_empty() {
        return Err(Failure::new(format!("`{host}` resolves to no address")));
    }
    let started = Instant::now();
    let mut last = Failure::new("no address tried");
    for address in addresses {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Failure::new(format!("no connection within {timeout:?}")));
        }
        match net::connect(address, left) {
            Ok(()) => return Ok(()),
            Err(err) if err.denied => return Err(Failure::denied(err.message)),
            Err(err) => last = Failure::new(err.message),
        }
    }
    Err(last)
}

fn cmd(check: &str, exe: &str, args: &[String], timeout: Duration) -> Result<(), Failure> {
    let label = format!("check-{check}");
    // A probe the plugin lost track of (a fault mid-probe) must not block this one.
    if let Ok(Some(old)) = process::find(&label) {
        if old.running() {
            let _ = process::stop(old.id, Duration::from_millis(200));
        }
        let _ = process::forget(old.id);
    }
    let id = process::spawn(&Spec::new(&label, exe).args(args)).map_err(|err| match err {
        cairn_sdk::Error::Denied(why) => Failure::denied(format!(
            "running {exe} is not allowed by [grants.process]: {why}"
        )),
        other => Failure::new(format!("cannot run {exe}: {}", other.message())),
    })?;
    let started = Instant::now();
    let outcome = loop {
        match process::info(id) {
            Ok(info) if !info.running() => {
                break match (info.exit_code, info.exit_signal) {
                    (Some(0), _) => Ok(()),
                    (Some(code), _) => Err(Failure::new(format!("{exe} exited with {code}"))),
                    (None, Some(signal)) => {
                        Err(Failure::new(format!("{exe} was killed by {signal}")))
                    }
                    (None, None) => Err(Failure::new(format!("{exe} ended without a status"))),
                };
            }
            Ok(_) if started.elapsed() >= timeout => {
                let _ = process::stop(id, Duration::from_millis(200));
                break Err(Failure::new(format!(
                    "{exe} did not finish within {timeout:?}; stopped"
                )));
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => break Err(Failure::new(format!("watching {exe}: {}", err.message()))),
        }
    };
    let _ = process::forget(id);
    outcome
}
