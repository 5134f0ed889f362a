//! `wrnc predict MODEL.onnx IMAGE|FOLDER... [--top K] [--json] [--normalize none]`: classify
//! images with tract, one at a time.

use crate::exit::UsageError;
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_onnx::Normalization;
use wrnc_verify::{about_file, collect_images, printable, printable_path, Predictor};

/// `--normalize` values: the normalisation to assume for a file that records none.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssumedNormalization {
    /// Pixels / 255 only.
    None,
}

/// Arguments of `wrnc predict`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An ONNX file written by `wrnc export` or `wrnc train`, or a `wrnc train` run directory
    /// (the file it exported).
    model: PathBuf,
    /// PNG or JPEG images, or folders (searched recursively for .png, .jpg and .jpeg files,
    /// in sorted order, hidden files skipped).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print JSON: [{"image", "predictions": [{"class", "label", "probability"}]}] (an image
    /// that could not be classified has "error" instead of "predictions").
    #[arg(long)]
    json: bool,
    /// The input normalisation of a file that records none in its metadata (such a file is
    /// refused without this flag). Only `none` (pixels / 255) can be given.
    #[arg(long, value_enum, value_name = "MODE")]
    normalize: Option<AssumedNormalization>,
}

/// Runs the command: every image is classified even when some fail; the exit code is 1 when
/// any image could not be read or classified.
pub fn run(mut a: Args) -> Result<ExitCode> {
    if a.model.is_dir() {
        a.model = super::common::exported_model(&a.model, "predict")?;
    }
    if a.top == 0 {
        return Err(UsageError("--top must be at least 1".into()).into());
    }
    let predictor =
        Predictor::load(&a.model).map_err(|e| UsageError(about_file(&a.model, &e.to_string())))?;
    let predictor = match (predictor.normalization().is_some(), a.normalize) {
        (true, None) => predictor,
        (true, Some(_)) => {
            return Err(UsageError(format!(
                "{}: the file records its input normalisation; --normalize is only for files \
                 that record none",
                printable_path(&a.model)
            ))
            .into())
        }
        (false, Some(AssumedNormalization::None)) => {
            let c = predictor.info().input_shape[0];
            predictor
                .with_normalization(Normalization::none(c))
                .map_err(|e| UsageError(about_file(&a.model, &e.to_string())))?
        }
        (false, None) => {
            return Err(UsageError(format!(
                "{}: the file records no input normalisation (metadata `{}`), so the \
                 preprocessing its model expects is unknown; pass `--normalize none` to scale \
                 pixels by 1/255 only",
                printable_path(&a.model),
                wrnc_onnx::MetaKey::Normalization
            ))
            .into())
        }
    };
    let images = collect_images(&a.images).map_err(|e| UsageError(e.to_string()))?;
    if images.is_empty() {
        return Err(UsageError("no PNG or JPEG images found in the given folders".into()).into());
    }
    let mut failed = 0usize;
    let mut json_rows = Vec::new();
    for img in &images {
        let shown = printable_path(img);
        match predictor.predict_file(img, a.top) {
            Ok(preds) => {
                if a.json {
                    let p: Vec<_> = preds
                        .iter()
                        .map(|p| {
                            json!({"class": p.class, "label": p.label, "probability": p.probability})
                        })
                        .collect();
                    json_rows.push(json!({"image": img.display().to_string(), "predictions": p}));
                } else {
                    super::common::print_line(&shown)?;
                    for p in &preds {
                        super::common::print_line(&format!(
                            "  {:>6.2}%  {} ({})",
                            p.probability * 100.0,
                            printable(&p.label),
                            p.class
                        ))?;
                    }
                }
            }
            Err(e) => {
                failed += 1;
                let msg = about_file(img, &e.to_string());
                eprintln!("error: {msg}");
                if a.json {
                    json_rows.push(json!({"image": img.display().to_string(), "error": msg}));
                }
            }
        }
    }
    if a.json {
        super::common::print_line(&serde_json::to_string_pretty(&json_rows)?)?;
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} images could not be classified",
            images.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
