//! Entry points into the plugins' parsers for the fuzz targets.
//!
//! Plugins build as `cdylib`s for wasm32-wasip2 only (a native `cdylib` of
//! one does not even link: its export names are not valid linker symbols),
//! so the fuzz crate compiles their parser modules itself, from the same
//! source files. They refer to each other as `crate::…`, hence they sit at
//! this crate's root. A new `crate::` import in one of them needs the module
//! it names added here.

use std::collections::BTreeMap;

// The recipes plugin: recipes, plans and what they are built from.
#[path = "../../../plugins/recipes/src/container.rs"]
pub mod container;
#[path = "../../../plugins/recipes/src/plan.rs"]
pub mod plan;
#[path = "../../../plugins/recipes/src/recipe.rs"]
pub mod recipe;
#[path = "../../../plugins/recipes/src/strict_toml.rs"]
pub mod strict_toml;
#[path = "../../../plugins/recipes/src/units.rs"]
pub mod units;
#[path = "../../../plugins/recipes/src/vars.rs"]
pub mod vars;

// The mqtt-adapter plugin: its wire format and the device's own commands.
#[path = "../../../plugins/mqtt-adapter/src/device.rs"]
pub mod device;
#[path = "../../../plugins/mqtt-adapter/src/protocol.rs"]
pub mod protocol;

use plan::{Context, Plan, RecipeSource};
use protocol::{Failure, parse_request, parse_topic, reply, reply_topic};
use serde_json::Value;

/// Parses and checks a recipe as `recipe-add` does, then reads the derived
/// settings the supervisor uses.
pub fn recipe(text: &str) -> Result<(), String> {
    let recipe = recipe::Recipe::parse("recipe", text)?;
    recipe.timing();
    recipe.resources.cpu_millis()?;
    recipe.resources.memory_bytes();
    Ok(())
}

/// Recipes sent along with a plan (stored ones live in the host's key-value
/// store, which is not reachable natively).
struct Inline<'a>(&'a BTreeMap<String, String>);

impl RecipeSource for Inline<'_> {
    fn lookup(&self, reference: &str) -> Result<(String, String), String> {
        self.0
            .get(reference)
            .map(|text| (format!("recipe {reference}"), text.clone()))
            .ok_or_else(|| format!("recipe `{reference}` was not sent with the plan"))
    }
}

/// Builds a plan as `plan-apply` does, with `recipes` sent along, then reads
/// what `plan-graph`, status and supervision read from it.
pub fn plan(text: &str, recipes: &BTreeMap<String, String>) -> Result<(), String> {
    let component_dir = |name: &str| format!("/srv/cairn/components/{name}");
    let context = Context {
        component_dir: &component_dir,
        config_vars: &BTreeMap::new(),
    };
    let plan = Plan::build(text, &Inline(recipes), &context, &mut Vec::new())?;
    plan.dot();
    for name in plan.components.keys() {
        plan.layer_of(name);
        plan.hard_dependents(name);
        plan.hard_dependencies(name);
    }
    plan.in_start_order(plan.components.keys().cloned());
    Ok(())
}

/// Decodes a command as the mqtt-adapter does: the reply topic, the request,
/// the route and, for the device's own commands, their arguments; returns
/// the reply (or error reply) it would publish, short of calling the host.
pub fn mqtt_command(topic: &str, payload: &[u8]) -> Vec<u8> {
    let reply_to = reply_topic(topic);
    let request = match parse_request(payload) {
        Ok(request) => request,
        Err((id, failure)) => return reply(id.as_deref(), Err(failure)),
    };
    let outcome: Result<Value, Failure> = match parse_topic(topic) {
        None => Err(Failure::new("invalid", reply_to)),
        Some(route) if route.target == "host" => match route.command {
            "install" => device::args::<device::InstallRequest>(request.payload, "install")
                .map(|_| Value::Null),
            "rollback" | "remove" => {
                device::args::<device::PluginRequest>(request.payload, "plugin")
                    .map(|_| Value::Null)
            }
            _ => Ok(Value::Null),
        },
        Some(_) => Ok(request.payload),
    };
    reply(Some(&request.id), outcome)
}
