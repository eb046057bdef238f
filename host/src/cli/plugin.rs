//! `cairn plugin ...`: install, list, roll back and remove plugins on the
//! daemon; sign components and start new plugin projects locally.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Args, Subcommand};

use super::output::{self, Outcome};
use super::remote::{ask, ask_showing_progress, decode};
use super::{failure, io_failure};
use crate::admin::api::{AdminError, ErrorCode, InstallRequest, PluginSummary, Request};

/// The `cairn plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install (or hot-swap) a plugin from a component file
    Install(InstallArgs),
    /// Push a component to an OCI registry and sign it
    Push(super::publish::PushArgs),
    /// Show what a component file or registry artifact is, who signed it, and what it needs granted
    Inspect(super::inspect::InspectArgs),
    /// List installed plugins
    List,
    /// Go back to a plugin's previous release
    Rollback {
        /// The plugin
        name: String,
    },
    /// Stop and uninstall a plugin
    Remove {
        /// The plugin
        name: String,
    },
    /// Delete the stored releases no plugin runs or rolls back to, beyond
    /// the latest KEEP of each plugin, with their compiled code
    Prune {
        /// Releases kept per plugin
        #[arg(long, default_value_t = 3)]
        keep: usize,
        /// Only show what would be deleted, and why each release is kept
        #[arg(long)]
        dry_run: bool,
    },
    /// Sign a component file, writing FILE.sig
    Sign(SignArgs),
    /// Create a new plugin project
    New(NewArgs),
}

/// Arguments of `cairn plugin install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The component (.wasm), or an OCI reference (oci://HOST/REPO:TAG or @sha256:…) the daemon fetches
    pub file: PathBuf,
    /// Detached signature [default: FILE.sig when it exists]
    #[arg(long, value_name = "SIG")]
    pub signature: Option<PathBuf>,
    /// Allow installing a lower version than the one running
    #[arg(long)]
    pub force: bool,
    /// Install a component that carries no name and version of its own (a plain
    /// wasi:http component, say) under this name; needs --version
    #[arg(long, requires = "version")]
    pub name: Option<String>,
    /// The version to install such a component as; needs --name
    #[arg(long, requires = "name")]
    pub version: Option<String>,
}

/// Arguments of `cairn plugin sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The component file to sign, or an artifact in a registry (oci://HOST/REPO:TAG or @sha256:…)
    pub file: PathBuf,
    /// Private key (PEM), e.g. from `cairn key generate`
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Where to write the signature [default: FILE.sig]
    #[arg(long, short = 'o', value_name = "SIG")]
    pub output: Option<PathBuf>,
    /// For oci:// references: the name and version to bind, for a component without its own
    #[command(flatten)]
    pub identity: super::publish::IdentityArgs,
    /// For oci:// references: how to reach the registry
    #[command(flatten)]
    pub registry: super::publish::RegistryArgs,
}

/// Arguments of `cairn plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Name of the plugin (and of its directory)
    pub name: String,
    /// Directory to create the project in
    #[arg(long, value_name = "PARENT", default_value = ".")]
    pub dir: PathBuf,
    /// The cairn SDK crate the project depends on [env: CAIRN_SDK_PATH] [default: the SDK next to this build]
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

/// `FILE.sig` next to `FILE` (the suffix is appended, not substituted).
pub(crate) fn signature_path_for(file: &Path) -> PathBuf {
    let mut path = OsString::from(file.as_os_str());
    path.push(".sig");
    PathBuf::from(path)
}

/// `cairn plugin install`.
pub(crate) async fn install(
    socket: &Path,
    args: InstallArgs,
    quiet: bool,
) -> Result<Outcome, AdminError> {
    if let Some(reference) = args.file.to_str().filter(|text| text.starts_with("oci://")) {
        let request = Request::InstallRef {
            reference: reference.to_string(),
            force: args.force,
        };
        let value = ask_showing_progress(socket, &request, quiet).await?;
        let plugin: PluginSummary = decode(&value)?;
        return Ok(Outcome::new(value, render_installed(&plugin)));
    }
    let component = std::fs::read(&args.file)
        .map_err(|error| io_failure(format!("cannot read {}", args.file.display()), &error))?;
    let signature = read_signature(&args.file, args.signature.as_deref())?;
    let signed = signature.is_some();
    let request = Request::Install(InstallRequest {
        component_b64: base64::engine::general_purpose::STANDARD.encode(&component),
        signature,
        force: args.force,
        name: args.name.clone(),
        version: args.version.clone(),
    });
    let value = ask_showing_progress(socket, &request, quiet).await?;
    let plugin: PluginSummary = decode(&value)?;
    let mut human = render_installed(&plugin);
    if !signed {
        human
            .push_str("\nnote: installed without a signature (the daemon allows unsigned plugins)");
    }
    Ok(Outcome::new(value, human))
}

/// The explicit signature, else `FILE.sig` if present; whitespace around it is dropped.
fn read_signature(file: &Path, explicit: Option<&Path>) -> Result<Option<String>, AdminError> {
    let (path, required) = match explicit {
        Some(path) => (path.to_path_buf(), true),
        None => (signature_path_for(file), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_failure(
            format!("cannot read the signature {}", path.display()),
            &error,
        )),
    }
}

/// `installed counter 0.2.0 (sha256:abcd…) — swapped from 0.1.0`.
pub(crate) fn render_installed(plugin: &PluginSummary) -> String {
    let mut text = format!(
        "installed {} {} ({})",
        plugin.name,
        plugin.version,
        output::short_digest(&plugin.digest)
    );
    if let Some(previous) = &plugin.previous_version {
        text.push_str(&format!(" — swapped from {previous}"));
    }
    if let Some(error) = &plugin.last_error {
        text.push_str(&format!("\n{} is {}: {error}", plugin.name, plugin.state));
    }
    text
}

/// `cairn plugin list`.
pub(crate) async fn list(socket: &Path) -> Result<Outcome, AdminError> {
    let value = ask(socket, &Request::List).await?;
    let plugins: Vec<PluginSummary> = decode(&value)?;
    Ok(Outcome::new(value, output::plugin_table(&plugins)))
}

/// `cairn plugin rollback`.
pub(crate) async fn rollback(socket: &Path, name: String) -> Result<Outcome, AdminError> {
    let value = ask(socket, &Request::Rollback { name }).await?;
    let plugin: PluginSummary = decode(&value)?;
    let human = format!(
        "rolled back {} to {} ({})",
        plugin.name,
        plugin.version,
        output::short_digest(&plugin.digest)
    );
    Ok(Outcome::new(value, human))
}

/// `cairn plugin prune`.
pub(crate) async fn prune(
    socket: &Path,
    keep: usize,
    dry_run: bool,
) -> Result<Outcome, AdminError> {
    let value = ask(socket, &Request::PruneStore { keep, dry_run }).await?;
    let mut human = String::new();
    for (label, list) in [("keep", &value["keep"]), ("delete", &value["delete"])] {
        for component in list.as_array().into_iter().flatten() {
            human.push_str(&format!(
                "{label:<6} {} {} {}  {}\n",
                output::short_digest(component["digest"].as_str().unwrap_or("?")),
                component["plugin"].as_str().unwrap_or("(unnamed)"),
                component["version"].as_str().unwrap_or(""),
                component["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|why| why.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
    }
    let deleted = value["delete"].as_array().map_or(0, Vec::len);
    human.push_str(&if value["dry-run"] == true {
        format!("dry run: {deleted} release(s) would be deleted\n")
    } else {
        format!(
            "deleted {deleted} release(s), {} bytes freed\n",
            value["bytes-freed"]
        )
    });
    Ok(Outcome::new(value, human))
}

/// `cairn plugin remove`.
pub(crate) async fn remove(socket: &Path, name: String) -> Result<Outcome, AdminError> {
    let human = format!("removed {name}");
    let value = ask(socket, &Request::Remove { name }).await?;
    Ok(Outcome::new(value, human))
}

/// `cairn plugin sign`.
pub(crate) fn sign(args: &SignArgs) -> Result<Outcome, AdminError> {
    use crate::supply::signing::{SigningKey, sign_blob};

    if let Some(reference) = args.file.to_str().filter(|text| text.starts_with("oci://")) {
        return super::publish::sign_reference(
            reference,
            &args.key,
            &args.identity,
            &args.registry,
        );
    }
    if args.identity.name.is_some() {
        return Err(failure(
            ErrorCode::Invalid,
            "--name and --version bind an identity to a registry artifact's signature; for a file, give them to `cairn plugin install`",
        ));
    }

    let blob = std::fs::read(&args.file)
        .map_err(|error| io_failure(format!("cannot read {}", args.file.display()), &error))?;
    let key = SigningKey::load(&args.key).map_err(|error| {
        failure(
            ErrorCode::Invalid,
            format!(
                "cannot load the signing key {}: {error:#}",
                args.key.display()
            ),
        )
    })?;
    let signature = sign_blob(&key, &blob);
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| signature_path_for(&args.file));
    crate::state::atomic::write_atomic(&output, signature.as_bytes())
        .map_err(|error| io_failure(format!("cannot write {}", output.display()), &error))?;
    let fingerprint = key.fingerprint();
    let human = format!(
        "signed {} → {} (key {fingerprint})",
        args.file.display(),
        output.display()
    );
    let json = serde_json::json!({
        "file": args.file,
        "signature": output,
        "key_fingerprint": fingerprint,
    });
    Ok(Outcome::new(json, human))
}

/// `cairn plugin new`.
pub(crate) fn new_project(args: NewArgs) -> Result<Outcome, AdminError> {
    let sdk = sdk_path(args.sdk)?;
    let project = super::scaffold::scaffold_plugin(&args.name, &args.dir, &sdk)
        .map_err(|error| failure(ErrorCode::Invalid, format!("{error:#}")))?;
    let human = format!(
        "created plugin {} in {}\n(using the SDK at {})",
        args.name,
        project.display(),
        sdk.display()
    );
    let json = serde_json::json!({ "name": args.name, "path": project, "sdk": sdk });
    Ok(Outcome::new(json, human))
}

/// Environment variable naming the SDK when `--sdk` is not given.
pub const SDK_ENV: &str = "CAIRN_SDK_PATH";

/// `--sdk`, else `CAIRN_SDK_PATH`, else the SDK beside the sources this binary
/// was built from, which is what a developer running from a checkout wants.
pub(crate) fn sdk_path(flag: Option<PathBuf>) -> Result<PathBuf, AdminError> {
    if let Some(sdk) = flag.or_else(|| super::env_path(SDK_ENV)) {
        return Ok(sdk);
    }
    let bundled = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk"));
    if bundled.is_dir() {
        return Ok(std::fs::canonicalize(bundled).unwrap_or_else(|_| bundled.to_path_buf()));
    }
    Err(failure(
        ErrorCode::Invalid,
        "cannot find the cairn SDK: pass --sdk PATH (or set CAIRN_SDK_PATH) \
         to the sdk directory of a cairn checkout",
    ))
}
