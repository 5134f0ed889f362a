//! `wrnc export SPEC --weights FILE [-o model.onnx] [--opset N] [--no-fold-bn]`.

use super::common::{print_line, SpecArgs};
use super::deploy::{check_opset, export_metadata, load_weights};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_onnx::ExportOptions;

/// Arguments of `wrnc export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Trained weights (safetensors) of this spec's network.
    #[arg(long)]
    weights: PathBuf,
    /// Output file.
    #[arg(short, long, default_value = "model.onnx")]
    output: PathBuf,
    /// ONNX opset, 13 to 17 (default: the spec's export.opset, 17).
    #[arg(long)]
    opset: Option<i64>,
    /// Keep every BatchNormalization instead of folding it into the conv before it.
    #[arg(long)]
    no_fold_bn: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let opset = check_opset(a.opset.unwrap_or(spec.resolved.export.opset))?;
    let weights = load_weights(&a.weights, &spec.graph)?;
    let opts = ExportOptions {
        opset,
        fold_bn: spec.resolved.export.fold_bn && !a.no_fold_bn,
    };
    let meta = export_metadata(&spec, &weights)?;
    let bytes = wrnc_onnx::write(&a.output, &spec.graph, &weights, &opts, &meta)?;
    print_line(&format!(
        "wrote {} ({bytes} bytes, opset {opset}, BN folding {})",
        a.output.display(),
        if opts.fold_bn { "on" } else { "off" }
    ))?;
    Ok(ExitCode::SUCCESS)
}
