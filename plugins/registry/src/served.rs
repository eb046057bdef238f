//! What the plugin serves on the daemon's HTTP listener (under the prefix its
//! `[grants.http-server]` routes name), each with a Basic login of the
//! `build` or `runtime` user:
//!
//! - `GET …/token?service=..&scope=..` (with `token-realm`): a token granting
//!   what that user may do of the scopes asked (the Docker token protocol
//!   that `docker`, containerd and Cairn's own registry client follow after
//!   a `401` from the registry);
//! - `PUT …/in-use`: a device's report of the digests it runs (what
//!   `registry-report` sends), which retention keeps.
//!
//! It runs on pooled instances where `init` never ran, so it reads the
//! config, the passwords and the signing key from the state directory on
//! every request: a rotated password counts at once.

use std::time::SystemTime;

use base64::Engine as _;
use cairn_sdk::http::Method;
use cairn_sdk::http::server::{Handler, Request, Response};
use cairn_sdk::{Config, ErrorBody, ErrorCode};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::artifacts::{self, InUseReport};
use crate::secrets::{Credentials, User};
use crate::settings::Settings;
use crate::token::{self, Access, Signer};

/// The largest in-use report taken.
const MAX_REPORT: usize = 1024 * 1024;

/// The registry plugin's HTTP side.
pub struct Served;

impl Handler for Served {
    fn handle(request: Request) -> Response {
        let answered = Config::from_env()
            .parse::<Settings>()
            .map_err(|err| failure(500, ErrorCode::Internal, err.to_string()))
            .and_then(|settings| route(&request, &settings));
        answered.unwrap_or_else(|refused| refused)
    }
}

fn route(request: &Request, settings: &Settings) -> Result<Response, Response> {
    let method_is = |method: Method| {
        if request.method == method {
            Ok(())
        } else {
            Err(failure(
                405,
                ErrorCode::Invalid,
                format!("this path answers {method}"),
            )
            .with_header("allow", method.as_str()))
        }
    };
    if request.path.ends_with("/in-use") {
        method_is(Method::Put)?;
        return report_in_use(request, settings);
    }
    if request.path.ends_with("/token") && settings.token_realm.is_some() {
        method_is(Method::Get)?;
        return answer(request, settings);
    }
    Err(failure(404, ErrorCode::NotFound, "no such path".into()))
}

/// Records a device's report, replacing its last one.
fn report_in_use(request: &Request, settings: &Settings) -> Result<Response, Response> {
    let user = log_in(request, settings)?;
    if request.body.len() > MAX_REPORT {
        return Err(failure(
            413,
            ErrorCode::Invalid,
            format!("a report is at most {MAX_REPORT} bytes"),
        ));
    }
    let report: InUseReport = serde_json::from_slice(&request.body).map_err(|err| {
        failure(
            400,
            ErrorCode::Invalid,
            format!("not an in-use report {{\"device\":..,\"digests\":{{..}}}}: {err}"),
        )
    })?;
    let (device, count) = (report.device.clone(), report.digests.len());
    artifacts::report_in_use(report)
        .map_err(|err| failure(400, ErrorCode::Invalid, err.message))?;
    cairn_sdk::info!(
        "in-use report from {device} ({} login): {count} digests",
        user.name()
    );
    Ok(Response::no_content())
}

/// A token for the scopes asked, as far as the user may have them.
fn answer(request: &Request, settings: &Settings) -> Result<Response, Response> {
    let mut service = None;
    let mut asked = Vec::new();
    for (key, value) in query_pairs(request.query.as_deref().unwrap_or_default()) {
        match key.as_str() {
            "service" => service = Some(value),
            "scope" => {
                for scope in value.split(' ').filter(|scope| !scope.is_empty()) {
                    asked.push(Access::parse(scope).ok_or_else(|| {
                        failure(
                            400,
                            ErrorCode::Invalid,
                            format!("`{scope}` is not a scope TYPE:NAME:ACTIONS"),
                        )
                    })?);
                }
            }
            _ => {}
        }
    }
    if service
        .as_deref()
        .is_some_and(|service| service != settings.service())
    {
        return Err(failure(
            400,
            ErrorCode::Invalid,
            format!("this service issues tokens for {} only", settings.service()),
        ));
    }
    let user = log_in(request, settings)?;
    let granted: Vec<Access> = asked
        .iter()
        .filter_map(|access| access.granted_to(user))
        .collect();
    refuse_writes_under_maintenance(&granted)?;
    let signer = Signer::load(&settings.path("token")).ok_or_else(|| {
        failure(
            503,
            ErrorCode::Unavailable,
            "the token signing key is not made yet".into(),
        )
    })?;
    let minted = signer
        .mint(&settings.service(), user.name(), &granted)
        .map_err(|err| failure(500, ErrorCode::Internal, err))?;
    let scopes = |list: &[Access]| {
        list.iter()
            .map(|access| {
                format!(
                    "{}:{}:{}",
                    access.kind,
                    access.name,
                    access.actions.join(",")
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    cairn_sdk::info!(
        "token for {}: granted [{}] of [{}]",
        user.name(),
        scopes(&granted),
        scopes(&asked)
    );
    Ok(Response::json(
        200,
        &json!({
            "token": minted,
            "access_token": minted,
            "expires_in": token::LIFETIME.as_secs(),
            "issued_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }),
    ))
}

/// While a prune holds the maintenance lock, a token that could push or
/// delete is refused with the reason (pulls go on): the lock then covers
/// every client, not only `publish`.
fn refuse_writes_under_maintenance(granted: &[Access]) -> Result<(), Response> {
    let writes = granted.iter().any(|access| {
        access.kind == "repository" && access.actions.iter().any(|action| action != "pull")
    });
    if !writes {
        return Ok(());
    }
    match crate::prune::current() {
        Ok(None) => Ok(()),
        Ok(Some(job)) => Err(failure(
            503,
            ErrorCode::Unavailable,
            format!(
                "the registry is under maintenance (a prune started at {} ms is at step {:?}); push again once it is over",
                job.started_ms, job.step
            ),
        )
        .with_header("retry-after", "30")),
        Err(err) => Err(failure(503, ErrorCode::Unavailable, err)),
    }
}

/// The user whose password the request's Basic login carries.
fn log_in(request: &Request, settings: &Settings) -> Result<User, Response> {
    let unauthorized = |why: &str| {
        failure(401, ErrorCode::Denied, why.into())
            .with_header("www-authenticate", "Basic realm=\"cairn-registry\"")
    };
    let login = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .ok_or_else(|| unauthorized("log in with the build or runtime user"))?;
    let (name, password) = login.split_once(':').unwrap_or((&login, ""));
    let user = match name {
        "build" => User::Build,
        "runtime" => User::Runtime,
        _ => return Err(unauthorized("wrong user or password")),
    };
    let credentials = Credentials::load(&settings.state)
        .map_err(|err| failure(503, ErrorCode::Unavailable, err))?;
    let expected = credentials.password(user).expose().as_bytes();
    if bool::from(expected.ct_eq(password.as_bytes())) {
        Ok(user)
    } else {
        cairn_sdk::warn!("refused a token to {}: wrong password", user.name());
        Err(unauthorized("wrong user or password"))
    }
}

fn failure(status: u16, code: ErrorCode, message: String) -> Response {
    Response::error(status, &ErrorBody::new(code, message))
}

/// `key=value` pairs of a query, percent-decoded (`+` is a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let decoded = match bytes[at] {
            b'%' => bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (decoded, bytes[at]) {
            (Some(byte), _) => {
                out.push(byte);
                at += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                at += 1;
            }
            (None, byte) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_like_clients_encode_them() {
        let pairs = query_pairs(
            "service=localhost%3A5000&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=x+y&bad=%zz",
        );
        assert_eq!(pairs[0], ("service".into(), "localhost:5000".into()));
        assert_eq!(
            pairs[1],
            ("scope".into(), "repository:a/b:pull,push".into())
        );
        assert_eq!(pairs[2], ("scope".into(), "x y".into()));
        assert_eq!(pairs[3], ("bad".into(), "%zz".into()));
    }
}
