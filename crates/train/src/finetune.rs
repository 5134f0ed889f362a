//! Fine-tuning starts: `--init WEIGHTS --init-skip PATTERN`. Every parameter of the network
//! is taken from the weights file, except those whose name matches a skip pattern (a glob
//! over parameter names such as `fc.*`), which get the usual seeded init rules.

use crate::error::{Result, TrainError};
use crate::init::init_weights;
use glob::Pattern;
use std::path::Path;
use wrnc_ir::{Graph, Weights};

/// The weights a run starts from and how they were assembled.
#[derive(Debug, Clone)]
pub struct InitLoad {
    /// One tensor per parameter of the network.
    pub weights: Weights,
    /// Tensors taken from the file.
    pub loaded: usize,
    /// Parameters initialised fresh because a skip pattern matched them.
    pub skipped: usize,
}

/// Compiles the `--init-skip` patterns, refusing a malformed one.
fn patterns(skip: &[String]) -> Result<Vec<Pattern>> {
    skip.iter()
        .map(|s| {
            Pattern::new(s).map_err(|e| {
                TrainError::Invalid(format!(
                    "--init-skip `{s}` is not a valid glob pattern ({e}); use `*` for any \
                     run of characters and `?` for one, e.g. `fc.*`"
                ))
            })
        })
        .collect()
}

/// Loads `path` for `graph`. Without skip patterns every parameter must be in the file with
/// its shape and the file must hold nothing else. A parameter matching a skip pattern is
/// initialised with `init_weights(graph, seed)` instead (a tensor of that name in the file is
/// ignored, whatever its shape); a pattern that matches no parameter and no tensor of the
/// file is an error, as is any other missing, extra or differently shaped tensor.
pub fn load_init(path: &Path, graph: &Graph, skip: &[String], seed: u64) -> Result<InitLoad> {
    let file = Weights::load(path)?;
    let pats = patterns(skip)?;
    let skipped_name = |n: &str| pats.iter().any(|p| p.matches(n));
    for (p, s) in pats.iter().zip(skip) {
        let hit = graph.params.iter().any(|q| p.matches(&q.name))
            || file.tensors.keys().any(|n| p.matches(n));
        if !hit {
            return Err(TrainError::Invalid(format!(
                "--init-skip `{s}` matches no parameter of the model `{}` and no tensor of \
                 {}; parameter names look like `conv0.weight` or `fc.bias` (see `wrnc \
                 summary`)",
                graph.name,
                path.display()
            )));
        }
    }
    let fresh = init_weights(graph, seed);
    let mut problems = Vec::new();
    let mut out = Weights::default();
    let (mut loaded, mut skipped) = (0, 0);
    for p in &graph.params {
        if skipped_name(&p.name) {
            if let Some(t) = fresh.tensors.get(&p.name) {
                out.tensors.insert(p.name.clone(), t.clone());
            }
            skipped += 1;
            continue;
        }
        match file.tensors.get(&p.name) {
            None => problems.push(format!("  missing tensor `{}` {:?}", p.name, p.shape)),
            Some(t) if t.shape != p.shape => problems.push(format!(
                "  tensor `{}` has shape {:?} in the file, the model needs {:?}",
                p.name, t.shape, p.shape
            )),
            Some(t) => {
                out.tensors.insert(p.name.clone(), t.clone());
                loaded += 1;
            }
        }
    }
    for (name, t) in &file.tensors {
        if graph.param_by_name(name).is_none() && !skipped_name(name) {
            problems.push(format!(
                "  unexpected tensor `{name}` {:?} (not a parameter of this model)",
                t.shape
            ));
        }
    }
    if !problems.is_empty() {
        return Err(TrainError::Invalid(format!(
            "the --init weights {} do not fit the model `{}`:\n{}\n(pass --init-skip PATTERN, \
             e.g. `fc.*`, to initialise those tensors fresh instead)",
            path.display(),
            graph.name,
            wrnc_ir::weights::problem_lines(&problems)
        )));
    }
    Ok(InitLoad {
        weights: out,
        loaded,
        skipped,
    })
}
