//! # wrnc-spec: the YAML front end
//!
//! Reads a spec file, applies `--set` overrides, rejects unknown keys (with a did-you-mean),
//! type errors and invalid values with the file, field and YAML line, fills every default,
//! and expands the model into the graph IR. See `docs/spec.md` for every key.
//!
//! The front end is a sequence of named phases, each a function in its own module
//! ([`load_str`] calls them in order):
//!
//! ```text
//! spec text --parse::yaml--> YAML tree --overrides::apply_all--> YAML tree
//!   --parse::typed--> SpecFile (as written) --validate::resolve--> SpecFile (defaults filled,
//!   checked) --expand::model_layers--> layer list --lower::graph--> wrnc_ir::Graph
//! ```
//!
//! `locate` ([`locate::Locator`]) turns the field path of any error after parsing into the
//! file, line and column it was written at (or the `--set` that set it).

pub mod error;
pub mod expand;
pub mod keys;
pub mod locate;
pub mod lower;
pub mod model;
pub mod nesting;
pub mod overrides;
pub mod parse;
pub mod schema;
pub mod suggest;
pub mod validate;

pub use error::{Location, SpecError};
pub use model::{Block, LayerSpec, ModelSection, Shortcut, SpecFile, Stem, WrnSpec};

use locate::{parse_path, Locator, Segment};
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

    /// The resolved spec as YAML (`wrnc check`). Keys that do not apply are left out: a
    /// bottleneck network has no dropout and no shortcut variant.
    pub fn resolved_yaml(&self) -> String {
        let mut value = match serde_yaml::to_value(&self.resolved) {
            Ok(v) => v,
            Err(_) => return String::new(),
        };
        let bottleneck =
            matches!(&self.resolved.model.wrn, Some(w) if w.block == Block::Bottleneck);
        if bottleneck {
            if let Some(wrn) = value
                .get_mut("model")
                .and_then(|m| m.get_mut("wrn"))
                .and_then(|w| w.as_mapping_mut())
            {
                wrn.shift_remove("dropout");
                wrn.shift_remove("shortcut");
            }
        }
        serde_yaml::to_string(&value).unwrap_or_default()
    }

    /// The resolved spec with the model in the generic `layers:` form (`wrnc expand`).
    pub fn expanded(&self) -> SpecFile {
        let mut s = self.resolved.clone();
        if s.model.wrn.is_some() {
            s.model.layers = Some(expand::model_layers(&s.model));
            s.model.wrn = None;
        }
        s
    }

    /// The expanded spec as YAML.
    pub fn expanded_yaml(&self) -> String {
        serde_yaml::to_string(&self.expanded()).unwrap_or_default()
    }

    /// The spec's network for `[C, H, W]` images of another size: the same layers and
    /// parameters, with the shapes (and so the FLOPs) of that size; or why the layers do not
    /// fit it.
    pub fn graph_for_input(&self, input: [usize; 3]) -> Result<Graph, String> {
        let m = &self.resolved.model;
        let layers = expand::model_layers(m);
        lower::lower(self.name(), input, m.classes.unwrap_or(2), &layers).map_err(|e| e.message)
    }

    /// Whether the network is `model.wrn`'s ImageNet form (`stem: imagenet`), which runs at
    /// any image size.
    pub fn is_imagenet_wrn(&self) -> bool {
        self.resolved
            .model
            .wrn
            .as_ref()
            .is_some_and(|w| w.stem == Stem::Imagenet)
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
    // The size from metadata is 0 for pipes and devices (`/dev/zero`, `/dev/stdin`): read
    // at most one byte past the limit, so no input makes the read unbounded.
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| read_err(e.to_string()))?;
    }
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(read_err(format!(
            "the input is longer than {MAX_SPEC_BYTES} bytes, the most a spec may be"
        )));
    }
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
///
/// The front end's phases, in order; each reports the first problem it finds, located by the
/// locate phase ([`locate::Locator`]) once the text is parsed.
pub fn load_str(
    src: &str,
    file: &str,
    default_name: &str,
    sets: &[String],
) -> Result<Spec, SpecError> {
    let overrides = overrides::parse_all(sets)?;
    let mut doc = parse::yaml(src, file)?;
    overrides::apply_all(&mut doc, &overrides)?;
    let at = Locator::new(src, file, &overrides);
    let written = parse::typed(doc, &at)?;
    let problem = |(field, message): validate::Problem| at.field_error(&field, message);
    let resolved = validate::resolve(written, default_name).map_err(problem)?;
    let layers = expand::model_layers(&resolved.model);
    let graph = lower::graph(&resolved, &layers).map_err(problem)?;
    validate::freeze_patterns(&resolved, &graph).map_err(problem)?;
    Ok(Spec {
        file: file.to_string(),
        resolved,
        graph,
    })
}

/// Splits a field path into segments (re-exported for callers that locate lines).
pub fn field_segments(path: &str) -> Vec<Segment> {
    parse_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resolved spec of a bottleneck network leaves out the keys that do not apply to it,
    /// and reads back to the same spec.
    #[test]
    fn a_resolved_bottleneck_spec_omits_dropout_and_shortcut_and_round_trips() {
        let src = "model:\n  input: [3, 64, 64]\n  classes: 10\n  wrn: {depth: 50, width: 2, \
                   block: bottleneck, stem: imagenet}\ndata: {dataset: folder, root: imgs}\n";
        let spec = load_str(src, "b.yaml", "b", &[]).unwrap();
        let yaml = spec.resolved_yaml();
        assert!(!yaml.contains("shortcut"), "{yaml}");
        assert!(!yaml.contains("dropout"), "{yaml}");
        assert!(yaml.contains("block: bottleneck"), "{yaml}");
        let again = load_str(&yaml, "r.yaml", "b", &[]).unwrap();
        assert_eq!(again.resolved, spec.resolved);
        // A basic network keeps both keys.
        let basic = load_str("model:\n  wrn: {depth: 10, width: 1}\n", "a.yaml", "a", &[]).unwrap();
        let yaml = basic.resolved_yaml();
        assert!(
            yaml.contains("shortcut: preact") && yaml.contains("dropout: 0.0"),
            "{yaml}"
        );
    }
}
