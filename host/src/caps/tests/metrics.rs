//! `cairn:host/metrics` through the bench: series, their quota, names, denials.

use crate::caps::bench::{Bench, assert_denied};
use crate::caps::metrics::Metrics;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::metrics::Host as _;

fn rendered(bench: &Bench) -> String {
    let mut out = String::new();
    bench.shared.render_metrics(&mut out);
    out
}

#[tokio::test]
async fn counters_add_up_and_gauges_replace() {
    let mut bench = Bench::new("[grants.metrics]");
    let mut metrics = bench.view::<Metrics>();
    let labels = vec![("kind".to_string(), "a".to_string())];
    metrics
        .counter_add("jobs".into(), labels.clone(), 2)
        .await
        .unwrap();
    metrics.counter_add("jobs".into(), labels, 3).await.unwrap();
    metrics
        .gauge_set("level".into(), vec![], 1.5)
        .await
        .unwrap();
    metrics
        .gauge_set("level".into(), vec![], 0.5)
        .await
        .unwrap();
    let text = rendered(&bench);
    assert!(
        text.contains("cairn_plugin_jobs{plugin=\"bench\",kind=\"a\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("cairn_plugin_level{plugin=\"bench\"} 0.5"),
        "{text}"
    );
}

#[tokio::test]
async fn series_beyond_max_series_are_refused() {
    let mut bench = Bench::new("[grants.metrics]\nmax-series = 2");
    let mut metrics = bench.view::<Metrics>();
    metrics.counter_add("a".into(), vec![], 1).await.unwrap();
    metrics.counter_add("b".into(), vec![], 1).await.unwrap();
    let refused = metrics.counter_add("c".into(), vec![], 1).await;
    assert!(
        matches!(refused, Err(CapError::QuotaExceeded(_))),
        "{refused:?}"
    );
    // Existing series still update.
    metrics.counter_add("a".into(), vec![], 1).await.unwrap();
}

#[tokio::test]
async fn names_types_and_values_are_checked() {
    let mut bench = Bench::new("[grants.metrics]");
    let mut metrics = bench.view::<Metrics>();
    for bad in ["Upper", "1x", "has-dash", ""] {
        let refused = metrics.counter_add(bad.into(), vec![], 1).await;
        assert!(
            matches!(refused, Err(CapError::Invalid(_))),
            "{bad}: {refused:?}"
        );
    }
    let plugin_label = vec![("plugin".to_string(), "other".to_string())];
    let refused = metrics.counter_add("x".into(), plugin_label, 1).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    metrics.counter_add("x".into(), vec![], 1).await.unwrap();
    let refused = metrics.gauge_set("x".into(), vec![], 1.0).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    let refused = metrics.gauge_set("y".into(), vec![], f64::NAN).await;
    assert!(matches!(refused, Err(CapError::Invalid(_))), "{refused:?}");
    assert_eq!(bench.denials(), 0);
}

#[tokio::test]
async fn without_the_grant_series_are_denied_and_the_denial_is_rendered() {
    let mut bench = Bench::new("");
    let refused = bench
        .view::<Metrics>()
        .counter_add("a".into(), vec![], 1)
        .await;
    assert_denied(refused, "no [grants.metrics]");
    assert_eq!(bench.denials(), 1);
    let text = rendered(&bench);
    assert!(
        text.contains("cairn_plugin_denials_total{plugin=\"bench\"} 1"),
        "{text}"
    );
}
