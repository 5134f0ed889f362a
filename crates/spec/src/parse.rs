//! The parse phase: spec text to a YAML tree, and (after the overrides) the YAML tree to the
//! typed [`SpecFile`], with unknown keys and values answered by a did-you-mean.

use crate::error::{Location, SpecError};
use crate::locate::Locator;
use crate::model::SpecFile;
use crate::{nesting, suggest};
use serde_yaml::Value;

/// Text to tree. In: the spec text and its file name. Out: the document as a YAML mapping (an
/// empty one for an empty file), or a syntax error with its line and column.
pub fn yaml(src: &str, file: &str) -> Result<Value, SpecError> {
    let at = |line, column| Location {
        file: file.to_string(),
        line,
        column,
    };
    if let Some((line, column)) = nesting::too_deep(src) {
        return Err(SpecError::Syntax {
            at: at(Some(line), Some(column)),
            message: nesting::message(),
        });
    }
    let doc: Value = if src.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml::from_str(src).map_err(|e| SpecError::Syntax {
            at: at(
                e.location().map(|l| l.line()),
                e.location().map(|l| l.column()),
            ),
            message: strip_location(&e.to_string()),
        })?
    };
    match doc {
        Value::Null => Ok(Value::Mapping(Default::default())),
        Value::Mapping(_) => Ok(doc),
        _ => Err(SpecError::Field {
            at: at(Some(1), Some(1)),
            field: "(top level)".into(),
            message: "a spec must be a mapping with sections `model`, `data`, `train`, `export`"
                .into(),
        }),
    }
}

/// Tree to types. In: the YAML document (overrides applied). Out: the spec as written, defaults
/// of serde filled in, or the first unknown key, unknown value, missing key or type error,
/// located by `at`.
pub fn typed(doc: Value, at: &Locator) -> Result<SpecFile, SpecError> {
    serde_path_to_error::deserialize(doc).map_err(|e| serde_error(at, e))
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn serde_error(at: &Locator, e: serde_path_to_error::Error<serde_yaml::Error>) -> SpecError {
    let path = e.path().to_string();
    let raw = strip_location(&e.inner().to_string());
    let mut field = if path == "." { String::new() } else { path };
    let message = if let Some((word, expected)) = parse_unknown(&raw, "unknown field `") {
        // The path points at the unknown key itself; suggest among its siblings.
        let parent = match field.rfind('.') {
            Some(i) if field[i + 1..] == word => field[..i].to_string(),
            _ => field.clone(),
        };
        let key_path = if parent.is_empty() {
            word.clone()
        } else {
            format!("{parent}.{word}")
        };
        field = key_path;
        let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
        format!(
            "unknown key `{word}`{} Valid keys here: {}",
            suggest::hint(&word, &refs),
            suggest::one_of(&refs)
        )
    } else if let Some((word, expected)) = parse_unknown(&raw, "unknown variant `") {
        let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
        format!(
            "`{word}` is not a valid value{} Valid values: {}",
            suggest::hint(&word, &refs),
            suggest::one_of(&refs)
        )
    } else if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        field = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        format!("this required key is missing: add `{name}:`")
    } else {
        raw
    };
    if field.is_empty() {
        field = "(top level)".into();
    }
    at.field_error(&field, message)
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`").
fn parse_unknown(msg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    let word = rest[..end].to_string();
    let tail = &rest[end + 1..];
    let expected: Vec<String> = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((word, expected))
}
