//! `wrnc train SPEC [--out DIR] [--device ...] [--resume] [--init WEIGHTS] [--quiet]`.

use super::common::SpecArgs;
use super::deploy::{export_metadata, DeviceArg};
use crate::exit::UsageError;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_ir::Weights;
use wrnc_onnx::ExportOptions;
use wrnc_train::{rundir, RunStatus, Split, TrainError, TrainOptions};

/// Arguments of `wrnc train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Run directory (default: runs/<spec name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device: auto (CUDA when built in and present, else CPU), cpu or cuda.
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Continue the run stopped in the run directory, exactly where it stopped.
    #[arg(long)]
    resume: bool,
    /// Start from these weights (names and shapes are checked) instead of a fresh init.
    #[arg(long, value_name = "WEIGHTS")]
    init: Option<PathBuf>,
    /// No progress bar; one line per epoch (for logs).
    #[arg(long)]
    quiet: bool,
}

/// Whether a training error is the user's to fix (exit 2) or a runtime failure (exit 1).
fn classify(e: TrainError) -> anyhow::Error {
    match e {
        TrainError::Device(_)
        | TrainError::RunDir { .. }
        | TrainError::Weights(_)
        | TrainError::Invalid(_) => UsageError(e.to_string()).into(),
        other => other.into(),
    }
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let recipe = spec.recipe();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(spec.name()));
    let mut opts = TrainOptions::new(&out);
    opts.device = a.device.map(Into::into);
    opts.resume = a.resume;
    opts.init_weights = a.init.clone();
    opts.quiet = a.quiet;
    opts.resolved_spec_yaml = spec.resolved_yaml();
    opts.spec_name = spec.name().to_string();
    let outcome = wrnc_train::train(&spec.graph, &recipe, &opts).map_err(|e| {
        let io = matches!(e, TrainError::Io { .. });
        let e = classify(e);
        if !io {
            return e;
        }
        // A failed read or write (disk full, read-only directory): the commit protocol kept
        // the last checkpoint, so say so and how to continue.
        e.context(format!(
            "training stopped: a file of the run directory could not be read or written; {} \
             keeps its last committed checkpoint. Fix the cause, then continue with: wrnc \
             train {} --out {} --resume",
            out.display(),
            a.spec.spec.display(),
            out.display()
        ))
    })?;
    match outcome.status {
        RunStatus::Interrupted => {
            eprintln!(
                "stopped after step {} (epoch {} complete); continue with: wrnc train {} --out {} --resume",
                outcome.global_step,
                outcome.epochs_done,
                a.spec.spec.display(),
                out.display()
            );
            return Ok(ExitCode::from(130));
        }
        RunStatus::AlreadyFinished => {
            eprintln!(
                "the run in {} already finished all {} epochs; nothing to do",
                out.display(),
                outcome.epochs_done
            );
        }
        RunStatus::Finished => {}
    }
    if let Some((acc, epoch)) = outcome.best {
        eprintln!(
            "best {} accuracy {:.2}% at epoch {epoch}",
            outcome.eval_split,
            acc * 100.0
        );
    }
    if recipe.export.onnx {
        // With a validation split, export the weights that scored best on it; without one the
        // per-epoch evaluation ran on the test set, and choosing on it would leak: export last.
        let file = if outcome.eval_split == Split::Val {
            rundir::BEST_FILE
        } else {
            rundir::LAST_FILE
        };
        let weights = Weights::load(&outcome.run_dir.join(file))
            .with_context(|| format!("cannot read {file} for the ONNX export"))?;
        let mut meta = export_metadata(&spec, &weights)?;
        meta.training = Some(super::deploy::run_summary(&outcome));
        meta.weights_file = Some(file.to_string());
        let opts = ExportOptions::from(&recipe.export);
        let path = outcome.run_dir.join(&recipe.export.file);
        wrnc_onnx::write(&path, &spec.graph, &weights, &opts, &meta).with_context(|| {
            format!(
                "the ONNX export failed; training finished and its checkpoints are kept. \
                 Export again with: wrnc train {} --out {} --resume",
                a.spec.spec.display(),
                out.display()
            )
        })?;
        eprintln!("exported {} (from {file})", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
