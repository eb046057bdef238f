//! Checking a value against its option's declaration: kind, range, choices
//! and pattern. Used for literal defaults when a label is read, and for every
//! resolved value.

use super::model::{IntRange, OptionDecl, OptionKind};

/// Checks `value` against `option`'s kind, range, choices and pattern. The
/// error states the rule broken, never the value (the caller shows it,
/// masked if secret).
pub(crate) fn check_value(option: &OptionDecl, value: &str) -> Result<(), String> {
    match &option.kind {
        OptionKind::String => {}
        OptionKind::Integer(range) => {
            let number = value
                .parse::<i64>()
                .map_err(|_| "must be a decimal integer".to_string())?;
            check_range(number, range)?;
        }
        OptionKind::Port(range) => {
            let port = parse_port_number(value)?;
            check_range(i64::from(port), range)?;
        }
        OptionKind::Boolean => {
            if value != "true" && value != "false" {
                return Err("must be true or false".to_string());
            }
        }
        OptionKind::Path => check_absolute_path(value)?,
        OptionKind::Choice(choices) => {
            if !choices.iter().any(|choice| choice.value() == value) {
                let values: Vec<&str> = choices.iter().map(|choice| choice.value()).collect();
                return Err(format!("must be one of: {}", values.join(", ")));
            }
        }
    }
    match &option.pattern {
        Some(pattern) if !pattern.matches(value) => {
            Err(format!("must match the pattern {:?}", pattern.source()))
        }
        _ => Ok(()),
    }
}

fn check_range(number: i64, range: &IntRange) -> Result<(), String> {
    let in_range =
        range.min.is_none_or(|min| number >= min) && range.max.is_none_or(|max| number <= max);
    match (range.min, range.max) {
        _ if in_range => Ok(()),
        (Some(min), Some(max)) => Err(format!("must be from {min} to {max}")),
        (Some(min), None) => Err(format!("must be at least {min}")),
        (None, Some(max)) => Err(format!("must be at most {max}")),
        (None, None) => Ok(()),
    }
}

/// A port number, 1–65535, in plain decimal digits.
pub(crate) fn parse_port_number(text: &str) -> Result<u16, String> {
    let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if digits && port > 0 => Ok(port),
        _ => Err("must be a port number, 1 to 65535".to_string()),
    }
}

/// An absolute path with no `..` component (which could climb out of where
/// it is mounted) and no NUL byte (which no path can hold).
pub(crate) fn check_absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must be an absolute path".to_string());
    }
    if path.contains('\0') {
        return Err("must not contain a NUL byte".to_string());
    }
    if path.split('/').any(|component| component == "..") {
        return Err("must not contain '..' components".to_string());
    }
    Ok(())
}
