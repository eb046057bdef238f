//! Commands that work on local files only: `cairn key ...` and `cairn policy ...`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::failure;
use super::output::Outcome;
use crate::admin::api::{AdminError, ErrorCode};

/// The `cairn key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a signing key pair
    Generate(GenerateArgs),
}

/// Arguments of `cairn key generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Path prefix of the key files
    #[arg(long, value_name = "PREFIX", default_value = "cairn")]
    pub out: PathBuf,
}

/// The `cairn policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files and summarise what each grants
    Check(CheckArgs),
}

/// Arguments of `cairn policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files to check
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Runs a `cairn key` command.
pub(crate) fn run_key(command: KeyCommand) -> Result<Outcome, AdminError> {
    match command {
        KeyCommand::Generate(args) => generate_key(&args),
    }
}

/// Runs a `cairn policy` command.
pub(crate) fn run_policy(command: PolicyCommand) -> Result<Outcome, AdminError> {
    match command {
        PolicyCommand::Check(args) => {
            Ok(check_policies(&args.files, crate::caps::check_policy_file))
        }
    }
}

/// `cairn key generate`.
fn generate_key(args: &GenerateArgs) -> Result<Outcome, AdminError> {
    use crate::supply::signing::{SigningKey, generate_key_pair};

    let (private_key, public_key) = generate_key_pair(&args.out).map_err(|error| {
        failure(
            ErrorCode::Internal,
            format!("cannot generate a key pair: {error:#}"),
        )
    })?;
    let fingerprint = SigningKey::load(&private_key)
        .map_err(|error| {
            failure(
                ErrorCode::Internal,
                format!("cannot read back {}: {error:#}", private_key.display()),
            )
        })?
        .fingerprint();
    let human = format!(
        "private key: {}  (keep it secret; sign with `cairn plugin sign FILE --key {}`)\n\
         public key:  {}  (list it under [trust.keys] in the daemon config)\n\
         fingerprint: {fingerprint}",
        private_key.display(),
        private_key.display(),
        public_key.display(),
    );
    let json = serde_json::json!({
        "private_key": private_key,
        "public_key": public_key,
        "fingerprint": fingerprint,
    });
    Ok(Outcome::new(json, human))
}

/// `cairn policy check`: every file is checked even after a failure, so one
/// run reports every problem; the exit status is 1 if any file failed.
pub(crate) fn check_policies(
    files: &[PathBuf],
    check: impl Fn(&Path) -> anyhow::Result<String>,
) -> Outcome {
    let mut human = String::new();
    let mut human_errors = String::new();
    let mut results = Vec::new();
    for file in files {
        match check(file) {
            Ok(summary) => {
                human.push_str(&format!("{}: ok — {summary}\n", file.display()));
                results.push(serde_json::json!({ "file": file, "ok": true, "summary": summary }));
            }
            Err(error) => {
                let message = format!("{error:#}");
                human_errors.push_str(&format!("error: {}: {message}\n", file.display()));
                results.push(serde_json::json!({ "file": file, "ok": false, "error": message }));
            }
        }
    }
    Outcome {
        success: human_errors.is_empty(),
        json: serde_json::Value::Array(results),
        human,
        human_errors,
        silent: false,
    }
}
