//! The keep set: every rule, and what a prune would delete.

use std::collections::BTreeMap;

use crate::retention::{Artifact, Inventory, plan};

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

fn artifact(repository: &str, tag: &str, n: u32, environment: &str, at: u64) -> Artifact {
    Artifact {
        repository: repository.into(),
        tag: tag.into(),
        digest: digest(n),
        environment: environment.into(),
        published_ms: at,
        successful: true,
        kind: "image".into(),
        revision: format!("rev{n}"),
    }
}

/// An inventory where every artifact is present and tagged.
fn inventory(artifacts: &[Artifact]) -> Inventory {
    let mut inventory = Inventory::default();
    for artifact in artifacts {
        inventory
            .tags
            .entry(artifact.repository.clone())
            .or_default()
            .insert(artifact.tag.clone(), artifact.digest.clone());
        inventory
            .present
            .insert((artifact.repository.clone(), artifact.digest.clone()));
    }
    inventory
}

fn deleted(plan: &crate::retention::Plan) -> Vec<String> {
    plan.delete.iter().map(|gone| gone.digest.clone()).collect()
}

#[test]
fn the_latest_n_per_environment_are_kept_and_the_rest_deleted() {
    let mut artifacts: Vec<Artifact> = (1..=5)
        .map(|n| artifact("apps/web", &format!("prod-{n}"), n, "prod", u64::from(n)))
        .collect();
    artifacts.extend(
        (11..=12).map(|n| artifact("apps/web", &format!("dev-{n}"), n, "dev", u64::from(n))),
    );
    // prod-5's digest published again under another tag: still one artifact.
    let again = artifact("apps/web", "prod-5b", 5, "prod", 7);
    artifacts.push(again);
    let mut failed = artifact("apps/web", "prod-6", 6, "prod", 6);
    failed.successful = false;
    artifacts.push(failed);
    let plan = plan(&artifacts, &inventory(&artifacts), &BTreeMap::new(), 3).unwrap();
    let kept = &plan.keep["apps/web"];
    for n in [3, 4, 5, 11, 12] {
        assert!(kept.contains_key(&digest(n)), "{n}: {kept:?}");
    }
    assert!(
        kept[&digest(5)][0].contains("latest 3 of prod (#1)"),
        "{kept:?}"
    );
    // The failed artifact is not a successful one: it goes too.
    assert_eq!(deleted(&plan), [digest(1), digest(2), digest(6)]);
    assert_eq!(plan.delete[0].tags, ["prod-1"]);
}

#[test]
fn in_use_foreign_tags_and_other_environments_keep_a_digest() {
    let artifacts: Vec<Artifact> = (1..=4)
        .map(|n| artifact("apps/web", &format!("prod-{n}"), n, "prod", u64::from(n)))
        .collect();
    let mut inventory = inventory(&artifacts);
    let tags = inventory.tags.get_mut("apps/web").unwrap();
    // Someone tagged digest 1 by hand; digest 2 is also staging's current.
    tags.insert("hotfix".into(), digest(1));
    let mut all = artifacts.clone();
    all.push(artifact("apps/web", "staging-9", 2, "staging", 9));
    inventory
        .tags
        .get_mut("apps/web")
        .unwrap()
        .insert("staging-9".into(), digest(2));
    let in_use = BTreeMap::from([(digest(3), vec!["container web on gw-1".to_string()])]);
    let plan = plan(&all, &inventory, &in_use, 1).unwrap();
    let kept = &plan.keep["apps/web"];
    assert!(
        kept[&digest(1)]
            .iter()
            .any(|why| why.contains("hotfix is not a published artifact"))
    );
    assert!(
        kept[&digest(2)]
            .iter()
            .any(|why| why.contains("latest 1 of staging"))
    );
    assert!(
        kept[&digest(3)]
            .iter()
            .any(|why| why.contains("in use by container web on gw-1"))
    );
    assert!(
        kept[&digest(4)]
            .iter()
            .any(|why| why.contains("latest 1 of prod"))
    );
    assert!(plan.delete.is_empty(), "{:?}", plan.delete);
}

#[test]
fn indexes_keep_their_children_and_digests_their_signatures() {
    let artifacts = vec![
        artifact("apps/multi", "v1", 1, "prod", 1),
        artifact("apps/multi", "v2", 2, "prod", 2),
    ];
    let mut inventory = inventory(&artifacts);
    inventory.children.insert(
        ("apps/multi".into(), digest(1)),
        vec![digest(101), digest(102)],
    );
    inventory.children.insert(
        ("apps/multi".into(), digest(2)),
        vec![digest(201), digest(102)],
    );
    let tags = inventory.tags.get_mut("apps/multi").unwrap();
    tags.insert(format!("sha256-{:064x}.sig", 1), digest(301));
    tags.insert(format!("sha256-{:064x}.sig", 2), digest(302));
    let plan = plan(&artifacts, &inventory, &BTreeMap::new(), 1).unwrap();
    let kept = &plan.keep["apps/multi"];
    assert!(kept[&digest(201)][0].contains("child of kept index"));
    assert!(
        kept[&digest(102)][0].contains("child of kept index"),
        "a shared child stays"
    );
    assert!(kept[&digest(302)][0].contains("signature"));
    let gone: BTreeMap<String, String> = plan
        .delete
        .iter()
        .map(|gone| (gone.digest.clone(), gone.why.clone()))
        .collect();
    assert_eq!(gone.len(), 3, "{gone:?}");
    assert!(gone[&digest(1)].contains("not among the kept"));
    assert!(gone[&digest(101)].contains("child of deleted index"));
    assert!(gone[&digest(301)].contains("signature of deleted"));
}

#[test]
fn a_moved_tag_and_a_count_of_zero() {
    let artifacts = vec![
        artifact("apps/web", "latest", 1, "prod", 1),
        artifact("apps/web", "v2", 2, "prod", 2),
    ];
    let mut inventory = inventory(&artifacts);
    // `latest` now points at digest 2; digest 1 is untagged but present.
    inventory
        .tags
        .get_mut("apps/web")
        .unwrap()
        .insert("latest".into(), digest(2));
    let plan = plan(&artifacts, &inventory, &BTreeMap::new(), 1).unwrap();
    assert_eq!(deleted(&plan), [digest(1)]);
    assert!(plan.delete[0].tags.is_empty());
    assert!(
        plan.keep["apps/web"][&digest(2)]
            .iter()
            .any(|why| why.contains("moved"))
    );
    let refused = crate::retention::plan(&artifacts, &inventory, &BTreeMap::new(), 0);
    assert!(refused.unwrap_err().contains("at least 1"));
}
