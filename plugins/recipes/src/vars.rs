//! `${NAME}` and `${NAME:-default}` substitution in recipe values; `$$` is a
//! literal `$`. Variables come from the plugin's `[config.vars]`, the plan's
//! `[vars]`, the component's `vars` and a few built-ins (`COMPONENT`,
//! `COMPONENT_DIR`, `RECIPE_NAME`, `RECIPE_VERSION`).

use std::collections::BTreeMap;

use crate::recipe::Recipe;

pub type Vars = BTreeMap<String, String>;

/// Substitutes one string; `what` names it in errors.
pub fn substitute(text: &str, vars: &Vars, what: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| format!("{what}: unclosed `${{` in `{text}`"))?;
        let expression = &body[..end];
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{what}: `${{{expression}}}` is not a variable name"
            ));
        }
        match (vars.get(name), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "{what}: variable `{name}` is not defined (define it in the plan's [vars] or use ${{{name}:-default}})"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes every value a recipe hands to the outside world: artifact
/// locations and headers, the command line, its environment, the user and the
/// health check, and the container's image, command, arguments, directories,
/// user, host name, environment and mount sources. Scripts are left alone: the shell expands the variables,
/// which they also receive in their environment.
pub fn apply(recipe: &mut Recipe, vars: &Vars) -> Result<(), String> {
    let sub = |value: &mut String, what: &str| -> Result<(), String> {
        *value = substitute(value, vars, what)?;
        Ok(())
    };
    for (index, artifact) in recipe.artifacts.iter_mut().enumerate() {
        sub(&mut artifact.uri, &format!("artifacts[{index}].uri"))?;
        if let Some(sig) = &mut artifact.sig_uri {
            sub(sig, &format!("artifacts[{index}].sig_uri"))?;
        }
        for (name, value) in &mut artifact.headers {
            sub(value, &format!("artifacts[{index}].headers.{name}"))?;
        }
    }
    if let Some(run) = &mut recipe.lifecycle.run {
        if let Some(exec) = &mut run.exec {
            sub(&mut exec.command, "lifecycle.run.exec.command")?;
            for arg in &mut exec.args {
                sub(arg, "lifecycle.run.exec.args")?;
            }
            if let Some(dir) = &mut exec.working_dir {
                sub(dir, "lifecycle.run.exec.working_dir")?;
            }
            for (name, value) in &mut exec.env {
                sub(value, &format!("lifecycle.run.exec.env.{name}"))?;
            }
        }
        for value in [&mut run.security.user, &mut run.security.group]
            .into_iter()
            .flatten()
        {
            sub(value, "lifecycle.run.security")?;
        }
        if let Some(health) = &mut run.health {
            sub(&mut health.check, "lifecycle.run.health.check")?;
        }
        if let Some(container) = &mut run.container {
            const AT: &str = "lifecycle.run.container";
            sub(&mut container.image, &format!("{AT}.image"))?;
            for list in [&mut container.command, &mut container.args]
                .into_iter()
                .flatten()
            {
                for item in list {
                    sub(item, &format!("{AT}.command/args"))?;
                }
            }
            for value in [
                &mut container.working_dir,
                &mut container.user,
                &mut container.hostname,
            ]
            .into_iter()
            .flatten()
            {
                sub(value, AT)?;
            }
            for (name, value) in &mut container.env {
                sub(value, &format!("{AT}.env.{name}"))?;
            }
            for mount in &mut container.mounts {
                if let Some(source) = &mut mount.source {
                    sub(source, &format!("{AT}.mounts.source"))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("PORT", "8080"), ("HOST", "db.local")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_defaults_and_literals() {
        let v = vars();
        assert_eq!(
            substitute("http://${HOST}:${PORT}/", &v, "x").unwrap(),
            "http://db.local:8080/"
        );
        assert_eq!(substitute("${MISSING:-7}", &v, "x").unwrap(), "7");
        assert_eq!(
            substitute("$$HOME and $PATH", &v, "x").unwrap(),
            "$HOME and $PATH"
        );
        assert_eq!(substitute("no vars", &v, "x").unwrap(), "no vars");
    }

    #[test]
    fn undefined_and_malformed_are_errors() {
        let v = vars();
        let err = substitute("${NOPE}", &v, "exec.args").unwrap_err();
        assert!(
            err.contains("exec.args: variable `NOPE` is not defined"),
            "{err}"
        );
        assert!(
            substitute("${PORT", &v, "x")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            substitute("${a b}", &v, "x")
                .unwrap_err()
                .contains("not a variable name")
        );
    }
}
