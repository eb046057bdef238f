//! Resolving a service's options, in Nanocloud's order:
//!
//! 1. the options the user gave;
//! 2. each choice option: the given value (which must be a choice) or its
//!    default choice;
//! 3. the provider services of the chosen service choices, whose profiles
//!    must exist;
//! 4. the imports of those choices, copied from the profiles (a different
//!    given value is an error);
//! 5. the `*opt=val` requirements of the chosen choices, against what 1–4
//!    set (defaults do not count, as in Nanocloud);
//! 6. the default of every option still unset that is required (not
//!    optional, or `*opt`-required by a chosen choice), macros included;
//! 7. every value against its type, range, choices and pattern;
//! 8. `$opt` words in the chosen choices' binding templates;
//! 9. the runtime-interpreted options (`port_*`, `volume_*`...) and the TLS
//!    material the macros referred to.
//!
//! Options the service does not declare (or import) are refused up front:
//! a typo would otherwise be silently ignored.

use std::collections::{BTreeMap, BTreeSet};

use super::check::check_value;
use super::error::{ResolveError, shown};
use super::macros::evaluate;
use super::model::{Choice, Declared, DefaultValue, Macro, OptionDecl, TlsPart};
use super::resolved::{ArgWord, Binding, Origin, RequiredService, Resolved, ResolvedOption};
use super::runtime::parse_runtime;

/// What macros need from the device. Implemented by the plugin over host
/// calls, and by tests with fixed answers.
pub trait Environment {
    /// The host's first nameserver (`!dns`).
    fn nameserver(&mut self) -> Result<String, String>;
    /// The host's first non-loopback IPv4 address (`!local_ip`).
    fn local_ip(&mut self) -> Result<String, String>;
    /// `n` bytes from a cryptographically secure source (`!rand`).
    fn random_bytes(&mut self, n: usize) -> Result<Vec<u8>, String>;
    /// Where the service's TLS `which` will be found (`!tls`).
    fn tls_path(&mut self, which: TlsPart) -> String;
}

/// The installed services a consumer can use.
pub trait Providers {
    /// The resolved options ("profile") of installed service `service`, or
    /// `None` if it is not installed.
    fn profile(&self, service: &str) -> Option<BTreeMap<String, String>>;
}

/// A fixed set of profiles, service → profile.
impl Providers for BTreeMap<String, BTreeMap<String, String>> {
    fn profile(&self, service: &str) -> Option<BTreeMap<String, String>> {
        self.get(service).cloned()
    }
}

/// A value being resolved, and where it came from.
struct Entry {
    text: String,
    origin: Origin,
}

/// A chosen choice of a choice option.
struct Chosen<'d> {
    option: &'d OptionDecl,
    choice: &'d Choice,
}

/// Resolves `declared` against the options the user `provided`, the
/// profiles of installed `providers` and the device's `env` (see the module
/// doc for the order).
pub fn resolve(
    declared: &Declared,
    provided: &BTreeMap<String, String>,
    providers: &dyn Providers,
    env: &mut dyn Environment,
) -> Result<Resolved, ResolveError> {
    let mut values: BTreeMap<String, Entry> = provided
        .iter()
        .map(|(name, value)| {
            let entry = Entry {
                text: value.clone(),
                origin: Origin::Provided,
            };
            (name.clone(), entry)
        })
        .collect();

    let secrets = secret_names(declared);
    let chosen = choose(declared, &secrets, &mut values)?;
    reject_unknown(declared, provided, &chosen)?;
    let services = provider_profiles(&chosen, providers)?;
    let missing_imports = import(&services, &secrets, &mut values)?;
    check_value_requirements(&chosen, &secrets, &values)?;
    let tls = apply_defaults(declared, &chosen, &missing_imports, env, &mut values)?;
    type_check(declared, &secrets, &values)?;
    let bindings = substitute_bindings(&chosen, &secrets, &values);

    let options = ordered_options(declared, &chosen, &secrets, values);
    let runtime = parse_runtime(&options)?;
    Ok(Resolved {
        options,
        services: services
            .into_iter()
            .map(|(chosen, service, _)| RequiredService {
                option: chosen.option.name.clone(),
                service: service.to_string(),
                on_restart: chosen.choice.on_restart,
            })
            .collect(),
        bindings,
        runtime,
        tls: tls.into_iter().collect(),
    })
}

/// Step 2: the choice of every choice option that has one.
fn choose<'d>(
    declared: &'d Declared,
    secrets: &BTreeSet<String>,
    values: &mut BTreeMap<String, Entry>,
) -> Result<Vec<Chosen<'d>>, ResolveError> {
    let mut chosen = Vec::new();
    for option in declared
        .options
        .iter()
        .filter(|option| !option.choices().is_empty())
    {
        let value = match (values.get(&option.name), &option.default) {
            (Some(given), _) => given.text.clone(),
            (None, Some(DefaultValue::Literal(default))) => default.clone(),
            // Optional without a default: nothing is chosen. (A macro default
            // on a choice option is refused when the label is read.)
            (None, _) => continue,
        };
        let Some(choice) = option.choice(&value) else {
            return Err(ResolveError::NotAChoice {
                option: option.name.clone(),
                shown: shown_value(&option.name, &value, secrets, values),
                choices: option
                    .choices()
                    .iter()
                    .map(|choice| choice.value().to_string())
                    .collect(),
            });
        };
        values.entry(option.name.clone()).or_insert(Entry {
            text: value,
            origin: Origin::Choice,
        });
        chosen.push(Chosen { option, choice });
    }
    Ok(chosen)
}

/// Refuses given options that are neither declared nor imported by a chosen
/// choice.
fn reject_unknown(
    declared: &Declared,
    provided: &BTreeMap<String, String>,
    chosen: &[Chosen<'_>],
) -> Result<(), ResolveError> {
    let imported: BTreeSet<String> = chosen.iter().flat_map(import_names).collect();
    let names: Vec<String> = provided
        .keys()
        .filter(|name| declared.option(name).is_none() && !imported.contains(*name))
        .cloned()
        .collect();
    if names.is_empty() {
        Ok(())
    } else {
        Err(ResolveError::UnknownOptions { names })
    }
}

fn import_names(chosen: &Chosen<'_>) -> Vec<String> {
    chosen
        .choice
        .imports
        .iter()
        .map(|import| import.option_name(&chosen.option.name))
        .collect()
}

/// The names whose values are secret: declared secret, or imported as one
/// by any choice (a superset of what this resolution imports, which is all
/// masking needs).
fn secret_names(declared: &Declared) -> BTreeSet<String> {
    let mut secrets = BTreeSet::new();
    for option in &declared.options {
        if option.secret {
            secrets.insert(option.name.clone());
        }
        for choice in option.choices() {
            for import in choice.imports.iter().filter(|import| import.secret) {
                secrets.insert(import.option_name(&option.name));
            }
        }
    }
    secrets
}

/// A value as errors may show it: masked if its option is secret, or if it
/// equals a secret option's value (showing it would reveal that secret).
fn shown_value(
    name: &str,
    text: &str,
    secrets: &BTreeSet<String>,
    values: &BTreeMap<String, Entry>,
) -> String {
    let reveals_a_secret = !text.is_empty()
        && values
            .iter()
            .any(|(other, entry)| secrets.contains(other) && entry.text == text);
    shown(text, secrets.contains(name) || reveals_a_secret)
}

type ProviderProfile<'c, 'd> = (&'c Chosen<'d>, &'d str, BTreeMap<String, String>);

/// Step 3: the profile of every chosen provider service.
fn provider_profiles<'c, 'd>(
    chosen: &'c [Chosen<'d>],
    providers: &dyn Providers,
) -> Result<Vec<ProviderProfile<'c, 'd>>, ResolveError> {
    let mut profiles = Vec::new();
    for one in chosen {
        let Some(service) = one.choice.service() else {
            continue;
        };
        let profile = providers
            .profile(service)
            .ok_or_else(|| ResolveError::MissingProvider {
                option: one.option.name.clone(),
                service: service.to_string(),
            })?;
        profiles.push((one, service, profile));
    }
    Ok(profiles)
}

/// Step 4: copies the imports in. Returns the imports the provider could not
/// supply (name → why), to explain a later "required" error.
fn import(
    services: &[ProviderProfile<'_, '_>],
    secrets: &BTreeSet<String>,
    values: &mut BTreeMap<String, Entry>,
) -> Result<BTreeMap<String, String>, ResolveError> {
    let mut missing = BTreeMap::new();
    for (chosen, service, profile) in services {
        for import in &chosen.choice.imports {
            let name = import.option_name(&chosen.option.name);
            let Some(imported) = profile.get(&import.key) else {
                missing.insert(
                    name,
                    format!("provider '{service}' has no '{}'", import.key),
                );
                continue;
            };
            match values.get(&name) {
                Some(given) if given.text != *imported => {
                    return Err(ResolveError::ConflictingImport {
                        shown: shown_value(&name, &given.text, secrets, values),
                        imported: shown_value(&name, imported, secrets, values),
                        option: name,
                        service: service.to_string(),
                    });
                }
                // The same value given: it stays given.
                Some(_) => {}
                None => {
                    let origin = Origin::Import {
                        service: service.to_string(),
                    };
                    let entry = Entry {
                        text: imported.clone(),
                        origin,
                    };
                    values.insert(name, entry);
                }
            }
        }
    }
    Ok(missing)
}

/// Step 5: `*opt=val` requirements, against given, chosen and imported
/// values only.
fn check_value_requirements(
    chosen: &[Chosen<'_>],
    secrets: &BTreeSet<String>,
    values: &BTreeMap<String, Entry>,
) -> Result<(), ResolveError> {
    for one in chosen {
        for requirement in &one.choice.requires {
            let Some(expected) = &requirement.equals else {
                continue;
            };
            let current = values.get(&requirement.option);
            if current.is_some_and(|entry| entry.text == *expected) {
                continue;
            }
            let shown = |text: &str| shown_value(&requirement.option, text, secrets, values);
            return Err(ResolveError::RequirementNotMet {
                option: one.option.name.clone(),
                choice: one.choice.value().to_string(),
                required: requirement.option.clone(),
                expected: shown(expected),
                found: current.map_or_else(|| "unset".to_string(), |entry| shown(&entry.text)),
            });
        }
    }
    Ok(())
}

/// Step 6: defaults every required option still unset. `!if` sees the
/// values as they were before any default. Returns the TLS material the
/// evaluated macros refer to.
fn apply_defaults(
    declared: &Declared,
    chosen: &[Chosen<'_>],
    missing_imports: &BTreeMap<String, String>,
    env: &mut dyn Environment,
    values: &mut BTreeMap<String, Entry>,
) -> Result<BTreeSet<TlsPart>, ResolveError> {
    // Option name -> why it is required (None: it is not optional).
    let mut required: Vec<(String, Option<String>)> = declared
        .options
        .iter()
        .filter(|option| !option.optional && !values.contains_key(&option.name))
        .map(|option| (option.name.clone(), None))
        .collect();
    for one in chosen {
        for requirement in one
            .choice
            .requires
            .iter()
            .filter(|requirement| requirement.equals.is_none())
        {
            let name = &requirement.option;
            if !values.contains_key(name) && !required.iter().any(|(other, _)| other == name) {
                let reason = format!("{}={} requires it", one.option.name, one.choice.value());
                required.push((name.clone(), Some(reason)));
            }
        }
    }

    let before_defaults: BTreeMap<String, String> = values
        .iter()
        .map(|(name, entry)| (name.clone(), entry.text.clone()))
        .collect();
    let mut tls = BTreeSet::new();
    for (name, reason) in required {
        let default = declared
            .option(&name)
            .and_then(|option| option.default.as_ref());
        let entry = match default {
            Some(DefaultValue::Literal(value)) => Entry {
                text: value.clone(),
                origin: Origin::Default,
            },
            Some(DefaultValue::Macro(macro_)) => {
                let text = evaluate(macro_, &before_defaults, env).map_err(|message| {
                    ResolveError::Macro {
                        option: name.clone(),
                        token: macro_.to_string(),
                        message,
                    }
                })?;
                if let Macro::Tls(part) = macro_ {
                    tls.insert(*part);
                }
                Entry {
                    text,
                    origin: Origin::Macro,
                }
            }
            None => {
                let reasons: Vec<&str> = reason
                    .iter()
                    .chain(missing_imports.get(&name))
                    .map(String::as_str)
                    .collect();
                return Err(ResolveError::MissingRequired {
                    option: name,
                    reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
                });
            }
        };
        values.insert(name, entry);
    }
    Ok(tls)
}

/// Step 7: every value of a declared option against its declaration, in
/// declaration order so the first error is the same every time.
fn type_check(
    declared: &Declared,
    secrets: &BTreeSet<String>,
    values: &BTreeMap<String, Entry>,
) -> Result<(), ResolveError> {
    for option in &declared.options {
        let Some(entry) = values.get(&option.name) else {
            continue;
        };
        check_value(option, &entry.text).map_err(|rule| ResolveError::Invalid {
            option: option.name.clone(),
            shown: shown_value(&option.name, &entry.text, secrets, values),
            rule,
        })?;
    }
    Ok(())
}

/// Step 8: the chosen service choices' binding templates with whole words
/// `$opt` replaced (an unknown `$x` stays as written, as in Nanocloud). A
/// word is secret if it came from a secret option or equals a secret value.
fn substitute_bindings(
    chosen: &[Chosen<'_>],
    secrets: &BTreeSet<String>,
    values: &BTreeMap<String, Entry>,
) -> Vec<Binding> {
    let secret_values: BTreeSet<&str> = values
        .iter()
        .filter(|(name, entry)| secrets.contains(*name) && !entry.text.is_empty())
        .map(|(_, entry)| entry.text.as_str())
        .collect();
    let mut bindings = Vec::new();
    for one in chosen {
        for template in &one.choice.bindings {
            let substitute = |words: &[String]| -> Vec<ArgWord> {
                words
                    .iter()
                    .map(|word| {
                        let reference = word.strip_prefix('$').and_then(|name| {
                            values
                                .get(name)
                                .map(|entry| (entry, secrets.contains(name)))
                        });
                        let (text, from_secret) = match reference {
                            Some((entry, secret)) => (entry.text.clone(), secret),
                            None => (word.clone(), false),
                        };
                        let secret = from_secret || secret_values.contains(text.as_str());
                        ArgWord { text, secret }
                    })
                    .collect()
            };
            let argv = substitute(&template.words);
            let unbind = substitute(&template.unbind);
            bindings.push(Binding {
                id: template.id_string(),
                service: template.service.clone(),
                argv,
                unbind,
            });
        }
    }
    bindings
}

/// The final values: declared options in declaration order, then imports
/// that no option declares, in the order the chosen choices import them. A
/// value equal to a secret's is marked secret too: showing it would reveal
/// the secret.
fn ordered_options(
    declared: &Declared,
    chosen: &[Chosen<'_>],
    secrets: &BTreeSet<String>,
    mut values: BTreeMap<String, Entry>,
) -> Vec<ResolvedOption> {
    let secret_values: BTreeSet<String> = values
        .iter()
        .filter(|(name, entry)| secrets.contains(*name) && !entry.text.is_empty())
        .map(|(_, entry)| entry.text.clone())
        .collect();
    let names = declared
        .options
        .iter()
        .map(|option| option.name.clone())
        .chain(chosen.iter().flat_map(import_names));
    let mut options = Vec::new();
    for name in names {
        if let Some(entry) = values.remove(&name) {
            options.push(ResolvedOption {
                secret: secrets.contains(&name) || secret_values.contains(&entry.text),
                name,
                value: entry.text,
                origin: entry.origin,
            });
        }
    }
    options
}
