//! Plugin names and name patterns (`counter`, `nothing-*`, `*`,
//! `counter/get`, `counter/*`), used by grants that refer to other plugins.

use std::fmt;

use crate::policy::PatternError;

/// Longest plugin name, in bytes.
pub const MAX_PLUGIN_NAME: usize = 64;
/// Longest command name (or command glob) in a name pattern, in bytes.
pub const MAX_COMMAND_NAME: usize = 64;

const PLUGIN_CHARS: &str = "allowed: lowercase letters, digits and '-'";
const PLUGIN_GLOB_CHARS: &str = "allowed: lowercase letters, digits, '-' and '*'";
const COMMAND_GLOB_CHARS: &str = "allowed: lowercase letters, digits, '.', '_', '-' and '*'";

/// Checks a plugin name: `[a-z][a-z0-9-]*`, at most 64 bytes.
pub fn validate_plugin_name(name: &str) -> Result<(), PatternError> {
    const WHAT: &str = "plugin name";
    if name.is_empty() {
        return Err(PatternError::Empty { what: WHAT });
    }
    if name.len() > MAX_PLUGIN_NAME {
        return Err(PatternError::TooLong {
            what: WHAT,
            len: name.len(),
            max: MAX_PLUGIN_NAME,
        });
    }
    check_chars(
        WHAT,
        name,
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        PLUGIN_CHARS,
    )?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(PatternError::Invalid {
            what: WHAT,
            input: name.to_string(),
            reason: "must start with a lowercase letter",
        });
    }
    Ok(())
}

fn check_chars(
    what: &'static str,
    input: &str,
    part: &str,
    ok: impl Fn(char) -> bool,
    allowed: &'static str,
) -> Result<(), PatternError> {
    match part.chars().find(|c| !ok(*c)) {
        Some(ch) => Err(PatternError::InvalidChar {
            what,
            input: input.to_string(),
            ch,
            allowed,
        }),
        None => Ok(()),
    }
}

/// A pattern over plugin names, optionally with a command part.
///
/// - `*` matches every plugin (and every command of it);
/// - otherwise the plugin part is a glob where `*` matches any run of
///   characters (`nothing-*`, `*-adapter`, `counter`);
/// - `plugin/command` limits calls to matching commands (`counter/get`,
///   `counter/*`, `*/status`); without it every command of a matched plugin
///   is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamePattern {
    plugin: String,
    command: Option<String>,
}

impl NamePattern {
    /// Parses a pattern; the `/command` part is allowed.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        const WHAT: &str = "name pattern";
        if input.is_empty() {
            return Err(PatternError::Empty { what: WHAT });
        }
        let invalid = |reason| PatternError::Invalid {
            what: WHAT,
            input: input.to_string(),
            reason,
        };
        let (plugin, command) = match input.split_once('/') {
            Some((p, c)) => (p, Some(c)),
            None => (input, None),
        };
        if plugin.is_empty() {
            return Err(invalid("the plugin part before '/' is empty"));
        }
        if plugin.len() > MAX_PLUGIN_NAME {
            return Err(invalid("the plugin part is longer than 64 bytes"));
        }
        let plugin_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '*');
        check_chars(WHAT, input, plugin, plugin_char, PLUGIN_GLOB_CHARS)?;
        if !plugin.contains('*') && !plugin.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid(
                "plugin names start with a lowercase letter, so this matches nothing",
            ));
        }
        if let Some(command) = command {
            if command.is_empty() {
                return Err(invalid("the command part after '/' is empty"));
            }
            if command.contains('/') {
                return Err(invalid("only one '/' is allowed (plugin/command)"));
            }
            if command.len() > MAX_COMMAND_NAME {
                return Err(invalid("the command part is longer than 64 bytes"));
            }
            let command_char = |c: char| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '*')
            };
            check_chars(WHAT, input, command, command_char, COMMAND_GLOB_CHARS)?;
        }
        Ok(NamePattern {
            plugin: plugin.to_string(),
            command: command.map(str::to_string),
        })
    }

    /// Parses a pattern that may only name plugins (no `/command` part),
    /// as used for grants that act on whole plugins.
    pub fn parse_plugin(input: &str) -> Result<Self, PatternError> {
        let pattern = NamePattern::parse(input)?;
        if pattern.command.is_some() {
            return Err(PatternError::Invalid {
                what: "plugin name pattern",
                input: input.to_string(),
                reason: "a '/command' part is not allowed here",
            });
        }
        Ok(pattern)
    }

    /// The plugin part (`counter`, `nothing-*`, `*`).
    pub fn plugin_part(&self) -> &str {
        &self.plugin
    }

    /// The command part, if the pattern has one.
    pub fn command_part(&self) -> Option<&str> {
        self.command.as_deref()
    }

    /// True for a pattern without a `/command` part that matches `plugin`.
    /// A pattern with a command part grants calls only, so it matches no
    /// plugin as a whole.
    pub fn matches_plugin(&self, plugin: &str) -> bool {
        self.command.is_none() && glob(&self.plugin, plugin)
    }

    /// True if a call of `command` on `plugin` is allowed by this pattern.
    pub fn matches_call(&self, plugin: &str, command: &str) -> bool {
        glob(&self.plugin, plugin) && self.command.as_deref().is_none_or(|c| glob(c, command))
    }
}

/// `*` matches any run of bytes (including none); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let (pat, txt) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Position of the last `*` seen, and where in `txt` its match ends so far.
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && pat[p] == txt[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more byte and retry.
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&b| b == b'*')
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.plugin)?;
        if let Some(c) = &self.command {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for NamePattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        NamePattern::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for NamePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NamePattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for NamePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NamePattern {
        NamePattern::parse(s).unwrap()
    }

    #[test]
    fn plugin_names() {
        for ok in ["a", "counter", "mqtt-bridge", "a1", "x-", &"a".repeat(64)] {
            assert_eq!(validate_plugin_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "Counter",
            "a_b",
            "a.b",
            "a/b",
            "a b",
            "ü",
            &"a".repeat(65),
        ] {
            assert!(validate_plugin_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_plugin_name("a_b").unwrap_err().to_string(),
            "plugin name \"a_b\": character '_' is not allowed (allowed: lowercase letters, digits and '-')"
        );
    }

    #[test]
    fn parse_and_display() {
        for s in [
            "*",
            "counter",
            "nothing-*",
            "*-adapter",
            "a*b",
            "counter/get",
            "counter/*",
            "*/status",
            "*/*",
            "x/a.b_c-1",
        ] {
            assert_eq!(n(s).to_string(), s);
        }
        assert_eq!(n("counter/get").plugin_part(), "counter");
        assert_eq!(n("counter/get").command_part(), Some("get"));
        assert_eq!(n("counter").command_part(), None);
        for bad in [
            "",
            "/",
            "/get",
            "counter/",
            "a/b/c",
            "Counter",
            "count_er",
            "a.b",
            "a/GET",
            "a/g t",
            "1abc",
            "-x",
            "a/b/",
            &"a".repeat(65),
            &format!("a/{}", "b".repeat(65)),
        ] {
            assert!(NamePattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            NamePattern::parse("a/GET"),
            Err(PatternError::InvalidChar { ch: 'G', .. })
        ));
        assert!(NamePattern::parse_plugin("nothing-*").is_ok());
        assert!(NamePattern::parse_plugin("counter/get").is_err());
        assert!(NamePattern::parse_plugin("*/*").is_err());
    }

    #[test]
    fn plugin_matching() {
        assert!(n("*").matches_plugin("anything"));
        assert!(n("counter").matches_plugin("counter"));
        assert!(!n("counter").matches_plugin("counter2"));
        assert!(!n("counter").matches_plugin("count"));
        assert!(n("nothing-*").matches_plugin("nothing-here"));
        assert!(n("nothing-*").matches_plugin("nothing-"));
        assert!(!n("nothing-*").matches_plugin("nothing"));
        assert!(n("*-adapter").matches_plugin("modbus-adapter"));
        assert!(!n("*-adapter").matches_plugin("modbus-adapter2"));
        assert!(n("a*b*c").matches_plugin("abc"));
        assert!(n("a*b*c").matches_plugin("axxbyyc"));
        assert!(n("a*b*c").matches_plugin("abbbc"));
        assert!(!n("a*b*c").matches_plugin("acb"));
        assert!(n("**").matches_plugin("x"));
        // A command pattern does not grant whole plugins.
        assert!(!n("counter/*").matches_plugin("counter"));
        assert!(!n("*/*").matches_plugin("counter"));
    }

    #[test]
    fn call_matching() {
        assert!(n("*").matches_call("a", "b"));
        assert!(n("counter").matches_call("counter", "anything"));
        assert!(n("counter/get").matches_call("counter", "get"));
        assert!(!n("counter/get").matches_call("counter", "set"));
        assert!(!n("counter/get").matches_call("echo", "get"));
        assert!(n("counter/*").matches_call("counter", "set"));
        assert!(n("*/status").matches_call("echo", "status"));
        assert!(!n("*/status").matches_call("echo", "status2"));
        assert!(n("counter/get.*").matches_call("counter", "get.all"));
        assert!(!n("counter/get.*").matches_call("counter", "get"));
    }

    #[test]
    fn glob_against_reference() {
        // Compare with a simple recursive definition over a tiny alphabet.
        fn reference(p: &[u8], t: &[u8]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some((b'*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
                Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
            }
        }
        fn words(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
            let mut out = vec![vec![]];
            let mut last = vec![vec![]];
            for _ in 0..max {
                let next: Vec<Vec<u8>> = last
                    .iter()
                    .flat_map(|w: &Vec<u8>| {
                        alphabet.iter().map(move |c| [w.clone(), vec![*c]].concat())
                    })
                    .collect();
                out.extend(next.iter().cloned());
                last = next;
            }
            out
        }
        let pats = words(b"ab*", 4);
        let texts = words(b"abc", 4);
        for p in &pats {
            for t in &texts {
                let (ps, ts) = (
                    std::str::from_utf8(p).unwrap(),
                    std::str::from_utf8(t).unwrap(),
                );
                assert_eq!(glob(ps, ts), reference(p, t), "glob({ps:?}, {ts:?})");
            }
        }
    }

    #[test]
    fn serde() {
        let v: Vec<NamePattern> = serde_json::from_str(r#"["*", "counter/get"]"#).unwrap();
        assert_eq!(v, vec![n("*"), n("counter/get")]);
        assert!(serde_json::from_str::<NamePattern>(r#""Bad""#).is_err());
        assert_eq!(serde_json::to_string(&n("a/*")).unwrap(), r#""a/*""#);
    }
}
