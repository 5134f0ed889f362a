//! `wrnc eval SPEC|RUN_DIR [--weights FILE] [--split val|test] [--tta none|flip] [--json]
//! [--predictions FILE.csv]`: loss, accuracy, and (with `--json`) the confusion matrix,
//! per-class scores and top-5 accuracy. A `wrnc train` run directory supplies its spec and
//! the weights its training exported.

use super::common::{print_line, write_output, SpecArgs};
use super::deploy::{load_weights, warn_if_fitted, DeviceArg};
use crate::exit::UsageError;
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_train::{Split, Tta};

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

/// Test-time augmentation.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum TtaArg {
    /// None.
    None,
    /// The image and its horizontal mirror.
    Flip,
}

/// Arguments of `wrnc eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Weights (safetensors) of this spec's network (default, when SPEC is a `wrnc train`
    /// run directory: the weights its training exported).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    /// Device.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Print JSON: {"split", "count", "loss", "accuracy", "classes", "confusion_matrix",
    /// "per_class", "top5"} (fractions; classes: the class names, index = class id;
    /// `confusion_matrix[true][predicted]`; `top5` only with more than 5 classes).
    #[arg(long)]
    json: bool,
    /// Test-time augmentation: `flip` averages the softmax of each image and of its
    /// horizontal mirror; loss, accuracy and predictions are those of the averaged
    /// probabilities (`--json` then says `"tta": "flip"`).
    #[arg(long, value_enum, default_value = "none")]
    tta: TtaArg,
    /// Also write one CSV row per image: index,true,predicted,probability,true_name,
    /// predicted_name.
    #[arg(long, value_name = "FILE.csv")]
    predictions: Option<PathBuf>,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let weights_path = a.spec.weights_or_run_default(a.weights.as_deref())?;
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
    let weights = load_weights(&weights_path, &spec.graph)?;
    let tta = match a.tta {
        TtaArg::None => Tta::None,
        TtaArg::Flip => Tta::Flip,
    };
    let d = wrnc_train::evaluate_detailed_tta(
        &spec.graph,
        &weights,
        &recipe,
        split,
        a.device.into(),
        tta,
    )?;
    warn_if_fitted(&d.evaluation.normalizer);
    let r = d.evaluation.result;
    let meta = super::deploy::checkpoint_meta(&weights, &weights_path)?;
    let classes = super::deploy::class_names(&spec, &meta, Some(&d.evaluation.class_names));
    let predictions = d.predictions.renamed(classes);
    if let Some(path) = &a.predictions {
        write_output(Some(path), &predictions.to_csv())?;
    }
    if a.json {
        let p = &predictions;
        let mut v = json!({"split": r.split.name(), "count": r.count, "loss": r.loss,
                       "accuracy": r.accuracy, "classes": p.class_names(),
                       "confusion_matrix": p.confusion_matrix(), "per_class": p.per_class()});
        if tta != Tta::None {
            v["tta"] = json!(tta.name());
        }
        if let Some(top5) = p.top5() {
            v["top5"] = json!(top5);
        }
        print_line(&serde_json::to_string(&v)?)?;
    } else {
        let with = match tta {
            Tta::None => "",
            Tta::Flip => " (tta: flip)",
        };
        print_line(&format!(
            "{} split{with}: {} images, loss {:.4}, accuracy {:.2}%",
            r.split,
            r.count,
            r.loss,
            r.accuracy * 100.0
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
