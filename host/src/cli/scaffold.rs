//! `cairn plugin new`: creates a ready-to-build plugin crate.
//!
//! The generated crate depends on the SDK by absolute path, declares its own
//! `[workspace]` so an enclosing Cargo workspace does not capture it, and
//! builds unchanged with `cargo build --target wasm32-wasip2 --release`. Its
//! only host capability is logging, so its policy grants `log` alone.

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Longest plugin name accepted, matching the host's limit.
const MAX_NAME_LEN: usize = 64;

// A package named like one of these would not compile as a library crate.
const RESERVED_NAMES: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Creates a new plugin crate named `name` in `parent/name`, depending on the SDK at `sdk_path`.
///
/// `name` must match `[a-z][a-z0-9-]*` and be at most 64 characters; it
/// becomes the Cargo package name, the plugin name and the policy name.
/// Fails without touching anything if `parent/name` already exists. Returns
/// the new crate's directory.
pub fn scaffold_plugin(name: &str, parent: &Path, sdk_path: &Path) -> Result<PathBuf> {
    validate_name(name)?;
    let sdk = fs::canonicalize(sdk_path)
        .with_context(|| format!("cairn-sdk not found at {}", sdk_path.display()))?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml; expected the cairn-sdk crate",
            sdk.display()
        );
    }
    let sdk = sdk
        .to_str()
        .with_context(|| format!("SDK path {} is not valid UTF-8", sdk.display()))?;

    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let dir = parent.join(name);
    // `create_dir` rather than an existence check, so a directory that appears
    // in between is still never overwritten.
    if let Err(error) = fs::create_dir(&dir) {
        if error.kind() == ErrorKind::AlreadyExists {
            bail!("{} already exists; refusing to overwrite it", dir.display());
        }
        return Err(error).with_context(|| format!("cannot create {}", dir.display()));
    }

    let files = [
        ("Cargo.toml", cargo_toml(name, sdk)),
        ("src/lib.rs", lib_rs(name)),
        ("policy.toml", policy_toml(name)),
        ("README.md", readme(name)),
        (".gitignore", "/target\n".to_string()),
    ];
    let written = files
        .iter()
        .try_for_each(|(file, contents)| write_file(&dir.join(file), contents));
    if let Err(error) = written {
        // The directory is ours alone (just created), so a half-written crate
        // is removed rather than left for the next attempt to trip over.
        let _ = fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok(dir)
}

/// Checks `name` against `[a-z][a-z0-9-]*`, the length limit and names Rust reserves.
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("plugin name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        bail!("plugin name `{name}` is longer than {MAX_NAME_LEN} characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("plugin name `{name}` must start with a lowercase letter");
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        bail!("plugin name `{name}` contains `{bad}`; use lowercase letters, digits and `-`");
    }
    if RESERVED_NAMES.contains(&name) {
        bail!("plugin name `{name}` is reserved by Rust; choose another");
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Renders `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `my-plugin` → `MyPlugin`, the plugin's Rust type name.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Cargo names the built component after the library crate, which swaps `-` for `_`.
fn artifact_name(name: &str) -> String {
    format!("{}.wasm", name.replace('-', "_"))
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
cairn-sdk = {{ path = {sdk} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true

# A standalone crate: not part of any enclosing Cargo workspace.
[workspace]
"#,
        sdk = toml_string(sdk),
    )
}

fn lib_rs(name: &str) -> String {
    let plugin = type_name(name);
    format!(
        r#"//! `{name}`: a Cairn plugin.
//!
//! Commands:
//! - `hello`, payload optional `{{"name":".."}}` → `{{"greeting":"hello, ..!"}}`

use cairn_sdk::{{CommandError, Commands, Config, Plugin}};
use serde::{{Deserialize, Serialize}};

struct {plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloArgs {{
    name: Option<String>,
}}

#[derive(Serialize)]
struct HelloReply {{
    greeting: String,
}}

impl {plugin} {{
    /// `hello`: no payload (or `null`) greets the world.
    fn hello(&mut self, args: Option<HelloArgs>) -> Result<HelloReply, CommandError> {{
        let name = args.and_then(|args| args.name);
        let name = name.as_deref().unwrap_or("world");
        if name.is_empty() {{
            return Err(CommandError::invalid("hello: the name is empty"));
        }}
        Ok(HelloReply {{
            greeting: format!("hello, {{name}}!"),
        }})
    }}
}}

impl Plugin for {plugin} {{
    fn init(_config: Config) -> Result<Self, String> {{
        cairn_sdk::info!("{name} {{}} started", cairn_sdk::plugin_version!());
        Ok({plugin})
    }}

    /// Each command's JSON payload is decoded into its argument type; unknown
    /// commands and malformed payloads fail with the SDK's JSON error.
    fn commands() -> Commands<Self> {{
        Commands::new().command("hello", Self::hello)
    }}
}}

// `cargo test` runs these natively, against the SDK's fake host.
#[cfg(test)]
mod tests {{
    use cairn_sdk::testing::Harness;
    use serde_json::{{Value, json}};

    use super::*;

    #[test]
    fn hello_greets_by_name() {{
        let mut plugin = Harness::<{plugin}>::init("{{}}").unwrap();
        let reply: Value = plugin.call("hello", &json!({{"name": "cairn"}})).unwrap();
        assert_eq!(reply["greeting"], "hello, cairn!");
        let reply: Value = plugin.call("hello", &()).unwrap();
        assert_eq!(reply["greeting"], "hello, world!");
        assert!(plugin.host().logged("started"));
    }}

    #[test]
    fn bad_calls_fail_with_a_code() {{
        let mut plugin = Harness::<{plugin}>::init("{{}}").unwrap();
        let err = plugin.call::<_, Value>("hello", &json!({{"name": 3}})).unwrap_err();
        assert_eq!(err.code, "invalid");
        let err = plugin.call::<_, Value>("goodbye", &()).unwrap_err();
        assert_eq!(err.code, "not-found");
    }}
}}

cairn_sdk::export_plugin!({plugin});
"#
    )
}

fn policy_toml(name: &str) -> String {
    format!(
        r#"# Install as `<policy dir>/{name}.toml` on the device.
[plugin]
name = "{name}"
signers = ["dev"]
description = "Says hello"

[limits]
memory = "16MiB"
call-timeout = "2s"

# Every host interface the plugin imports must be granted here, or the
# install is refused. Add a `[grants.<capability>]` table when you start
# using another capability from `cairn_sdk`.
[grants.log]
"#
    )
}

fn readme(name: &str) -> String {
    let wasm = artifact_name(name);
    format!(
        r#"# {name}

A Cairn plugin. `src/lib.rs` implements `cairn_sdk::Plugin`;
`policy.toml` says what it may do on the device.

## Build

```sh
cargo build --target wasm32-wasip2 --release
```

The component is `target/wasm32-wasip2/release/{wasm}`. (Install the target
once with `rustup target add wasm32-wasip2`.)

## Test

```sh
cargo test
```

The unit tests run natively against the SDK's fake host (`cairn_sdk::testing`).
See `docs/writing-plugins.md` in the Cairn repository for the plugin style.

## Sign

```sh
cairn key generate --out dev          # once: writes dev.key and dev.pub
cairn plugin sign target/wasm32-wasip2/release/{wasm} --key dev.key
```

This writes `{wasm}.sig` next to the component. The daemon must trust
`dev.pub` under the name `dev`, which `signers` in `policy.toml` refers to.

## Install

Copy the policy into the daemon's policy directory as `{name}.toml`, then:

```sh
cairn plugin install target/wasm32-wasip2/release/{wasm}
cairn call {name} hello '{{"name":"x"}}'
cairn logs {name}
```

`cairn plugin install` picks up `{wasm}.sig` automatically. Installing a
higher `version` from `Cargo.toml` later hot-swaps the running plugin.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sdk(root: &Path) -> PathBuf {
        let sdk = root.join("sdk");
        fs::create_dir_all(&sdk).unwrap();
        fs::write(sdk.join("Cargo.toml"), "[package]\nname = \"cairn-sdk\"\n").unwrap();
        sdk
    }

    #[test]
    fn accepts_valid_names() {
        for name in ["a", "hello", "my-plugin", "x9", "a-1-b", &"a".repeat(64)] {
            validate_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn rejects_invalid_names() {
        for name in [
            "",
            "Hello",
            "1abc",
            "-abc",
            "my_plugin",
            "my plugin",
            "../evil",
            "a/b",
            "héllo",
            "fn",
            "std",
            &"a".repeat(65),
        ] {
            assert!(validate_name(name).is_err(), "`{name}` was accepted");
        }
    }

    #[test]
    fn derives_type_and_artifact_names() {
        assert_eq!(type_name("hello"), "Hello");
        assert_eq!(type_name("my-cool-plugin"), "MyCoolPlugin");
        assert_eq!(type_name("a1-b2"), "A1B2");
        assert_eq!(artifact_name("my-plugin"), "my_plugin.wasm");
    }

    #[test]
    fn escapes_toml_strings() {
        assert_eq!(toml_string("/opt/sdk"), r#""/opt/sdk""#);
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }

    #[test]
    fn creates_the_crate() {
        let temp = tempfile::tempdir().unwrap();
        let sdk = fake_sdk(temp.path());
        let parent = temp.path().join("plugins");

        let dir = scaffold_plugin("my-plugin", &parent, &sdk).unwrap();

        assert_eq!(dir, parent.join("my-plugin"));
        let cargo = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains(r#"name = "my-plugin""#));
        assert!(cargo.contains(r#"crate-type = ["cdylib"]"#));
        assert!(cargo.contains("\n[workspace]\n"));
        assert!(cargo.contains(r#"opt-level = "s""#));
        let sdk_line = format!(
            "cairn-sdk = {{ path = {} }}",
            toml_string(fs::canonicalize(&sdk).unwrap().to_str().unwrap())
        );
        assert!(cargo.contains(&sdk_line), "{cargo}");

        let lib = fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("struct MyPlugin;"));
        assert!(lib.contains("cairn_sdk::export_plugin!(MyPlugin);"));
        assert!(lib.contains(r#".command("hello", Self::hello)"#));
        assert!(lib.contains("cairn_sdk::info!"));

        let policy = fs::read_to_string(dir.join("policy.toml")).unwrap();
        assert!(policy.contains(r#"name = "my-plugin""#));
        assert!(policy.contains(r#"signers = ["dev"]"#));
        let grants: Vec<&str> = policy
            .lines()
            .filter(|l| l.starts_with("[grants."))
            .collect();
        assert_eq!(grants, ["[grants.log]"]);

        let readme = fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme.contains("cargo build --target wasm32-wasip2 --release"));
        assert!(readme.contains("cairn plugin sign target/wasm32-wasip2/release/my_plugin.wasm"));
        assert!(readme.contains("cairn plugin install"));
    }

    #[test]
    fn refuses_to_overwrite() {
        let temp = tempfile::tempdir().unwrap();
        let sdk = fake_sdk(temp.path());
        let existing = temp.path().join("taken");
        fs::create_dir(&existing).unwrap();
        fs::write(existing.join("keep.txt"), "mine").unwrap();

        let error = scaffold_plugin("taken", temp.path(), &sdk).unwrap_err();

        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(
            fs::read_to_string(existing.join("keep.txt")).unwrap(),
            "mine"
        );
        assert!(!existing.join("Cargo.toml").exists());
    }

    #[test]
    fn refuses_bad_name_or_missing_sdk_without_writing() {
        let temp = tempfile::tempdir().unwrap();
        let sdk = fake_sdk(temp.path());

        assert!(scaffold_plugin("Bad", temp.path(), &sdk).is_err());
        assert!(!temp.path().join("Bad").exists());

        let missing = temp.path().join("no-sdk");
        assert!(scaffold_plugin("good", temp.path(), &missing).is_err());
        assert!(!temp.path().join("good").exists());
    }
}
