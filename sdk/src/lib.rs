//! Write [Cairn](https://github.com/) plugins in Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2`. It
//! implements [`Plugin`], exports itself with [`export_plugin!`], and reaches
//! the device only through the host capabilities in this crate's modules
//! ([`log`], [`kv`], [`events`], [`timer`], [`commands`], [`plugins`],
//! [`system`], [`metrics`], [`mqtt`], [`process`]). The component imports only the capabilities the
//! code actually calls, and the host refuses to install it unless the plugin's
//! policy grants every one of them.
//!
//! ```no_run
//! use cairn_sdk::{Config, Plugin, kv};
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
//!     fn on_command(&mut self, command: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
//!         match command {
//!             "greet" => {
//!                 let name = String::from_utf8_lossy(payload);
//!                 kv::set("last", name.as_bytes())?;
//!                 Ok(format!("{}, {name}!", self.greeting).into_bytes())
//!             }
//!             other => Err(format!("unknown command `{other}`")),
//!         }
//!     }
//! }
//!
//! cairn_sdk::export_plugin!(Greeter);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`.

#![warn(missing_docs)]

pub mod commands;
mod error;
pub mod events;
pub mod kv;
pub mod log;
pub mod metrics;
pub mod mqtt;
mod plugin;
pub mod plugins;
pub mod process;
pub mod system;
pub mod timer;

#[doc(hidden)]
pub mod runtime;

pub use error::{Error, Result};
pub use events::Event;
pub use plugin::{Config, Health, Plugin, parse_payload};

/// Bindings generated from the Cairn WIT contract. Used by the macros; plugin
/// code should use the typed modules instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "cairn:plugin/plugin@0.1.0",
        path: "../wit/plugin",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "cairn_sdk::bindings",
    });
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
