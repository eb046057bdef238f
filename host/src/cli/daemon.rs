//! `cairn daemon`: resolves the configuration, starts logging and hands over
//! to the daemon proper.

use std::path::PathBuf;

use clap::Args;

use super::failure;
use super::output::Outcome;
use crate::admin::api::{AdminError, ErrorCode};
use crate::config::{ConfigOverrides, DaemonConfig};

/// Environment variable whose tracing filter wins over the config's `log-level`.
pub(crate) const LOG_FILTER_ENV: &str = "CAIRN_LOG";

/// Arguments of `cairn daemon` (besides the global `--config`, `--socket`, `--json`).
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Directory for plugins, caches, the journal and plugin data [default: state-dir from --config, else /var/lib/cairn]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Directory of policy files [default: policy-dir from --config, else /etc/cairn/policies]
    #[arg(long, value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
    /// DEVELOPMENT ONLY: accept plugins without a valid signature
    #[arg(long)]
    pub allow_unsigned: bool,
}

/// Runs the daemon in the foreground until it is stopped.
pub(crate) fn run(
    args: DaemonArgs,
    socket: Option<PathBuf>,
    config_file: Option<PathBuf>,
    json_logs: bool,
) -> Result<Outcome, AdminError> {
    let overrides = ConfigOverrides {
        state_dir: args.state_dir,
        policy_dir: args.policy_dir,
        admin_socket: socket,
        allow_unsigned: args.allow_unsigned,
    };
    let config = DaemonConfig::resolve(config_file.as_deref(), &overrides)
        .map_err(|error| failure(ErrorCode::Invalid, format!("{error:#}")))?;
    let filter = std::env::var(LOG_FILTER_ENV)
        .ok()
        .filter(|filter| !filter.trim().is_empty())
        .unwrap_or_else(|| config.log_level.clone());
    let logs = crate::logging::init(&filter, json_logs);
    if config.allow_unsigned {
        // Loud on purpose: this must never go unnoticed on a real device.
        tracing::warn!(
            "allow-unsigned is ON: plugins are accepted WITHOUT signature verification; \
             this is a development switch, never use it on a real device"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-worker")
        .build()
        .map_err(|error| {
            failure(
                ErrorCode::Internal,
                format!("cannot start the async runtime: {error}"),
            )
        })?;
    runtime
        .block_on(crate::daemon::run(config, logs))
        .map_err(|error| failure(ErrorCode::Internal, format!("{error:#}")))?;
    Ok(Outcome::silent())
}
