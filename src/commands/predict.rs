//! `wrnc predict MODEL.onnx IMAGE... [--top K] [--json]`: classify images with tract.

use crate::exit::UsageError;
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_verify::Predictor;

/// Arguments of `wrnc predict`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An ONNX file written by `wrnc export` or `wrnc train`.
    model: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print JSON: [{"image", "predictions": [{"class", "label", "probability"}]}].
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    if a.top == 0 {
        return Err(UsageError("--top must be at least 1".into()).into());
    }
    let predictor =
        Predictor::load(&a.model).map_err(|e| UsageError(format!("{}: {e}", a.model.display())))?;
    let results = predictor
        .predict_files(&a.images, a.top)
        .map_err(|e| UsageError(e.to_string()))?;
    if a.json {
        let v: Vec<_> = a
            .images
            .iter()
            .zip(&results)
            .map(|(img, preds)| {
                let p: Vec<_> = preds
                    .iter()
                    .map(|p| json!({"class": p.class, "label": p.label, "probability": p.probability}))
                    .collect();
                json!({"image": img.display().to_string(), "predictions": p})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (img, preds) in a.images.iter().zip(&results) {
            println!("{}", img.display());
            for p in preds {
                println!(
                    "  {:>6.2}%  {} ({})",
                    p.probability * 100.0,
                    p.label,
                    p.class
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
