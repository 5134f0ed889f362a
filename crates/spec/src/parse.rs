//! The parse phase: spec text to a YAML tree, and (after the overrides) the YAML tree to the
//! typed [`SpecFile`], with unknown keys and values answered by a did-you-mean.

use crate::error::{Location, SpecError};
use crate::locate::Locator;
use crate::model::SpecFile;
use crate::{keys, nesting, schema, suggest};
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
            message: yaml_message(&e),
        })?
    };
    if let Some((parent, line, column, what)) = keys::first_non_string(src) {
        return Err(SpecError::Field {
            at: at(Some(line), Some(column)),
            field: if parent.is_empty() {
                "(top level)".into()
            } else {
                parent
            },
            message: format!(
                "a key must be a name (text such as `epochs`), not {what}; write it as a name \
                 or quote it"
            ),
        });
    }
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
    serde_path_to_error::deserialize(&doc).map_err(|e| serde_error(at, e, &doc))
}

/// The names a value of the enum at `field` may take, found by putting a name no enum has
/// there (serde then lists the valid ones); for a value of the wrong type, such as a number.
fn enum_names(doc: &Value, field: &str) -> Option<Vec<String>> {
    let mut probe = doc.clone();
    let o = crate::overrides::Override {
        arg: String::new(),
        path: field.to_string(),
        value: Value::String(String::new()),
    };
    crate::overrides::apply(&mut probe, &o).ok()?;
    let e = serde_path_to_error::deserialize::<_, SpecFile>(&probe).err()?;
    if e.path().to_string() != field {
        return None;
    }
    let raw = strip_location(&e.inner().to_string());
    parse_unknown(&raw, "unknown variant `").map(|(_, names)| names)
}

/// serde_yaml's message without its location, a number too large for any setting said so
/// (serde_yaml reports it as "integer `N` as u128, expected any YAML value").
pub(crate) fn yaml_message(e: &serde_yaml::Error) -> String {
    let msg = strip_location(&e.to_string());
    let Some(i) = msg.find("invalid type: integer `") else {
        return msg;
    };
    let rest = &msg[i + "invalid type: integer `".len()..];
    match rest.split_once('`') {
        Some((n, tail)) if tail.starts_with(" as u128") || tail.starts_with(" as i128") => {
            format!(
                "{}the number {n} is too large (at most {} for any setting)",
                &msg[..i],
                u64::MAX
            )
        }
        _ => msg,
    }
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn serde_error(
    at: &Locator,
    e: serde_path_to_error::Error<serde_yaml::Error>,
    doc: &Value,
) -> SpecError {
    let path = e.path().to_string();
    let raw = strip_location(&e.inner().to_string());
    let mut field = if path == "." { String::new() } else { path };
    let message = if let Some(got) = raw
        .strip_prefix("invalid type: ")
        .and_then(|r| r.strip_suffix(", expected field identifier"))
    {
        // A key that is not a name, set by `--set` (the text's keys were checked at parsing):
        // the path ends at the key, written `?`.
        field = field
            .strip_suffix(".?")
            .or_else(|| field.strip_suffix('?'))
            .unwrap_or(&field)
            .to_string();
        format!(
            "a key must be a name (text such as `epochs`), not {}; write it as a name or \
             quote it",
            got_words(got)
        )
    } else if let Some((word, expected)) = parse_unknown(&raw, "unknown field `") {
        // The path points at the unknown key itself; suggest among its siblings.
        let parent = match field.rfind('.') {
            Some(i) if field[i + 1..] == word => field[..i].to_string(),
            None if field == word => String::new(),
            _ => field.clone(),
        };
        let key_path = if parent.is_empty() {
            word.clone()
        } else {
            format!("{parent}.{word}")
        };
        field = key_path;
        let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
        let hint = match suggest::did_you_mean(&word, &refs) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => match suggest::elsewhere(&word, &parent, schema::key_paths()) {
                Some(p) => format!("; did you mean `{p}`?"),
                None => ".".into(),
            },
        };
        format!(
            "unknown key `{word}`{hint} Valid keys here: {}",
            suggest::one_of(&refs)
        )
    } else if let Some((word, expected)) = parse_unknown(&raw, "unknown variant `") {
        let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
        let hint = match suggest::did_you_mean(&word, &refs) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => ".".into(),
        };
        format!(
            "`{word}` is not a valid value{hint} Valid values: {}",
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
        let names = || enum_names(doc, &field);
        in_words(&raw, &names)
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

/// Serde's "invalid type: string \"x\", expected usize" in words: "expected a whole number
/// (0, 1, 2, ...), got the text \"x\"". Other messages are returned as they are.
/// `names` lists the valid names when an enum was expected.
fn in_words(raw: &str, names: &dyn Fn() -> Option<Vec<String>>) -> String {
    let Some(rest) = raw
        .strip_prefix("invalid type: ")
        .or_else(|| raw.strip_prefix("invalid value: "))
    else {
        if raw.starts_with("data did not match any variant of untagged enum LayerInputs") {
            return "expected a layer name or a list of layer names".into();
        }
        return raw.to_string();
    };
    let Some((got, expected)) = rest.split_once(", expected ") else {
        return raw.to_string();
    };
    let expected = if expected.contains("enum") && !expected.starts_with("internally tagged") {
        match names() {
            Some(n) if !n.is_empty() => {
                let refs: Vec<&str> = n.iter().map(String::as_str).collect();
                format!("one of {}", suggest::one_of(&refs))
            }
            _ => "a name (text)".into(),
        }
    } else {
        expected_words(expected)
    };
    format!("expected {expected}, got {}", got_words(got))
}

/// What serde expected, in words.
fn expected_words(e: &str) -> String {
    let words = match e {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" => "a whole number (0, 1, 2, ...)",
        "isize" | "i8" | "i16" | "i32" | "i64" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "`true` or `false`",
        "a string" | "string" => "text",
        "a sequence" | "sequence" => "a list",
        "a map" | "map" => "a mapping (`key: value` entries)",
        "a character" | "char" => "a single character",
        _ if e.starts_with("struct ") => "a mapping (`key: value` entries)",
        _ if e.starts_with("internally tagged enum ") => "a mapping with a `kind:` key",
        _ if e.starts_with("option") || e.starts_with("an option") => "a value",
        _ => e,
    };
    words.to_string()
}

/// What serde found, in words (serde's `Unexpected` display).
fn got_words(g: &str) -> String {
    let ticked = |prefix: &str| g.strip_prefix(prefix).map(str::to_string);
    if let Some(v) = ticked("integer ").or_else(|| ticked("floating point ")) {
        format!("the number {v}")
    } else if let Some(v) = ticked("boolean ") {
        format!("the boolean {v}")
    } else if let Some(v) = ticked("string ") {
        format!("the text {v}")
    } else {
        match g {
            "sequence" => "a list".into(),
            "map" => "a mapping".into(),
            "unit value" => "an empty value (null)".into(),
            _ => g.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    fn in_words(raw: &str) -> String {
        super::in_words(raw, &|| Some(vec!["a".into(), "b".into()]))
    }

    #[test]
    fn serde_types_become_words() {
        assert_eq!(
            in_words("invalid type: string \"abc\", expected usize"),
            "expected a whole number (0, 1, 2, ...), got the text \"abc\""
        );
        assert_eq!(
            in_words("invalid value: integer `-1`, expected usize"),
            "expected a whole number (0, 1, 2, ...), got the number `-1`"
        );
        assert_eq!(
            in_words("invalid type: floating point `1.5`, expected u64"),
            "expected a whole number (0, 1, 2, ...), got the number `1.5`"
        );
        assert_eq!(
            in_words("invalid type: string \"x\", expected f64"),
            "expected a number, got the text \"x\""
        );
        assert_eq!(
            in_words("invalid type: integer `3`, expected struct WrnSpec"),
            "expected a mapping (`key: value` entries), got the number `3`"
        );
        assert_eq!(
            in_words("invalid type: sequence, expected a string"),
            "expected text, got a list"
        );
        assert_eq!(
            in_words("invalid type: integer `3`, expected a boolean"),
            "expected `true` or `false`, got the number `3`"
        );
        assert_eq!(in_words("something else"), "something else");
        assert_eq!(
            in_words("invalid type: integer `3`, expected a Value::Tagged enum"),
            "expected one of `a` or `b`, got the number `3`"
        );
    }
}
