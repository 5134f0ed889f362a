//! `wrnc export SPEC --weights FILE [-o model.onnx] [--opset N] [--no-fold-bn]`.

use super::common::{cannot_write, output_folder, print_line, SpecArgs};
use super::deploy::{check_opset, export_metadata, load_weights};
use crate::exit::UsageError;
use anyhow::Result;
use std::path::{Path, PathBuf};
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
    refuse_overwriting_input(&a.weights, &a.output)?;
    let weights = load_weights(&a.weights, &spec.graph)?;
    let opts = ExportOptions {
        opset,
        fold_bn: spec.resolved.export.fold_bn && !a.no_fold_bn,
    };
    let meta = export_metadata(&spec, &weights)?;
    output_folder(&a.output)?;
    let tta = spec.resolved.export.tta;
    let model = wrnc_onnx::export(&spec.graph, &weights, &opts, &meta)
        .and_then(|m| wrnc_onnx::tta::apply(m, tta))?;
    let bytes = wrnc_onnx::write_model(&a.output, &model).map_err(|e| match e {
        wrnc_onnx::OnnxError::Io { source, .. } => cannot_write(&a.output, &source),
        other => other.into(),
    })?;
    print_line(&format!(
        "wrote {} ({bytes} bytes, opset {opset}, BN folding {}{})",
        a.output.display(),
        if opts.fold_bn { "on" } else { "off" },
        match tta {
            wrnc_recipe::ExportTta::None => "",
            wrnc_recipe::ExportTta::Flip => ", test-time augmentation flip: outputs probabilities",
        }
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `path` with its folder resolved (links, `..`), for files that may not exist yet.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(name))
}

/// Whether both paths exist and are the same file (hard links included).
#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// Refuses an output path that names the weights file (also through another path or a link),
/// before anything is written: the export would replace its own input.
fn refuse_overwriting_input(weights: &Path, output: &Path) -> Result<()> {
    let same = match (resolved(weights), resolved(output)) {
        (Some(w), Some(o)) => w == o,
        _ => weights == output,
    } || same_file(weights, output);
    if same {
        return Err(UsageError(format!(
            "-o {} names the weights file {} itself; the export would overwrite its own \
             input. Choose another output file, e.g. -o model.onnx",
            output.display(),
            weights.display()
        ))
        .into());
    }
    Ok(())
}
