//! # wrnc-spec: the YAML front end
//!
//! Reads a spec file, applies `--set` overrides, rejects unknown keys (with a did-you-mean),
//! type errors and invalid values with the file, field and YAML line, fills every default,
//! and expands the model into the graph IR. See `docs/spec.md` for every key.
//!
//! ```text
//! spec.yaml --parse--> serde_yaml::Value --overrides--> SpecFile --validate/resolve-->
//!   Spec (resolved) --expand--> layers --lower--> wrnc_ir::Graph
//! ```

pub mod error;
pub mod expand;
pub mod locate;
pub mod lower;
pub mod model;
pub mod nesting;
pub mod overrides;
pub mod suggest;
pub mod validate;

pub use error::{Location, SpecError};
pub use model::{LayerSpec, ModelSection, Shortcut, SpecFile, WrnSpec};

use locate::{locate, parse_path, Segment};
use overrides::Override;
use serde_yaml::Value;
use std::path::Path;
use wrnc_ir::Graph;
use wrnc_recipe::Recipe;

/// Largest spec file accepted, in bytes.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

/// A loaded, validated spec with its graph.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The file it came from, as given.
    pub file: String,
    /// The spec with every default filled in (name, input, classes, data.root).
    pub resolved: SpecFile,
    /// The network.
    pub graph: Graph,
}

impl Spec {
    /// The model name (names the run directory).
    pub fn name(&self) -> &str {
        self.resolved.name.as_deref().unwrap_or("model")
    }

    /// The recipe (data, train, export sections).
    pub fn recipe(&self) -> Recipe {
        Recipe {
            data: self.resolved.data.clone(),
            train: self.resolved.train.clone(),
            export: self.resolved.export.clone(),
        }
    }

    /// The resolved spec as YAML (`wrnc check`).
    pub fn resolved_yaml(&self) -> String {
        serde_yaml::to_string(&self.resolved).unwrap_or_default()
    }

    /// The resolved spec with the model in the generic `layers:` form (`wrnc expand`).
    pub fn expanded(&self) -> SpecFile {
        let mut s = self.resolved.clone();
        if let Some(w) = s.model.wrn.take() {
            let classes = s.model.classes.unwrap_or(2);
            s.model.layers = Some(expand::expand_wrn(&w, classes));
        }
        s
    }

    /// The expanded spec as YAML.
    pub fn expanded_yaml(&self) -> String {
        serde_yaml::to_string(&self.expanded()).unwrap_or_default()
    }
}

/// Loads a spec file and applies `--set` overrides.
pub fn load(path: &Path, sets: &[String]) -> Result<Spec, SpecError> {
    let file = path.display().to_string();
    let read_err = |message: String| SpecError::Read {
        file: file.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
    if meta.is_dir() {
        return Err(read_err("is a directory, not a YAML file".into()));
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(read_err(format!(
            "the file is {} bytes; a spec may be at most {} bytes",
            meta.len(),
            MAX_SPEC_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    let src = String::from_utf8(bytes).map_err(|e| {
        read_err(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    load_str(&src, &file, &stem, sets)
}

/// Loads a spec from text; `default_name` is used when the spec has no `name`.
pub fn load_str(
    src: &str,
    file: &str,
    default_name: &str,
    sets: &[String],
) -> Result<Spec, SpecError> {
    let overrides: Vec<Override> = sets
        .iter()
        .map(|s| overrides::parse(s))
        .collect::<Result<_, _>>()?;
    if let Some((line, column)) = nesting::too_deep(src) {
        return Err(SpecError::Syntax {
            at: Location {
                file: file.to_string(),
                line: Some(line),
                column: Some(column),
            },
            message: nesting::message(),
        });
    }
    let mut doc: Value = if src.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml::from_str(src).map_err(|e| SpecError::Syntax {
            at: Location {
                file: file.to_string(),
                line: e.location().map(|l| l.line()),
                column: e.location().map(|l| l.column()),
            },
            message: strip_location(&e.to_string()),
        })?
    };
    if doc.is_null() {
        doc = Value::Mapping(Default::default());
    }
    if !doc.is_mapping() {
        return Err(SpecError::Field {
            at: Location {
                file: file.to_string(),
                line: Some(1),
                column: Some(1),
            },
            field: "(top level)".into(),
            message: "a spec must be a mapping with sections `model`, `data`, `train`, `export`"
                .into(),
        });
    }
    for o in &overrides {
        overrides::apply(&mut doc, o)?;
    }
    let ctx = Ctx {
        src,
        file,
        overrides: &overrides,
    };
    let mut spec: SpecFile = {
        let de = doc.clone();
        serde_path_to_error::deserialize(de).map_err(|e| ctx.serde_error(e))?
    };
    // Resolve defaults that depend on other fields.
    if spec.name.is_none() {
        spec.name = Some(default_name.to_string());
    }
    let ds = spec.data.dataset;
    if spec.model.input.is_none() {
        spec.model.input = Some(ds.input_shape().to_vec());
    }
    if spec.model.classes.is_none() {
        spec.model.classes = Some(ds.classes());
    }
    if spec.data.root.is_none() {
        spec.data.root = ds.default_root().map(str::to_string);
    }
    validate::validate(&spec).map_err(|(field, message)| ctx.field_error(&field, message))?;
    let input = spec.model.input.clone().unwrap_or_default();
    let input = [input[0], input[1], input[2]];
    let classes = spec.model.classes.unwrap_or(2);
    let name = spec.name.clone().unwrap_or_default();
    let graph = match (&spec.model.wrn, &spec.model.layers) {
        (Some(w), _) => lower::lower(&name, input, classes, &expand::expand_wrn(w, classes))
            .map_err(|e| ctx.field_error("model.wrn", e.message))?,
        (None, Some(layers)) => lower::lower(&name, input, classes, layers).map_err(|e| {
            let field = match (e.index, e.key) {
                (Some(i), Some(k)) => format!("model.layers[{i}].{k}"),
                (Some(i), None) => format!("model.layers[{i}]"),
                _ => "model.layers".into(),
            };
            ctx.field_error(&field, e.message)
        })?,
        (None, None) => unreachable!("validate() requires a model"),
    };
    if graph.classes() != classes {
        return Err(ctx.field_error(
            "model.layers",
            format!(
                "the network outputs {} values but model.classes is {classes}",
                graph.classes()
            ),
        ));
    }
    Ok(Spec {
        file: file.to_string(),
        resolved: spec,
        graph,
    })
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

struct Ctx<'a> {
    src: &'a str,
    file: &'a str,
    overrides: &'a [Override],
}

impl Ctx<'_> {
    fn location(&self, field: &str) -> Location {
        // An override that set this field (or a parent/child of it) is where the value came from.
        if let Some(o) = self.overrides.iter().rev().find(|o| {
            field == o.path
                || field.starts_with(&format!("{}.", o.path))
                || field.starts_with(&format!("{}[", o.path))
                || o.path.starts_with(&format!("{field}."))
        }) {
            return Location {
                file: format!("--set {}", o.arg),
                line: None,
                column: None,
            };
        }
        let (line, column) = match locate(self.src, &parse_path(field)) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        Location {
            file: self.file.to_string(),
            line,
            column,
        }
    }

    fn field_error(&self, field: &str, message: String) -> SpecError {
        SpecError::Field {
            at: self.location(field),
            field: field.to_string(),
            message,
        }
    }

    fn serde_error(&self, e: serde_path_to_error::Error<serde_yaml::Error>) -> SpecError {
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
            let hint = match suggest::did_you_mean(&word, &refs) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
            };
            format!(
                "unknown key `{word}`{hint} Valid keys here: {}",
                suggest::one_of(&refs)
            )
        } else if let Some((word, expected)) = parse_unknown(&raw, "unknown variant `") {
            let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
            let hint = match suggest::did_you_mean(&word, &refs) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
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
            raw
        };
        if field.is_empty() {
            field = "(top level)".into();
        }
        let at = self.location(&field);
        SpecError::Field { at, field, message }
    }
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

/// Splits a field path into segments (re-exported for callers that locate lines).
pub fn field_segments(path: &str) -> Vec<Segment> {
    parse_path(path)
}
