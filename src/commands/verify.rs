//! `wrnc verify MODEL.onnx [--spec SPEC] [--weights FILE] [--batch N] [--atol X] [--rtol X]`:
//! proves that the ONNX file, run by tract, computes what the Candle model computes. For a
//! file in a `wrnc train` run directory the spec and weights default to the run's own
//! (`spec.resolved.yaml`, and the weights file the ONNX metadata names); the run directory
//! itself stands for the file it exported.

use super::deploy::{checkpoint_meta, fit_on, load_weights, to_metadata, warn_if_fitted};
use crate::exit::UsageError;
use anyhow::{anyhow, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_onnx::{check_structure, read_model_file, ModelInfo, ReadLimits};
use wrnc_verify::{about_file, compare, normalization_difference, printable, TractModel};

/// Arguments of `wrnc verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ONNX file to verify, or a `wrnc train` run directory (the file it exported).
    model: PathBuf,
    /// The spec the weights belong to, or a `wrnc train` run directory (its
    /// `spec.resolved.yaml`); default: `spec.resolved.yaml` next to the model.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Spec overrides, as for the other commands.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The weights the file was exported from (default: the run directory's weights file the
    /// file's `weights_file` metadata names, next to the model).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The larger batch size checked (batch 1 is always checked); at most 1024.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Absolute tolerance on every logit (on every probability for a file exported with
    /// `export.tta: flip`, which has no logits).
    #[arg(long, default_value_t = 1e-4)]
    atol: f64,
    /// Relative tolerance: an element passes when |onnx - candle| <= atol + rtol * |candle|.
    #[arg(long, default_value_t = 0.0)]
    rtol: f64,
    /// int8/fp16 files: least top-1 agreement with the float32 computation, in percent.
    #[arg(long, default_value_t = 99.0, value_name = "PERCENT")]
    min_agreement: f64,
    /// int8/fp16 files: largest accuracy drop against the float32 computation, in points.
    #[arg(long, default_value_t = 0.5, value_name = "POINTS")]
    max_accuracy_drop: f64,
    /// int8/fp16 files: test images compared (seeded random inputs without the dataset).
    #[arg(long, default_value_t = super::quantize::DEFAULT_EVAL_IMAGES, value_name = "N")]
    images: usize,
}

/// Largest `--batch`: the inputs, Candle's activations and tract's plan grow with it.
pub const MAX_BATCH: usize = 1024;

/// The dataset and the input normaliser of the weights, as far as they are available.
struct DataAndNorm {
    /// The spec's dataset splits; None when the dataset is not on this machine.
    splits: Option<wrnc_data::Splits>,
    /// The weights' normaliser: recorded, else fitted on the training split; None when the
    /// weights record none and the dataset is not here.
    norm: Option<wrnc_train::InputNormalizer>,
}

/// Loads the spec's dataset (absent is fine; unreadable is a data error, exit 1) and the
/// weights' normaliser through the one lookup ([`wrnc_train::input_normalizer`]).
fn data_and_norm(spec: &wrnc_spec::Spec, meta: &wrnc_train::CheckpointMeta) -> Result<DataAndNorm> {
    let d = &spec.resolved.data;
    let kind = d.dataset;
    let splits = match super::deploy::load_spec_splits(spec) {
        Ok(s) => Some(s),
        Err(wrnc_data::error::DataError::MissingFiles(_)) => None,
        Err(_) if kind.is_folder() && !d.root_dir().exists() => None,
        Err(e) => {
            return Err(anyhow!(e).context(format!("the {kind} dataset cannot be read")));
        }
    };
    let shape = spec.graph.input_shape();
    let norm = match (&meta.normalizer, &splits) {
        (None, None) => None,
        (_, Some(s)) => Some(wrnc_train::input_normalizer(meta, shape, || fit_on(d, s))?),
        (Some(_), None) => Some(
            wrnc_train::input_normalizer(meta, shape, || {
                Err(wrnc_train::TrainError::Data(
                    "the weights record a normaliser".into(),
                ))
            })
            .map_err(|e| UsageError(e.to_string()))?,
        ),
    };
    if let Some(n) = &norm {
        warn_if_fitted(n);
    }
    Ok(DataAndNorm { splits, norm })
}

/// The inputs to compare on: real test images when the dataset is here and its test split
/// has `n` images, normalised as in training, else seeded standard-normal values; with a
/// sentence saying truthfully which and why.
fn inputs(spec: &wrnc_spec::Spec, data: &DataAndNorm, n: usize) -> Result<(Vec<f32>, String)> {
    let kind = spec.resolved.data.dataset;
    let why_random = match (&data.splits, &data.norm) {
        (Some(splits), Some(norm)) if splits.test.len() >= n => {
            let mut out = Vec::new();
            for i in 0..n {
                let img = splits.test.image(i).unwrap_or_default();
                out.extend(norm.normalizer.apply(img)?);
            }
            return Ok((out, format!("{n} test images of {kind}")));
        }
        (Some(splits), _) => format!(
            "the {kind} test split has {} images, fewer than --batch {n}",
            splits.test.len()
        ),
        (None, _) => format!("{kind} is not on this machine"),
    };
    let numel: usize = spec.graph.input_shape().iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let v = (0..n * numel)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Ok((v, format!("{n} seeded random inputs ({why_random})")))
}

/// Checks the file's recorded normalisation against the weights'; prints the result and
/// returns whether it agrees (true when it cannot be checked); fails only when standard
/// output cannot be written.
fn check_normalization(
    spec: &wrnc_spec::Spec,
    file: Option<&wrnc_onnx::Normalization>,
    data: &DataAndNorm,
) -> Result<bool> {
    let kind = spec.resolved.data.dataset;
    let Some(file) = file else {
        super::common::print_line(&format!(
            "normalization: MISMATCH: the file records no input normalisation (metadata `{}`)",
            wrnc_onnx::MetaKey::Normalization
        ))?;
        return Ok(false);
    };
    let Some(norm) = &data.norm else {
        super::common::print_line(&format!(
            "normalization: not checked (the weights record none and {kind} is not on this \
             machine to fit it)"
        ))?;
        return Ok(true);
    };
    let source = match norm.source {
        wrnc_train::NormalizerSource::Recorded => "recorded in the weights",
        wrnc_train::NormalizerSource::Fitted => "fitted on the training split",
    };
    Ok(
        match normalization_difference(file, &to_metadata(&norm.normalizer)) {
            None => {
                super::common::print_line(&format!(
                    "normalization: ok (`{}`, {source})",
                    file.mode
                ))?;
                true
            }
            Some(d) => {
                super::common::print_line(&format!(
                    "normalization: MISMATCH: {} (weights' normalisation {source})",
                    printable(&d)
                ))?;
                false
            }
        },
    )
}

/// The spec and weights to check the model against: the ones given, else those of the run
/// directory holding the model (its `spec.resolved.yaml`; the weights file named by the
/// model's `weights_file` metadata). Says on standard output which defaults it took.
fn spec_and_weights(a: &Args, info: &ModelInfo) -> Result<(PathBuf, PathBuf)> {
    let dir = match a.model.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let shown_dir = wrnc_verify::printable_path(&dir);
    let spec = match &a.spec {
        Some(s) => s.clone(),
        None => {
            let s = dir.join(wrnc_train::rundir::SPEC_FILE);
            if !s.is_file() {
                return Err(UsageError(format!(
                    "--spec is needed: {shown_dir} holds no {} (the spec of a `wrnc train` run \
                     directory); pass the spec the weights belong to",
                    wrnc_train::rundir::SPEC_FILE
                ))
                .into());
            }
            super::common::print_line(&format!(
                "spec: {} (the run directory's)",
                wrnc_verify::printable_path(&s)
            ))?;
            s
        }
    };
    let weights = match &a.weights {
        Some(w) => w.clone(),
        None => {
            let key = wrnc_onnx::MetaKey::WeightsFile;
            let named = info.metadata.get(key.as_str()).filter(|f| {
                // a bare file name of the run directory, nothing that leaves it
                let p = std::path::Path::new(f.as_str());
                p.components().count() == 1 && p.file_name().is_some()
            });
            let Some(name) = named else {
                return Err(UsageError(format!(
                    "--weights is needed: {} names no weights file (metadata `{key}`, written \
                     by `wrnc train`); pass the weights it was exported from",
                    wrnc_verify::printable_path(&a.model)
                ))
                .into());
            };
            let w = dir.join(name);
            if !w.is_file() {
                return Err(UsageError(format!(
                    "--weights is needed: {} was exported from {name}, which is not in \
                     {shown_dir}; pass the weights it was exported from",
                    wrnc_verify::printable_path(&a.model)
                ))
                .into());
            }
            super::common::print_line(&format!(
                "weights: {} (named in the file's metadata)",
                wrnc_verify::printable_path(&w)
            ))?;
            w
        }
    };
    Ok((spec, weights))
}

/// Runs the command.
pub fn run(mut a: Args) -> Result<ExitCode> {
    if a.model.is_dir() {
        a.model = super::common::exported_model(&a.model, "verify")?;
    }
    if a.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    if a.batch > MAX_BATCH {
        return Err(UsageError(format!(
            "--batch {} is more than the limit of {MAX_BATCH}",
            a.batch
        ))
        .into());
    }
    if !(a.atol >= 0.0 && a.rtol >= 0.0) {
        return Err(UsageError("--atol and --rtol must be >= 0".into()).into());
    }
    let shown = wrnc_verify::printable_path(&a.model);
    let in_file = |e: &dyn std::fmt::Display| UsageError(about_file(&a.model, &e.to_string()));
    let proto = read_model_file(&a.model, &ReadLimits::default()).map_err(|e| in_file(&e))?;
    let info = ModelInfo::from_model(&proto).map_err(|e| in_file(&e))?;
    let (spec_path, weights_path) = spec_and_weights(&a, &info)?;
    let spec = super::common::SpecArgs {
        spec: spec_path,
        set: a.set.clone(),
    }
    .load()?;
    let weights = load_weights(&weights_path, &spec.graph)?;
    let meta = checkpoint_meta(&weights, &weights_path)?;
    match check_structure(&proto) {
        Ok(_) => {
            let g = proto.graph.as_ref();
            super::common::print_line(&format!(
                "structure: ok ({} nodes, {} initializers, opset {}, IR version {})",
                g.map_or(0, |g| g.node.len()),
                g.map_or(0, |g| g.initializer.len()),
                info.opset,
                info.ir_version
            ))?;
        }
        Err(e) => {
            return Err(in_file(&format!("the graph is malformed:\n{e}")).into());
        }
    }
    let shape = spec.graph.input_shape().to_vec();
    if info.input_shape.as_slice() != shape.as_slice() {
        return Err(UsageError(format!(
            "{shown} takes inputs of shape {:?}, but the spec's network takes {:?}",
            info.input_shape, shape
        ))
        .into());
    }
    let classes = spec.graph.classes();
    let data = data_and_norm(&spec, &meta)?;
    let mut ok = check_normalization(&spec, info.normalization.as_ref(), &data)?;
    if let Some(q) = wrnc_onnx::QuantizationInfo::from_model(&proto).map_err(|e| in_file(&e))? {
        return verify_converted(&a, &spec, &weights, &proto, &q, ok);
    }
    let (all, what) = inputs(&spec, &data, a.batch)?;
    super::common::print_line(&format!("inputs: {what}"))?;
    let numel: usize = shape.iter().product();
    let mut batches = vec![1];
    if a.batch > 1 {
        batches.push(a.batch);
    }
    // A file with test-time augmentation outputs probabilities only: they are compared with
    // the same averaged softmax computed by Candle (`wrnc eval --tta flip`).
    let tta = match info.tta {
        wrnc_recipe::ExportTta::None => None,
        wrnc_recipe::ExportTta::Flip => Some(wrnc_train::Tta::Flip),
    };
    if let Some(t) = tta {
        super::common::print_line(&format!(
            "outputs: probabilities averaged over test-time augmentation `{}` (compared with \
             Candle's; no logits in the file)",
            t.name()
        ))?;
    }
    for n in batches {
        let x = &all[..n * numel];
        let tract = TractModel::load(&a.model, Some(n)).map_err(|e| in_file(&e))?;
        let x_shape = [n, shape[0], shape[1], shape[2]];
        let (onnx_out, candle_out) = match tta {
            None => (
                tract.run(x, x_shape)?.0,
                wrnc_train::predict_logits(&spec.graph, &weights, x, n)?,
            ),
            Some(t) => (
                tract.run_probabilities(x, x_shape)?,
                wrnc_train::predict_probabilities(&spec.graph, &weights, x, n, t)?,
            ),
        };
        let c = compare(&onnx_out, &candle_out, classes)?;
        let within = onnx_out
            .iter()
            .zip(&candle_out)
            .all(|(o, r)| ((o - r).abs() as f64) <= a.atol + a.rtol * (r.abs() as f64));
        ok &= within;
        super::common::print_line(&format!(
            "batch {n}: max abs diff {:.3e}, max rel diff {:.3e}, top-1 agreement {}/{} -> {}",
            c.max_abs_diff,
            c.max_rel_diff,
            c.top1_agree,
            c.samples,
            if within { "ok" } else { "MISMATCH" }
        ))?;
    }
    if ok {
        super::common::print_line(&format!(
            "verified: {shown} computes what the weights compute (atol {:e}, rtol {:e})",
            a.atol, a.rtol
        ))?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {shown} differs from the weights (input normalisation, or {} beyond atol \
             {:e} / rtol {:e}; see above)",
            if tta.is_some() {
                "probabilities"
            } else {
                "logits"
            },
            a.atol,
            a.rtol
        );
        Ok(ExitCode::from(1))
    }
}

/// `wrnc verify` of an int8 or float16 file (metadata `quantization`): agreement and
/// accuracy criteria instead of `--atol`.
fn verify_converted(
    a: &Args,
    spec: &wrnc_spec::Spec,
    weights: &wrnc_ir::Weights,
    proto: &wrnc_onnx::ModelProto,
    q: &wrnc_onnx::QuantizationInfo,
    normalization_ok: bool,
) -> Result<ExitCode> {
    if !(0.0..=100.0).contains(&a.min_agreement)
        || a.max_accuracy_drop.is_nan()
        || a.max_accuracy_drop < 0.0
    {
        return Err(UsageError(
            "--min-agreement must be a percentage (0 to 100) and --max-accuracy-drop >= 0".into(),
        )
        .into());
    }
    if a.images == 0 {
        return Err(UsageError("--images must be at least 1".into()).into());
    }
    let criteria = super::quantize::Criteria {
        min_agreement: a.min_agreement,
        max_drop: a.max_accuracy_drop,
        images: a.images,
    };
    let bytes = wrnc_onnx::to_bytes(proto);
    let ok = super::quantize::verify(spec, weights, proto, &bytes, q, &criteria)?;
    let shown = wrnc_verify::printable_path(&a.model);
    if ok && normalization_ok {
        super::common::print_line(&format!(
            "verified: {shown} ({}) agrees with the float32 computation of the weights",
            q.dtype
        ))?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {shown} ({}) differs from the weights (input normalisation, top-1 \
             agreement below {}% or accuracy drop above {} points; see above)",
            q.dtype, a.min_agreement, a.max_accuracy_drop
        );
        Ok(ExitCode::from(1))
    }
}
