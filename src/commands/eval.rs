//! `wrnc eval SPEC --weights FILE [--split val|test] [--json]`: loss and accuracy.

use super::common::{print_line, SpecArgs};
use super::deploy::{load_weights, warn_if_fitted, DeviceArg};
use crate::exit::UsageError;
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_train::Split;

/// Which split to evaluate.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum SplitArg {
    /// The validation split (`data.val_size` > 0).
    Val,
    /// The official test set.
    Test,
    /// The training split (no augmentation).
    Train,
}

/// Arguments of `wrnc eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Weights (safetensors) of this spec's network.
    #[arg(long)]
    weights: PathBuf,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    /// Device.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Print JSON: {"split", "count", "loss", "accuracy"} (accuracy as a fraction).
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let recipe = spec.recipe();
    let split = match a.split {
        // (A folder dataset may have a val/ folder instead.)
        SplitArg::Val if recipe.data.val_size == 0 && !recipe.data.dataset.is_folder() => {
            return Err(UsageError(
                "--split val needs a validation split, but data.val_size is 0 (use --split test, \
                 or set data.val_size)"
                    .into(),
            )
            .into())
        }
        SplitArg::Val => Split::Val,
        SplitArg::Test => Split::Test,
        SplitArg::Train => Split::Train,
    };
    let weights = load_weights(&a.weights, &spec.graph)?;
    let e = wrnc_train::evaluate(&spec.graph, &weights, &recipe, split, a.device.into())?;
    warn_if_fitted(&e.normalizer);
    let r = e.result;
    if a.json {
        let v = json!({"split": r.split.name(), "count": r.count, "loss": r.loss,
                       "accuracy": r.accuracy});
        print_line(&serde_json::to_string(&v)?)?;
    } else {
        print_line(&format!(
            "{} split: {} images, loss {:.4}, accuracy {:.2}%",
            r.split,
            r.count,
            r.loss,
            r.accuracy * 100.0
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
