//! `wrnc export SPEC|RUN_DIR [--weights FILE] [-o model.onnx] [--opset N] [--no-fold-bn]
//! [--quantize int8 [--calibrate M] [--calibration N] [--calibration-dir D]] [--dtype fp16]`.
//! A `wrnc train` run directory supplies its spec and the weights its training exported.

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
    /// Trained weights (safetensors) of this spec's network (default, when SPEC is a `wrnc
    /// train` run directory: the weights its training exported).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Output file.
    #[arg(short, long, default_value = "model.onnx")]
    output: PathBuf,
    /// ONNX opset, 13 to 17 (default: the spec's export.opset, 17).
    #[arg(long)]
    opset: Option<i64>,
    /// Keep every BatchNormalization instead of folding it into the conv before it.
    #[arg(long)]
    no_fold_bn: bool,
    /// Also write an int8 QDQ copy next to the output (`model.int8.onnx`), calibrated on
    /// training images (default: the spec's export.quantize).
    #[arg(long, value_name = "int8")]
    quantize: Option<wrnc_recipe::Quantize>,
    /// How activation ranges are calibrated: minmax, percentile or entropy (default: the
    /// spec's export.calibrate, minmax).
    #[arg(long, value_name = "METHOD")]
    calibrate: Option<wrnc_recipe::CalibrationMethod>,
    /// Calibration images (default: the spec's export.calibration, 512).
    #[arg(long, value_name = "N")]
    calibration: Option<usize>,
    /// Calibrate on the .png/.jpg images of this folder instead of the training split.
    #[arg(long, value_name = "DIR")]
    calibration_dir: Option<PathBuf>,
    /// Also write a float16 copy next to the output (`model.fp16.onnx`; float32 input and
    /// outputs, with a Cast at each edge).
    #[arg(long, value_name = "fp16")]
    dtype: Option<Dtype>,
    /// Test images the accuracy of the int8/fp16 copy is measured on.
    #[arg(long, default_value_t = super::quantize::DEFAULT_EVAL_IMAGES, value_name = "N")]
    eval_images: usize,
}

/// `--dtype` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// float32 (the main file).
    Fp32,
    /// float16 initialisers and activations.
    Fp16,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let weights_path = a.spec.weights_or_run_default(a.weights.as_deref())?;
    let opset = check_opset(a.opset.unwrap_or(spec.resolved.export.opset))?;
    refuse_overwriting_input(&weights_path, &a.output)?;
    let weights = load_weights(&weights_path, &spec.graph)?;
    let opts = ExportOptions {
        opset,
        fold_bn: spec.resolved.export.fold_bn && !a.no_fold_bn,
    };
    let meta = export_metadata(&spec, &weights)?;
    output_folder(&a.output)?;
    let export = &spec.resolved.export;
    let quantize = a.quantize.or(export.quantize);
    let calibration = super::quantize::Calibration {
        method: a.calibrate.or(export.calibrate).unwrap_or_default(),
        images: a
            .calibration
            .or(export.calibration)
            .unwrap_or(wrnc_recipe::DEFAULT_CALIBRATION_IMAGES),
        dir: a.calibration_dir.clone(),
    };
    if quantize.is_none()
        && (a.calibrate.is_some() || a.calibration.is_some() || a.calibration_dir.is_some())
    {
        return Err(UsageError(
            "--calibrate, --calibration and --calibration-dir apply to --quantize int8".into(),
        )
        .into());
    }
    let tta = export.tta;
    if tta != wrnc_recipe::ExportTta::None && (quantize.is_some() || a.dtype.is_some()) {
        return Err(UsageError(format!(
            "export.tta: {} cannot be combined with --quantize or --dtype yet: the int8 and \
             float16 files are verified against the network's logits, and a test-time \
             augmentation file outputs probabilities; export them without it \
             (`--set export.tta=none`)",
            tta.as_str()
        ))
        .into());
    }
    let model = wrnc_onnx::export(&spec.graph, &weights, &opts, &meta)
        .and_then(|m| wrnc_onnx::tta::apply(m, tta))?;
    // Calibrate and convert before writing anything, so that a bad request writes nothing.
    let mut extra = Vec::new();
    if quantize.is_some() {
        extra.push((
            "int8",
            super::quantize::int8(&spec, &model, &calibration, a.eval_images)?,
        ));
    }
    if a.dtype == Some(Dtype::Fp16) {
        extra.push((
            "fp16",
            super::quantize::float16(&spec, &model, a.eval_images)?,
        ));
    }
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
    for (suffix, c) in &extra {
        for l in super::quantize::write_next_to(&a.output, bytes, suffix, c)? {
            print_line(&l)?;
        }
    }
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
