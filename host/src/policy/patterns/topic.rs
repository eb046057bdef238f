//! MQTT-style topic patterns.
//!
//! A topic is a `/`-separated list of non-empty levels. A pattern may use
//! `+` (exactly one level) and `#` (any number of remaining levels, including
//! none, so `a/#` matches `a`), each as a whole level, `#` only last.
//! Levels must not contain control characters (including NUL) and `{`/`}` are
//! reserved: in patterns they may only form the placeholder `{device}`
//! (a whole level or part of one), which [`TopicPattern::resolve`] replaces
//! by the device id. Topics starting with `$` get no special treatment.
//! At most [`MAX_TOPIC_BYTES`] bytes and [`MAX_TOPIC_LEVELS`] levels.

use std::fmt;

use crate::policy::PatternError;

/// Longest topic or topic pattern, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Most levels in a topic or topic pattern.
pub const MAX_TOPIC_LEVELS: usize = 32;
/// The placeholder that [`TopicPattern::resolve`] replaces.
pub const DEVICE_PLACEHOLDER: &str = "{device}";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Level {
    /// A literal level (may contain unresolved `{device}` placeholders).
    Lit(String),
    /// `+`
    One,
    /// `#`
    Rest,
}

/// A validated topic pattern such as `sensors/+/temp` or `counter/#`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

/// Checks the rules shared by topics and patterns; returns the levels.
fn split<'a>(what: &'static str, input: &'a str) -> Result<Vec<&'a str>, PatternError> {
    if input.is_empty() {
        return Err(PatternError::Empty { what });
    }
    if input.len() > MAX_TOPIC_BYTES {
        return Err(PatternError::TooLong {
            what,
            len: input.len(),
            max: MAX_TOPIC_BYTES,
        });
    }
    if let Some((index, _)) = input.char_indices().find(|(_, c)| c.is_control()) {
        return Err(PatternError::ControlChar {
            what,
            input: input.to_string(),
            index,
        });
    }
    let levels: Vec<&str> = input.split('/').collect();
    if levels.len() > MAX_TOPIC_LEVELS {
        return Err(PatternError::TooManyLevels {
            what,
            levels: levels.len(),
            max: MAX_TOPIC_LEVELS,
        });
    }
    if levels.iter().any(|l| l.is_empty()) {
        return Err(PatternError::EmptyLevel {
            what,
            input: input.to_string(),
        });
    }
    Ok(levels)
}

/// Checks a concrete topic (as published or delivered): the pattern rules,
/// and no wildcards or braces at all.
pub fn validate_topic(topic: &str) -> Result<(), PatternError> {
    split("topic", topic)?;
    if let Some(ch) = topic.chars().find(|c| matches!(c, '+' | '#')) {
        return Err(PatternError::WildcardInTopic {
            input: topic.to_string(),
            ch,
        });
    }
    if topic.contains(['{', '}']) {
        return Err(PatternError::InvalidChar {
            what: "topic",
            input: topic.to_string(),
            ch: if topic.contains('{') { '{' } else { '}' },
            allowed: "'{' and '}' are reserved",
        });
    }
    Ok(())
}

impl TopicPattern {
    /// Parses and validates a pattern.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        const WHAT: &str = "topic pattern";
        let raw = split(WHAT, input)?;
        let last = raw.len() - 1;
        let mut levels = Vec::with_capacity(raw.len());
        for (i, level) in raw.into_iter().enumerate() {
            let owned = || input.to_string();
            let parsed = match level {
                "#" if i == last => Level::Rest,
                "#" => {
                    return Err(PatternError::HashNotLast {
                        what: WHAT,
                        input: owned(),
                    });
                }
                "+" => Level::One,
                _ if level.contains('#') => {
                    return Err(PatternError::HashInLevel {
                        what: WHAT,
                        input: owned(),
                    });
                }
                _ if level.contains('+') => {
                    return Err(PatternError::PlusInLevel {
                        what: WHAT,
                        input: owned(),
                    });
                }
                _ if level.replace(DEVICE_PLACEHOLDER, "").contains(['{', '}']) => {
                    return Err(PatternError::BadPlaceholder {
                        what: WHAT,
                        input: owned(),
                    });
                }
                _ => Level::Lit(level.to_string()),
            };
            levels.push(parsed);
        }
        Ok(TopicPattern { levels })
    }

    /// Replaces every `{device}` by `device_id`. The id is meant to be a
    /// valid topic level; to keep the result a valid pattern, any `/`, `+`,
    /// `#`, `{`, `}` or control character in it becomes `_`, and an empty id
    /// becomes `_`. Patterns without the placeholder are returned unchanged.
    /// The length limits are not checked again after substitution.
    ///
    /// An unresolved placeholder matches no topic (topics may not contain
    /// braces); in [`covers`](Self::covers) it stands for "the device id", so
    /// `a/{device}` covers `a/{device}` and `+` covers `{device}`.
    pub fn resolve(&self, device_id: &str) -> TopicPattern {
        let mut id: String = device_id
            .chars()
            .map(|c| {
                if matches!(c, '/' | '+' | '#' | '{' | '}') || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        if id.is_empty() {
            id.push('_');
        }
        let levels = self
            .levels
            .iter()
            .map(|l| match l {
                Level::Lit(s) => Level::Lit(s.replace(DEVICE_PLACEHOLDER, &id)),
                other => other.clone(),
            })
            .collect();
        TopicPattern { levels }
    }

    /// True if the pattern contains an unresolved `{device}` placeholder.
    pub fn has_placeholder(&self) -> bool {
        self.levels
            .iter()
            .any(|l| matches!(l, Level::Lit(s) if s.contains(DEVICE_PLACEHOLDER)))
    }

    /// True if the pattern contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.levels.iter().any(|l| !matches!(l, Level::Lit(_)))
    }

    /// True if `topic` is a valid concrete topic (see [`validate_topic`])
    /// that this pattern matches.
    pub fn matches(&self, topic: &str) -> bool {
        if validate_topic(topic).is_err() {
            return false;
        }
        let topic: Vec<&str> = topic.split('/').collect();
        for (i, level) in self.levels.iter().enumerate() {
            match level {
                Level::Rest => return true,
                Level::One if i < topic.len() => {}
                Level::Lit(s) if i < topic.len() && topic[i] == s => {}
                _ => return false,
            }
        }
        self.levels.len() == topic.len()
    }

    /// True iff every topic that `other` matches is also matched by `self`
    /// (used to check a subscription request against granted patterns).
    /// Exact: `a/#` covers `a/+/b` and `a`; `a/+` does not cover `a/#`;
    /// `#` covers everything; `+/x` covers `a/x`; `+/#` covers `#` (a topic
    /// always has at least one level).
    pub fn covers(&self, other: &TopicPattern) -> bool {
        // A topic has at least one level, so a leading `#` needs one: `#` ≡ `+/#`.
        let expanded;
        let q = if let [Level::Rest] = other.levels.as_slice() {
            expanded = [Level::One, Level::Rest];
            &expanded[..]
        } else {
            &other.levels[..]
        };
        let p = &self.levels;
        let mut i = 0;
        loop {
            match (p.get(i), q.get(i)) {
                // Both exhausted: the same topic length is required of both.
                (None, None) => return true,
                // `self` ends but `other` goes on (or has `#`, which allows more levels).
                (None, Some(_)) => return false,
                // `#` in `self` takes any remainder of what `other` allows, including none.
                (Some(Level::Rest), _) => return true,
                // `other` stops here (or may stop, with `#`) but `self` needs another level.
                (Some(_), None | Some(Level::Rest)) => return false,
                (Some(Level::One), Some(_)) => {}
                (Some(Level::Lit(a)), Some(Level::Lit(b))) if a == b => {}
                // A different literal, or `+` in `other` against a literal in `self`.
                (Some(Level::Lit(_)), Some(_)) => return false,
            }
            i += 1;
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match level {
                Level::Lit(s) => f.write_str(s)?,
                Level::One => f.write_str("+")?,
                Level::Rest => f.write_str("#")?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for TopicPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        TopicPattern::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for TopicPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TopicPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for TopicPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
