//! Which addresses an outgoing request may connect to: public unicast only,
//! unless `allow-private` lists the range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range of `allow-private`, such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Cidr, String> {
        let invalid = |why: &str| format!("invalid CIDR {text:?}: {why}");
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| invalid("expected address/prefix-length, e.g. \"10.0.0.0/8\""))?;
        let network: IpAddr = ip
            .parse()
            .map_err(|_| invalid("not an IPv4 or IPv6 address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix.parse::<u8>() {
            Ok(length) if length <= max && length.to_string() == prefix => length,
            _ => return Err(invalid(&format!("the prefix length must be 0 to {max}"))),
        };
        if prefix == 0 {
            return Err(invalid(
                "a /0 range would allow everything; list the ranges",
            ));
        }
        let cidr = Cidr { network, prefix };
        if mask(network, prefix) != network {
            return Err(invalid("host bits are set after the prefix"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & mask))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

impl Cidr {
    /// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

/// Why an address is not public, or `None` for a public unicast address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("shared address space (CGNAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (first & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (first & 0xffc0) == 0xfec0 {
        Some("site-local")
    } else if (first & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if let Some(v4) = embedded_v4(ip) {
        // NAT64 and 6to4 reach the IPv4 address they embed.
        non_public_v4(v4)
    } else {
        None
    }
}

/// The IPv4 address inside a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let join = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(join(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(join(s[1], s[2]))
    } else if s[..6] == [0; 6] {
        // IPv4-compatible (deprecated) `::a.b.c.d`.
        Some(join(s[6], s[7]))
    } else {
        None
    }
}

/// Why the plugin may not connect to `ip`, or `None` when it may: public, or
/// inside one of its `allow-private` ranges.
pub fn refused(ip: IpAddr, allow_private: &[Cidr]) -> Option<&'static str> {
    let why = non_public(ip)?;
    if allow_private.iter().any(|range| range.contains(ip)) {
        None
    } else {
        Some(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::try_from(text.to_string()).unwrap()
    }

    #[test]
    fn the_deny_list() {
        for (addr, why) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("169.254.169.254", "link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.255", "shared address space (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "private (unique local)"),
            ("fc00::1", "private (unique local)"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:c0a8:0101::1", "private"),
            ("::7f00:1", "loopback"),
        ] {
            assert_eq!(non_public(ip(addr)), Some(why), "{addr}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert_eq!(non_public(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn allow_private_ranges() {
        let allowed = [cidr("127.0.0.1/32"), cidr("10.0.0.0/8"), cidr("fd00::/8")];
        assert_eq!(refused(ip("127.0.0.1"), &allowed), None);
        assert_eq!(refused(ip("::ffff:127.0.0.1"), &allowed), None);
        assert_eq!(refused(ip("127.0.0.2"), &allowed), Some("loopback"));
        assert_eq!(refused(ip("10.200.0.1"), &allowed), None);
        assert_eq!(refused(ip("fd12::1"), &allowed), None);
        assert_eq!(refused(ip("::1"), &allowed), Some("loopback"));
        assert_eq!(refused(ip("192.168.0.1"), &allowed), Some("private"));
        assert_eq!(refused(ip("8.8.8.8"), &[]), None);
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::1/128").to_string(), "::1/128");
        for bad in [
            "10.0.0.0",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "10.0.0.0/x",
            "0.0.0.0/0",
            "::/0",
            "fd00::1/8",
            "localhost/8",
            "10.0.0/8",
        ] {
            assert!(Cidr::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }
}
