//! One `[grants.NAME]` table, kept raw until the capability that owns it
//! parses it into its typed grant.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::policy::PolicyError;
use crate::policy::error::Source;

/// The raw table of one grant, with where it came from.
#[derive(Clone)]
pub struct GrantSlice {
    /// The capability name (the `NAME` of `[grants.NAME]`).
    pub name: String,
    /// The grant's keys and values as written.
    pub value: toml::Table,
    /// 1-based line where the grant starts (its `[grants.NAME]` header or
    /// `NAME = {...}` key); 0 when the slice was not parsed from a file.
    pub line: usize,
    /// Column of that position.
    pub(crate) col: usize,
    /// The policy file it came from.
    pub(crate) file: Option<PathBuf>,
    /// The whole policy text, to re-read the grant with spans for errors.
    pub(crate) text: Option<Arc<str>>,
}

impl GrantSlice {
    /// A grant built in code rather than read from a file (errors carry no
    /// position).
    pub fn new(name: impl Into<String>, value: toml::Table) -> Self {
        GrantSlice {
            name: name.into(),
            value,
            line: 0,
            col: 0,
            file: None,
            text: None,
        }
    }

    /// Deserialises this grant into the capability's typed grant (which should
    /// use `#[serde(deny_unknown_fields, rename_all = "kebab-case")]`).
    /// Errors name the file, line, grant and key (positions come from the
    /// file text, as long as `value` is unchanged since it was read).
    pub fn parse<G: DeserializeOwned>(&self) -> Result<G, PolicyError> {
        if let Some(text) = &self.text
            && let Ok(doc) = DeTable::parse(text)
            && let Some(grant) = doc
                .get_ref()
                .get("grants")
                .and_then(|g| g.get_ref().as_table())
                .and_then(|g| g.get(self.name.as_str()))
            // Only if `value` was not changed since it was read.
            && toml::Table::deserialize(ValueDeserializer::from(grant.clone())).ok().as_ref()
                == Some(&self.value)
        {
            let table = grant.get_ref().as_table();
            return G::deserialize(ValueDeserializer::from(grant.clone()))
                .map_err(|e| self.error(&e, Some(Source::new(text, self.file.as_deref())), table));
        }
        G::deserialize(toml::Value::Table(self.value.clone()))
            .map_err(|e| self.error(&e, None, None))
    }

    fn error(
        &self,
        e: &toml::de::Error,
        source: Option<Source<'_>>,
        table: Option<&DeTable<'_>>,
    ) -> PolicyError {
        let span = e.span();
        let (line, col) = match (&source, &span) {
            (Some(src), Some(span)) => src.position(span.start),
            _ => (self.line, self.col),
        };
        let key = match (table, &span) {
            (Some(table), Some(span)) => key_at(table, span),
            _ => None,
        }
        .or_else(|| quoted_field(e.message()));
        PolicyError::Grant {
            file: self.file.clone(),
            line,
            col,
            grant: self.name.clone(),
            key,
            msg: e
                .message()
                .trim()
                .replacen("unknown field", "unknown key", 1),
        }
    }
}

/// The grant key whose key or value contains `span`.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let inside = |r: Range<usize>| r.start <= span.start && span.start < r.end.max(r.start + 1);
    table
        .iter()
        .find(|(k, v)| inside(k.span()) || inside(v.span()))
        .map(|(k, _)| k.get_ref().to_string())
}

/// The field named in serde's "unknown field `x`" / "missing field `x`".
fn quoted_field(msg: &str) -> Option<String> {
    let rest = msg
        .strip_prefix("unknown field `")
        .or_else(|| msg.strip_prefix("missing field `"))?;
    rest.split_once('`').map(|(k, _)| k.to_string())
}

impl fmt::Debug for GrantSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantSlice")
            .field("name", &self.name)
            .field("value", &self.value)
            .field("line", &self.line)
            .finish()
    }
}

impl PartialEq for GrantSlice {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.value == other.value && self.line == other.line
    }
}

/// Converts a grant's spanned table (already checked to be a table) into a [`GrantSlice`].
pub(crate) fn slice(
    name: &str,
    value: &toml::Spanned<DeValue<'_>>,
    line: usize,
    col: usize,
    src: Source<'_>,
    text: &Arc<str>,
) -> Result<GrantSlice, PolicyError> {
    let table = toml::Table::deserialize(ValueDeserializer::from(value.clone())).map_err(|e| {
        src.invalid(
            e.span().or(Some(value.span())),
            e.message().trim().to_string(),
        )
    })?;
    Ok(GrantSlice {
        name: name.to_string(),
        value: table,
        line,
        col,
        file: src.file(),
        text: Some(Arc::clone(text)),
    })
}
