//! Plugin references: `oci://HOST[:PORT]/REPO[/...]:TAG` or `...@sha256:<hex>`.

use std::fmt;
use std::str::FromStr;

use crate::state::digest::Digest;

/// The scheme prefix accepted (and printed) in front of a reference.
const SCHEME: &str = "oci://";

/// Longest tag the distribution specification allows.
const MAX_TAG_LEN: usize = 128;

/// A fully qualified reference to an artifact in an OCI registry.
///
/// The registry host is always explicit: unlike container tooling there is no implied
/// default registry, so a plugin reference never silently resolves to a public service.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a valid [`Reference`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid OCI reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// The rejected input (truncated to 200 characters).
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Reference {
    /// Parses `oci://HOST[:PORT]/REPO[/...]:TAG`, `...@sha256:<hex>` or
    /// `...:TAG@sha256:<hex>`; the `oci://` prefix is optional.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            input: input.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        let rest = input.strip_prefix(SCHEME).unwrap_or(input);
        if rest.contains("://") {
            return Err(fail("only the oci:// scheme is supported"));
        }
        let (rest, digest) = match rest.split_once('@') {
            Some((name, digest)) => {
                let digest = Digest::parse(digest).map_err(|_| {
                    fail("the digest after `@` must be `sha256:` followed by 64 lowercase hex digits")
                })?;
                (name, Some(digest))
            }
            None => (rest, None),
        };
        let Some((registry, path)) = rest.split_once('/') else {
            return Err(fail(
                "expected HOST[:PORT]/REPOSITORY followed by :TAG or @sha256:DIGEST",
            ));
        };
        check_registry(registry).map_err(|r| fail(&r))?;
        // A colon in the last path segment separates the tag; one in the host is a port.
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (&path[..last_slash + i], Some(&path[last_slash + i + 1..])),
            None => (path, None),
        };
        check_repository(repository).map_err(|r| fail(&r))?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| fail(&r))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(fail(
                "a tag (`:TAG`) or digest (`@sha256:...`) is required; there is no implied `latest`",
            ));
        }
        Ok(Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry as `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned manifest digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `HOST[:PORT]/REPO`, the form cosign records as `docker-reference`.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository, tag and digest on another registry (`HOST[:PORT]`).
    pub fn on_registry(&self, registry: &str) -> Reference {
        Reference {
            registry: registry.to_owned(),
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest` (without a tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository at `tag` (without a digest). The tag is not validated here
    /// because callers build it from validated parts (e.g. a digest's hex).
    pub(crate) fn with_tag(&self, tag: String) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag),
            digest: None,
        }
    }

    /// The equivalent oci-client reference (the digest wins over the tag).
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(digest)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.to_string(),
            ),
            (Some(tag), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
            ),
            // Unreachable through `parse`; the registry's default tag keeps this total.
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".to_owned(),
            ),
        }
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!(
            "registry host {host:?} is not a host name or IPv4 address"
        ));
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!(
            "registry port {port:?} is not a number from 1 to 65535"
        ));
    }
    Ok(())
}

fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository path is empty".into());
    }
    for component in repository.split('/') {
        if !component_ok(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 separated by single `.`, `_`, `__` or dashes"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` from the distribution specification.
fn component_ok(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok_first = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok_rest = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if tag.len() > MAX_TAG_LEN || !ok_first || !ok_rest {
        return Err(format!(
            "tag {tag:?} must be 1 to 128 letters, digits, `_`, `.` or `-`, \
             not starting with `.` or `-`"
        ));
    }
    Ok(())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let hex = "a".repeat(64);
        for (input, registry, repo, tag, has_digest) in [
            (
                "oci://127.0.0.1:5000/plugins/counter:1.0.0",
                "127.0.0.1:5000",
                "plugins/counter",
                Some("1.0.0"),
                false,
            ),
            (
                "ghcr.io/acme/cairn/echo:latest",
                "ghcr.io",
                "acme/cairn/echo",
                Some("latest"),
                false,
            ),
            (
                &format!("localhost/echo@sha256:{hex}"),
                "localhost",
                "echo",
                None,
                true,
            ),
            (
                &format!("oci://r.example:443/a_b/c-d:v1@sha256:{hex}"),
                "r.example:443",
                "a_b/c-d",
                Some("v1"),
                true,
            ),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repo, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest().is_some(), has_digest, "{input}");
            let shown = r.to_string();
            assert!(shown.starts_with("oci://"), "{shown}");
            assert_eq!(Reference::parse(&shown).unwrap(), r);
        }
        let r = Reference::parse("h:5000/x:1").unwrap();
        assert_eq!(r.repository_name(), "h:5000/x");
        let pinned = r.with_digest(Digest::of(b"m"));
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.to_oci().digest(), Some(Digest::of(b"m").as_str()));
    }

    #[test]
    fn malformed_references_say_why() {
        for (input, needle) in [
            ("counter:1.0", "HOST[:PORT]/REPOSITORY"),
            ("oci://host/counter", "tag"),
            ("https://host/counter:1", "oci://"),
            ("host/Counter:1", "lowercase"),
            ("host//counter:1", "component"),
            ("host/counter:", "tag"),
            ("host/counter:.bad", "tag"),
            ("host:99999/counter:1", "port"),
            ("ho_st/counter:1", "host"),
            ("host/counter@sha256:abc", "digest"),
            ("host/counter@md5:abc", "digest"),
        ] {
            let err = Reference::parse(input).unwrap_err();
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }
}
