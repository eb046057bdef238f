//! Running one probe against a target, within its timeout.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use cairn_sdk::process::{self, Spec};

use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::poll;
use crate::bindings::wasi::sockets::network::{
    ErrorCode as NetError, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use crate::bindings::wasi::sockets::{instance_network, tcp_create_socket};
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

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn http(url: &str, timeout: Duration, expect_status: Option<u16>) -> Result<(), Failure> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Failure::new("no scheme"))?;
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let setup = |what: &str| Failure::new(format!("cannot build the request: invalid {what}"));
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| setup("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| setup("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| setup("host"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| setup("path"))?;
    let body = request.body().map_err(|()| setup("body"))?;
    OutgoingBody::finish(body, None).map_err(|err| http_failure(&err))?;
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(nanos(timeout)));
    let _ = options.set_first_byte_timeout(Some(nanos(timeout)));
    let pending =
        outgoing_handler::handle(request, Some(options)).map_err(|err| http_failure(&err))?;
    let ready = pending.subscribe();
    let deadline = monotonic_clock::subscribe_duration(nanos(timeout));
    poll::poll(&[&ready, &deadline]);
    let response = match pending.get() {
        None => return Err(Failure::new(format!("no response within {timeout:?}"))),
        Some(Err(())) => return Err(Failure::new("the response was already taken")),
        Some(Ok(Err(err))) => return Err(http_failure(&err)),
        Some(Ok(Ok(response))) => response,
    };
    let status = response.status();
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

fn http_failure(err: &ErrorCode) -> Failure {
    match err {
        ErrorCode::HttpRequestDenied => {
            Failure::denied("the request is not allowed by [grants.http-client]")
        }
        ErrorCode::ConnectionRefused => Failure::new("connection refused"),
        ErrorCode::ConnectionTimeout => Failure::new("connection timed out"),
        ErrorCode::ConnectionReadTimeout => Failure::new("timed out waiting for the response"),
        ErrorCode::DnsError(dns) => Failure::new(format!(
            "DNS error: {}",
            dns.rcode.clone().unwrap_or_else(|| "lookup failed".into())
        )),
        other => Failure::new(format!("HTTP error: {other:?}")),
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
        match connect(address, left) {
            Ok(()) => return Ok(()),
            Err(failure) if failure.denied => return Err(failure),
            Err(failure) => last = failure,
        }
    }
    Err(last)
}

/// Opens a TCP connection to `address` (and closes it) within `timeout`.
///
/// Straight through `wasi:sockets` rather than `std::net`, whose
/// `connect_timeout` on wasip2 cannot tell a refused connection from an
/// established one.
fn connect(address: SocketAddr, timeout: Duration) -> Result<(), Failure> {
    let (family, remote) = match address {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: v4.port(),
                address: (a, b, c, d),
            });
            (IpAddressFamily::Ipv4, remote)
        }
        SocketAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.ip().segments();
            let remote = IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: v6.port(),
                flow_info: 0,
                address: (a, b, c, d, e, f, g, h),
                scope_id: v6.scope_id(),
            });
            (IpAddressFamily::Ipv6, remote)
        }
    };
    let failed = |err: NetError| match err {
        NetError::AccessDenied => Failure::denied(format!(
            "connecting to {address} is not allowed by [grants.sockets]"
        )),
        NetError::ConnectionRefused => Failure::new(format!("connecting to {address}: refused")),
        NetError::Timeout => Failure::new(format!("connecting to {address}: timed out")),
        other => Failure::new(format!("connecting to {address}: {other:?}")),
    };
    let network = instance_network::instance_network();
    let socket = tcp_create_socket::create_tcp_socket(family).map_err(failed)?;
    socket.start_connect(&network, remote).map_err(failed)?;
    let ready = socket.subscribe();
    let deadline = monotonic_clock::subscribe_duration(nanos(timeout));
    loop {
        poll::poll(&[&ready, &deadline]);
        match socket.finish_connect() {
            Ok((input, output)) => {
                drop(input);
                drop(output);
                return Ok(());
            }
            Err(NetError::WouldBlock) if deadline.ready() => {
                return Err(Failure::new(format!(
                    "connecting to {address}: no answer within {timeout:?}"
                )));
            }
            Err(NetError::WouldBlock) => {}
            Err(err) => return Err(failed(err)),
        }
    }
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
