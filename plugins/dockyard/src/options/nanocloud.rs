//! Reading Nanocloud's `io.nanocloud.options` label.
//!
//! The label is a JSON object, key → array of strings, in declaration order:
//!
//! - key `[?]name` declares a free option; `?` makes it optional. Its plain
//!   tokens are its default (the last one wins); a default starting with `!`
//!   is a macro (`!dns`, `!local_ip`, `!rand [<len> [<charset>]]`,
//!   `!tls key|cert|ca`, `!if key=value THEN ELSE`).
//! - key `[?]name=value` declares one choice; the keys sharing a name form
//!   the choice set, and the first declared is the default. `name=&svc`
//!   selects another service, which must already be installed.
//! - on a choice key, `*opt` requires `opt` to end up set and `*opt=val`
//!   requires it to equal `val`. On a service choice, `*<name>_<key>` also
//!   imports the provider's profile entry `key` as option `<name>_<key>`,
//!   and `&[bindings.<id>] cmd args…` is a command run in the provider
//!   (split on whitespace, no quoting).
//! - options named `secret_*` are secrets (except `secret_env_*`, whose value
//!   names a Secret and is not secret material), and so are imports of a
//!   `secret_*` key.
//!
//! Where Nanocloud silently drops a malformed label, ignores a stray token or
//! panics, this reader fails with an error naming the option and the token.
//! Stricter than Nanocloud on purpose: a `*` token on a free option (which
//! Nanocloud honours only when the user gives that option), an `&` token
//! anywhere but on a service choice, and a plain token on a choice key (which
//! Nanocloud never uses) are errors.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::LabelError;
use super::json::OrderedObject;
use super::macros::parse_macro;
use super::model::{
    BindingId, BindingTemplate, Choice, ChoiceTarget, Declared, DefaultValue, Import, LabelKind,
    OnRestart, OptionDecl, OptionKind, Requirement, check_name,
};
use super::validate::validate;

const LABEL: &str = super::NANOCLOUD_LABEL;

/// Reads an `io.nanocloud.options` label (grammar in the module doc).
pub fn parse_nanocloud(label: &str) -> Result<Declared, LabelError> {
    let OrderedObject(entries) =
        serde_json::from_str(label).map_err(|error| LabelError::json(LABEL, &error))?;
    let mut groups = Groups::default();
    for (key, value) in entries {
        let parsed = parse_key(&key)?;
        let fail = |problem: String| option_error(parsed.name, format!("key {key:?}: {problem}"));
        let tokens = tokens_of(value).map_err(fail)?;
        match parsed.choice {
            None => {
                let free = parse_free_tokens(parsed.name, &tokens).map_err(fail)?;
                groups.add_free(&key, parsed.name, parsed.optional, free)?;
            }
            Some(target) => {
                let choice = parse_choice_tokens(parsed.name, target, &tokens).map_err(fail)?;
                groups.add_choice(&key, parsed.name, parsed.optional, choice)?;
            }
        }
    }
    let declared = groups.finish();
    validate(&declared)?;
    Ok(declared)
}

fn option_error(option: &str, problem: String) -> LabelError {
    LabelError::Option {
        label: LABEL,
        option: option.to_string(),
        problem,
    }
}

/// A key split into its parts.
struct Key<'k> {
    optional: bool,
    name: &'k str,
    choice: Option<ChoiceTarget>,
}

fn parse_key(key: &str) -> Result<Key<'_>, LabelError> {
    let (optional, rest) = match key.strip_prefix('?') {
        Some(rest) => (true, rest),
        None => (false, key),
    };
    let (name, value) = match rest.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(LabelError::Label {
            label: LABEL,
            problem: format!("key {key:?} has an empty option name"),
        });
    }
    let fail = |problem: String| option_error(name, format!("key {key:?}: {problem}"));
    if name.contains('&') {
        return Err(fail(
            "'&' marks a service choice and must come right after '=' (name=&service)".to_string(),
        ));
    }
    check_name("the option name", name).map_err(fail)?;
    let choice = match value {
        None => None,
        Some(value) => match value.strip_prefix('&') {
            Some(service) => {
                check_name("the service name", service).map_err(fail)?;
                Some(ChoiceTarget::Service(service.to_string()))
            }
            // Nanocloud would turn `name=a&b` into a service choice of `a&b`.
            None if value.contains('&') => {
                return Err(fail(
                    "'&' may only start a choice's value (name=&service)".to_string(),
                ));
            }
            None => Some(ChoiceTarget::Value(value.to_string())),
        },
    };
    Ok(Key {
        optional,
        name,
        choice,
    })
}

fn tokens_of(value: Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "the value must be an array of strings, not {}",
            json_kind(&value)
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(token) => Ok(token),
            other => Err(format!(
                "element {index} of the value must be a string, not {}",
                json_kind(&other)
            )),
        })
        .collect()
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a free key's tokens declare.
struct FreeTokens {
    default: Option<DefaultValue>,
    /// How many default tokens there were; more than one is worth a note.
    default_tokens: usize,
}

fn parse_free_tokens(name: &str, tokens: &[String]) -> Result<FreeTokens, String> {
    let mut free = FreeTokens {
        default: None,
        default_tokens: 0,
    };
    for token in tokens {
        if token.starts_with('*') {
            return Err(format!(
                "requirement {token:?} on a free option: requirements belong on a choice key \
                 ({name}=value)"
            ));
        }
        if token.starts_with('&') {
            return Err(format!(
                "binding template {token:?} on a free option: only a service choice \
                 ({name}=&service) runs bindings"
            ));
        }
        free.default = Some(parse_default(token)?);
        free.default_tokens += 1;
    }
    Ok(free)
}

fn parse_default(token: &str) -> Result<DefaultValue, String> {
    if token.starts_with('!') {
        parse_macro(token)
            .map(DefaultValue::Macro)
            .map_err(|problem| format!("default {token:?}: {problem}"))
    } else {
        Ok(DefaultValue::Literal(token.to_string()))
    }
}

fn parse_choice_tokens(
    name: &str,
    target: ChoiceTarget,
    tokens: &[String],
) -> Result<Choice, String> {
    let mut choice = Choice {
        target,
        requires: Vec::new(),
        imports: Vec::new(),
        bindings: Vec::new(),
        on_restart: OnRestart::default(),
    };
    let import_prefix = format!("{name}_");
    for token in tokens {
        if let Some(requirement) = token.strip_prefix('*') {
            let (option, equals) = match requirement.split_once('=') {
                Some((option, value)) => (option, Some(value.to_string())),
                None => (requirement, None),
            };
            check_name("the required option", option)
                .map_err(|problem| format!("requirement {token:?}: {problem}"))?;
            let import_key = option
                .strip_prefix(&import_prefix)
                .filter(|key| !key.is_empty());
            if let (Some(_), Some(key)) = (choice.service(), import_key)
                && !choice.imports.iter().any(|import| import.key == key)
            {
                choice.imports.push(Import {
                    key: key.to_string(),
                    // Nanocloud's rule is the name prefix; an imported
                    // `<name>_secret_x` is a secret too (Nanocloud misses it).
                    secret: key.starts_with("secret_") || option.starts_with("secret_"),
                });
            }
            choice.requires.push(Requirement {
                option: option.to_string(),
                equals,
            });
        } else if let Some(template) = token.strip_prefix('&') {
            let Some(service) = choice.service() else {
                return Err(format!(
                    "binding template {token:?} on choice {:?}: only a service choice \
                     ({name}=&service) runs bindings",
                    choice.value()
                ));
            };
            let template = parse_binding(template, service, choice.bindings.len())
                .map_err(|problem| format!("binding template {token:?}: {problem}"))?;
            choice.bindings.push(template);
        } else {
            return Err(format!(
                "token {token:?}: a choice key takes no default (the first declared choice is \
                 the default)"
            ));
        }
    }
    Ok(choice)
}

/// `[bindings.<id>] cmd args…`, split on whitespace; `index` is the
/// template's position among its choice's templates.
fn parse_binding(template: &str, service: &str, index: usize) -> Result<BindingTemplate, String> {
    let mut words: Vec<String> = template.split_whitespace().map(str::to_string).collect();
    let named = words
        .first()
        .and_then(|first| first.strip_prefix("bindings."))
        .map(str::to_string);
    let id = match named {
        Some(id) => {
            check_name("the binding id after 'bindings.'", &id)?;
            words.remove(0);
            BindingId::Named(id)
        }
        None => BindingId::Positional(index),
    };
    if words.is_empty() {
        return Err("no command to run".to_string());
    }
    Ok(BindingTemplate {
        id,
        service: service.to_string(),
        words,
        unbind: Vec::new(),
    })
}

/// The keys read so far, grouped by option name in order of first
/// appearance.
#[derive(Default)]
struct Groups {
    order: Vec<String>,
    by_name: BTreeMap<String, Group>,
}

struct Group {
    /// The first key declaring this name, for error messages.
    first_key: String,
    optional: bool,
    shape: Shape,
}

enum Shape {
    Free(FreeTokens),
    Choices(Vec<Choice>),
}

impl Groups {
    fn add_free(
        &mut self,
        key: &str,
        name: &str,
        optional: bool,
        free: FreeTokens,
    ) -> Result<(), LabelError> {
        if let Some(group) = self.by_name.get(name) {
            let problem = match group.shape {
                Shape::Free(_) => format!("keys {:?} and {key:?} both declare it", group.first_key),
                Shape::Choices(_) => format!(
                    "key {key:?} declares a free option, but key {:?} makes it a choice set",
                    group.first_key
                ),
            };
            return Err(option_error(name, problem));
        }
        self.insert(key, name, optional, Shape::Free(free));
        Ok(())
    }

    fn add_choice(
        &mut self,
        key: &str,
        name: &str,
        optional: bool,
        choice: Choice,
    ) -> Result<(), LabelError> {
        let Some(group) = self.by_name.get_mut(name) else {
            self.insert(key, name, optional, Shape::Choices(vec![choice]));
            return Ok(());
        };
        match &mut group.shape {
            Shape::Free(_) => Err(option_error(
                name,
                format!(
                    "key {key:?} makes it a choice set, but key {:?} declares a free option",
                    group.first_key
                ),
            )),
            Shape::Choices(_) if group.optional != optional => Err(option_error(
                name,
                format!(
                    "'?' is on some of its choice keys but not others ({:?} and {key:?})",
                    group.first_key
                ),
            )),
            Shape::Choices(choices) => {
                choices.push(choice);
                Ok(())
            }
        }
    }

    fn insert(&mut self, key: &str, name: &str, optional: bool, shape: Shape) {
        self.order.push(name.to_string());
        let group = Group {
            first_key: key.to_string(),
            optional,
            shape,
        };
        self.by_name.insert(name.to_string(), group);
    }

    fn finish(mut self) -> Declared {
        let mut options = Vec::new();
        let mut notes = Vec::new();
        for name in self.order {
            let Some(group) = self.by_name.remove(&name) else {
                continue;
            };
            let (kind, default) = match group.shape {
                Shape::Free(free) => {
                    if free.default_tokens > 1 {
                        notes.push(format!(
                            "option '{name}' has {} default tokens; the last one wins, as in \
                             Nanocloud",
                            free.default_tokens
                        ));
                    }
                    (OptionKind::String, free.default)
                }
                Shape::Choices(choices) => {
                    let first = choices
                        .first()
                        .map(|choice| DefaultValue::Literal(choice.value().to_string()));
                    (OptionKind::Choice(choices), first)
                }
            };
            let secret = name.starts_with("secret_") && !name.starts_with("secret_env_");
            options.push(OptionDecl {
                name,
                kind,
                optional: group.optional,
                secret,
                default,
                pattern: None,
                doc: None,
            });
        }
        Declared {
            source: LabelKind::Nanocloud,
            options,
            notes,
            ready: None,
        }
    }
}
