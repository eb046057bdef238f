//! Checks every reader runs on the model it built: the rules that do not
//! depend on how the label spelled things. Whatever passes here, the
//! resolver can rely on: names are well formed and unique, every reference
//! points at something, literal defaults are valid values, and binding ids
//! are unique per provider.

use std::collections::{BTreeMap, BTreeSet};

use super::check::check_value;
use super::error::{LabelError, shown};
use super::model::{
    BindingId, Choice, Declared, DefaultValue, Macro, OptionDecl, OptionKind, check_name,
};

/// Checks a freshly read declaration (see the module doc).
pub(crate) fn validate(declared: &Declared) -> Result<(), LabelError> {
    let label = declared.source.label();
    let fail = |option: &str, problem: String| LabelError::Option {
        label,
        option: option.to_string(),
        problem,
    };

    let mut names = BTreeSet::new();
    for option in &declared.options {
        check_name("the option name", &option.name)
            .map_err(|problem| fail(&option.name, problem))?;
        if !names.insert(option.name.as_str()) {
            return Err(fail(&option.name, "is declared twice".to_string()));
        }
    }
    let known = referable_names(declared);

    // (service, binding id) -> the option declaring it.
    let mut binding_ids: BTreeMap<(String, String), &str> = BTreeMap::new();
    for option in &declared.options {
        check_default(declared, option, &known).map_err(|problem| fail(&option.name, problem))?;
        let mut values = BTreeSet::new();
        for choice in option.choices() {
            if !values.insert(choice.value()) {
                return Err(fail(
                    &option.name,
                    format!("choice {:?} is declared twice", choice.value()),
                ));
            }
            check_choice(declared, choice, &known)
                .map_err(|problem| fail(&option.name, problem))?;
            for template in &choice.bindings {
                let id = template.id_string();
                let key = (template.service.clone(), id.clone());
                if let Some(other) = binding_ids.insert(key, &option.name) {
                    return Err(fail(
                        &option.name,
                        format!(
                            "binding id {id:?} for service {:?} is declared twice (also by option \
                             '{other}'); name the templates with &bindings.<id>",
                            template.service
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Names a requirement or `!if` may refer to: the declared options and every
/// option a service choice may import.
fn referable_names(declared: &Declared) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = declared
        .options
        .iter()
        .map(|option| option.name.clone())
        .collect();
    for option in &declared.options {
        for choice in option.choices() {
            known.extend(
                choice
                    .imports
                    .iter()
                    .map(|import| import.option_name(&option.name)),
            );
        }
    }
    known
}

fn check_default(
    declared: &Declared,
    option: &OptionDecl,
    known: &BTreeSet<String>,
) -> Result<(), String> {
    match (&option.default, &option.kind) {
        (None, _) => Ok(()),
        (Some(DefaultValue::Macro(_)), OptionKind::Choice(_)) => {
            Err("a choice option's default must be one of its choices, not a macro".to_string())
        }
        (Some(DefaultValue::Literal(value)), _) => check_value(option, value).map_err(|rule| {
            format!(
                "default {} is not valid: {rule}",
                shown(value, option.secret)
            )
        }),
        (Some(DefaultValue::Macro(Macro::If { key, .. })), _) => {
            if known.contains(key) {
                Ok(())
            } else {
                Err(format!(
                    "!if compares option '{key}', which {} does not declare",
                    declared.source.label()
                ))
            }
        }
        (Some(DefaultValue::Macro(_)), _) => Ok(()),
    }
}

fn check_choice(
    declared: &Declared,
    choice: &Choice,
    known: &BTreeSet<String>,
) -> Result<(), String> {
    let value = choice.value();
    if let Some(service) = choice.service() {
        check_name("the service name", service)?;
    } else if !choice.imports.is_empty() || !choice.bindings.is_empty() {
        return Err(format!(
            "choice {value:?} imports or binds, which only a service choice can do"
        ));
    }
    for requirement in &choice.requires {
        let target = &requirement.option;
        check_name("the required option", target)?;
        if !known.contains(target) {
            return Err(format!(
                "choice {value:?} requires option '{target}', which is neither declared nor imported"
            ));
        }
        if let (Some(expected), Some(target_decl)) = (&requirement.equals, declared.option(target))
        {
            check_value(target_decl, expected).map_err(|rule| {
                format!(
                    "choice {value:?} requires {target}={}, which can never hold: {rule}",
                    shown(expected, target_decl.secret)
                )
            })?;
        }
    }
    let mut import_keys = BTreeSet::new();
    for import in &choice.imports {
        check_name("the import key", &import.key)?;
        if !import_keys.insert(import.key.as_str()) {
            return Err(format!("choice {value:?} imports {:?} twice", import.key));
        }
    }
    for template in &choice.bindings {
        if let BindingId::Named(id) = &template.id {
            check_name("the binding id", id)?;
        }
        if template.words.is_empty() {
            return Err(format!(
                "binding {:?} of choice {value:?} has no command",
                template.id_string()
            ));
        }
    }
    Ok(())
}
