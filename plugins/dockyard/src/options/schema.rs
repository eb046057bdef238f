//! # The `dev.cairn.options` label
//!
//! A service image declares its options in the image label
//! `dev.cairn.options`, whose value is a JSON object with one field,
//! `options`: the options in the order users should see them.
//!
//! ```json
//! {"options": [
//!   {"name": "port", "type": "port", "default": "5432", "doc": "Port to listen on"},
//!   {"name": "password", "type": "secret", "default": "!rand 24 charset26"},
//!   {"name": "mode", "type": "enum", "values": ["a", "b"], "default": "a"},
//!   {"name": "database", "type": "service", "choices": [
//!     {"service": "db", "requires": ["database_port"], "imports": ["port", "user"],
//!      "bindings": [{"id": "create_user", "run": ["create_user.sh", "$database_user"]}]},
//!     {"value": "sqlite"}]},
//!   {"name": "workers", "type": "integer", "min": 1, "max": 64, "default": "4", "optional": true}
//! ]}
//! ```
//!
//! An optional top-level `ready` says how the service shows it is ready:
//! `{"check": "tcp://{ip}:5432", "interval": "1s", "timeout": "1s",
//! "start-timeout": "60s"}` (those defaults). `check` is `tcp://`, `http://`
//! or `https://`, run by the `health` plugin; `{ip}` is the container's
//! address on the bridge network (a service with a port). An install waits
//! for the first healthy probe; consumers are installed only once it is
//! healthy. Without `ready`, a running container is a ready one.
//!
//! When an image has both this label and Nanocloud's `io.nanocloud.options`,
//! this one is used and the other ignored. Unknown fields are errors, and so
//! is a key twice in one object.
//!
//! ## Options
//!
//! | field      | value | meaning |
//! |------------|-------|---------|
//! | `name`     | string, required | letters, digits, `_`, `-`, `.`; unique |
//! | `type`     | string, default `"string"` | see below |
//! | `doc`      | string | shown to users |
//! | `optional` | boolean, default `false` | see *Resolution* |
//! | `default`  | string | a value, or a macro if it starts with `!` |
//! | `secret`   | boolean | mark a non-secret type secret |
//! | `min`, `max` | integers | inclusive bounds, `integer` and `port` only |
//! | `pattern`  | string | a regular expression the whole value must match; `string`, `secret` and `path` only |
//! | `values`   | array of strings | the choices of an `enum` |
//! | `choices`  | array of choices | the choices of an `enum` or `service` |
//!
//! Values and defaults are always JSON strings (`"default": "4"`, not `4`):
//! options are strings everywhere they travel.
//!
//! Types: `string` (anything); `secret` (a string that is never shown: masked
//! in plans, errors and logs); `integer` (decimal, 64-bit); `boolean`
//! (`true` or `false`); `port` (1–65535); `path` (absolute, no `..`
//! component); `enum` (one of `values`, or of `choices` that are all
//! `value` choices); `service` (one of `choices`, at least one of which is a
//! `service` choice). A value is secret when its type is `secret` or it says
//! `"secret": true` — never because of its name. `enum` and `service` options
//! cannot be secret: their choices are written in the label.
//!
//! ## Defaults and macros
//!
//! A `default` starting with `!` is evaluated on the device when the option
//! is defaulted, once: `!dns` (the host's first nameserver), `!local_ip` (its
//! first non-loopback IPv4 address), `!rand [<len> [<charset>]]` (random: `len`
//! 1–4096, default 16; charset `hex` (default, `len` bytes as hex), `base64`
//! (`len` bytes), `charset26` (`len` letters a–z) or `charset73` (`len`
//! characters from `0-9a-zA-Z!@#$%^&*()-`)), `!tls key|cert|ca` (the path
//! of the service's TLS material), `!if key=value THEN ELSE` (THEN if option
//! `key` was given, chosen or imported with that value, else ELSE; each one
//! word, missing means empty). An `enum` or `service` default must be one of
//! its choices; without one, the first choice is the default unless the
//! option is `optional`.
//!
//! ## Choices
//!
//! | field      | value | meaning |
//! |------------|-------|---------|
//! | `value`    | string | a plain choice; or: |
//! | `service`  | string | a choice that uses another installed service (the "provider") |
//! | `requires` | array of strings | `"opt"`: `opt` must end up set (defaulted if need be); `"opt=val"`: `opt` must be given, chosen or imported as `val` |
//! | `imports`  | array | provider profile keys copied in as `<name>_<key>`: `"port"`, or `{"key": "password", "secret": true}` |
//! | `bindings` | array of `{"id": string, "run": [words], "unbind": [words]}` | commands run in the provider; whole words `$opt` become option values; `unbind` (optional) runs there when the consumer is uninstalled |
//! | `on-restart` | `"restart"` (default), `"rebind"` or `"ignore"` | what happens to the consumer when the provider's container starts again: it is restarted; its binding steps in that provider run again, then it is restarted; or nothing |
//!
//! Exactly one of `value` and `service`; `imports`, `bindings` and
//! `on-restart` only on a `service` choice. A Nanocloud label's service
//! choices restart their consumer. A binding's `id` (letters, digits, `_`, `-`, `.`) is
//! recorded as `bindings.<id>`, unique per provider. Unlike Nanocloud's
//! whitespace-split templates, `run` words may hold spaces.
//!
//! ## Resolution
//!
//! Given options are taken first; a choice option takes the given value
//! (which must be a choice) or its default; chosen services must be
//! installed, and their imports are copied in (a different given value is an
//! error); `"opt=val"` requirements are checked; then every option still
//! unset that is not `optional`, or that a taken choice `requires`, gets its
//! default (an optional option's default is used only then); finally every
//! value is checked against its type, range, choices and pattern.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::error::LabelError;
use super::json::StrictValue;
use super::macros::parse_macro;
use super::model::{
    BindingId, BindingTemplate, Choice, ChoiceTarget, Declared, DefaultValue, Import, IntRange,
    LabelKind, OnRestart, OptionDecl, OptionKind, Pattern, ReadyCheck, Requirement,
};
use super::validate::validate;

const LABEL: &str = super::CAIRN_LABEL;

/// Reads a `dev.cairn.options` label (schema in the module doc).
pub fn parse_cairn(label: &str) -> Result<Declared, LabelError> {
    let StrictValue(value) =
        serde_json::from_str(label).map_err(|error| LabelError::json(LABEL, &error))?;
    // Two stages, so that a malformed option is reported under its name:
    // serde's errors for a nested value would only give a line and column.
    let top: LabelSpec = serde_json::from_value(value).map_err(|error| LabelError::Label {
        label: LABEL,
        problem: error.to_string(),
    })?;
    let mut options = Vec::with_capacity(top.options.len());
    for (index, value) in top.options.into_iter().enumerate() {
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let fail = |problem: String| match &name {
            Some(name) => LabelError::Option {
                label: LABEL,
                option: name.clone(),
                problem,
            },
            None => LabelError::Label {
                label: LABEL,
                problem: format!("option #{}: {problem}", index + 1),
            },
        };
        let spec: OptionSpec =
            serde_json::from_value(value).map_err(|error| fail(error.to_string()))?;
        options.push(convert_option(spec).map_err(fail)?);
    }
    let ready = top
        .ready
        .map(convert_ready)
        .transpose()
        .map_err(|problem| LabelError::Label {
            label: LABEL,
            problem,
        })?;
    let declared = Declared {
        source: LabelKind::Cairn,
        options,
        notes: Vec::new(),
        ready,
    };
    validate(&declared)?;
    Ok(declared)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelSpec {
    options: Vec<Value>,
    #[serde(default)]
    ready: Option<ReadySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ReadySpec {
    check: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    start_timeout: Option<String>,
}

/// `ready`, checked: a probe the health plugin can run, sane durations.
fn convert_ready(spec: ReadySpec) -> Result<ReadyCheck, String> {
    if !["tcp://", "http://", "https://"]
        .iter()
        .any(|scheme| spec.check.starts_with(scheme))
    {
        return Err(format!(
            "ready.check {:?} must start with tcp://, http:// or https://",
            spec.check
        ));
    }
    let millis = |field: &str, given: Option<String>, default: u64, min: u64, max: u64| {
        let Some(given) = given else {
            return Ok(default);
        };
        match humantime::parse_duration(&given) {
            Ok(value) if (min..=max).contains(&(value.as_millis() as u64)) => {
                Ok(value.as_millis() as u64)
            }
            _ => Err(format!(
                "ready.{field} {given:?} must be a duration from {min}ms to {max}ms"
            )),
        }
    };
    Ok(ReadyCheck {
        interval_ms: millis("interval", spec.interval, 1_000, 100, 3_600_000)?,
        timeout_ms: millis("timeout", spec.timeout, 1_000, 1, 60_000)?,
        start_timeout_ms: millis("start-timeout", spec.start_timeout, 60_000, 1_000, 600_000)?,
        check: spec.check,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionSpec {
    name: String,
    #[serde(rename = "type", default)]
    kind: KindSpec,
    #[serde(default)]
    optional: bool,
    secret: Option<bool>,
    default: Option<String>,
    doc: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    pattern: Option<String>,
    values: Option<Vec<String>>,
    choices: Option<Vec<ChoiceSpec>>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum KindSpec {
    #[default]
    String,
    Secret,
    Integer,
    Boolean,
    Port,
    Path,
    Enum,
    Service,
}

impl KindSpec {
    fn name(self) -> &'static str {
        match self {
            KindSpec::String => "string",
            KindSpec::Secret => "secret",
            KindSpec::Integer => "integer",
            KindSpec::Boolean => "boolean",
            KindSpec::Port => "port",
            KindSpec::Path => "path",
            KindSpec::Enum => "enum",
            KindSpec::Service => "service",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceSpec {
    value: Option<String>,
    service: Option<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    imports: Vec<ImportSpec>,
    #[serde(default)]
    bindings: Vec<BindingSpec>,
    #[serde(default, rename = "on-restart")]
    on_restart: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingSpec {
    id: String,
    run: Vec<String>,
    #[serde(default)]
    unbind: Vec<String>,
}

fn convert_option(spec: OptionSpec) -> Result<OptionDecl, String> {
    let kind_name = spec.kind.name();
    let is_choice = matches!(spec.kind, KindSpec::Enum | KindSpec::Service);
    let not_for = |field: &str| format!("\"{field}\" does not apply to type \"{kind_name}\"");
    if (spec.min.is_some() || spec.max.is_some())
        && !matches!(spec.kind, KindSpec::Integer | KindSpec::Port)
    {
        return Err(not_for("min\"/\"max"));
    }
    if spec.pattern.is_some()
        && !matches!(
            spec.kind,
            KindSpec::String | KindSpec::Secret | KindSpec::Path
        )
    {
        return Err(not_for("pattern"));
    }
    if spec.values.is_some() && spec.kind != KindSpec::Enum {
        return Err(not_for("values"));
    }
    if spec.choices.is_some() && !is_choice {
        return Err(not_for("choices"));
    }
    let secret = match (spec.kind, spec.secret) {
        (KindSpec::Secret, Some(false)) => {
            return Err("type \"secret\" cannot say \"secret\": false".to_string());
        }
        (KindSpec::Secret, _) => true,
        (_, Some(true)) if is_choice => {
            return Err(format!(
                "a {kind_name} option cannot be secret: its choices are in the label"
            ));
        }
        (_, secret) => secret.unwrap_or(false),
    };
    let range = IntRange {
        min: spec.min,
        max: spec.max,
    };
    let kind = match spec.kind {
        KindSpec::String | KindSpec::Secret => OptionKind::String,
        KindSpec::Integer => OptionKind::Integer(checked_range(range, i64::MIN, i64::MAX)?),
        KindSpec::Port => OptionKind::Port(checked_range(range, 1, 65535)?),
        KindSpec::Boolean => OptionKind::Boolean,
        KindSpec::Path => OptionKind::Path,
        KindSpec::Enum => OptionKind::Choice(enum_choices(spec.values, spec.choices)?),
        KindSpec::Service => OptionKind::Choice(service_choices(spec.choices)?),
    };
    let default = match (spec.default, &kind) {
        (Some(default), _) => Some(parse_default(default)?),
        // A choice option resolves to its first choice unless optional.
        (None, OptionKind::Choice(choices)) if !spec.optional => choices
            .first()
            .map(|choice| DefaultValue::Literal(choice.value().to_string())),
        (None, _) => None,
    };
    let pattern = spec.pattern.as_deref().map(Pattern::new).transpose()?;
    Ok(OptionDecl {
        name: spec.name,
        kind,
        optional: spec.optional,
        secret,
        default,
        pattern,
        doc: spec.doc,
    })
}

fn parse_default(default: String) -> Result<DefaultValue, String> {
    if default.starts_with('!') {
        parse_macro(&default)
            .map(DefaultValue::Macro)
            .map_err(|problem| format!("default {default:?}: {problem}"))
    } else {
        Ok(DefaultValue::Literal(default))
    }
}

fn checked_range(range: IntRange, lowest: i64, highest: i64) -> Result<IntRange, String> {
    for bound in [range.min, range.max].into_iter().flatten() {
        if !(lowest..=highest).contains(&bound) {
            return Err(format!("bound {bound} is outside {lowest}..{highest}"));
        }
    }
    if let (Some(min), Some(max)) = (range.min, range.max)
        && min > max
    {
        return Err(format!("min {min} is greater than max {max}"));
    }
    Ok(range)
}

fn enum_choices(
    values: Option<Vec<String>>,
    choices: Option<Vec<ChoiceSpec>>,
) -> Result<Vec<Choice>, String> {
    let choices = match (values, choices) {
        (Some(values), None) => values
            .into_iter()
            .map(|value| Choice {
                target: ChoiceTarget::Value(value),
                requires: Vec::new(),
                imports: Vec::new(),
                bindings: Vec::new(),
                on_restart: OnRestart::default(),
            })
            .collect(),
        (None, Some(choices)) => convert_choices(choices)?,
        _ => return Err("an enum takes exactly one of \"values\" and \"choices\"".to_string()),
    };
    if choices.iter().any(|choice| choice.service().is_some()) {
        return Err("an enum's choices are values: use type \"service\" for services".to_string());
    }
    non_empty(choices)
}

fn service_choices(choices: Option<Vec<ChoiceSpec>>) -> Result<Vec<Choice>, String> {
    let choices = convert_choices(choices.unwrap_or_default())?;
    if !choices.iter().any(|choice| choice.service().is_some()) {
        return Err("a service option needs at least one {\"service\": ...} choice".to_string());
    }
    non_empty(choices)
}

fn non_empty(choices: Vec<Choice>) -> Result<Vec<Choice>, String> {
    if choices.is_empty() {
        Err("a choice option needs at least one choice".to_string())
    } else {
        Ok(choices)
    }
}

fn convert_choices(choices: Vec<ChoiceSpec>) -> Result<Vec<Choice>, String> {
    choices.into_iter().map(convert_choice).collect()
}

fn convert_choice(spec: ChoiceSpec) -> Result<Choice, String> {
    let target = match (spec.value, spec.service) {
        (Some(value), None) => ChoiceTarget::Value(value),
        (None, Some(service)) => ChoiceTarget::Service(service),
        _ => return Err("a choice has exactly one of \"value\" and \"service\"".to_string()),
    };
    let requires = spec
        .requires
        .into_iter()
        .map(|requirement| match requirement.split_once('=') {
            Some((option, value)) => Requirement {
                option: option.to_string(),
                equals: Some(value.to_string()),
            },
            None => Requirement {
                option: requirement,
                equals: None,
            },
        })
        .collect();
    let imports = spec
        .imports
        .into_iter()
        .map(|import| Import {
            key: import.key,
            secret: import.secret,
        })
        .collect();
    let bindings = match &target {
        ChoiceTarget::Service(service) => spec
            .bindings
            .into_iter()
            .map(|binding| BindingTemplate {
                id: BindingId::Named(binding.id),
                service: service.clone(),
                words: binding.run,
                unbind: binding.unbind,
            })
            .collect(),
        ChoiceTarget::Value(value) if !spec.bindings.is_empty() => {
            return Err(format!(
                "choice {value:?} has bindings, which only a service choice can run"
            ));
        }
        ChoiceTarget::Value(_) => Vec::new(),
    };
    let on_restart = match (&target, spec.on_restart) {
        (_, None) => OnRestart::default(),
        (ChoiceTarget::Service(_), Some(name)) => OnRestart::parse(&name)?,
        (ChoiceTarget::Value(value), Some(_)) => {
            return Err(format!(
                "choice {value:?} has on-restart, which only a service choice can have"
            ));
        }
    };
    Ok(Choice {
        target,
        requires,
        imports,
        bindings,
        on_restart,
    })
}

/// An `imports` entry: `"key"` or `{"key": "...", "secret": true}`. Written
/// by hand because `#[serde(untagged)]` would report any mistake as "did not
/// match any variant".
struct ImportSpec {
    key: String,
    secret: bool,
}

impl<'de> Deserialize<'de> for ImportSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ImportVisitor)
    }
}

struct ImportVisitor;

impl<'de> Visitor<'de> for ImportVisitor {
    type Value = ImportSpec;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a profile key, or {\"key\": ..., \"secret\": true}")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<ImportSpec, E> {
        Ok(ImportSpec {
            key: key.to_string(),
            secret: false,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ImportSpec, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            key: String,
            #[serde(default)]
            secret: bool,
        }
        let detailed = Detailed::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(ImportSpec {
            key: detailed.key,
            secret: detailed.secret,
        })
    }
}
