//! The little URL handling artifacts need, without a URL crate.

use std::path::PathBuf;

/// An `http`/`https` URL split for a request: scheme, authority, path + query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    pub https: bool,
    pub authority: String,
    pub path_and_query: String,
}

impl HttpUrl {
    /// `None` for other schemes or an empty host. The fragment is dropped: it
    /// never goes to the server.
    pub fn parse(url: &str) -> Option<HttpUrl> {
        let (scheme, rest) = url.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Some(HttpUrl {
            https,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    /// Scheme and host: credentials only follow redirects within one origin.
    pub fn origin(&self) -> (bool, String) {
        (self.https, self.authority.to_ascii_lowercase())
    }

    /// The URL as text again (without the fragment).
    pub fn to_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path_and_query)
    }

    /// Resolves a `Location` header: absolute, scheme-relative (`//host/p`),
    /// absolute-path (`/p`) or relative to the current path's directory.
    pub fn join(&self, location: &str) -> Option<HttpUrl> {
        let location = location.trim();
        if location.contains("://") {
            return HttpUrl::parse(location);
        }
        let scheme = if self.https { "https" } else { "http" };
        if let Some(rest) = location.strip_prefix("//") {
            return HttpUrl::parse(&format!("{scheme}://{rest}"));
        }
        let location = location.split('#').next().unwrap_or("");
        let path_and_query = if location.starts_with('/') {
            location.to_string()
        } else if location.is_empty() {
            self.path_and_query.clone()
        } else if location.starts_with('?') {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            format!("{path}{location}")
        } else {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |at| at + 1)];
            format!("{}{location}", if dir.is_empty() { "/" } else { dir })
        };
        Some(HttpUrl {
            https: self.https,
            authority: self.authority.clone(),
            path_and_query: normalize_dots(&path_and_query),
        })
    }
}

/// Removes `.` and `..` segments from a path (keeping the query as is).
fn normalize_dots(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// The local path of a `file://` URI (`file:///p` or `file://localhost/p`).
pub(crate) fn file_path(uri: &str) -> Option<PathBuf> {
    let rest = uri
        .strip_prefix("file://")
        .or_else(|| uri.strip_prefix("FILE://"))?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    Some(PathBuf::from(percent_decode(rest)?))
}

/// The URI's last path segment, decoded: the name of an installed plain file
/// and what `Unpack::Auto` looks at.
pub(crate) fn last_segment(uri: &str) -> Option<String> {
    let without_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = without_scheme.split(['?', '#']).next().unwrap_or("");
    let path = if uri.contains("://") && !uri.starts_with("file://") {
        path.find('/').map_or("", |at| &path[at..])
    } else {
        path
    };
    let segment = path.rsplit('/').next().unwrap_or("");
    percent_decode(segment).filter(|name| !name.is_empty())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_joins_redirect_locations() {
        let base = HttpUrl::parse("https://example.com/a/b/file.tgz?x=1#frag").unwrap();
        assert_eq!(base.authority, "example.com");
        assert_eq!(base.path_and_query, "/a/b/file.tgz?x=1");
        let join = |loc: &str| base.join(loc).unwrap().to_url();
        assert_eq!(join("http://other:8080/z"), "http://other:8080/z");
        assert_eq!(join("//cdn.example.com/q"), "https://cdn.example.com/q");
        assert_eq!(join("/root?sig=2"), "https://example.com/root?sig=2");
        assert_eq!(join("next.tgz"), "https://example.com/a/b/next.tgz");
        assert_eq!(join("../up/./x"), "https://example.com/a/up/x");
        assert_eq!(join("../../../../x"), "https://example.com/x");
        assert_eq!(
            HttpUrl::parse("http://h").unwrap().path_and_query,
            "/".to_string()
        );
        assert_eq!(HttpUrl::parse("ftp://h/x"), None);
        assert_eq!(HttpUrl::parse("http://user@h/x"), None);
    }

    #[test]
    fn file_paths_and_last_segments() {
        assert_eq!(
            file_path("file:///opt/a%20b.tar"),
            Some(PathBuf::from("/opt/a b.tar"))
        );
        assert_eq!(file_path("file://localhost/x"), Some(PathBuf::from("/x")));
        assert_eq!(file_path("file://host/x"), None);
        assert_eq!(
            last_segment("https://h/dl/tool-1.2.tar.gz?token=1").as_deref(),
            Some("tool-1.2.tar.gz")
        );
        assert_eq!(last_segment("https://h").as_deref(), None);
        assert_eq!(last_segment("https://h/dir/").as_deref(), None);
        assert_eq!(
            last_segment("file:///opt/bin/tool").as_deref(),
            Some("tool")
        );
    }
}
