//! `[grants.sockets]`: outgoing TCP connections through the standard
//! `wasi:sockets` interfaces (Rust's `std::net::TcpStream`), to the
//! destinations a policy lists and nowhere else.
//!
//! Without the grant a plugin importing `wasi:sockets` is refused at install.
//! With it, the instance's WASI context allows TCP and checks every address the
//! plugin uses: a connection to a listed destination passes; binding (beyond the
//! implicit bind every connect makes), listening, accepting and UDP are refused.
//! Name lookup (`wasi:sockets/ip-name-lookup`) is allowed only with `resolve`.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use wasmtime::component::Linker;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::http::egress::Cidr;
use super::{Capability, CapsData, HostSetup, InstanceSetup};
use crate::contract::Audit;

pub struct Sockets;

/// `[grants.sockets]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SocketsGrant {
    /// Destinations the plugin may open TCP connections to.
    #[serde(default)]
    pub tcp_connect: Vec<Destination>,
    /// Whether the plugin may look names up (`wasi:sockets/ip-name-lookup`).
    #[serde(default)]
    pub resolve: bool,
}

/// One `tcp-connect` pattern: `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Destination {
    host: HostMatch,
    /// `None` for `*`.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Ip(IpAddr),
    Range(Cidr),
    /// A DNS name, lowercase, without a trailing dot.
    Name(String),
}

impl TryFrom<String> for Destination {
    type Error = String;

    fn try_from(text: String) -> Result<Destination, String> {
        parse_destination(&text).map_err(|why| {
            format!(
                "invalid tcp-connect pattern {text:?}: {why} (expected HOST:PORT, where HOST is an \
                 address, a CIDR range or a host name, IPv6 in brackets, and PORT a number or `*`)"
            )
        })
    }
}

fn parse_destination(text: &str) -> Result<Destination, String> {
    let (host, port) = text.rsplit_once(':').ok_or("no `:PORT`")?;
    let port = match port {
        "*" => None,
        digits => match digits.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{digits}` is not a port from 1 to 65535")),
            Ok(_) if digits.starts_with('0') || digits.starts_with('+') => {
                return Err(format!("`{digits}` is not a plain port number"));
            }
            Ok(port) => Some(port),
        },
    };
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("`[` without `]`")?;
        if inner.contains('/') {
            let cidr = Cidr::try_from(inner.to_string())?;
            if !inner.contains(':') {
                return Err("brackets are for IPv6 only".into());
            }
            HostMatch::Range(cidr)
        } else {
            match inner.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => HostMatch::Ip(IpAddr::V6(v6)),
                _ => return Err(format!("`{inner}` is not an IPv6 address")),
            }
        }
    } else if host.contains(':') {
        return Err("an IPv6 address must be in brackets: [::1]:5432".into());
    } else if host.contains('/') {
        HostMatch::Range(Cidr::try_from(host.to_string())?)
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        HostMatch::Ip(ip)
    } else {
        HostMatch::Name(check_name(host)?)
    };
    if let HostMatch::Ip(ip) = host
        && ip.is_unspecified()
    {
        return Err("the unspecified address reaches nothing".into());
    }
    Ok(Destination { host, port })
}

fn check_name(host: &str) -> Result<String, String> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{host}` is not an address, a range or a host name"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("`{host}` is not a valid IPv4 address"));
    }
    Ok(name)
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostMatch::Ip(ip) => write!(f, "{ip}")?,
            HostMatch::Range(cidr) if cidr.to_string().contains(':') => write!(f, "[{cidr}]")?,
            HostMatch::Range(cidr) => write!(f, "{cidr}")?,
            HostMatch::Name(name) => write!(f, "{name}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => write!(f, ":*"),
        }
    }
}

impl Destination {
    /// Whether `addr` matches without a name lookup (addresses and ranges).
    fn matches_address(&self, addr: SocketAddr) -> bool {
        if self.port.is_some_and(|port| port != addr.port()) {
            return false;
        }
        let ip = addr.ip().to_canonical();
        match &self.host {
            HostMatch::Ip(allowed) => allowed.to_canonical() == ip,
            HostMatch::Range(cidr) => cidr.contains(ip),
            HostMatch::Name(_) => false,
        }
    }

    /// The host name, when the pattern names one and its port fits `addr`.
    fn name_for(&self, addr: SocketAddr) -> Option<&str> {
        match &self.host {
            HostMatch::Name(name) if self.port.is_none_or(|port| port == addr.port()) => Some(name),
            _ => None,
        }
    }
}

impl Capability for Sockets {
    const NAME: &'static str = "sockets";
    /// Every `wasi:sockets/*` interface needs this grant.
    const INTERFACES: &'static [&'static str] = &["wasi:sockets/"];
    type Grant = SocketsGrant;
    type Shared = ();
    type Local = ();

    fn validate(grant: &SocketsGrant) -> Result<(), String> {
        if !grant.resolve
            && let Some(named) = grant
                .tcp_connect
                .iter()
                .find(|d| matches!(d.host, HostMatch::Name(_)))
        {
            return Err(format!(
                "tcp-connect names the host `{named}`, which needs `resolve = true`"
            ));
        }
        Ok(())
    }

    /// `wasi:sockets` is linked with the rest of WASI (see `wasi.rs`); the
    /// grant decides whether a plugin may import it (at install) and what its
    /// instance's WASI context lets through (at run time).
    fn add_to_linker<T: CapsData>(_: &mut Linker<T>) -> wasmtime::Result<()> {
        Ok(())
    }

    fn build(_: &HostSetup) -> anyhow::Result<()> {
        Ok(())
    }

    fn prepare(_: &(), grant: Option<&SocketsGrant>, instance: &mut InstanceSetup<'_>) {
        configure(
            instance.wasi,
            &instance.ctx.plugin,
            grant,
            &instance.ctx.audit,
        );
    }
}

/// Configures a new instance's WASI context: TCP with an address check for the
/// granted destinations and name lookup when `resolve` allows it; without the
/// grant, no network at all.
fn configure(
    builder: &mut WasiCtxBuilder,
    plugin: &Arc<str>,
    grant: Option<&SocketsGrant>,
    audit: &Arc<Audit>,
) {
    builder.allow_udp(false);
    let Some(grant) = grant else {
        builder
            .allow_tcp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        return;
    };
    let allowed: Arc<[Destination]> = grant.tcp_connect.clone().into();
    let plugin = plugin.clone();
    let audit = audit.clone();
    builder
        .allow_tcp(true)
        .allow_ip_name_lookup(grant.resolve)
        .socket_addr_check(move |addr, usage| {
            let allowed = allowed.clone();
            let plugin = plugin.clone();
            let audit = audit.clone();
            Box::pin(async move {
                let verdict = check(&allowed, addr, usage).await;
                if let Err(why) = &verdict {
                    audit.record(&plugin, Sockets::NAME, why);
                }
                verdict.is_ok()
            }) as Pin<Box<dyn Future<Output = bool> + Send + Sync>>
        });
}

/// Decides one use of an address: `Ok` or why it is refused.
async fn check(
    allowed: &[Destination],
    addr: SocketAddr,
    usage: SocketAddrUse,
) -> Result<(), String> {
    match usage {
        // Every connect first asks to bind implicitly to the unspecified
        // address and an ephemeral port; nothing else may be bound.
        SocketAddrUse::TcpBind if addr.ip().is_unspecified() && addr.port() == 0 => Ok(()),
        SocketAddrUse::TcpConnect => {
            if allowed.iter().any(|dest| dest.matches_address(addr)) {
                return Ok(());
            }
            for dest in allowed {
                if let Some(name) = dest.name_for(addr)
                    && resolves_to(name, addr).await
                {
                    return Ok(());
                }
            }
            Err(format!("TCP connection to {addr}: not in tcp-connect"))
        }
        other => Err(format!(
            "{other:?} on {addr}: only outgoing TCP connections are granted"
        )),
    }
}

/// Whether `name` currently resolves (on the host) to `addr`'s address.
async fn resolves_to(name: &str, addr: SocketAddr) -> bool {
    let lookup = tokio::net::lookup_host((name, addr.port()));
    match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(mut found)) => {
            found.any(|candidate| candidate.ip().to_canonical() == addr.ip().to_canonical())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(text: &str) -> Result<Destination, String> {
        Destination::try_from(text.to_string())
    }

    fn grant(text: &str) -> Result<SocketsGrant, String> {
        let grant: SocketsGrant = toml::from_str(text).map_err(|err| err.to_string())?;
        Sockets::validate(&grant).map(|()| grant)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn patterns_parse_and_print() {
        for text in [
            "127.0.0.1:5432",
            "10.0.0.0/8:*",
            "db.local:5432",
            "[::1]:22",
            "[fd00::/8]:*",
            "example.com:*",
        ] {
            assert_eq!(dest(text).unwrap().to_string(), text);
        }
        assert_eq!(dest("DB.Local.:80").unwrap().to_string(), "db.local:80");
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:080",
            "127.0.0.1:http",
            "::1:22",
            "[127.0.0.1]:22",
            "[::1:22",
            "10.0.0.1/8:*",
            "0.0.0.0/0:*",
            "0.0.0.0:80",
            "[::]:80",
            "bad_name:80",
            "-x.local:80",
            "a..b:80",
            "300.1.1.1:80",
            ":80",
            "*:*",
        ] {
            assert!(dest(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn addresses_match_by_address_range_and_port() {
        let exact = dest("127.0.0.1:5432").unwrap();
        assert!(exact.matches_address(addr("127.0.0.1:5432")));
        assert!(exact.matches_address(addr("[::ffff:127.0.0.1]:5432")));
        assert!(!exact.matches_address(addr("127.0.0.1:5433")));
        assert!(!exact.matches_address(addr("127.0.0.2:5432")));
        let range = dest("10.0.0.0/8:*").unwrap();
        assert!(range.matches_address(addr("10.1.2.3:1")));
        assert!(range.matches_address(addr("10.255.0.1:65535")));
        assert!(!range.matches_address(addr("11.0.0.1:80")));
        let v6 = dest("[fd00::/8]:443").unwrap();
        assert!(v6.matches_address(addr("[fd12::1]:443")));
        assert!(!v6.matches_address(addr("[fd12::1]:80")));
        assert!(!v6.matches_address(addr("[fe80::1]:443")));
        let name = dest("db.local:5432").unwrap();
        assert!(!name.matches_address(addr("127.0.0.1:5432")));
        assert_eq!(name.name_for(addr("127.0.0.1:5432")), Some("db.local"));
        assert_eq!(name.name_for(addr("127.0.0.1:80")), None);
    }

    #[test]
    fn names_need_resolve_and_unknown_keys_are_refused() {
        assert!(grant(r#"tcp-connect = ["db.local:5432"]"#).is_err());
        assert!(grant("tcp-connect = [\"db.local:5432\"]\nresolve = true").is_ok());
        assert!(grant(r#"tcp-connect = ["127.0.0.1:80"]"#).is_ok());
        assert!(grant("").is_ok());
        assert!(grant("udp = true").is_err());
        assert!(grant(r#"tcp-connect = ["nope"]"#).is_err());
    }

    #[tokio::test]
    async fn only_connects_to_granted_destinations_pass() {
        let allowed = [
            dest("127.0.0.1:5432").unwrap(),
            dest("localhost:6000").unwrap(),
        ];
        let ok = |addr_text: &str, usage| {
            let allowed = allowed.clone();
            let addr = addr(addr_text);
            async move { check(&allowed, addr, usage).await.is_ok() }
        };
        assert!(ok("127.0.0.1:5432", SocketAddrUse::TcpConnect).await);
        assert!(ok("0.0.0.0:0", SocketAddrUse::TcpBind).await);
        assert!(ok("[::]:0", SocketAddrUse::TcpBind).await);
        assert!(ok("127.0.0.1:6000", SocketAddrUse::TcpConnect).await);
        assert!(!ok("127.0.0.1:6001", SocketAddrUse::TcpConnect).await);
        assert!(!ok("127.0.0.1:5433", SocketAddrUse::TcpConnect).await);
        assert!(!ok("0.0.0.0:5432", SocketAddrUse::TcpBind).await);
        assert!(!ok("127.0.0.1:5432", SocketAddrUse::TcpListen).await);
        assert!(!ok("127.0.0.1:5432", SocketAddrUse::TcpAccept).await);
        assert!(!ok("127.0.0.1:5432", SocketAddrUse::UdpSend).await);
        assert!(!ok("0.0.0.0:0", SocketAddrUse::UdpBind).await);
    }
}
