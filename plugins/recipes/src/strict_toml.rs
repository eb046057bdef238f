//! TOML parsing that reports every unknown key with its line, so a typo in a
//! recipe (`comand = …`) is an error rather than a silently missing setting.

use serde::de::DeserializeOwned;
use serde_ignored::Path;

/// One step into a TOML document.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `text` into `T`; `source` names the document in messages
/// (`recipe db.toml line 7: unknown key lifecycle.run.exec.comand`).
pub fn parse<T: DeserializeOwned>(source: &str, text: &str) -> Result<T, String> {
    let located = |err: toml::de::Error| match err.span() {
        Some(span) => format!(
            "{source} line {}: {}",
            line_of(text, span.start),
            err.message().trim()
        ),
        None => format!("{source}: {}", err.message().trim()),
    };
    let deserializer = toml::Deserializer::parse(text).map_err(located)?;
    let mut unknown: Vec<Vec<Step>> = Vec::new();
    let value: T = serde_ignored::deserialize(deserializer, |path| unknown.push(steps(&path)))
        .map_err(located)?;
    if unknown.is_empty() {
        return Ok(value);
    }
    let document = toml_edit::Document::parse(text).map_err(|err| format!("{source}: {err}"))?;
    let mut lines: Vec<(usize, String)> = unknown
        .iter()
        .map(|path| {
            let dotted = dotted(path);
            match locate_in_table(document.as_table(), path) {
                Some(offset) => {
                    let line = line_of(text, offset);
                    (
                        line,
                        format!("{source} line {line}: unknown key `{dotted}`"),
                    )
                }
                None => (0, format!("{source}: unknown key `{dotted}`")),
            }
        })
        .collect();
    lines.sort();
    let lines: Vec<String> = lines.into_iter().map(|(_, line)| line).collect();
    Err(lines.join("\n"))
}

fn steps(path: &Path) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut current = path;
    loop {
        match current {
            Path::Root => break,
            Path::Seq { parent, index } => {
                steps.push(Step::Index(*index));
                current = parent;
            }
            Path::Map { parent, key } => {
                steps.push(Step::Key(key.clone()));
                current = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => current = parent,
        }
    }
    steps.reverse();
    steps
}

/// `lifecycle.run.exec.comand`, `artifacts[1].sha`.
fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Byte offset of the deepest part of `path` found in the document.
fn locate_in_table(table: &toml_edit::Table, path: &[Step]) -> Option<usize> {
    let (Step::Key(name), rest) = path.split_first()? else {
        return None;
    };
    let (key, item) = table.get_key_value(name)?;
    let here = key.span().map(|span| span.start);
    let deeper = match item {
        toml_edit::Item::Table(child) => locate_in_table(child, rest),
        toml_edit::Item::ArrayOfTables(array) => match rest.split_first() {
            Some((Step::Index(index), rest)) => {
                let child = array.get(*index)?;
                locate_in_table(child, rest).or(child.span().map(|span| span.start))
            }
            _ => None,
        },
        toml_edit::Item::Value(value) => locate_in_value(value, rest),
        toml_edit::Item::None => None,
    };
    deeper.or(here)
}

fn locate_in_value(value: &toml_edit::Value, path: &[Step]) -> Option<usize> {
    match (path.split_first()?, value) {
        ((Step::Key(name), rest), toml_edit::Value::InlineTable(table)) => {
            let (key, child) = table.get_key_value(name)?;
            let deeper = child
                .as_value()
                .and_then(|value| locate_in_value(value, rest));
            deeper.or(key.span().map(|span| span.start))
        }
        ((Step::Index(index), rest), toml_edit::Value::Array(array)) => {
            let child = array.get(*index)?;
            locate_in_value(child, rest).or(child.span().map(|span| span.start))
        }
        _ => None,
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Item {
        uri: String,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        deep: Option<Deep>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Deep {
        command: Option<String>,
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let text = "name = \"x\"\ncolour = 1\n\n[[items]]\nuri = \"a\"\n\n[[items]]\nuri = \"b\"\nsha = \"c\"\n\n[inner.deep]\ncomand = \"run\"\n";
        let err = parse::<Doc>("doc.toml", text).unwrap_err();
        assert_eq!(
            err,
            "doc.toml line 2: unknown key `colour`\n\
             doc.toml line 9: unknown key `items[1].sha`\n\
             doc.toml line 12: unknown key `inner.deep.comand`"
        );
    }

    #[test]
    fn type_errors_and_syntax_errors_have_lines() {
        let err = parse::<Doc>("doc.toml", "name = \"x\"\n\n[[items]]\nuri = 5\n").unwrap_err();
        assert!(err.starts_with("doc.toml line 4: "), "{err}");
        let err = parse::<Doc>("doc.toml", "name = \"x\"\nbroken =\n").unwrap_err();
        assert!(err.starts_with("doc.toml line 2: "), "{err}");
    }

    #[test]
    fn a_clean_document_parses() {
        let doc = parse::<Doc>("doc.toml", "name = \"x\"\n[[items]]\nuri = \"a\"\n").unwrap();
        assert_eq!(doc.items.len(), 1);
    }
}
