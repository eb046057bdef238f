//! URL patterns of `[grants.http-client] allow`:
//! `scheme://host[:port][/path-prefix]`, where the host may start with one
//! `*.` wildcard label.

use std::fmt;
use std::net::IpAddr;

/// One parsed `allow` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct UrlPattern {
    /// `http` or `https`.
    pub scheme: String,
    pub host: HostPattern,
    /// Explicit, or the scheme's default (80, 443).
    pub port: u16,
    /// A path prefix; `None` allows every path.
    pub path: Option<String>,
    text: String,
}

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// An exact DNS name, lowercase.
    Name(String),
    /// `*.suffix`: exactly one label in front of `suffix` (not `suffix` itself).
    Wildcard(String),
    /// An IP address literal (IPv6 written in brackets).
    Ip(IpAddr),
}

impl fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for UrlPattern {
    type Error = String;

    fn try_from(text: String) -> Result<UrlPattern, String> {
        parse(&text).map_err(|why| format!("invalid URL pattern {text:?}: {why}"))
    }
}

/// The default port of a scheme this capability speaks.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse(text: &str) -> Result<UrlPattern, String> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or("expected scheme://host[:port][/path], e.g. \"https://api.example.com\"")?;
    let (scheme, port) = match scheme {
        "http" => ("http", 80),
        "https" => ("https", 443),
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    if rest.contains(['?', '#']) {
        return Err("a pattern has no query or fragment".into());
    }
    if rest.contains('@') {
        return Err("a pattern has no user information".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], Some(&rest[at..])),
        None => (rest, None),
    };
    let (host, port) = split_port(authority, port)?;
    let host = parse_host(host)?;
    let path = match path {
        None | Some("/") => None,
        Some(path) => {
            check_path(path)?;
            Some(path.to_string())
        }
    };
    Ok(UrlPattern {
        scheme: scheme.to_string(),
        host,
        port,
        path,
        text: text.to_string(),
    })
}

fn split_port(authority: &str, default: u16) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed `[` in the host")?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("unexpected text after `]`")?),
        };
        (&authority[..end + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default,
        // Written canonically: no sign, no leading zero.
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && port.to_string() == text => port,
            _ => return Err(format!("invalid port {text:?}: expected 1 to 65535")),
        },
    };
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| HostPattern::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("{host:?} is not an IPv6 address"));
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(HostPattern::Ip(IpAddr::V4(ip)));
    }
    let lower = host.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        check_name(suffix)?;
        if !suffix.contains('.') {
            return Err(format!(
                "wildcard {host:?} is too broad: put at least two labels after `*.`"
            ));
        }
        return Ok(HostPattern::Wildcard(suffix.to_string()));
    }
    check_name(&lower)?;
    Ok(HostPattern::Name(lower))
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens.
fn check_name(name: &str) -> Result<(), String> {
    if name.contains('*') {
        return Err("`*` is only allowed as the whole first label (`*.example.com`)".into());
    }
    if name.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "{name:?} is not a valid host name (letters, digits and `-` in dot-separated labels)"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "{name:?} is neither a host name nor an IPv4 address"
        ));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if path.contains(['%', '*', '\\']) || path.chars().any(char::is_whitespace) {
        return Err("the path prefix has `%`, `*`, `\\` or white space".into());
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("the path prefix has a `.` or `..` segment".into());
    }
    if path.contains("//") {
        return Err("the path prefix has an empty segment (`//`)".into());
    }
    Ok(())
}

impl UrlPattern {
    /// Whether a request to `scheme://host:port` + `path` matches. `host` is
    /// lowercase, without brackets for IPv6; `path` excludes the query.
    pub fn matches(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        self.scheme == scheme
            && self.port == port
            && self.host.matches(host)
            && self
                .path
                .as_deref()
                .is_none_or(|prefix| path_under(prefix, path))
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Name(name) => name == host,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        }
    }
}

/// `path` is under `prefix`: a prefix ending in `/` matches what starts with
/// it, another matches itself and what continues after a `/`. A path that a
/// server could normalise out of the prefix (dot segments, encoded `.`, `/`
/// or `\`) never matches.
fn path_under(prefix: &str, path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.contains('\\')
    {
        return false;
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return false;
    }
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> UrlPattern {
        UrlPattern::try_from(text.to_string()).unwrap()
    }

    #[test]
    fn parses_scheme_host_port_and_path() {
        let p = pattern("https://api.example.com");
        assert_eq!(
            (p.scheme.as_str(), &p.host, p.port, &p.path),
            (
                "https",
                &HostPattern::Name("api.example.com".into()),
                443,
                &None
            )
        );
        let p = pattern("https://*.Example.com:8443/v1/");
        assert_eq!(p.host, HostPattern::Wildcard("example.com".into()));
        assert_eq!((p.port, p.path.as_deref()), (8443, Some("/v1/")));
        let p = pattern("http://10.0.0.5:9000");
        assert_eq!(
            (p.host, p.port),
            (HostPattern::Ip([10, 0, 0, 5].into()), 9000)
        );
        let p = pattern("http://[fd00::1]/");
        assert_eq!((p.port, p.path), (80, None));
        assert!(matches!(p.host, HostPattern::Ip(IpAddr::V6(_))));
        assert_eq!(pattern("http://localhost:8080").port, 8080);
    }

    #[test]
    fn refuses_malformed_patterns() {
        for bad in [
            "",
            "api.example.com",
            "ftp://example.com",
            "HTTPS://example.com",
            "https://",
            "https://:443",
            "https://example.com:0",
            "https://example.com:65536",
            "https://example.com:080",
            "https://example.com:x",
            "https://user@example.com",
            "https://example.com/?q=1",
            "https://example.com/#frag",
            "https://*",
            "https://*.com",
            "https://a.*.example.com",
            "https://*example.com",
            "https://exa_mple.com",
            "https://-bad.example.com",
            "https://example..com",
            "https://1.2.3",
            "https://[::1",
            "https://[zz::1]",
            "https://[::1]x",
            "https://example.com/v1/../admin",
            "https://example.com/v1//x",
            "https://example.com/v%31",
            "https://example.com/a b",
        ] {
            assert!(
                UrlPattern::try_from(bad.to_string()).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn matches_scheme_port_host_and_path() {
        let p = pattern("https://api.example.com");
        assert!(p.matches("https", "api.example.com", 443, "/anything"));
        assert!(!p.matches("http", "api.example.com", 443, "/"));
        assert!(!p.matches("https", "api.example.com", 8443, "/"));
        assert!(!p.matches("https", "api.example.com.evil.net", 443, "/"));
        assert!(!p.matches("https", "xapi.example.com", 443, "/"));

        let p = pattern("https://*.example.com:8443/v1/");
        assert!(p.matches("https", "a.example.com", 8443, "/v1/x"));
        assert!(!p.matches("https", "example.com", 8443, "/v1/x"));
        assert!(!p.matches("https", "a.b.example.com", 8443, "/v1/x"));
        assert!(!p.matches("https", "aexample.com", 8443, "/v1/x"));
        assert!(!p.matches("https", "a.example.com", 8443, "/v1"));
        assert!(!p.matches("https", "a.example.com", 8443, "/v2/x"));
        assert!(!p.matches("https", "a.example.com", 8443, "/v1/../admin"));
        assert!(!p.matches("https", "a.example.com", 8443, "/v1/%2E%2E/admin"));
        assert!(!p.matches("https", "a.example.com", 8443, "/v1/..%2fadmin"));

        let p = pattern("http://10.0.0.5:9000/api");
        assert!(p.matches("http", "10.0.0.5", 9000, "/api"));
        assert!(p.matches("http", "10.0.0.5", 9000, "/api/x"));
        assert!(!p.matches("http", "10.0.0.5", 9000, "/apix"));
        assert!(!p.matches("http", "10.0.0.6", 9000, "/api"));

        let p = pattern("http://[::1]:8080");
        assert!(p.matches("http", "::1", 8080, "/"));
        assert!(p.matches("http", "0:0:0:0:0:0:0:1", 8080, "/"));
    }
}
