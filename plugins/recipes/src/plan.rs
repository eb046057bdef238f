//! Plans: which components run, from which recipes, and the dependency graph
//! that orders them into layers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::recipe::{DependencyKind, Recipe};
use crate::vars::{self, Vars};

/// A plan file as written.
#[derive(Deserialize)]
pub struct PlanFile {
    #[serde(default)]
    pub vars: Vars,
    #[serde(default)]
    pub components: Vec<PlanEntry>,
}

#[derive(Deserialize)]
pub struct PlanEntry {
    pub name: String,
    /// A recipe file (its text sent along with the plan) or the name of a
    /// stored recipe (`name` or `name@version`).
    pub recipe: String,
    #[serde(default)]
    pub vars: Vars,
}

/// One component of a resolved plan: its recipe with variables substituted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Component {
    pub name: String,
    pub recipe_ref: String,
    pub recipe: Recipe,
    /// Changes whenever anything about how the component runs changes.
    pub fingerprint: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Edge {
    /// The dependent component.
    pub from: String,
    /// What it depends on.
    pub to: String,
    #[serde(rename = "type")]
    pub kind: DependencyKind,
}

/// A plan ready to apply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Plan {
    pub components: BTreeMap<String, Component>,
    pub edges: Vec<Edge>,
    /// Components in start order: each layer depends only on earlier ones.
    pub layers: Vec<Vec<String>>,
}

/// Finds a recipe's text by the reference a plan uses.
pub trait RecipeSource {
    fn lookup(&self, reference: &str) -> Result<(String, String), String>;
}

/// What a component's directory and the shared variables are.
pub struct Context<'a> {
    pub component_dir: &'a dyn Fn(&str) -> String,
    pub config_vars: &'a Vars,
}

/// Component names double as process names and health check names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Plan {
    /// Parses a plan and resolves its recipes; `warnings` gets what is
    /// suspicious but allowed.
    pub fn build(
        text: &str,
        recipes: &dyn RecipeSource,
        context: &Context,
        warnings: &mut Vec<String>,
    ) -> Result<Plan, String> {
        let file: PlanFile = crate::strict_toml::parse("plan", text)?;
        if file.components.is_empty() {
            return Err("plan: no [[components]]".into());
        }
        let mut components = BTreeMap::new();
        let mut errors = Vec::new();
        for entry in file.components {
            if !valid_name(&entry.name) {
                errors.push(format!(
                    "plan: component name `{}`: use 1 to 48 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
                    entry.name
                ));
                continue;
            }
            if components.contains_key(&entry.name) {
                errors.push(format!("plan: component `{}` is listed twice", entry.name));
                continue;
            }
            match resolve(&entry, &file.vars, recipes, context) {
                Ok(component) => {
                    components.insert(entry.name.clone(), component);
                }
                Err(err) => errors.push(err),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let edges = edges(&components, warnings)?;
        let layers = layers(&components, &edges)?;
        Ok(Plan {
            components,
            edges,
            layers,
        })
    }

    /// Index of the layer holding `name`.
    pub fn layer_of(&self, name: &str) -> Option<usize> {
        self.layers
            .iter()
            .position(|layer| layer.iter().any(|member| member == name))
    }

    /// Components that depend on `name` through hard dependencies, directly
    /// or not, in start order.
    pub fn hard_dependents(&self, name: &str) -> Vec<String> {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut frontier = vec![name.to_string()];
        while let Some(current) = frontier.pop() {
            for edge in &self.edges {
                if edge.kind == DependencyKind::Hard
                    && edge.to == current
                    && found.insert(edge.from.clone())
                {
                    frontier.push(edge.from.clone());
                }
            }
        }
        self.in_start_order(found.into_iter())
    }

    /// The hard dependencies of `name` (direct only).
    pub fn hard_dependencies(&self, name: &str) -> Vec<String> {
        self.edges
            .iter()
            .filter(|edge| edge.kind == DependencyKind::Hard && edge.from == name)
            .map(|edge| edge.to.clone())
            .collect()
    }

    /// Sorts names by layer (start order).
    pub fn in_start_order(&self, names: impl Iterator<Item = String>) -> Vec<String> {
        let mut names: Vec<String> = names.collect();
        names.sort_by_key(|name| (self.layer_of(name).unwrap_or(usize::MAX), name.clone()));
        names
    }

    /// Graphviz rendering.
    pub fn dot(&self) -> String {
        let mut out = String::from("digraph plan {\n  rankdir=LR;\n");
        for name in self.components.keys() {
            out.push_str(&format!("  \"{name}\";\n"));
        }
        for edge in &self.edges {
            let style = match edge.kind {
                DependencyKind::Hard => "solid",
                DependencyKind::Soft => "dashed",
                DependencyKind::Ordering => "dotted",
            };
            out.push_str(&format!(
                "  \"{}\" -> \"{}\" [style={style}, label=\"{}\"];\n",
                edge.from,
                edge.to,
                edge.kind.as_str()
            ));
        }
        out.push_str("}\n");
        out
    }
}

fn resolve(
    entry: &PlanEntry,
    plan_vars: &Vars,
    recipes: &dyn RecipeSource,
    context: &Context,
) -> Result<Component, String> {
    let (source, text) = recipes.lookup(&entry.recipe)?;
    let mut recipe = Recipe::parse(&source, &text)?;
    let mut all: Vars = context.config_vars.clone();
    all.extend(plan_vars.clone());
    all.extend(entry.vars.clone());
    all.insert("COMPONENT".into(), entry.name.clone());
    all.insert("COMPONENT_DIR".into(), (context.component_dir)(&entry.name));
    all.insert("RECIPE_NAME".into(), recipe.metadata.name.clone());
    all.insert("RECIPE_VERSION".into(), recipe.metadata.version.clone());
    vars::apply(&mut recipe, &all).map_err(|err| format!("{source}: {err}"))?;
    let fingerprint = fingerprint(&recipe);
    Ok(Component {
        name: entry.name.clone(),
        recipe_ref: entry.recipe.clone(),
        recipe,
        fingerprint,
    })
}

/// FNV-1a of the recipe's JSON form: enough to tell "changed" from "same".
fn fingerprint(recipe: &Recipe) -> String {
    let bytes = serde_json::to_vec(recipe).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Resolves each `[[dependencies]]` to a component of the plan, by component
/// name or recipe name, and checks version requirements.
fn edges(
    components: &BTreeMap<String, Component>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Edge>, String> {
    let mut edges = Vec::new();
    let mut errors = Vec::new();
    for component in components.values() {
        for dependency in &component.recipe.dependencies {
            let target = components.get(&dependency.name).or_else(|| {
                components
                    .values()
                    .find(|other| other.recipe.metadata.name == dependency.name)
            });
            let Some(target) = target else {
                match dependency.kind {
                    DependencyKind::Hard => errors.push(format!(
                        "component `{}` needs `{}` (hard dependency), which is not in the plan",
                        component.name, dependency.name
                    )),
                    DependencyKind::Soft => warnings.push(format!(
                        "component `{}`: soft dependency `{}` is not in the plan",
                        component.name, dependency.name
                    )),
                    DependencyKind::Ordering => {}
                }
                continue;
            };
            if target.name == component.name {
                errors.push(format!("component `{}` depends on itself", component.name));
                continue;
            }
            if let Some(requirement) = &dependency.version {
                let matches = semver::VersionReq::parse(requirement)
                    .ok()
                    .zip(semver::Version::parse(&target.recipe.metadata.version).ok())
                    .is_some_and(|(req, version)| req.matches(&version));
                if !matches {
                    errors.push(format!(
                        "component `{}` needs `{}` {requirement}, but the plan has version {}",
                        component.name, dependency.name, target.recipe.metadata.version
                    ));
                    continue;
                }
            }
            edges.push(Edge {
                from: component.name.clone(),
                to: target.name.clone(),
                kind: dependency.kind,
            });
        }
    }
    if errors.is_empty() {
        Ok(edges)
    } else {
        Err(errors.join("\n"))
    }
}

/// Kahn's algorithm by levels; a cycle is reported as the path that closes it.
fn layers(
    components: &BTreeMap<String, Component>,
    edges: &[Edge],
) -> Result<Vec<Vec<String>>, String> {
    let mut remaining: BTreeSet<&str> = components.keys().map(String::as_str).collect();
    let mut layers = Vec::new();
    while !remaining.is_empty() {
        let layer: Vec<String> = remaining
            .iter()
            .filter(|name| {
                !edges
                    .iter()
                    .any(|edge| edge.from == **name && remaining.contains(edge.to.as_str()))
            })
            .map(|name| name.to_string())
            .collect();
        if layer.is_empty() {
            return Err(format!(
                "dependency cycle: {}",
                find_cycle(&remaining, edges)
            ));
        }
        for name in &layer {
            remaining.remove(name.as_str());
        }
        layers.push(layer);
    }
    Ok(layers)
}

fn find_cycle(remaining: &BTreeSet<&str>, edges: &[Edge]) -> String {
    // Every remaining node has an outgoing edge to another remaining node, so
    // walking those edges must revisit a node.
    let Some(start) = remaining.iter().next() else {
        return String::new();
    };
    let mut path: Vec<&str> = vec![start];
    loop {
        let Some(current) = path.last().copied() else {
            return String::new();
        };
        let Some(next) = edges
            .iter()
            .find(|edge| edge.from == current && remaining.contains(edge.to.as_str()))
            .map(|edge| edge.to.as_str())
        else {
            return path.join(" → ");
        };
        if let Some(at) = path.iter().position(|seen| *seen == next) {
            let mut cycle: Vec<&str> = path[at..].to_vec();
            cycle.push(next);
            return cycle.join(" → ");
        }
        path.push(next);
    }
}
