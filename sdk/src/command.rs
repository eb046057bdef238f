//! Typed command routing: a plugin declares its commands once, with serde
//! arguments and typed errors, and every malformed call fails the same way.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, ErrorBody, ErrorCode};

/// Why a command failed: a stable [`ErrorCode`] and a message.
///
/// A command routed by [`Commands`] that fails returns the JSON
/// [`ErrorBody`] `{"code": .., "message": ..}` as its error string, so a
/// caller can tell "no such check" from "not allowed" without parsing prose.
///
/// `?` converts capability errors ([`Error`], keeping their kind) and the
/// `String` errors of plain helpers (as `invalid`, the code the host gives a
/// failed plugin command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl CommandError {
    /// An error with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
        }
    }

    /// `invalid`: the arguments are wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        CommandError::new(ErrorCode::Invalid, message)
    }

    /// `not-found`: what the arguments name does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        CommandError::new(ErrorCode::NotFound, message)
    }

    /// `conflict`: it clashes with what exists.
    pub fn conflict(message: impl Into<String>) -> Self {
        CommandError::new(ErrorCode::Conflict, message)
    }

    /// `denied`: the plugin's policy does not allow it.
    pub fn denied(message: impl Into<String>) -> Self {
        CommandError::new(ErrorCode::Denied, message)
    }

    /// `internal`: the plugin failed in a way the caller cannot fix.
    pub fn internal(message: impl Into<String>) -> Self {
        CommandError::new(ErrorCode::Internal, message)
    }

    /// The error for a command nobody declared; `known` lists the declared ones.
    pub fn unknown_command(command: &str, known: &[&str]) -> Self {
        let message = match known {
            [] => format!("unknown command `{command}`"),
            [only] => format!("unknown command `{command}` (expected {only})"),
            [init @ .., last] => format!(
                "unknown command `{command}` (expected {} or {last})",
                init.join(", ")
            ),
        };
        CommandError::not_found(message)
    }

    /// The wire form, an [`ErrorBody`].
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CommandError {}

impl From<Error> for CommandError {
    fn from(error: Error) -> Self {
        CommandError::new(error.code(), error.message())
    }
}

impl From<String> for CommandError {
    fn from(message: String) -> Self {
        CommandError::invalid(message)
    }
}

impl From<&str> for CommandError {
    fn from(message: &str) -> Self {
        CommandError::invalid(message)
    }
}

impl From<crate::commands::CallError> for CommandError {
    fn from(error: crate::commands::CallError) -> Self {
        match error {
            crate::commands::CallError::Host(error) => error.into(),
            crate::commands::CallError::Plugin(text) => {
                let body = ErrorBody::parse_or(&text, ErrorCode::Invalid.as_str());
                let code = body.error_code().unwrap_or(ErrorCode::Invalid);
                CommandError::new(code, body.message)
            }
            crate::commands::CallError::Json(message) => CommandError::invalid(message),
        }
    }
}

impl From<crate::http::HttpError> for CommandError {
    fn from(error: crate::http::HttpError) -> Self {
        use crate::http::HttpErrorKind;
        let code = match error.kind {
            HttpErrorKind::Denied => ErrorCode::Denied,
            HttpErrorKind::InvalidRequest => ErrorCode::Invalid,
            HttpErrorKind::Timeout => ErrorCode::Timeout,
            HttpErrorKind::Connect | HttpErrorKind::Protocol => ErrorCode::Unavailable,
        };
        CommandError::new(code, error.message)
    }
}

/// The error string a command returns to the host: the JSON [`ErrorBody`].
impl From<CommandError> for String {
    fn from(error: CommandError) -> Self {
        error.body().to_json()
    }
}

type Handler<P> = Box<dyn Fn(&mut P, &[u8]) -> Result<Vec<u8>, CommandError>>;

/// A plugin's commands, each with typed arguments and reply.
///
/// Return it from [`Plugin::commands`](crate::Plugin::commands); the SDK
/// builds it once and routes every call through it:
///
/// ```no_run
/// use cairn_sdk::{CommandError, Commands, Config, Plugin};
/// use serde::{Deserialize, Serialize};
///
/// struct Greeter;
///
/// #[derive(Deserialize)]
/// struct Greet { name: String }
///
/// #[derive(Serialize)]
/// struct Greeting { text: String }
///
/// impl Greeter {
///     fn greet(&mut self, args: Greet) -> Result<Greeting, CommandError> {
///         if args.name.is_empty() {
///             return Err(CommandError::invalid("greet: the name is empty"));
///         }
///         Ok(Greeting { text: format!("hello, {}", args.name) })
///     }
/// }
///
/// impl Plugin for Greeter {
///     fn init(_: Config) -> Result<Self, String> { Ok(Greeter) }
///
///     fn commands() -> Commands<Self> {
///         Commands::new().command("greet", Self::greet)
///     }
/// }
/// ```
///
/// Arguments are the JSON payload decoded into the handler's argument type;
/// an empty payload reads as `null`, so `()` and `Option<T>` take calls
/// without an argument. A payload that does not decode fails with `invalid`
/// and a message starting with the command's name; a command that is not
/// declared falls through to [`Plugin::on_command`](crate::Plugin::on_command),
/// whose default fails with `not-found` and lists the declared commands.
pub struct Commands<P> {
    routes: Vec<(&'static str, Handler<P>)>,
}

impl<P> Default for Commands<P> {
    fn default() -> Self {
        Commands::new()
    }
}

impl<P> fmt::Debug for Commands<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl<P> Commands<P> {
    /// No commands.
    pub fn new() -> Self {
        Commands { routes: Vec::new() }
    }

    /// Declares `name`, whose JSON payload decodes into `A` and whose reply
    /// encodes `R` as JSON.
    pub fn command<A, R, E>(
        mut self,
        name: &'static str,
        handler: impl Fn(&mut P, A) -> Result<R, E> + 'static,
    ) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Into<CommandError>,
    {
        let run = move |plugin: &mut P, payload: &[u8]| {
            let args = decode::<A>(name, payload)?;
            let reply = handler(plugin, args).map_err(Into::into)?;
            serde_json::to_vec(&reply).map_err(|err| {
                CommandError::internal(format!("{name}: the reply is not JSON: {err}"))
            })
        };
        self.routes.push((name, Box::new(run)));
        self
    }

    /// Declares `name` with raw payload and reply bytes, for commands that are
    /// not JSON.
    pub fn raw<E: Into<CommandError>>(
        mut self,
        name: &'static str,
        handler: impl Fn(&mut P, &[u8]) -> Result<Vec<u8>, E> + 'static,
    ) -> Self {
        let run =
            move |plugin: &mut P, payload: &[u8]| handler(plugin, payload).map_err(Into::into);
        self.routes.push((name, Box::new(run)));
        self
    }

    /// The declared command names, in declaration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.routes.iter().map(|(name, _)| *name).collect()
    }

    /// Runs `command`, or `None` when it is not declared.
    pub fn dispatch(
        &self,
        plugin: &mut P,
        command: &str,
        payload: &[u8],
    ) -> Option<Result<Vec<u8>, CommandError>> {
        let (_, handler) = self.routes.iter().find(|(name, _)| *name == command)?;
        Some(handler(plugin, payload))
    }
}

/// Decodes a command payload into `A`; blank means JSON `null`.
fn decode<A: DeserializeOwned>(command: &str, payload: &[u8]) -> Result<A, CommandError> {
    let payload: &[u8] = if payload.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        payload
    };
    serde_json::from_slice(payload)
        .map_err(|err| CommandError::invalid(format!("{command}: the arguments do not fit: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count(u64);

    #[derive(serde::Deserialize)]
    struct By {
        by: u64,
    }

    fn commands() -> Commands<Count> {
        Commands::new()
            .command("add", |count: &mut Count, args: By| {
                count.0 += args.by;
                Ok::<_, CommandError>(count.0)
            })
            .command("get", |count: &mut Count, (): ()| {
                Ok::<_, CommandError>(count.0)
            })
            .command("maybe", |_: &mut Count, args: Option<By>| {
                Ok::<_, String>(args.map_or(0, |a| a.by))
            })
            .raw("echo", |_: &mut Count, payload: &[u8]| {
                Ok::<_, CommandError>(payload.to_vec())
            })
    }

    fn run(command: &str, payload: &str) -> Result<String, CommandError> {
        let mut count = Count::default();
        commands()
            .dispatch(&mut count, command, payload.as_bytes())
            .unwrap_or_else(|| Err(CommandError::unknown_command(command, &commands().names())))
            .map(|reply| String::from_utf8(reply).unwrap())
    }

    #[test]
    fn typed_arguments_and_replies() {
        assert_eq!(run("add", r#"{"by": 2}"#).unwrap(), "2");
        assert_eq!(run("get", "").unwrap(), "0");
        assert_eq!(run("get", "null").unwrap(), "0");
        assert_eq!(run("maybe", "").unwrap(), "0");
        assert_eq!(run("maybe", r#"{"by": 5}"#).unwrap(), "5");
        assert_eq!(run("echo", "not json").unwrap(), "not json");
    }

    #[test]
    fn malformed_arguments_and_unknown_commands_fail_alike() {
        let err = run("add", r#"{"by": "x"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.starts_with("add: "), "{err}");
        let err = run("add", "").unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        let err = run("nope", "").unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(
            err.message,
            "unknown command `nope` (expected add, get, maybe or echo)"
        );
        let wire: String = err.into();
        let body = ErrorBody::parse(&wire).unwrap();
        assert_eq!(body.code, "not-found");
    }
}
