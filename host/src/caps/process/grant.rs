//! `[grants.process]`: which executables, arguments and users a plugin may run.

use std::path::{Component, Path};

use serde::Deserialize;

/// Executable names refused unless the grant sets `allow-shell = true`: a shell
/// (or a multi-call binary that contains one) runs whatever its arguments say.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "pdksh", "csh", "tcsh", "fish", "busybox",
    "toybox",
];

/// `[grants.process]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProcessGrant {
    /// What may run; a spawn must match one entry.
    pub allow: Vec<AllowEntry>,
    /// Processes of the plugin running at once.
    #[serde(default = "default_max_processes")]
    pub max_processes: usize,
    /// Whether entries may name a shell (or busybox).
    #[serde(default)]
    pub allow_shell: bool,
}

/// `[[grants.process.allow]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AllowEntry {
    /// Exact absolute path of the executable.
    pub exe: String,
    /// Argument patterns, matched position by position; a final `**` matches
    /// any remaining arguments. Absent: any arguments.
    pub args: Option<Vec<String>>,
    /// Users the process may run as, besides the daemon's own.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups the process may run as, besides the chosen user's primary group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Linux capabilities the process may keep in its bounding set.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

fn default_max_processes() -> usize {
    16
}

/// Whether `exe` (by its file name) is a shell.
pub fn is_shell(exe: &Path) -> bool {
    exe.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| SHELLS.contains(&name))
}

/// Checks beyond the types (called from `Capability::validate`).
pub fn validate(grant: &ProcessGrant) -> Result<(), String> {
    if grant.allow.is_empty() {
        return Err("allows nothing: add [[grants.process.allow]] entries".into());
    }
    if grant.max_processes == 0 || grant.max_processes > 1024 {
        return Err("max-processes must be 1 to 1024".into());
    }
    for entry in &grant.allow {
        let exe = Path::new(&entry.exe);
        if !exe.is_absolute() {
            return Err(format!("exe `{}` is not an absolute path", entry.exe));
        }
        if exe
            .components()
            .any(|part| matches!(part, Component::ParentDir | Component::CurDir))
            || entry.exe.ends_with('/')
        {
            return Err(format!("exe `{}` is not a plain file path", entry.exe));
        }
        if is_shell(exe) && !grant.allow_shell {
            return Err(format!(
                "exe `{}` is a shell, which runs anything its arguments say; set allow-shell = true to grant it",
                entry.exe
            ));
        }
        if let Some(args) = &entry.args
            && let Some(position) = args.iter().position(|arg| arg == "**")
            && position + 1 != args.len()
        {
            return Err(format!(
                "exe `{}`: `**` may only be the last argument pattern",
                entry.exe
            ));
        }
        for name in entry.users.iter().chain(&entry.groups) {
            if name.is_empty() || name.contains(['/', ':', '\0']) {
                return Err(format!(
                    "exe `{}`: `{name}` is not a user or group name",
                    entry.exe
                ));
            }
        }
        for cap in &entry.capabilities {
            if super::spawn::capability_number(cap).is_none() {
                return Err(format!("exe `{}`: unknown capability `{cap}`", entry.exe));
            }
        }
    }
    Ok(())
}

/// Glob match where `*` is any run of characters (including none).
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    for (index, part) in parts.iter().enumerate() {
        if index + 1 == parts.len() {
            return remaining.len() >= part.len() && remaining.ends_with(part);
        }
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `args` fit the entry's patterns.
pub fn args_match(patterns: Option<&[String]>, args: &[String]) -> bool {
    let Some(patterns) = patterns else {
        return true;
    };
    let (fixed, tail) = match patterns.split_last() {
        Some((last, fixed)) if last == "**" => (fixed, true),
        _ => (patterns, false),
    };
    if args.len() < fixed.len() || (!tail && args.len() != fixed.len()) {
        return false;
    }
    fixed
        .iter()
        .zip(args)
        .all(|(pattern, arg)| glob(pattern, arg))
}

impl ProcessGrant {
    /// The first entry allowing `exe` with `args`, or why none does.
    pub fn entry_for(&self, exe: &str, args: &[String]) -> Result<&AllowEntry, String> {
        let mut same_exe = self
            .allow
            .iter()
            .filter(|entry| entry.exe == exe)
            .peekable();
        if same_exe.peek().is_none() {
            return Err(format!("running `{exe}` is outside the grant"));
        }
        same_exe
            .find(|entry| args_match(entry.args.as_deref(), args))
            .ok_or_else(|| format!("running `{exe}` with arguments {args:?} is outside the grant"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> Result<ProcessGrant, String> {
        let grant: ProcessGrant = toml::from_str(text).map_err(|err| err.to_string())?;
        validate(&grant).map(|()| grant)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("--port=*", "--port=80"));
        assert!(!glob("--port=*", "--host=x"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
    }

    #[test]
    fn argument_patterns_are_positional_with_an_optional_tail() {
        let fixed = strings(&["-c", "*"]);
        assert!(args_match(Some(&fixed), &strings(&["-c", "x"])));
        assert!(!args_match(Some(&fixed), &strings(&["-c"])));
        assert!(!args_match(Some(&fixed), &strings(&["-c", "x", "y"])));
        let tail = strings(&["run", "**"]);
        assert!(args_match(Some(&tail), &strings(&["run"])));
        assert!(args_match(Some(&tail), &strings(&["run", "a", "b"])));
        assert!(!args_match(Some(&tail), &strings(&["walk"])));
        assert!(args_match(Some(&[]), &[]));
        assert!(!args_match(Some(&[]), &strings(&["x"])));
        assert!(args_match(None, &strings(&["anything"])));
    }

    #[test]
    fn grants_are_validated() {
        assert!(grant("[[allow]]\nexe = \"/usr/bin/sleep\"\nargs = [\"*\"]").is_ok());
        for bad in [
            "allow = []",
            "[[allow]]\nexe = \"sleep\"",
            "[[allow]]\nexe = \"/usr/../bin/sleep\"",
            "[[allow]]\nexe = \"/bin/sh\"",
            "[[allow]]\nexe = \"/bin/x\"\nargs = [\"**\", \"a\"]",
            "[[allow]]\nexe = \"/bin/x\"\ncapabilities = [\"CAP_NOPE\"]",
            "max-processes = 0\n[[allow]]\nexe = \"/bin/x\"",
            "[[allow]]\nexe = \"/bin/x\"\nother = 1",
        ] {
            assert!(grant(bad).is_err(), "accepted {bad:?}");
        }
        assert!(grant("allow-shell = true\n[[allow]]\nexe = \"/bin/sh\"").is_ok());
    }

    #[test]
    fn entries_match_exe_then_args() {
        let grant = grant(
            "[[allow]]\nexe = \"/usr/bin/sleep\"\nargs = [\"1\"]\n[[allow]]\nexe = \"/usr/bin/sleep\"\nargs = [\"2\"]\nusers = [\"nobody\"]",
        )
        .unwrap();
        assert!(
            grant
                .entry_for("/usr/bin/sleep", &strings(&["2"]))
                .unwrap()
                .users
                == ["nobody"]
        );
        assert!(grant.entry_for("/usr/bin/sleep", &strings(&["3"])).is_err());
        assert!(grant.entry_for("/usr/bin/true", &[]).is_err());
    }
}
