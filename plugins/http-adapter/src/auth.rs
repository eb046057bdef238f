//! Bearer-token authentication against the token file named in the config.

use cairn_sdk::Config;
use serde::Deserialize;

use crate::errors::ApiError;

/// The adapter's `[config]`.
#[derive(Debug, Deserialize)]
pub struct Settings {
    /// Absolute path of the file holding the API token (one line).
    #[serde(rename = "token-file")]
    pub token_file: Option<String>,
}

impl Settings {
    pub fn parse(config: &Config) -> Result<Settings, ApiError> {
        config
            .parse()
            .map_err(|err| ApiError::misconfigured(format!("the adapter's config: {err}")))
    }
}

/// Reads the token: the file's text without trailing whitespace (newline).
/// An unset, unreadable or empty token file is `misconfigured`: every
/// authenticated request is then refused, never let through.
pub fn read_token(settings: &Settings) -> Result<String, ApiError> {
    let path = settings
        .token_file
        .as_deref()
        .filter(|path| !path.is_empty())
        .ok_or_else(|| ApiError::misconfigured("no `token-file` in the adapter's [config]"))?;
    let text = std::fs::read_to_string(path).map_err(|err| {
        ApiError::misconfigured(format!("cannot read the token file {path}: {err}"))
    })?;
    let token = text.trim_end();
    if token.is_empty() {
        return Err(ApiError::misconfigured(format!(
            "the token file {path} is empty"
        )));
    }
    Ok(token.to_string())
}

/// Checks `Authorization: Bearer <token>` against the token file, read anew
/// on every request so that replacing the file rotates the token.
pub fn check(authorization: Option<&str>) -> Result<(), ApiError> {
    let settings = Settings::parse(&Config::from_env())?;
    let expected = read_token(&settings)?;
    let presented = authorization.and_then(bearer).ok_or_else(|| {
        ApiError::unauthorized("this endpoint needs `Authorization: Bearer <token>`")
    })?;
    if constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("the bearer token is not valid"))
    }
}

/// The credentials of a `Bearer` authorization (scheme without case).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Compares without an early exit: the time depends only on the length of
/// the expected token, not on where the presented one differs.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut difference = u8::from(expected.len() != presented.len());
    for (i, byte) in expected.iter().enumerate() {
        let other = presented.get(i).copied().unwrap_or(!byte);
        difference |= byte ^ other;
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn bearer_scheme_is_required() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
