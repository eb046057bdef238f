//! The `cairn` command line: the daemon itself, and the commands that talk to
//! it over the admin socket or work on local files.
//!
//! Every command produces an outcome (a human and a machine form)
//! or an [`AdminError`]; [`main`] prints the form `--json` asks for.

mod daemon;
mod inspect;
mod local;
mod output;
mod plugin;
mod progress;
mod publish;
mod recipe_view;
mod recipes;
mod registry;
mod remote;
pub mod scaffold;
mod serve_files;
mod service;
#[cfg(test)]
mod tests;

pub use daemon::DaemonArgs;
pub use local::{CheckArgs, GenerateArgs, KeyCommand, PolicyCommand};
pub use plugin::{InstallArgs, NewArgs, PluginCommand, SignArgs};
pub use recipes::{ApplyArgs, ComponentArgs, GraphArgs, PlanCommand, RecipesPlugin};
pub use remote::{CallArgs, LogsArgs};
pub use serve_files::ServeFilesArgs;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::api::{AdminError, ErrorCode};
use crate::config::DaemonConfig;
use output::Outcome;

/// Command-line arguments of `cairn`.
#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a WebAssembly-plugin daemon for edge devices, and the tool that manages it",
    arg_required_else_help = true
)]
pub struct Cli {
    /// Admin socket of the daemon [env: CAIRN_SOCKET] [default: admin-socket from --config, else /var/lib/cairn/admin.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Daemon config file (also tells the other commands where the socket is)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print machine-readable JSON instead of text (the daemon then logs JSON)
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground
    Daemon(DaemonArgs),
    /// Show the daemon's status and its plugins
    Status,
    /// Install, list, roll back, remove, sign or create plugins
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage signing keys
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check policy files
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Call a command of a running plugin
    Call(CallArgs),
    /// Show recent log records of the daemon or of one plugin
    Logs(LogsArgs),
    /// Print the daemon's metrics in Prometheus text format
    Metrics,
    /// Ask every plugin for its health (exit status 1 when failing)
    Health,
    /// Apply a deployment plan with the recipes plugin and wait until it is applied
    Apply(ApplyArgs),
    /// List the components the recipes plugin runs
    Components(RecipesPlugin),
    /// Show the plan's layers and dependencies
    Graph(GraphArgs),
    /// Restart a component (and what depends on it)
    Restart(ComponentArgs),
    /// Stop a component (and what depends on it)
    Stop(ComponentArgs),
    /// Reload a running component as its recipe says (a signal or a script)
    Reload(ComponentArgs),
    /// Show the status of the deployment plan, or stop it
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Operate the site registry plugin (status, credentials, smoke, publish, retention)
    Registry(registry::RegistryArgs),
    /// Install and plan services declared by their images (the dockyard plugin)
    Service(service::ServiceArgs),
    /// Serve the files of a directory over HTTP (artifacts and a health endpoint for demos and tests)
    ServeFiles(ServeFilesArgs),
}

/// Entry point of the `cairn` binary: parses arguments, runs the command and
/// prints its result. Exit status: 0 on success, 1 when the operation failed,
/// 2 for usage errors (reported by clap).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let rendered = output::render(run(cli), json);
    // Written without `print!`, which panics when the reader has gone away
    // (`cairn logs | head`); there is nobody left to tell about that anyway.
    let _ = std::io::stdout()
        .lock()
        .write_all(rendered.stdout.as_bytes());
    let _ = std::io::stderr()
        .lock()
        .write_all(rendered.stderr.as_bytes());
    ExitCode::from(rendered.exit_code)
}

/// Runs one parsed command line.
fn run(cli: Cli) -> Result<Outcome, AdminError> {
    let Cli {
        socket,
        config,
        json,
        command,
    } = cli;
    match command {
        // The daemon needs a multi-threaded runtime; the client commands make do with one thread.
        Command::Daemon(args) => daemon::run(args, socket.or_else(socket_from_env), config, json),
        Command::Key(command) => local::run_key(command),
        Command::Policy(command) => local::run_policy(command),
        Command::Plugin(PluginCommand::Sign(args)) => plugin::sign(&args),
        Command::Plugin(PluginCommand::Push(args)) => publish::push(&args, json),
        Command::Plugin(PluginCommand::Inspect(args)) => inspect::inspect(&args, config.as_deref()),
        Command::Plugin(PluginCommand::New(args)) => plugin::new_project(args),
        Command::ServeFiles(args) => serve_files::run(args),
        command => {
            let socket = discover_socket(socket.or_else(socket_from_env), config.as_deref())?;
            block_on(run_remote(&socket, command, json))
        }
    }
}

/// Runs client-side async work on a one-thread runtime: the client commands
/// need no more.
pub(crate) fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, AdminError>>,
) -> Result<T, AdminError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            failure(
                ErrorCode::Internal,
                format!("cannot start the async runtime: {error}"),
            )
        })?
        .block_on(work)
}

/// Runs a command that talks to the daemon.
/// `quiet` (for `--json`) hides progress displays.
async fn run_remote(socket: &Path, command: Command, quiet: bool) -> Result<Outcome, AdminError> {
    match command {
        Command::Status => remote::status(socket).await,
        Command::Call(args) => remote::call(socket, args).await,
        Command::Logs(args) => remote::logs(socket, args).await,
        Command::Metrics => remote::metrics(socket).await,
        Command::Health => remote::health(socket).await,
        Command::Plugin(PluginCommand::Install(args)) => plugin::install(socket, args, quiet).await,
        Command::Plugin(PluginCommand::List) => plugin::list(socket).await,
        Command::Plugin(PluginCommand::Rollback { name }) => plugin::rollback(socket, name).await,
        Command::Plugin(PluginCommand::Prune { keep, dry_run }) => {
            plugin::prune(socket, keep, dry_run).await
        }
        Command::Plugin(PluginCommand::Remove { name }) => plugin::remove(socket, name).await,
        Command::Apply(args) => recipes::apply(socket, args, quiet).await,
        Command::Components(target) => recipes::components(socket, target).await,
        Command::Registry(args) => registry::run(socket, args).await,
        Command::Service(args) => service::run(socket, args).await,
        Command::Graph(args) => recipes::graph(socket, args).await,
        Command::Restart(args) => {
            recipes::component_action(socket, args, "component-restart").await
        }
        Command::Stop(args) => recipes::component_action(socket, args, "component-stop").await,
        Command::Reload(args) => recipes::component_action(socket, args, "component-reload").await,
        Command::Plan(command) => recipes::plan(socket, command).await,
        Command::Daemon(_)
        | Command::Key(_)
        | Command::Policy(_)
        | Command::ServeFiles(_)
        | Command::Plugin(
            PluginCommand::Sign(_)
            | PluginCommand::New(_)
            | PluginCommand::Push(_)
            | PluginCommand::Inspect(_),
        ) => Err(failure(
            ErrorCode::Internal,
            "this command does not use the admin socket",
        )),
    }
}

/// Environment variable naming the admin socket when `--socket` is not given.
pub const SOCKET_ENV: &str = "CAIRN_SOCKET";

/// `CAIRN_SOCKET`, when set and not empty (an empty one is treated as unset,
/// the way shells make clearing a variable easy).
fn socket_from_env() -> Option<PathBuf> {
    env_path(SOCKET_ENV)
}

/// A path from the environment, ignoring an empty value.
pub(crate) fn env_path(variable: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// Where the daemon's admin socket is: the explicit socket (`--socket`, else
/// `CAIRN_SOCKET`), else the `admin-socket` of `--config`, else the default
/// `/var/lib/cairn/admin.sock`.
pub fn discover_socket(
    socket_flag: Option<PathBuf>,
    config_file: Option<&Path>,
) -> Result<PathBuf, AdminError> {
    if let Some(socket) = socket_flag {
        return Ok(socket);
    }
    match config_file {
        Some(path) => DaemonConfig::load(path)
            .map(|config| config.admin_socket)
            .map_err(|error| failure(ErrorCode::Invalid, format!("{error:#}"))),
        None => Ok(DaemonConfig::default().admin_socket),
    }
}

/// A failure detected by the CLI itself, in the daemon's error vocabulary so
/// `--json` reports both kinds alike.
pub(crate) fn failure(code: ErrorCode, message: impl Into<String>) -> AdminError {
    AdminError::new(code, message)
}

/// A failed file operation, categorised by what went wrong.
pub(crate) fn io_failure(what: impl std::fmt::Display, error: &std::io::Error) -> AdminError {
    let code = match error.kind() {
        std::io::ErrorKind::NotFound => ErrorCode::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorCode::Denied,
        _ => ErrorCode::Internal,
    };
    failure(code, format!("{what}: {error}"))
}
