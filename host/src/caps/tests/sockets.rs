//! `[grants.sockets]` through the bench: the grant's validation, and the bench
//! instance's own `wasi:sockets` context (the one `InstanceCaps::new` builds),
//! driven as a guest would drive it: only connections to granted destinations
//! pass, everything else is refused and audited.

use std::net::SocketAddr;
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime_wasi::p2::TcpSocket;
use wasmtime_wasi::p2::bindings::sockets::instance_network::Host as _;
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket as _;
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket::Host as _;
use wasmtime_wasi::p2::{SocketError, SocketResult};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use crate::caps::bench::{Bench, grants_of};

/// The bench instance's `wasi:sockets` view.
fn sockets(bench: &mut Bench) -> WasiSocketsCtxView<'_> {
    let wasi = bench.caps.wasi();
    WasiSocketsCtxView {
        ctx: wasi.ctx.sockets(),
        table: wasi.table,
    }
}

fn code(err: SocketError) -> ErrorCode {
    err.downcast().expect("a wasi:sockets error code")
}

fn new_socket(bench: &mut Bench) -> SocketResult<Resource<TcpSocket>> {
    sockets(bench).create_tcp_socket(IpAddressFamily::Ipv4)
}

/// Connects as a guest does: start, then poll finish until it is done.
async fn connect(bench: &mut Bench, to: SocketAddr) -> Result<(), ErrorCode> {
    let socket = new_socket(bench).map_err(code)?;
    let mut view = sockets(bench);
    let network = view.instance_network().unwrap();
    view.start_connect(Resource::new_borrow(socket.rep()), network, to.into())
        .map_err(code)?;
    for _ in 0..200 {
        match sockets(bench).finish_connect(Resource::new_borrow(socket.rep())) {
            Ok(_) => return Ok(()),
            Err(err) => match code(err) {
                ErrorCode::WouldBlock => tokio::time::sleep(Duration::from_millis(10)).await,
                other => return Err(other),
            },
        }
    }
    panic!("connecting to {to} did not finish");
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn audit_line(detail: &str) -> String {
    format!("plugin=bench capability=sockets denied: {detail}")
}

#[tokio::test]
async fn connections_to_granted_destinations_pass() {
    let (listener, addr) = listener().await;
    let port = addr.port();
    let mut bench = Bench::new(&format!("[grants.sockets]\ntcp-connect = [\"{addr}\"]"));
    connect(&mut bench, addr).await.unwrap();
    let (_accepted, _) = listener.accept().await.unwrap();

    // Another address or another port is refused before anything is sent.
    let other = SocketAddr::from(([127, 0, 0, 2], port));
    assert_eq!(
        connect(&mut bench, other).await,
        Err(ErrorCode::AccessDenied)
    );
    assert_eq!(bench.denials(), 1);
    assert_eq!(
        bench.shared.audit.recent(),
        [audit_line(&format!(
            "TCP connection to 127.0.0.2:{port}: not in tcp-connect"
        ))]
    );
    let wrong_port = SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(1).max(1)));
    assert_eq!(
        connect(&mut bench, wrong_port).await,
        Err(ErrorCode::AccessDenied)
    );
    assert_eq!(bench.denials(), 2);
}

#[tokio::test]
async fn ranges_and_any_port_match() {
    let (listener, addr) = listener().await;
    let mut bench = Bench::new("[grants.sockets]\ntcp-connect = [\"127.0.0.0/8:*\"]");
    connect(&mut bench, addr).await.unwrap();
    let (_accepted, _) = listener.accept().await.unwrap();
    let outside = SocketAddr::from(([10, 0, 0, 1], addr.port()));
    assert_eq!(
        connect(&mut bench, outside).await,
        Err(ErrorCode::AccessDenied)
    );
    assert_eq!(bench.denials(), 1);
}

#[tokio::test]
async fn host_names_match_what_they_resolve_to() {
    let (listener, addr) = listener().await;
    let port = addr.port();
    let grant = format!("[grants.sockets]\ntcp-connect = [\"localhost:{port}\"]\nresolve = true");
    let mut bench = Bench::new(&grant);
    connect(&mut bench, addr).await.unwrap();
    let (_accepted, _) = listener.accept().await.unwrap();
    let elsewhere = SocketAddr::from(([192, 0, 2, 1], port));
    assert_eq!(
        connect(&mut bench, elsewhere).await,
        Err(ErrorCode::AccessDenied)
    );
    assert_eq!(bench.denials(), 1);
}

#[tokio::test]
async fn binding_is_refused_and_audited() {
    let mut bench = Bench::new("[grants.sockets]\ntcp-connect = [\"127.0.0.1:*\"]");
    let socket = new_socket(&mut bench).unwrap();
    let mut view = sockets(&mut bench);
    let network = view.instance_network().unwrap();
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let bound = view.start_bind(socket, network, local.into()).await;
    assert_eq!(bound.map_err(code), Err(ErrorCode::AccessDenied));
    assert_eq!(bench.denials(), 1);
    assert_eq!(
        bench.shared.audit.recent(),
        [audit_line(
            "TcpBind on 127.0.0.1:0: only outgoing TCP connections are granted"
        )]
    );
}

#[tokio::test]
async fn without_the_grant_there_is_no_tcp_at_all() {
    let mut bench = Bench::new("");
    assert_eq!(
        new_socket(&mut bench).map_err(code).err(),
        Some(ErrorCode::AccessDenied)
    );
}

#[test]
fn grants_are_validated_with_the_table_named() {
    assert!(grants_of("[grants.sockets]\ntcp-connect = [\"127.0.0.1:5432\", \"[::1]:*\"]").is_ok());
    assert!(
        grants_of("[grants.sockets]\ntcp-connect = [\"db.local:5432\"]\nresolve = true").is_ok()
    );
    assert!(grants_of("[grants.sockets]").is_ok());
    for (table, needle) in [
        (
            "tcp-connect = [\"db.local:5432\"]",
            "tcp-connect names the host `db.local:5432`, which needs `resolve = true`",
        ),
        (
            "tcp-connect = [\"127.0.0.1\"]",
            "invalid tcp-connect pattern \"127.0.0.1\": no `:PORT`",
        ),
        (
            "tcp-connect = [\"127.0.0.1:0\"]",
            "`0` is not a port from 1 to 65535",
        ),
        (
            "tcp-connect = [\"::1:22\"]",
            "an IPv6 address must be in brackets",
        ),
        (
            "tcp-connect = [\"0.0.0.0:80\"]",
            "the unspecified address reaches nothing",
        ),
        ("tcp-connect = [\"10.0.0.1/8:*\"]", "10.0.0.1/8"),
        (
            "tcp-connect = [\"bad_name:80\"]",
            "`bad_name` is not an address",
        ),
        ("udp = true", "udp"),
    ] {
        let err = grants_of(&format!("[grants.sockets]\n{table}"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("sockets"), "{table}: {err}");
        assert!(err.contains(needle), "{table}: {err}");
    }
}
