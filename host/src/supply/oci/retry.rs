//! Retries with exponential backoff, and the mapping of oci-client errors to
//! [`OciError`] that decides what is worth retrying.

use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use super::client::Registry;
use super::error::{OciError, chain};
use super::reference::Reference;

impl Registry {
    /// Runs `op` up to `options.retries` times while it fails transiently, doubling
    /// the delay between attempts.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        reference: &Reference,
        what: &str,
        mut op: F,
    ) -> Result<T, OciError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let attempts = self.options.retries.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await.map_err(|e| self.classify(reference, what, e)) {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() && attempt < attempts => {
                    let delay = self.backoff(attempt);
                    tracing::debug!(%reference, what, attempt, error = %e, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(with_attempts(e, attempt)),
            }
        }
    }

    /// Delay after failed attempt number `attempt` (1-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.options
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
    }

    /// Turns an oci-client error into ours, deciding what is transient.
    pub(crate) fn classify(
        &self,
        reference: &Reference,
        what: &str,
        err: OciDistributionError,
    ) -> OciError {
        let registry = reference.registry().to_owned();
        let network = |detail: String| OciError::Network {
            registry: registry.clone(),
            attempts: 1,
            detail,
        };
        let not_found = || OciError::NotFound {
            what: what.to_owned(),
            reference: reference.to_string(),
        };
        match err {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.unauthorized(reference),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found()
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    self.unauthorized(reference)
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
                {
                    network(envelope.to_string())
                } else {
                    OciError::Registry {
                        registry,
                        detail: envelope.to_string(),
                    }
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                404 => not_found(),
                401 | 403 => self.unauthorized(reference),
                429 | 500..=599 => network(format!("HTTP {code}: {}", truncate(&message))),
                _ => OciError::Registry {
                    registry,
                    detail: format!("HTTP {code}: {}", truncate(&message)),
                },
            },
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => OciError::ManifestDigestMismatch { expected, actual },
            OciDistributionError::RequestError(e) => {
                let detail = chain(&e);
                if !self.is_plain_http(reference) && looks_like_tls(&detail) {
                    OciError::Tls { registry, detail }
                } else if e.is_builder() {
                    OciError::Registry { registry, detail }
                } else {
                    network(detail)
                }
            }
            OciDistributionError::IoError(e) => network(chain(&e)),
            other => OciError::Registry {
                registry,
                detail: chain(&other),
            },
        }
    }

    fn is_plain_http(&self, reference: &Reference) -> bool {
        self.options
            .insecure
            .iter()
            .any(|r| r == reference.registry())
    }

    fn unauthorized(&self, reference: &Reference) -> OciError {
        let registry = reference.registry().to_owned();
        let credential = self
            .options
            .credentials
            .as_ref()
            .and_then(|c| c.get(&registry));
        let (as_who, hint) = match credential {
            Some(c) => (
                c.identity(),
                format!("check the credentials configured for {registry:?}"),
            ),
            None => (
                "anonymous".to_owned(),
                format!("add credentials for {registry:?} to the credentials file"),
            ),
        };
        OciError::Unauthorized {
            registry,
            as_who,
            hint,
        }
    }
}

/// Records how many attempts a final network error took.
pub(crate) fn with_attempts(err: OciError, attempts: u32) -> OciError {
    match err {
        OciError::Network {
            registry, detail, ..
        } => OciError::Network {
            registry,
            attempts,
            detail,
        },
        other => other,
    }
}

/// Whether an HTTP client error chain is a TLS failure (as when speaking HTTPS to a
/// plain HTTP server), which retrying cannot fix.
fn looks_like_tls(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    [
        "tls",
        "ssl",
        "certificate",
        "corrupt message",
        "invalidcontenttype",
        "handshake",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

fn truncate(message: &str) -> String {
    let text: String = message.chars().take(300).collect();
    text.trim().to_owned()
}
