//! Recipe and plan parsing: what a user gets told when something is wrong.

use std::collections::BTreeMap;

use crate::plan::{Context, Plan, RecipeSource};
use crate::recipe::{DependencyKind, Recipe, RestartPolicy};
use crate::vars::Vars;

struct Texts(BTreeMap<String, String>);

impl RecipeSource for Texts {
    fn lookup(&self, reference: &str) -> Result<(String, String), String> {
        self.0
            .get(reference)
            .map(|text| (format!("recipe {reference}"), text.clone()))
            .ok_or_else(|| format!("recipe `{reference}` not found"))
    }
}

fn recipe(name: &str, deps: &[(&str, &str)]) -> String {
    let mut text = format!(
        "[metadata]\nname = \"{name}\"\nversion = \"1.2.0\"\n\n[lifecycle.run.exec]\ncommand = \"/bin/sleep\"\nargs = [\"${{SECONDS:-30}}\"]\n"
    );
    for (dep, kind) in deps {
        text.push_str(&format!(
            "\n[[dependencies]]\nname = \"{dep}\"\ntype = \"{kind}\"\n"
        ));
    }
    text
}

fn build(plan: &str, recipes: &[(&str, String)]) -> Result<Plan, String> {
    let texts = Texts(
        recipes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    );
    let dir = |name: &str| format!("/srv/components/{name}");
    let vars = Vars::new();
    let context = Context {
        component_dir: &dir,
        config_vars: &vars,
    };
    Plan::build(plan, &texts, &context, &mut Vec::new())
}

fn exec_args<'a>(plan: &'a Plan, name: &str) -> &'a Vec<String> {
    let run = plan.components[name].recipe.run().unwrap();
    &run.exec.as_ref().unwrap().args
}

const THREE: &str = "[[components]]\nname = \"db\"\nrecipe = \"db.toml\"\n\n[[components]]\nname = \"cache\"\nrecipe = \"cache.toml\"\n\n[[components]]\nname = \"api\"\nrecipe = \"api.toml\"\n";

#[test]
fn a_full_recipe_parses() {
    let text = r#"
[metadata]
name = "com.example.api"
version = "2.0.1"
description = "API"
publisher = "Example"

[[artifacts]]
uri = "https://example.com/api.tar.gz"
sha256 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
unpack = true
[artifacts.headers]
Accept = "application/octet-stream"

[lifecycle.install]
script = "echo installing"

[lifecycle.run]
type = "process"
restart_policy = "always"
max_retries = 3

[lifecycle.run.exec]
command = "./api"
args = ["--port", "8080"]
working_dir = "data"
env = { MODE = "prod" }

[lifecycle.run.security]
user = "nobody"
no_new_privileges = true
capabilities = ["CAP_NET_BIND_SERVICE"]

[lifecycle.run.health]
check = "http://127.0.0.1:8080/healthz"
interval = "5s"
timeout = "1s"
failure_threshold = 3

[lifecycle.reload]
signal = "HUP"

[lifecycle.shutdown]
script = "echo bye"

[resources]
open_files = 1024
memory_limit = "256MiB"
cpu_quota = "50%"

[[dependencies]]
name = "db"
version = ">=1.0"
type = "hard"
"#;
    let recipe = Recipe::parse("api.toml", text).unwrap();
    let run = recipe.run().unwrap();
    assert_eq!(run.restart_policy, RestartPolicy::Always);
    assert_eq!(recipe.resources.cpu_millis().unwrap(), Some(500));
    assert_eq!(recipe.resources.memory_bytes(), Some(256 << 20));
    assert_eq!(recipe.dependencies[0].kind, DependencyKind::Hard);
}

#[test]
fn unknown_keys_are_errors_with_lines() {
    let text = "[metadata]\nname = \"x\"\nversion = \"1.0.0\"\n\n[lifecycle.run.exec]\ncomand = \"/bin/true\"\ncommand = \"/bin/true\"\n\n[resources]\nmemory = \"1G\"\n";
    let err = Recipe::parse("x.toml", text).unwrap_err();
    assert_eq!(
        err,
        "x.toml line 6: unknown key `lifecycle.run.exec.comand`\nx.toml line 10: unknown key `resources.memory`"
    );
}

#[test]
fn semantic_errors_are_named() {
    let bad = |extra: &str| {
        Recipe::parse(
            "x.toml",
            &format!("[metadata]\nname = \"x\"\nversion = \"1.0.0\"\n{extra}"),
        )
        .unwrap_err()
    };
    assert!(
        bad("[lifecycle.run]\ntype = \"container\"\n").contains("needs [lifecycle.run.container]")
    );
    let container = |body: &str| {
        bad(&format!(
            "[lifecycle.run]\ntype = \"container\"\n[lifecycle.run.container]\n{body}"
        ))
    };
    assert!(container("image = \"r/x:1\"\npull_policy = \"sometimes\"\n").contains("pull_policy"));
    assert!(container("image = \"r/x:1\"\nnetwork_mode = \"host\"\n[[lifecycle.run.container.ports]]\nhost_port = 80\ncontainer_port = 80\n").contains("bridge"));
    assert!(
        container("image = \"r/x:1\"\n[[lifecycle.run.container.mounts]]\ntarget = \"/data\"\n")
            .contains("absolute source")
    );
    assert!(container("image = \"r/x:1\"\n[[lifecycle.run.container.mounts]]\nsource = \"../up\"\ntarget = \"/data\"\ntype = \"volume\"\n").contains("volume"));
    assert!(container("image = \"r/x:1\"\n[lifecycle.run.container.resources]\nmemory_mb = 64\nmemory_swap = 32\n").contains("memory_swap"));
    assert!(container("image = \"r/x:1\"\nimgae = \"typo\"\n").contains("unknown key"));
    assert!(bad("[lifecycle.run.container]\nimage = \"r/x:1\"\n").contains("type = \"container\""));
    assert!(bad("[lifecycle.run]\n").contains("needs [lifecycle.run.exec]"));
    assert!(
        bad("[[artifacts]]\nuri = \"ftp://x\"\nsha256 = \"00\"\n").contains("http:// or https://")
    );
    assert!(bad("[resources]\ncpu_quota = \"lots\"\n").contains("cpu_quota"));
    assert!(bad("[lifecycle.run.exec]\ncommand = \"/bin/true\"\n[lifecycle.run.health]\ncheck = \"ping://x\"\n").contains("expected http://"));
    let version =
        Recipe::parse("x.toml", "[metadata]\nname = \"x\"\nversion = \"one\"\n").unwrap_err();
    assert!(version.contains("not a semantic version"), "{version}");
}

#[test]
fn layers_follow_dependencies() {
    let plan = build(
        THREE,
        &[
            ("db.toml", recipe("db", &[])),
            ("cache.toml", recipe("cache", &[("db", "hard")])),
            (
                "api.toml",
                recipe("api", &[("db", "hard"), ("cache", "soft")]),
            ),
        ],
    )
    .unwrap();
    assert_eq!(plan.layers, vec![vec!["db"], vec!["cache"], vec!["api"]]);
    assert_eq!(plan.hard_dependents("db"), vec!["cache", "api"]);
    assert_eq!(plan.hard_dependents("cache"), Vec::<String>::new());
    assert!(plan.dot().contains("\"api\" -> \"cache\" [style=dashed"));
    let args = exec_args(&plan, "db");
    assert_eq!(args, &vec!["30".to_string()]);
}

#[test]
fn independent_components_share_a_layer() {
    let plan = build(
        THREE,
        &[
            ("db.toml", recipe("db", &[])),
            ("cache.toml", recipe("cache", &[])),
            (
                "api.toml",
                recipe("api", &[("db", "ordering"), ("cache", "ordering")]),
            ),
        ],
    )
    .unwrap();
    assert_eq!(plan.layers, vec![vec!["cache", "db"], vec!["api"]]);
}

#[test]
fn cycles_are_reported_as_a_path() {
    let err = build(
        THREE,
        &[
            ("db.toml", recipe("db", &[("api", "hard")])),
            ("cache.toml", recipe("cache", &[("db", "hard")])),
            ("api.toml", recipe("api", &[("cache", "hard")])),
        ],
    )
    .unwrap_err();
    assert!(err.starts_with("dependency cycle: "), "{err}");
    for name in ["api", "cache", "db"] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn missing_and_mismatched_dependencies() {
    let one = "[[components]]\nname = \"api\"\nrecipe = \"api.toml\"\n";
    let err = build(one, &[("api.toml", recipe("api", &[("db", "hard")]))]).unwrap_err();
    assert!(
        err.contains("needs `db` (hard dependency), which is not in the plan"),
        "{err}"
    );
    assert!(build(one, &[("api.toml", recipe("api", &[("db", "soft")]))]).is_ok());
    let versioned = format!(
        "{}\n[[dependencies]]\nname = \"db\"\nversion = \">=2\"\n",
        recipe("api", &[])
    );
    let two = format!("{one}\n[[components]]\nname = \"db\"\nrecipe = \"db.toml\"\n");
    let err = build(
        &two,
        &[("api.toml", versioned), ("db.toml", recipe("db", &[]))],
    )
    .unwrap_err();
    assert!(
        err.contains("needs `db` >=2, but the plan has version 1.2.0"),
        "{err}"
    );
}

#[test]
fn plan_errors() {
    let err = build("[[components]]\nname = \"Bad Name\"\nrecipe = \"x\"\n", &[]).unwrap_err();
    assert!(err.contains("component name `Bad Name`"), "{err}");
    let err = build(
        "[[components]]\nname = \"a\"\nrecipe = \"missing.toml\"\n",
        &[],
    )
    .unwrap_err();
    assert!(err.contains("recipe `missing.toml` not found"), "{err}");
    let err = build("[[component]]\nname = \"a\"\n", &[]).unwrap_err();
    assert!(
        err.contains("plan line 1: unknown key `component`"),
        "{err}"
    );
    let undefined = recipe("db", &[]).replace("${SECONDS:-30}", "${SECONDS}");
    let err = build(
        "[[components]]\nname = \"db\"\nrecipe = \"db.toml\"\n",
        &[("db.toml", undefined.clone())],
    )
    .unwrap_err();
    assert!(err.contains("variable `SECONDS` is not defined"), "{err}");
    let plan = build(
        "[vars]\nSECONDS = \"5\"\n[[components]]\nname = \"db\"\nrecipe = \"db.toml\"\n",
        &[("db.toml", undefined)],
    )
    .unwrap();
    let args = exec_args(&plan, "db");
    assert_eq!(args, &vec!["5".to_string()]);
}

#[test]
fn a_container_recipe_has_every_keystone_field_and_more() {
    let text = r#"
[metadata]
name = "db"
version = "1.0.0"

[lifecycle.run]
type = "container"
restart_policy = "always"

[lifecycle.run.container]
image = "registry.local:5000/db/postgres:16"
pull_policy = "always"
network_mode = "bridge"
user = "999:999"
hostname = "db"
privileged = false
command = ["/usr/local/bin/docker-entrypoint.sh"]
args = ["postgres", "-c", "max_connections=20"]
working_dir = "/var/lib/postgresql"
env = { POSTGRES_DB = "app" }
labels = { tier = "data" }

[[lifecycle.run.container.ports]]
host_ip = "127.0.0.1"
host_port = 15432
container_port = 5432
protocol = "tcp"

[[lifecycle.run.container.mounts]]
source = "pgdata"
target = "/var/lib/postgresql/data"
type = "volume"

[[lifecycle.run.container.mounts]]
source = "/etc/app/pg.conf"
target = "/etc/postgresql/postgresql.conf"
type = "bind"
read_only = true

[[lifecycle.run.container.mounts]]
target = "/tmp"
type = "tmpfs"

[lifecycle.run.container.resources]
memory_mb = 256
memory_swap = 512
cpu_shares = 512
cpu_quota = 50000
cpu_period = 100000
pids_limit = 64

[lifecycle.run.health]
check = "cmd:/usr/bin/pg_isready -q"
"#;
    let recipe = Recipe::parse("db.toml", text).unwrap();
    let container = recipe.run().unwrap().container.as_ref().unwrap();
    assert_eq!(
        container.pull_policy(),
        cairn_sdk::container::PullPolicy::Always
    );
    assert_eq!(container.resources.memory_mb, Some(256));
    assert_eq!(container.resources.cpu_period, Some(100_000));
    assert_eq!(container.volumes().collect::<Vec<_>>(), ["pgdata"]);
    let spec = format!(
        "{:?}",
        container.spec(
            "db",
            "registry.local:5000/db/postgres:16",
            "/srv/volumes/db"
        )
    );
    for expected in [
        "memory-bytes: Some(268435456)",
        "memory-swap-bytes: Some(536870912)",
        "cpu-quota: Some(50000)",
        "pids-limit: Some(64)",
        "cpu-shares: Some(512)",
        "/srv/volumes/db/pgdata",
        "host-ip: Some(\"127.0.0.1\")",
        "network: NetworkMode::Bridge",
        "max_connections=20",
        "working-dir: Some(\"/var/lib/postgresql\")",
    ] {
        assert!(spec.contains(expected), "{expected} not in {spec}");
    }
}
