//! `cairn:host/metrics`: counters and gauges published by plugins, rendered
//! with the host's own metrics in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use wasmtime::component::Linker;

use super::{CapView, Capability, CapsData, HostSetup, InstanceSetup, ViewOf};
use crate::contract::Audit;
use crate::contract::bindings::CapError;
use crate::contract::bindings::cairn::host::metrics as wit;

pub struct Metrics;

/// `[grants.metrics]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsGrant {
    /// Distinct series (name plus labels) the plugin may create.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

fn default_max_series() -> usize {
    64
}

impl Capability for Metrics {
    const NAME: &'static str = "metrics";
    const INTERFACES: &'static [&'static str] = &["cairn:host/metrics"];
    type Grant = MetricsGrant;
    type Shared = Registry;
    type Local = ();

    fn add_to_linker<T: CapsData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<Metrics>>(linker, |state| state.caps().view())
    }

    fn build(setup: &HostSetup) -> anyhow::Result<Registry> {
        Ok(Registry {
            series: Mutex::default(),
            audit: setup.audit.clone(),
        })
    }

    fn prepare(_: &Registry, _: Option<&MetricsGrant>, _: &mut InstanceSetup<'_>) {}

    fn render_metrics(registry: &Registry, out: &mut String) {
        registry.render(out);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    name: String,
    plugin: String,
    labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
enum Value {
    Counter(u64),
    Gauge(f64),
}

/// Plugin-published series, rendered with the audit's denial counters.
pub struct Registry {
    series: Mutex<BTreeMap<SeriesKey, Value>>,
    audit: Arc<Audit>,
}

impl Registry {
    /// Appends plugin series and denial counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        {
            let denials = self.audit.snapshot();
            let _ = writeln!(out, "# TYPE cairn_plugin_denials_total counter");
            for (plugin, count) in denials.iter() {
                let _ = writeln!(
                    out,
                    "cairn_plugin_denials_total{{plugin=\"{}\"}} {count}",
                    escape(plugin)
                );
            }
        }
        let Ok(series) = self.series.lock() else {
            return;
        };
        let mut typed = String::new();
        for (key, value) in series.iter() {
            let name = format!("cairn_plugin_{}", key.name);
            if typed != name {
                let kind = if matches!(value, Value::Counter(_)) {
                    "counter"
                } else {
                    "gauge"
                };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                typed = name.clone();
            }
            let mut labels = format!("plugin=\"{}\"", escape(&key.plugin));
            for (label, text) in &key.labels {
                let _ = write!(labels, ",{label}=\"{}\"", escape(text));
            }
            let _ = match value {
                Value::Counter(count) => writeln!(out, "{name}{{{labels}}} {count}"),
                Value::Gauge(gauge) => writeln!(out, "{name}{{{labels}}} {gauge}"),
            };
        }
    }
}

impl CapView<'_, Metrics> {
    fn update(
        &self,
        name: String,
        labels: Vec<(String, String)>,
        value: Value,
    ) -> Result<(), CapError> {
        let grant = self.grant()?;
        check_name(&name)?;
        for (label, _) in &labels {
            check_name(label)?;
            if label == "plugin" {
                return Err(CapError::Invalid(
                    "the `plugin` label is set by the host".into(),
                ));
            }
        }
        let mut labels = labels;
        labels.sort();
        let key = SeriesKey {
            name,
            plugin: self.plugin().to_string(),
            labels,
        };
        let mut series = self
            .shared
            .series
            .lock()
            .map_err(|_| CapError::Internal("metrics registry poisoned".into()))?;
        if !series.contains_key(&key) {
            let owned = series
                .keys()
                .filter(|existing| existing.plugin == key.plugin)
                .count();
            if owned >= grant.max_series {
                return Err(CapError::QuotaExceeded(format!(
                    "at most {} series per plugin",
                    grant.max_series
                )));
            }
        }
        match (series.get_mut(&key), value) {
            (Some(Value::Counter(total)), Value::Counter(delta)) => {
                *total = total.saturating_add(delta)
            }
            (Some(Value::Gauge(current)), Value::Gauge(next)) => *current = next,
            (Some(_), _) => {
                return Err(CapError::Invalid(format!(
                    "`{}` is already a metric of another type",
                    key.name
                )));
            }
            (None, value) => {
                series.insert(key, value);
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), CapError> {
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(CapError::Invalid(format!(
            "`{name}` is not a valid metric or label name ([a-z_][a-z0-9_]*)"
        )))
    }
}

/// Escapes a label value for the Prometheus text format.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl wit::Host for CapView<'_, Metrics> {
    async fn counter_add(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        delta: u64,
    ) -> Result<(), CapError> {
        self.update(name, labels, Value::Counter(delta))
    }

    async fn gauge_set(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), CapError> {
        if !value.is_finite() {
            return Err(CapError::Invalid("gauge values must be finite".into()));
        }
        self.update(name, labels, Value::Gauge(value))
    }
}
