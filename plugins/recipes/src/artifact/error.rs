//! The one error type of the artifact module.

use std::fmt;

/// What went wrong, so the caller can tell a flaky network from a tampered
/// artifact without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactErrorKind {
    /// The network or the server: refused connections, timeouts, HTTP errors.
    Download,
    /// The bytes are not the ones the spec pins (or a cached blob rotted).
    Checksum,
    /// No trusted key vouches for the bytes, or no key is configured.
    Signature,
    /// An archive tried to write outside its destination, or holds devices.
    Unsafe,
    /// A download, an archive or its contents exceed the configured limits.
    TooLarge,
    /// The local filesystem failed.
    Io,
    /// The spec, a key or an archive is malformed.
    Invalid,
}

/// A failed artifact operation; `Display` is one line naming the URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactError {
    pub kind: ArtifactErrorKind,
    /// The artifact (or key, for `Store::open`) the error is about.
    pub uri: String,
    pub message: String,
}

impl ArtifactError {
    pub fn new(kind: ArtifactErrorKind, uri: &str, message: impl Into<String>) -> ArtifactError {
        ArtifactError {
            kind,
            uri: uri.to_string(),
            message: message.into(),
        }
    }

    /// An `Io` error whose message says what was being done with which path.
    pub fn io(uri: &str, what: impl fmt::Display, err: &std::io::Error) -> ArtifactError {
        ArtifactError::new(ArtifactErrorKind::Io, uri, format!("{what}: {err}"))
    }
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ArtifactErrorKind::Download => "download failed",
            ArtifactErrorKind::Checksum => "checksum mismatch",
            ArtifactErrorKind::Signature => "signature not accepted",
            ArtifactErrorKind::Unsafe => "unsafe archive",
            ArtifactErrorKind::TooLarge => "too large",
            ArtifactErrorKind::Io => "I/O error",
            ArtifactErrorKind::Invalid => "invalid",
        };
        if self.uri.is_empty() {
            write!(f, "artifact: {kind}: {}", self.message)
        } else {
            write!(f, "artifact {}: {kind}: {}", self.uri, self.message)
        }
    }
}

impl std::error::Error for ArtifactError {}

/// Shorthands for building errors about one URI.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Errs<'a>(pub &'a str);

impl Errs<'_> {
    pub fn download(&self, message: impl Into<String>) -> ArtifactError {
        ArtifactError::new(ArtifactErrorKind::Download, self.0, message)
    }
    pub fn checksum(&self, message: impl Into<String>) -> ArtifactError {
        ArtifactError::new(ArtifactErrorKind::Checksum, self.0, message)
    }
    pub fn signature(&self, message: impl Into<String>) -> ArtifactError {
        ArtifactError::new(ArtifactErrorKind::Signature, self.0, message)
    }
    pub fn unsafe_(&self, message: impl Into<String>) -> ArtifactError {
        ArtifactError::new(ArtifactErrorKind::Unsafe, self.0, message)
    }
    pub fn too_large(&self, message: impl Into<String>) -> ArtifactError {
        ArtifactError::new(ArtifactErrorKind::TooLarge, self.0, message)
    }
    pub fn invalid(&self, message: impl Into<String>) -> ArtifactError {
        ArtifactError::new(ArtifactErrorKind::Invalid, self.0, message)
    }
    pub fn io(&self, what: impl fmt::Display, err: &std::io::Error) -> ArtifactError {
        ArtifactError::io(self.0, what, err)
    }
}
