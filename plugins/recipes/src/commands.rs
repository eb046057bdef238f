//! The plugin's commands (so every adapter and the CLI reach them):
//! `plan-apply`, `plan-apply-dry`, `plan-status`, `plan-graph`, `plan-stop`,
//! `plan-reconcile`, `component-list`, `component-stop`, `component-restart`,
//! `component-reload`,
//! `recipe-add`, `recipe-list`, `recipe-delete`. See docs/recipes.md.

use std::collections::BTreeMap;

use cairn_sdk::{CommandError, kv, parse_payload};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Recipes;
use crate::engine::{Action, Engine};
use crate::plan::{Context, Plan, RecipeSource};
use crate::recipe::Recipe;
use crate::state::OperationKind;
use crate::vars::Vars;

const RECIPE_PREFIX: &str = "recipe/";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ApplyRequest {
    plan: String,
    #[serde(default)]
    recipes: BTreeMap<String, String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ComponentRequest {
    name: String,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeRequest {
    recipe: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    name: String,
}

/// A recipe added with `recipe-add`.
#[derive(Serialize, Deserialize)]
struct StoredRecipe {
    version: String,
    text: String,
}

/// Recipes sent along with a plan, then those stored with `recipe-add`.
struct Sources<'a> {
    inline: &'a BTreeMap<String, String>,
}

impl RecipeSource for Sources<'_> {
    fn lookup(&self, reference: &str) -> Result<(String, String), String> {
        if let Some(text) = self.inline.get(reference) {
            return Ok((format!("recipe {reference}"), text.clone()));
        }
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (reference, None),
        };
        let stored: Option<StoredRecipe> = kv::get_json(&format!("{RECIPE_PREFIX}{name}"))
            .map_err(|err| format!("cannot read recipe `{name}`: {err}"))?;
        match (stored, version) {
            (Some(stored), Some(version)) if stored.version != version => Err(format!(
                "recipe `{name}` is stored at version {}, not {version}",
                stored.version
            )),
            (Some(stored), _) => Ok((format!("recipe {name}"), stored.text)),
            (None, _) => Err(format!(
                "recipe `{reference}` was neither sent with the plan nor added with recipe-add"
            )),
        }
    }
}

fn reply(value: &Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|err| err.to_string())
}

fn request<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    command: &str,
    shape: &str,
) -> Result<T, String> {
    parse_payload(payload)
        .map_err(|err| format!("{command}: {}", err.message()))?
        .ok_or_else(|| format!("{command} expects {shape}"))
}

/// The payload of `prune-images` and `prune-artifacts`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PruneRequest {
    /// Kept per repository or component besides what is in use (default 3).
    keep: Option<u32>,
    #[serde(default)]
    dry_run: bool,
}

/// The commands, declared for the SDK's router. Most take and return raw
/// JSON bytes because they validate their payload themselves (with the shape
/// in the message); their `String` errors reach callers as `invalid`.
pub fn declare() -> cairn_sdk::Commands<Recipes> {
    cairn_sdk::Commands::new()
        .raw("plan-apply", |r: &mut Recipes, p: &[u8]| {
            view(r).apply(p, false)
        })
        .raw("plan-apply-dry", |r: &mut Recipes, p: &[u8]| {
            view(r).apply(p, true)
        })
        .command("plan-status", |r: &mut Recipes, _: IgnoredAny| {
            Ok::<_, CommandError>(view(r).status())
        })
        .raw("plan-graph", |r: &mut Recipes, p: &[u8]| view(r).graph(p))
        .command("plan-stop", |r: &mut Recipes, _: IgnoredAny| {
            Ok::<_, CommandError>(json!({ "stopped": r.engine.stop_plan() }))
        })
        .command(
            "prune-images",
            |r: &mut Recipes, request: Option<PruneRequest>| {
                let request = request.unwrap_or_default();
                let keep = request.keep.unwrap_or(3);
                crate::prune::images(&r.engine, keep, request.dry_run)
                    .map_err(CommandError::invalid)
            },
        )
        .command(
            "prune-artifacts",
            |r: &mut Recipes, request: Option<PruneRequest>| {
                let request = request.unwrap_or_default();
                let keep = request.keep.unwrap_or(3) as usize;
                crate::prune::artifacts(&mut r.engine, keep, request.dry_run)
                    .map_err(CommandError::invalid)
            },
        )
        .command("in-use", |r: &mut Recipes, _: IgnoredAny| {
            Ok::<_, CommandError>(json!({ "digests": crate::prune::in_use(&r.engine) }))
        })
        .command("plan-reconcile", |r: &mut Recipes, _: IgnoredAny| {
            Ok::<_, CommandError>(json!({ "actions": r.engine.reconcile()? }))
        })
        .command("component-list", |r: &mut Recipes, _: IgnoredAny| {
            Ok::<_, CommandError>(json!({ "components": view(r).components() }))
        })
        .command("component-stop", |r: &mut Recipes, args| {
            component(r, args, "component-stop", Engine::stop_one)
        })
        .command("component-restart", |r: &mut Recipes, args| {
            component(r, args, "component-restart", Engine::restart_one)
        })
        .command("component-reload", |r: &mut Recipes, args| {
            component(r, args, "component-reload", Engine::reload_one)
        })
        .raw("recipe-add", |r: &mut Recipes, p: &[u8]| {
            view(r).recipe_add(p)
        })
        .raw("recipe-list", |r: &mut Recipes, _: &[u8]| {
            view(r).recipe_list()
        })
        .raw("recipe-delete", |r: &mut Recipes, p: &[u8]| {
            view(r).recipe_delete(p)
        })
}

fn view(recipes: &mut Recipes) -> Handlers<'_> {
    Handlers {
        engine: &mut recipes.engine,
        config_vars: &recipes.vars,
    }
}

type ComponentAction = fn(&mut Engine, &str, bool) -> Result<Vec<Action>, String>;

/// `component-stop`, `-restart` and `-reload`: one component, maybe a dry run.
fn component(
    recipes: &mut Recipes,
    request: Option<ComponentRequest>,
    command: &str,
    action: ComponentAction,
) -> Result<Value, CommandError> {
    let request = request.ok_or_else(|| {
        CommandError::invalid(format!(
            r#"{command} expects {{"name": "..", "dry-run": false}}"#
        ))
    })?;
    let actions = action(&mut recipes.engine, &request.name, request.dry_run)?;
    Ok(json!({ "dry-run": request.dry_run, "actions": actions }))
}

/// The parts of the plugin the commands work on.
struct Handlers<'a> {
    engine: &'a mut Engine,
    config_vars: &'a Vars,
}

impl Handlers<'_> {
    fn build(&self, request: &ApplyRequest, warnings: &mut Vec<String>) -> Result<Plan, String> {
        let runner = &self.engine.runner;
        let component_dir = |name: &str| runner.component_dir(name);
        let context = Context {
            component_dir: &component_dir,
            config_vars: self.config_vars,
        };
        Plan::build(
            &request.plan,
            &Sources {
                inline: &request.recipes,
            },
            &context,
            warnings,
        )
    }

    fn apply(&mut self, payload: &[u8], dry: bool) -> Result<Vec<u8>, String> {
        let request: ApplyRequest = request(
            payload,
            "plan-apply",
            r#"{"plan": "<plan TOML>", "recipes": {"<reference>": "<recipe TOML>"}}"#,
        )?;
        let dry_run = dry || request.dry_run;
        let mut warnings = Vec::new();
        let plan = self.build(&request, &mut warnings)?;
        let layers = plan.layers.clone();
        if dry_run {
            let actions = self.engine.plan_actions(&plan);
            return reply(&json!({
                "dry-run": true,
                "layers": layers,
                "edges": plan.edges,
                "actions": actions,
                "warnings": warnings,
            }));
        }
        if let Some(operation) = &self.engine.operation {
            return Err(format!(
                "operation {} is still in progress (layer {} of {}); wait for it or stop the plan",
                operation.id,
                operation.layer + 1,
                operation.target.layers.len()
            ));
        }
        let (id, actions) = self.engine.begin(plan, OperationKind::Apply, None);
        reply(&json!({
            "operation": id,
            "layers": layers,
            "actions": actions,
            "warnings": warnings,
        }))
    }

    fn status(&self) -> Value {
        let status = &self.engine.status;
        let cache = self.engine.runner.store.usage();
        json!({
            "cache": { "entries": cache.entries, "bytes": cache.bytes, "limit": cache.limit },
            "phase": status.phase.as_str(),
            "operation": status.operation,
            "layer": self.engine.operation.as_ref().map(|operation| operation.layer),
            "error": status.error,
            "components": self.components(),
        })
    }

    fn graph(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        // `{}` (or nothing) asks for the applied plan; a plan in the payload is graphed as is.
        let payload_value: Option<Value> =
            parse_payload(payload).map_err(|err| format!("plan-graph: {}", err.message()))?;
        let from_request: Option<ApplyRequest> = match payload_value {
            Some(value) if value.get("plan").is_some() => {
                Some(serde_json::from_value(value).map_err(|err| format!("plan-graph: {err}"))?)
            }
            _ => None,
        };
        let mut warnings = Vec::new();
        let plan = match from_request {
            Some(request) => self.build(&request, &mut warnings)?,
            None => match (&self.engine.operation, &self.engine.applied) {
                (Some(operation), _) => operation.target.clone(),
                (None, Some(applied)) => applied.clone(),
                (None, None) => return Err("no plan is applied".into()),
            },
        };
        reply(&json!({
            "layers": plan.layers,
            "edges": plan.edges,
            "dot": plan.dot(),
            "warnings": warnings,
        }))
    }

    fn components(&self) -> Vec<Value> {
        let engine = &*self.engine;
        let plan = engine
            .operation
            .as_ref()
            .map(|operation| &operation.target)
            .or(engine.applied.as_ref());
        let order: Vec<String> = match plan {
            Some(plan) => plan.in_start_order(engine.records.keys().cloned()),
            None => engine.records.keys().cloned().collect(),
        };
        order
            .iter()
            .filter_map(|name| {
                let record = engine.records.get(name)?;
                let metadata = engine
                    .component_ref(name)
                    .map(|component| &component.recipe.metadata);
                Some(json!({
                    "name": name,
                    "recipe": metadata.map(|metadata| metadata.name.clone()),
                    "version": metadata.map(|metadata| metadata.version.clone()),
                    "state": record.phase.as_str(),
                    "pid": record.pid,
                    "restarts": record.total_restarts,
                    "health": record.health,
                    "last-error": record.last_error,
                    "layer": plan.and_then(|plan| plan.layer_of(name)),
                    "started-at-ms": (record.started_at_ms > 0).then_some(record.started_at_ms),
                    "limits-note": record.limits_note,
                    "container": record.container,
                    "image": record.image,
                }))
            })
            .collect()
    }

    fn recipe_add(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let request: RecipeRequest =
            request(payload, "recipe-add", r#"{"recipe": "<recipe TOML>"}"#)?;
        let recipe = Recipe::parse("recipe", &request.recipe)?;
        let name = recipe.metadata.name.clone();
        if name.contains('@') || name.contains('/') {
            return Err(format!("recipe name `{name}` may not contain `@` or `/`"));
        }
        let stored = StoredRecipe {
            version: recipe.metadata.version.clone(),
            text: request.recipe,
        };
        kv::set_json(&format!("{RECIPE_PREFIX}{name}"), &stored)
            .map_err(|err| format!("cannot store recipe `{name}`: {err}"))?;
        cairn_sdk::info!("recipe {name} {} stored", stored.version);
        reply(&json!({ "name": name, "version": stored.version }))
    }

    fn recipe_list(&self) -> Result<Vec<u8>, String> {
        let mut recipes = Vec::new();
        for key in kv::list_keys(RECIPE_PREFIX).map_err(|err| err.to_string())? {
            if let Ok(Some(stored)) = kv::get_json::<StoredRecipe>(&key)
                && let Ok(recipe) = Recipe::parse(&key, &stored.text)
            {
                recipes.push(json!({
                    "name": recipe.metadata.name,
                    "version": recipe.metadata.version,
                    "description": recipe.metadata.description,
                    "publisher": recipe.metadata.publisher,
                }));
            }
        }
        reply(&json!({ "recipes": recipes }))
    }

    fn recipe_delete(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let request: NameRequest = request(payload, "recipe-delete", r#"{"name": ".."}"#)?;
        let name = request.name;
        let in_use = self
            .engine
            .applied
            .iter()
            .flat_map(|plan| plan.components.values())
            .find(|component| {
                component.recipe_ref == name
                    || component.recipe_ref.starts_with(&format!("{name}@"))
            });
        if let Some(component) = in_use {
            return Err(format!(
                "recipe `{name}` is used by component `{}` of the applied plan",
                component.name
            ));
        }
        let deleted = kv::delete(&format!("{RECIPE_PREFIX}{name}"))
            .map_err(|err| format!("cannot delete recipe `{name}`: {err}"))?;
        if !deleted {
            return Err(format!("unknown recipe `{name}`"));
        }
        reply(&json!({ "deleted": name }))
    }
}
