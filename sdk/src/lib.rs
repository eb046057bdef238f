//! Write [Cairn](https://github.com/) plugins in Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2`. It
//! implements [`Plugin`], exports itself with [`export_plugin!`], and reaches
//! the device only through the host capabilities in this crate's modules
//! ([`log`], [`kv`], [`events`], [`timer`], [`commands`], [`plugins`],
//! [`system`], [`metrics`], [`mqtt`], [`process`], [`container`], [`http`],
//! [`net`]). The
//! component imports only the capabilities the code actually calls, and the
//! host refuses to install it unless the plugin's policy grants every one of them.
//!
//! Commands are declared with typed arguments in [`Plugin::commands`] (see
//! [`Commands`]); a plugin's HTTP side implements [`http::server::Handler`]
//! and is exported with [`export_http_handler!`]. [`testing`] runs plugin
//! logic natively against a fake host. `docs/writing-plugins.md` walks through
//! all of it.
//!
//! ```no_run
//! use cairn_sdk::{CommandError, Commands, Config, Plugin, kv};
//! use serde::Deserialize;
//!
//! struct Greeter {
//!     greeting: String,
//! }
//!
//! impl Plugin for Greeter {
//!     fn init(config: Config) -> Result<Self, String> {
//!         #[derive(serde::Deserialize)]
//!         struct Settings {
//!             greeting: Option<String>,
//!         }
//!         let settings: Settings = config.parse()?;
//!         cairn_sdk::info!("greeter starting");
//!         Ok(Greeter { greeting: settings.greeting.unwrap_or_else(|| "hello".into()) })
//!     }
//!
//!     fn commands() -> Commands<Self> {
//!         Commands::new().command("greet", Self::greet)
//!     }
//! }
//!
//! #[derive(Deserialize)]
//! struct GreetArgs {
//!     name: String,
//! }
//!
//! impl Greeter {
//!     fn greet(&mut self, args: GreetArgs) -> Result<String, CommandError> {
//!         kv::set("last", args.name.as_bytes())?;
//!         Ok(format!("{}, {}!", self.greeting, args.name))
//!     }
//! }
//!
//! cairn_sdk::export_plugin!(Greeter);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`.

#![warn(missing_docs)]

mod command;
pub mod commands;
pub mod container;
mod error;
pub mod events;
pub mod fs;
pub mod http;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod mqtt;
pub mod net;
mod plugin;
pub mod plugins;
pub mod process;
pub mod system;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod timer;
#[cfg(feature = "x509")]
pub mod x509;

#[doc(hidden)]
pub mod runtime;

pub use cairn_types::{ErrorBody, ErrorCode, HealthSummary, PluginHealth};
pub use command::{CommandError, Commands};
pub use error::{Error, Result};
pub use events::Event;
pub use plugin::{Config, Health, Plugin, parse_payload};

/// Bindings generated from the Cairn WIT contract. Used by the macros; plugin
/// code should use the typed modules instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "cairn:sdk/plugin@0.1.0",
        path: "../wit/sdk",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "cairn_sdk::bindings",
    });
}

/// Bindings for the HTTP handler side, reusing the `wasi:http` types of
/// [`bindings`]. Used by [`export_http_handler!`].
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod http_bindings {
    wit_bindgen::generate!({
        world: "cairn:sdk/http-handler@0.1.0",
        path: "../wit/sdk",
        with: {
            "wasi:http/types@0.2.12": crate::bindings::wasi::http::types,
            "wasi:io/error@0.2.12": crate::bindings::wasi::io::error,
            "wasi:io/poll@0.2.12": crate::bindings::wasi::io::poll,
            "wasi:io/streams@0.2.12": crate::bindings::wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": crate::bindings::wasi::clocks::monotonic_clock,
        },
        pub_export_macro: true,
        export_macro_name: "__export_http_handler_world",
        default_bindings_module: "cairn_sdk::http_bindings",
    });
}

/// Exports an [`http::server::Handler`] as the component's
/// `wasi:http/incoming-handler`, served by the host's HTTP listener.
///
/// Use it at most once, at the crate root, next to [`export_plugin!`]:
///
/// ```ignore
/// cairn_sdk::export_http_handler!(MyApi);
/// ```
#[macro_export]
macro_rules! export_http_handler {
    ($handler:ty) => {
        const _: () = {
            type CairnHttpExports = $crate::http::server::Exports<$handler>;
            $crate::http_bindings::__export_http_handler_world!(CairnHttpExports with_types_in $crate::http_bindings);
        };
    };
}

/// Exports a [`Plugin`] implementation as the component's Cairn plugin.
///
/// Use it exactly once, at the crate root of a `cdylib` crate:
///
/// ```ignore
/// cairn_sdk::export_plugin!(MyPlugin);
/// ```
///
/// Every host call is forwarded to the single instance created by
/// [`Plugin::init`]; calls that arrive before a successful `init` fail with an
/// error instead of trapping.
///
/// It also embeds the plugin's identity in a `cairn-plugin` custom section,
/// which the host reads before installing: the JSON
/// `{"name":"<name>","version":"<version>"}`, where the name is the Cargo
/// package name and the version is [`plugin_version!`]. A crate that is not
/// itself the plugin's package (a Cargo example, say) names the plugin
/// explicitly:
///
/// ```ignore
/// cairn_sdk::export_plugin!(MyPlugin, name = "hello");
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!($plugin, name = ::core::env!("CARGO_PKG_NAME"));
    };
    ($plugin:ty, name = $name:expr $(,)?) => {
        const _: () = {
            type CairnPluginExports = $crate::runtime::Exports<$plugin>;
            $crate::bindings::__export_plugin_world!(CairnPluginExports with_types_in $crate::bindings);

            const NAME: &str = $name;
            const VERSION: &str = $crate::plugin_version!();
            const LEN: usize = $crate::runtime::metadata_len(NAME, VERSION);
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "cairn-plugin")]
            #[used]
            static CAIRN_PLUGIN_METADATA: [u8; LEN] = $crate::runtime::metadata::<LEN>(NAME, VERSION);
        };
    };
}

/// The plugin's version as embedded by [`export_plugin!`], as a `&'static str`.
///
/// That is the `CAIRN_PLUGIN_VERSION` environment variable when it was set
/// (and non-empty) at build time, otherwise the package version from
/// `Cargo.toml`. The override lets one source tree produce several releases.
#[macro_export]
macro_rules! plugin_version {
    () => {
        match ::core::option_env!("CAIRN_PLUGIN_VERSION") {
            ::core::option::Option::Some(version) if !version.is_empty() => version,
            _ => ::core::env!("CARGO_PKG_VERSION"),
        }
    };
}
