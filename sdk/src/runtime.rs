//! Glue between the generated export traits and a [`Plugin`] instance.
//!
//! Reached only through [`export_plugin!`](crate::export_plugin); not a stable API.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::cairn::plugin::handlers::{self, Guest as HandlersGuest};
use crate::bindings::exports::cairn::plugin::lifecycle::{self, Guest as LifecycleGuest};
use crate::{CommandError, Commands, Config, Event, Health, Plugin};

const NOT_INITIALISED: &str = "plugin is not initialised: `init` has not succeeded";

// A component instance runs on one thread and the host never calls into it
// concurrently, so one slot holds the only plugin instance.
thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// The plugin's [`Commands`], built once at `init`.
    static COMMANDS: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// Their names, for the error of a command nobody declared.
    static DECLARED: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Remembers the declared command names for [`unknown_command`].
pub(crate) fn declare_commands<P>(commands: &Commands<P>) {
    DECLARED.with(|declared| *declared.borrow_mut() = commands.names());
}

/// The error of a command that neither [`Commands`] nor `on_command` knows,
/// listing the declared commands.
pub(crate) fn unknown_command(command: &str) -> String {
    DECLARED
        .with(|declared| CommandError::unknown_command(command, &declared.borrow()))
        .into()
}

/// Runs a command: through the declared [`Commands`] first, else `on_command`.
pub(crate) fn run_command<P: Plugin>(
    plugin: &mut P,
    commands: &Commands<P>,
    command: &str,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    match commands.dispatch(plugin, command, payload) {
        Some(outcome) => outcome.map_err(String::from),
        None => plugin.on_command(command, payload),
    }
}

/// Runs `action` on the plugin instance, or fails when there is none (or it is
/// already borrowed by a call still on the stack, which the host should prevent).
fn with_instance<P: Plugin, R>(action: impl FnOnce(&mut P) -> R) -> Result<R, String> {
    INSTANCE.with(|slot| {
        let mut slot = slot
            .try_borrow_mut()
            .map_err(|_| "plugin is already handling a call".to_string())?;
        match slot
            .as_mut()
            .and_then(|instance| instance.downcast_mut::<P>())
        {
            Some(plugin) => Ok(action(plugin)),
            None => Err(NOT_INITIALISED.to_string()),
        }
    })
}

/// Implements the world's export traits for plugin type `P`.
pub struct Exports<P>(PhantomData<P>);

impl<P: Plugin> LifecycleGuest for Exports<P> {
    fn init(config: String) -> Result<(), String> {
        let already_running =
            INSTANCE.with(|slot| slot.try_borrow().map_or(true, |slot| slot.is_some()));
        if already_running {
            return Err("plugin is already initialised".to_string());
        }
        // The slot stays unborrowed while `P::init` runs so that nothing it
        // calls can observe a half-made instance.
        let plugin = P::init(Config::new(config))?;
        let commands = P::commands();
        declare_commands(&commands);
        COMMANDS.with(|slot| *slot.borrow_mut() = Some(Box::new(commands)));
        INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    fn snapshot() -> Option<Vec<u8>> {
        with_instance(|plugin: &mut P| plugin.snapshot())
            .ok()
            .flatten()
    }

    fn restore(state: Vec<u8>) -> Result<bool, String> {
        with_instance(|plugin: &mut P| plugin.restore(&state))?
    }

    fn health() -> lifecycle::HealthStatus {
        match with_instance(|plugin: &mut P| plugin.health()) {
            Ok(Health::Ok) => lifecycle::HealthStatus::Ok,
            Ok(Health::Degraded(why)) => lifecycle::HealthStatus::Degraded(why),
            Ok(Health::Unhealthy(why)) | Err(why) => lifecycle::HealthStatus::Unhealthy(why),
        }
    }

    fn shutdown() {
        let instance =
            INSTANCE.with(|slot| slot.try_borrow_mut().ok().and_then(|mut slot| slot.take()));
        if let Some(mut plugin) = instance.and_then(|instance| instance.downcast::<P>().ok()) {
            plugin.shutdown();
        }
    }
}

impl<P: Plugin> HandlersGuest for Exports<P> {
    fn on_event(event: handlers::Event) -> Result<(), String> {
        let event = Event {
            topic: event.topic,
            payload: event.payload,
            source: event.source,
        };
        with_instance(|plugin: &mut P| plugin.on_event(event))?
    }

    fn on_command(command: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        COMMANDS.with(|commands| {
            let commands = commands.borrow();
            let commands = commands
                .as_ref()
                .and_then(|commands| commands.downcast_ref::<Commands<P>>());
            with_instance(|plugin: &mut P| match commands {
                Some(commands) => run_command(plugin, commands, &command, &payload),
                None => plugin.on_command(&command, &payload),
            })
        })?
    }
}

const METADATA_PREFIX: &[u8] = br#"{"name":""#;
const METADATA_MIDDLE: &[u8] = br#"","version":""#;
const METADATA_SUFFIX: &[u8] = br#""}"#;

const fn escaped_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut len = 0;
    let mut i = 0;
    while i < bytes.len() {
        len += match bytes[i] {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        };
        i += 1;
    }
    len
}

const fn push(out: &mut [u8], mut at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at] = bytes[i];
        at += 1;
        i += 1;
    }
    at
}

const fn push_escaped(out: &mut [u8], mut at: usize, text: &str) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        at = match byte {
            b'"' | b'\\' => push(out, at, &[b'\\', byte]),
            0..=0x1f => push(
                out,
                at,
                &[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(byte >> 4) as usize],
                    HEX[(byte & 0xf) as usize],
                ],
            ),
            _ => push(out, at, &[byte]),
        };
        i += 1;
    }
    at
}

/// Length of the `cairn-plugin` metadata JSON for `name` and `version`.
pub const fn metadata_len(name: &str, version: &str) -> usize {
    METADATA_PREFIX.len()
        + escaped_len(name)
        + METADATA_MIDDLE.len()
        + escaped_len(version)
        + METADATA_SUFFIX.len()
}

/// The `cairn-plugin` metadata JSON, `{"name":..,"version":..}`, as a fixed
/// array so it can live in a `link_section` static. `LEN` must be
/// [`metadata_len`] of the same arguments; anything else fails const evaluation.
pub const fn metadata<const LEN: usize>(name: &str, version: &str) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    let mut at = push(&mut out, 0, METADATA_PREFIX);
    at = push_escaped(&mut out, at, name);
    at = push(&mut out, at, METADATA_MIDDLE);
    at = push_escaped(&mut out, at, version);
    at = push(&mut out, at, METADATA_SUFFIX);
    assert!(at == LEN, "metadata length mismatch");
    out
}
