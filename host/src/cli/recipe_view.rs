//! The replies of the `recipes` plugin's commands, and their human forms.
//!
//! The types read only what the text needs; `--json` prints the plugin's reply
//! itself, so fields the plugin adds later reach scripts without a CLI change.

use serde::Deserialize;

use super::output;

/// One step of a plan or component change: `{"component", "action", "reason"}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct Action {
    pub component: String,
    pub action: String,
    #[serde(default)]
    pub reason: String,
}

/// The reply of `plan-apply`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ApplyReply {
    /// Absent from a dry run, which starts no operation.
    #[serde(default)]
    pub operation: u64,
    #[serde(default)]
    pub layers: Vec<Vec<String>>,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// The reply of `component-stop` and `component-restart`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ActionsReply {
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub dry_run: bool,
}

/// One component as `component-list` and `plan-status` show it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Component {
    pub name: String,
    /// Unknown once the plan that named it failed and was dropped.
    #[serde(default)]
    pub recipe: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    pub state: String,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub restarts: u64,
    /// Usually a word (`ok`, `failing`); kept as JSON so a richer report still shows.
    #[serde(default)]
    pub health: Option<serde_json::Value>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub layer: Option<usize>,
}

/// The reply of `component-list`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ComponentList {
    #[serde(default)]
    pub components: Vec<Component>,
}

/// The reply of `plan-status`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlanStatus {
    pub phase: String,
    #[serde(default)]
    pub operation: Option<u64>,
    #[serde(default)]
    pub layer: Option<usize>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub components: Vec<Component>,
}

impl PlanStatus {
    /// Phases after which nothing changes until the next command.
    pub fn is_settled(&self) -> bool {
        matches!(self.phase.as_str(), "applied" | "failed" | "stopped")
    }
}

/// One dependency: `from` needs `to`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Edge {
    pub from: String,
    pub to: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// The reply of `plan-graph`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Graph {
    #[serde(default)]
    pub layers: Vec<Vec<String>>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    #[serde(default)]
    pub dot: String,
}

/// The reply of `plan-stop`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Stopped {
    #[serde(default)]
    pub stopped: Vec<String>,
}

/// Said first by every dry run, so it is never mistaken for the real thing.
pub(crate) const DRY_RUN_NOTE: &str = "dry run: nothing was changed";

/// `layer 0: db` lines, in start order.
pub(crate) fn render_layers(layers: &[Vec<String>]) -> String {
    layers
        .iter()
        .enumerate()
        .map(|(index, names)| format!("layer {index}: {}\n", names.join(", ")))
        .collect()
}

/// The actions as a table; `nothing to do` when there are none.
pub(crate) fn render_actions(actions: &[Action]) -> String {
    if actions.is_empty() {
        return "nothing to do\n".to_string();
    }
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|action| {
            vec![
                action.component.clone(),
                action.action.clone(),
                action.reason.clone(),
            ]
        })
        .collect();
    output::table(&["COMPONENT", "ACTION", "REASON"], &rows)
}

fn render_warnings(warnings: &[String]) -> String {
    warnings
        .iter()
        .map(|warning| format!("warning: {warning}\n"))
        .collect()
}

/// What `cairn apply` says about the plan it sent: the first line tells
/// whether anything happened (`dry run`, `applying`, `applied`).
pub(crate) fn render_apply(reply: &ApplyReply, headline: &str) -> String {
    let mut text = format!("{headline}\n");
    text.push_str(&render_layers(&reply.layers));
    text.push_str(&render_actions(&reply.actions));
    text.push_str(&render_warnings(&reply.warnings));
    text
}

/// The reply of `cairn restart` and `cairn stop`.
pub(crate) fn render_component_actions(reply: &ActionsReply) -> String {
    let actions = render_actions(&reply.actions);
    if reply.dry_run {
        format!("{DRY_RUN_NOTE}\n{actions}")
    } else {
        actions
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}

fn health_text(health: Option<&serde_json::Value>) -> String {
    match health {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// The component table, then each component's last error (too long for a column).
pub(crate) fn render_components(components: &[Component]) -> String {
    if components.is_empty() {
        return "no components\n".to_string();
    }
    let rows: Vec<Vec<String>> = components
        .iter()
        .map(|component| {
            vec![
                component.name.clone(),
                component.state.clone(),
                or_dash(component.pid),
                component.restarts.to_string(),
                health_text(component.health.as_ref()),
                or_dash(component.layer),
                or_dash(component.version.as_deref()),
            ]
        })
        .collect();
    let mut text = output::table(
        &[
            "NAME", "STATE", "PID", "RESTARTS", "HEALTH", "LAYER", "VERSION",
        ],
        &rows,
    );
    for component in components {
        if let Some(error) = &component.last_error {
            text.push_str(&format!("{}: last error: {error}\n", component.name));
        }
    }
    text
}

/// The human form of `cairn plan status`.
pub(crate) fn render_status(status: &PlanStatus) -> String {
    let mut text = String::new();
    let details = [
        ("phase", Some(status.phase.clone())),
        ("operation", status.operation.map(|n| n.to_string())),
        ("layer", status.layer.map(|n| n.to_string())),
        ("error", status.error.clone()),
    ];
    for (label, value) in details {
        if let Some(value) = value {
            text.push_str(&format!("{:<11}{value}\n", format!("{label}:")));
        }
    }
    text.push('\n');
    text.push_str(&render_components(&status.components));
    text
}

/// The human form of `cairn graph`: the layers, then one line per edge.
pub(crate) fn render_graph(graph: &Graph) -> String {
    if graph.layers.is_empty() {
        return "no plan applied\n".to_string();
    }
    let mut text = render_layers(&graph.layers);
    for edge in &graph.edges {
        text.push_str(&format!("{} -> {} ({})\n", edge.from, edge.to, edge.kind));
    }
    text
}

/// The human form of `cairn plan stop`.
pub(crate) fn render_stopped(stopped: &Stopped) -> String {
    if stopped.stopped.is_empty() {
        "nothing was running".to_string()
    } else {
        format!("stopped {}", stopped.stopped.join(", "))
    }
}

/// What changed between two polls of `plan-status`, one line per change, so a
/// log of `cairn apply` tells the story of the operation.
pub(crate) fn status_changes(before: Option<&PlanStatus>, after: &PlanStatus) -> Vec<String> {
    let mut lines = Vec::new();
    let phase_moved = before.is_none_or(|before| {
        before.phase != after.phase || (after.phase == "applying" && before.layer != after.layer)
    });
    if phase_moved {
        lines.push(match (after.phase.as_str(), after.layer) {
            ("applying", Some(layer)) => format!("applying layer {layer}"),
            (phase, _) => phase.to_string(),
        });
    }
    for component in &after.components {
        let previous = before.and_then(|before| {
            before
                .components
                .iter()
                .find(|old| old.name == component.name)
        });
        let changed = previous.is_none_or(|old| {
            old.state != component.state
                || old.pid != component.pid
                || old.health != component.health
        });
        if changed {
            lines.push(component_line(component));
        }
    }
    lines
}

fn component_line(component: &Component) -> String {
    let mut line = format!("  {}: {}", component.name, component.state);
    if let Some(pid) = component.pid {
        line.push_str(&format!(" (pid {pid})"));
    }
    if let Some(health) = component.health.as_ref().filter(|health| !health.is_null()) {
        line.push_str(&format!(", health {}", health_text(Some(health))));
    }
    if component.state == "failed"
        && let Some(error) = &component.last_error
    {
        line.push_str(&format!(": {error}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(value: serde_json::Value) -> PlanStatus {
        serde_json::from_value(value).unwrap()
    }

    fn sample_status() -> PlanStatus {
        status(serde_json::json!({
            "phase": "applied",
            "operation": 7,
            "layer": 2,
            "error": null,
            "components": [
                {"name": "db", "recipe": "db.toml", "version": "16.1", "state": "running",
                 "pid": 4242, "restarts": 0, "health": "ok", "last-error": null, "layer": 0},
                {"name": "api", "recipe": "api", "version": null, "state": "failed",
                 "pid": null, "restarts": 3, "health": null,
                 "last-error": "exited with status 1", "layer": 1}
            ]
        }))
    }

    #[test]
    fn status_shows_the_phase_and_a_component_table() {
        assert_eq!(
            render_status(&sample_status()),
            "phase:     applied\n\
             operation: 7\n\
             layer:     2\n\
             \n\
             NAME  STATE    PID   RESTARTS  HEALTH  LAYER  VERSION\n\
             db    running  4242  0         ok      0      16.1\n\
             api   failed   -     3         -       1      -\n\
             api: last error: exited with status 1\n"
        );
        let idle = status(serde_json::json!({
            "phase": "idle", "operation": null, "layer": null, "error": null, "components": []
        }));
        assert_eq!(render_status(&idle), "phase:     idle\n\nno components\n");
    }

    #[test]
    fn graph_lists_layers_then_edges() {
        let graph: Graph = serde_json::from_value(serde_json::json!({
            "layers": [["db"], ["cache", "queue"], ["api"]],
            "edges": [
                {"from": "api", "to": "db", "type": "hard"},
                {"from": "api", "to": "cache", "type": "soft"}
            ],
            "dot": "digraph plan { api -> db; }"
        }))
        .unwrap();
        assert_eq!(
            render_graph(&graph),
            "layer 0: db\nlayer 1: cache, queue\nlayer 2: api\n\
             api -> db (hard)\napi -> cache (soft)\n"
        );
    }

    #[test]
    fn dry_runs_say_so_before_the_actions() {
        let reply: ApplyReply = serde_json::from_value(serde_json::json!({
            "operation": 3,
            "layers": [["db"], ["api"]],
            "actions": [
                {"component": "db", "action": "keep", "reason": "unchanged"},
                {"component": "api", "action": "restart", "reason": "recipe changed"}
            ],
            "warnings": ["api: no health check"],
            "dry-run": true
        }))
        .unwrap();
        assert!(reply.dry_run);
        assert_eq!(
            render_apply(&reply, DRY_RUN_NOTE),
            "dry run: nothing was changed\n\
             layer 0: db\nlayer 1: api\n\
             COMPONENT  ACTION   REASON\n\
             db         keep     unchanged\n\
             api        restart  recipe changed\n\
             warning: api: no health check\n"
        );
        let none = ActionsReply {
            actions: Vec::new(),
            dry_run: false,
        };
        assert_eq!(render_component_actions(&none), "nothing to do\n");
    }

    #[test]
    fn progress_reports_each_change_once() {
        let mut applying = sample_status();
        applying.phase = "applying".into();
        applying.layer = Some(0);
        let first = status_changes(None, &applying);
        assert_eq!(
            first,
            [
                "applying layer 0",
                "  db: running (pid 4242), health ok",
                "  api: failed: exited with status 1"
            ]
        );
        assert!(status_changes(Some(&applying), &applying).is_empty());
        let mut next = applying.clone();
        next.layer = Some(1);
        next.components[1].state = "starting".into();
        assert_eq!(
            status_changes(Some(&applying), &next),
            ["applying layer 1", "  api: starting"]
        );
    }
}
