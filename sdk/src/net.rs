//! Opening TCP connections (`wasi:sockets`), for reachability checks.
//!
//! Needs `[grants.sockets]` in the plugin's policy (and `resolve` for names
//! looked up with `std::net::ToSocketAddrs`). A plugin that never calls
//! [`connect`] does not import `wasi:sockets`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a connection was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    /// The policy's `[grants.sockets]` does not allow the address.
    pub denied: bool,
    /// A one-line explanation naming the address.
    pub message: String,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// Opens a TCP connection to `address` within `timeout`, then closes it.
///
/// Straight through `wasi:sockets` rather than `std::net`, whose
/// `connect_timeout` on wasip2 cannot tell a refused connection from an
/// established one.
pub fn connect(address: SocketAddr, timeout: Duration) -> Result<(), ConnectError> {
    #[cfg(target_arch = "wasm32")]
    return wasi::connect(address, timeout);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::fake::connect(address, timeout);
}

#[cfg(target_arch = "wasm32")]
mod wasi {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::ConnectError;
    use crate::bindings::wasi::clocks::monotonic_clock;
    use crate::bindings::wasi::io::poll;
    use crate::bindings::wasi::sockets::network::{
        ErrorCode as NetError, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress,
        Ipv6SocketAddress,
    };
    use crate::bindings::wasi::sockets::{instance_network, tcp_create_socket};

    fn nanos(duration: Duration) -> u64 {
        u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn connect(address: SocketAddr, timeout: Duration) -> Result<(), ConnectError> {
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
        let failure = |denied: bool, message: String| ConnectError { denied, message };
        let failed = |err: NetError| match err {
            NetError::AccessDenied => failure(
                true,
                format!("connecting to {address} is not allowed by [grants.sockets]"),
            ),
            NetError::ConnectionRefused => {
                failure(false, format!("connecting to {address}: refused"))
            }
            NetError::Timeout => failure(false, format!("connecting to {address}: timed out")),
            other => failure(false, format!("connecting to {address}: {other:?}")),
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
                    return Err(failure(
                        false,
                        format!("connecting to {address}: no answer within {timeout:?}"),
                    ));
                }
                Err(NetError::WouldBlock) => {}
                Err(err) => return Err(failed(err)),
            }
        }
    }
}
