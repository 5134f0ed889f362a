//! `--set key.path=value` overrides applied to the parsed YAML before typing.

use crate::error::SpecError;
use crate::locate::{parse_path, render_path, Segment};
use serde_yaml::{Mapping, Value};

/// One parsed override.
#[derive(Debug, Clone)]
pub struct Override {
    /// The argument as given.
    pub arg: String,
    /// Dotted key path, list indices written `[N]` (`model.layers.0.out` is kept as
    /// `model.layers[0].out`, the form errors name fields in).
    pub path: String,
    /// The value, parsed as YAML.
    pub value: Value,
}

/// The override phase, first half. In: the `--set` arguments. Out: them parsed, or the first
/// malformed one.
pub fn parse_all(sets: &[String]) -> Result<Vec<Override>, SpecError> {
    sets.iter().map(|s| parse(s)).collect()
}

/// The override phase, second half. In: the parsed document and the overrides. Out: the
/// document with each override applied in order, or the first that cannot be.
pub fn apply_all(doc: &mut Value, overrides: &[Override]) -> Result<(), SpecError> {
    overrides.iter().try_for_each(|o| apply(doc, o))
}

/// Parses `key.path=value`.
pub fn parse(arg: &str) -> Result<Override, SpecError> {
    let err = |m: &str| SpecError::Override {
        arg: arg.to_string(),
        message: m.to_string(),
    };
    let (path, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected KEY.PATH=VALUE, e.g. --set train.epochs=10"))?;
    let path = path.trim();
    if path.is_empty() || path.split('.').any(|p| p.trim().is_empty()) {
        return Err(err(
            "the key path is empty or has an empty part; write e.g. model.wrn.depth",
        ));
    }
    let depth = parse_path(path).len();
    if depth > crate::nesting::MAX_NESTING {
        return Err(err(&format!(
            "the key path has {depth} parts, more than the {} levels a spec may nest; a spec \
             key path needs only a few (e.g. model.wrn.depth)",
            crate::nesting::MAX_NESTING
        )));
    }
    if crate::nesting::too_deep(raw).is_some() {
        return Err(err(&crate::nesting::message()));
    }
    let value: Value = serde_yaml::from_str(raw).map_err(|e| {
        err(&format!(
            "the value is not valid YAML: {}",
            crate::parse::yaml_message(&e)
        ))
    })?;
    Ok(Override {
        arg: arg.to_string(),
        path: render_path(&parse_path(path)),
        value,
    })
}

/// Applies an override to a YAML document, creating intermediate mappings.
pub fn apply(doc: &mut Value, o: &Override) -> Result<(), SpecError> {
    let err = |m: String| SpecError::Override {
        arg: o.arg.clone(),
        message: m,
    };
    let segs = parse_path(&o.path);
    let mut cur = doc;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match seg {
            Segment::Key(k) => {
                if cur.is_null() {
                    *cur = Value::Mapping(Mapping::new());
                }
                let Value::Mapping(m) = cur else {
                    return Err(err(format!(
                        "cannot set `{k}`: `{}` is not a mapping in this spec",
                        render_path(&segs[..i])
                    )));
                };
                let key = Value::String(k.clone());
                if last {
                    m.insert(key, o.value.clone());
                    return Ok(());
                }
                if !m.contains_key(&key) {
                    m.insert(key.clone(), Value::Null);
                }
                cur = m
                    .get_mut(&key)
                    .ok_or_else(|| err(format!("cannot reach `{k}`")))?;
            }
            Segment::Index(n) => {
                let Value::Sequence(s) = cur else {
                    return Err(err(format!(
                        "cannot use index [{n}]: `{}` is not a list in this spec",
                        render_path(&segs[..i])
                    )));
                };
                let len = s.len();
                let item = s.get_mut(*n).ok_or_else(|| {
                    err(format!(
                        "index [{n}] is out of range: the list has {len} items"
                    ))
                })?;
                if last {
                    *item = o.value.clone();
                    return Ok(());
                }
                cur = item;
            }
        }
    }
    Ok(())
}
