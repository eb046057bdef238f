//! Reads a policy document from its spanned TOML tree, so that every error
//! can point at the line of the offending key or value.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};

use crate::policy::error::Source;
use crate::policy::grant::slice;
use crate::policy::model::bounds;
use crate::policy::units::{format_duration, format_size, parse_duration, parse_size};
use crate::policy::{GrantSlice, Limits, PluginSection, Policy, PolicyError, validate_plugin_name};

const TOP_KEYS: &[&str] = &["plugin", "limits", "config", "grants"];
const PLUGIN_KEYS: &[&str] = &["name", "signers", "description"];
const LIMIT_KEYS: &[&str] = &[
    "memory",
    "call-timeout",
    "reply-wait",
    "restart-backoff",
    "restart-backoff-max",
    "soak",
    "soak-max-faults",
];

type Key<'i> = Spanned<DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;

/// Entries of a table in the order they appear in the file.
fn in_order<'a, 'i>(table: &'a DeTable<'i>) -> Vec<(&'a Key<'i>, &'a Value<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

pub(crate) fn parse(src: Source<'_>, require_stem: bool) -> Result<Policy, PolicyError> {
    let doc = DeTable::parse(src.text).map_err(|e| src.syntax(&e))?;
    let mut sections: BTreeMap<&str, (&Key<'_>, &Value<'_>)> = BTreeMap::new();
    for (key, value) in in_order(doc.get_ref()) {
        let name = key.get_ref().as_ref();
        match TOP_KEYS.iter().find(|k| **k == name) {
            Some(known) => sections.insert(known, (key, value)),
            None => return Err(src.unknown_key(key.span(), "the top level", name, TOP_KEYS)),
        };
    }

    let Some((plugin_key, plugin)) = sections.get("plugin") else {
        return Err(src.invalid(None, "missing the required [plugin] section"));
    };
    let plugin = parse_plugin(
        src,
        plugin_key.span(),
        table(src, "[plugin]", plugin)?,
        require_stem,
    )?;
    let limits = match sections.get("limits") {
        Some((_, v)) => parse_limits(src, table(src, "[limits]", v)?)?,
        None => Limits::default(),
    };
    let config = match sections.get("config") {
        Some((_, v)) => {
            table(src, "[config]", v)?;
            to_json(src, "config", v)?
        }
        None => serde_json::Value::Object(serde_json::Map::new()),
    };
    let grants = match sections.get("grants") {
        Some((_, v)) => parse_grants(src, table(src, "[grants]", v)?)?,
        None => BTreeMap::new(),
    };
    Ok(Policy {
        plugin,
        limits,
        grants,
        config,
        path: src.file(),
    })
}

fn table<'a, 'i>(
    src: Source<'_>,
    what: &str,
    v: &'a Value<'i>,
) -> Result<&'a DeTable<'i>, PolicyError> {
    v.get_ref().as_table().ok_or_else(|| {
        src.invalid(
            Some(v.span()),
            format!("{what} must be a table, found {}", type_of(v)),
        )
    })
}

fn type_of(v: &Value<'_>) -> &'static str {
    match v.get_ref() {
        DeValue::Array(a) if a.iter().all(|e| e.get_ref().is_table()) && !a.is_empty() => {
            "an array of tables"
        }
        other => other.type_str(),
    }
}

fn string(src: Source<'_>, what: &str, v: &Value<'_>) -> Result<String, PolicyError> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(src.invalid(
            Some(v.span()),
            format!("{what} must be a string, found {}", type_of(v)),
        )),
    }
}

fn integer(src: Source<'_>, what: &str, v: &Value<'_>) -> Result<i64, PolicyError> {
    match v.get_ref() {
        DeValue::Integer(_) => i64::deserialize(ValueDeserializer::from(v.clone()))
            .map_err(|e| src.invalid(Some(v.span()), format!("{what}: {}", e.message()))),
        _ => Err(src.invalid(
            Some(v.span()),
            format!("{what} must be an integer, found {}", type_of(v)),
        )),
    }
}

fn parse_plugin(
    src: Source<'_>,
    section: Range<usize>,
    t: &DeTable<'_>,
    require_stem: bool,
) -> Result<PluginSection, PolicyError> {
    let (mut name, mut signers, mut description) = (None, None, None);
    for (key, v) in in_order(t) {
        match key.get_ref().as_ref() {
            "name" => {
                let n = string(src, "[plugin] name", v)?;
                validate_plugin_name(&n).map_err(|e| src.invalid(Some(v.span()), e.to_string()))?;
                name = Some((n, v.span()));
            }
            "signers" => signers = Some(parse_signers(src, v)?),
            "description" => description = Some(string(src, "[plugin] description", v)?),
            other => return Err(src.unknown_key(key.span(), "[plugin]", other, PLUGIN_KEYS)),
        }
    }
    let missing = |key: &str| {
        src.invalid(
            Some(section.clone()),
            format!("[plugin] is missing the required key `{key}`"),
        )
    };
    let (name, name_span) = name.ok_or_else(|| missing("name"))?;
    let signers = signers.ok_or_else(|| missing("signers"))?;
    if require_stem && let Some(file) = src.file {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem != name {
            let (line, col) = src.position(name_span.start);
            return Err(PolicyError::NameMismatch {
                file: file.to_path_buf(),
                line,
                col,
                name,
                stem,
            });
        }
    }
    Ok(PluginSection {
        name,
        signers,
        description,
    })
}

fn parse_signers(src: Source<'_>, v: &Value<'_>) -> Result<Vec<String>, PolicyError> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(src.invalid(
            Some(v.span()),
            format!(
                "[plugin] signers must be a list of key names, found {}",
                type_of(v)
            ),
        ));
    };
    if items.is_empty() {
        return Err(src.invalid(
            Some(v.span()),
            "[plugin] signers is empty: list at least one trusted key name",
        ));
    }
    let mut signers = Vec::with_capacity(items.len());
    for item in items.iter() {
        let s = string(src, "each of [plugin] signers", item)?;
        if s.is_empty() || s.trim() != s || s.chars().any(char::is_control) {
            return Err(src.invalid(
                Some(item.span()),
                format!("[plugin] signers: {s:?} is not a valid key name (empty, padded or with control characters)"),
            ));
        }
        if signers.contains(&s) {
            return Err(src.invalid(
                Some(item.span()),
                format!("[plugin] signers: {s:?} is listed twice"),
            ));
        }
        signers.push(s);
    }
    Ok(signers)
}

fn parse_limits(src: Source<'_>, t: &DeTable<'_>) -> Result<Limits, PolicyError> {
    let mut limits = Limits::default();
    let mut backoff_spans = (None, None);
    for (key, v) in in_order(t) {
        let name = key.get_ref().as_ref();
        let what = format!("[limits] {name}");
        let span = Some(v.span());
        let duration_in = |min: Duration, max: Duration| -> Result<Duration, PolicyError> {
            let d = match v.get_ref() {
                DeValue::String(s) => parse_duration(s)
                    .map_err(|e| src.invalid(span.clone(), format!("{what}: {e}")))?,
                _ => {
                    let msg = format!(
                        "{what} must be a duration string such as \"5s\", found {}",
                        type_of(v)
                    );
                    return Err(src.invalid(span.clone(), msg));
                }
            };
            if d < min || d > max {
                let (lo, hi, d) = (
                    format_duration(min),
                    format_duration(max),
                    format_duration(d),
                );
                return Err(src.invalid(
                    span.clone(),
                    format!("{what} must be between {lo} and {hi}, found {d}"),
                ));
            }
            Ok(d)
        };
        match name {
            "memory" => {
                let bytes = match v.get_ref() {
                    DeValue::String(s) => parse_size(s)
                        .map_err(|e| src.invalid(span.clone(), format!("{what}: {e}")))?,
                    DeValue::Integer(_) => {
                        u64::try_from(integer(src, &what, v)?).map_err(|_| {
                            src.invalid(span.clone(), format!("{what} must not be negative"))
                        })?
                    }
                    _ => {
                        let msg = format!(
                            "{what} must be a size such as \"32MiB\", found {}",
                            type_of(v)
                        );
                        return Err(src.invalid(span, msg));
                    }
                };
                if !(bounds::MEMORY_MIN..=bounds::MEMORY_MAX).contains(&bytes) {
                    let msg = format!(
                        "{what} must be between 1MiB and 4GiB, found {}",
                        format_size(bytes)
                    );
                    return Err(src.invalid(span, msg));
                }
                limits.memory = bytes;
            }
            "call-timeout" => {
                limits.call_timeout =
                    duration_in(bounds::CALL_TIMEOUT_MIN, bounds::CALL_TIMEOUT_MAX)?
            }
            "reply-wait" => {
                limits.reply_wait = duration_in(bounds::REPLY_WAIT_MIN, bounds::REPLY_WAIT_MAX)?
            }
            "restart-backoff" => {
                limits.restart_backoff =
                    duration_in(bounds::RESTART_BACKOFF_MIN, bounds::RESTART_BACKOFF_MAX)?;
                backoff_spans.0 = span;
            }
            "restart-backoff-max" => {
                limits.restart_backoff_max =
                    duration_in(bounds::RESTART_BACKOFF_MIN, bounds::RESTART_BACKOFF_CAP_MAX)?;
                backoff_spans.1 = span;
            }
            "soak" => limits.soak = duration_in(Duration::ZERO, bounds::SOAK_MAX)?,
            "soak-max-faults" => {
                let n = integer(src, &what, v)?;
                limits.soak_max_faults =
                    u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                        src.invalid(span, format!("{what} must be at least 1, found {n}"))
                    })?;
            }
            other => return Err(src.unknown_key(key.span(), "[limits]", other, LIMIT_KEYS)),
        }
    }
    if limits.restart_backoff_max < limits.restart_backoff {
        let (max, backoff) = (
            format_duration(limits.restart_backoff_max),
            format_duration(limits.restart_backoff),
        );
        let msg = match backoff_spans.1 {
            Some(_) => format!(
                "[limits] restart-backoff-max ({max}) must not be less than restart-backoff ({backoff})"
            ),
            None => format!(
                "[limits] restart-backoff ({backoff}) is above the default restart-backoff-max ({max}); set restart-backoff-max too"
            ),
        };
        return Err(src.invalid(backoff_spans.1.or(backoff_spans.0), msg));
    }
    Ok(limits)
}

fn to_json(src: Source<'_>, path: &str, v: &Value<'_>) -> Result<serde_json::Value, PolicyError> {
    use serde_json::Value as J;
    Ok(match v.get_ref() {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Integer(_) => J::from(integer(src, path, v)?),
        DeValue::Float(_) => {
            let f = f64::deserialize(ValueDeserializer::from(v.clone()))
                .map_err(|e| src.invalid(Some(v.span()), format!("{path}: {}", e.message())))?;
            serde_json::Number::from_f64(f)
                .map(J::Number)
                .ok_or_else(|| {
                    src.invalid(
                        Some(v.span()),
                        format!("{path}: {f} cannot be represented in JSON"),
                    )
                })?
        }
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(d) => J::String(d.to_string()),
        DeValue::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(src, &format!("{path}[{i}]"), item))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => J::Object(
            t.iter()
                .map(|(k, item)| {
                    Ok((
                        k.get_ref().to_string(),
                        to_json(src, &format!("{path}.{}", k.get_ref()), item)?,
                    ))
                })
                .collect::<Result<_, PolicyError>>()?,
        ),
    })
}

fn parse_grants(
    src: Source<'_>,
    t: &DeTable<'_>,
) -> Result<BTreeMap<String, GrantSlice>, PolicyError> {
    let text: Arc<str> = Arc::from(src.text);
    let mut grants = BTreeMap::new();
    for (key, v) in in_order(t) {
        let name = key.get_ref().as_ref();
        if validate_plugin_name(name).is_err() {
            return Err(src.invalid(
                Some(key.span()),
                format!("[grants.{name}]: a capability name is lowercase letters, digits and '-', starting with a letter"),
            ));
        }
        if !v.get_ref().is_table() {
            let msg = format!(
                "[grants.{name}] must be a table, found {} (write `[grants.{name}]` on its own line to grant it without options)",
                type_of(v)
            );
            return Err(src.invalid(Some(v.span()), msg));
        }
        let (line, col) = src.position(key.span().start);
        grants.insert(name.to_string(), slice(name, v, line, col, src, &text)?);
    }
    Ok(grants)
}
