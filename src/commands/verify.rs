//! `wrnc verify MODEL.onnx --spec SPEC --weights FILE [--batch N] [--atol X] [--rtol X]`:
//! proves that the ONNX file, run by tract, computes what the Candle model computes.

use super::deploy::{checkpoint_meta, fit_on, load_weights, warn_if_fitted};
use crate::exit::UsageError;
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_onnx::{check_structure, read_model_file, ModelInfo, ReadLimits};
use wrnc_verify::{compare, TractModel};

/// Arguments of `wrnc verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ONNX file to verify.
    model: PathBuf,
    /// The spec the weights belong to.
    #[arg(long)]
    spec: PathBuf,
    /// Spec overrides, as for the other commands.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The weights the file was exported from.
    #[arg(long)]
    weights: PathBuf,
    /// The larger batch size checked (batch 1 is always checked).
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Absolute tolerance on every logit.
    #[arg(long, default_value_t = 1e-4)]
    atol: f64,
    /// Relative tolerance: an element passes when |onnx - candle| <= atol + rtol * |candle|.
    #[arg(long, default_value_t = 0.0)]
    rtol: f64,
}

/// The inputs to compare on: real test images when the dataset is here, normalised as in
/// training (the normaliser recorded in the weights, else fitted on the training split), else
/// seeded standard-normal values.
fn inputs(
    spec: &wrnc_spec::Spec,
    meta: &wrnc_train::CheckpointMeta,
    n: usize,
) -> (Vec<f32>, String) {
    let d = &spec.resolved.data;
    let kind = d.dataset;
    let from_data = (|| -> Result<Vec<f32>> {
        let splits = wrnc_data::load_config_splits(d)?;
        let norm =
            wrnc_train::input_normalizer(meta, spec.graph.input_shape(), || fit_on(d, &splits))?;
        warn_if_fitted(&norm);
        let norm = norm.normalizer;
        if splits.test.len() < n {
            bail!("the test set has only {} images", splits.test.len());
        }
        let mut out = Vec::new();
        for i in 0..n {
            let img = splits.test.image(i).unwrap_or_default();
            out.extend(norm.apply(img)?);
        }
        Ok(out)
    })();
    match from_data {
        Ok(v) => (v, format!("{n} test images of {kind}")),
        Err(_) => {
            let numel: usize = spec.graph.input_shape().iter().product();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let v = (0..n * numel)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            (
                v,
                format!("{n} seeded random inputs ({kind} is not on this machine)"),
            )
        }
    }
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    if a.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    if !(a.atol >= 0.0 && a.rtol >= 0.0) {
        return Err(UsageError("--atol and --rtol must be >= 0".into()).into());
    }
    let spec = wrnc_spec::load(&a.spec, &a.set)?;
    let weights = load_weights(&a.weights, &spec.graph)?;
    let meta = checkpoint_meta(&weights, &a.weights)?;
    let in_file = |e: wrnc_onnx::OnnxError| UsageError(format!("{}: {e}", a.model.display()));
    let proto = read_model_file(&a.model, &ReadLimits::default()).map_err(in_file)?;
    let info = ModelInfo::from_model(&proto).map_err(in_file)?;
    match check_structure(&proto) {
        Ok(_) => {
            let g = proto.graph.as_ref();
            println!(
                "structure: ok ({} nodes, {} initializers, opset {}, IR version {})",
                g.map_or(0, |g| g.node.len()),
                g.map_or(0, |g| g.initializer.len()),
                info.opset,
                info.ir_version
            );
        }
        Err(e) => {
            eprintln!("error: {}: the graph is malformed:\n{e}", a.model.display());
            return Ok(ExitCode::from(1));
        }
    }
    let shape = spec.graph.input_shape().to_vec();
    if info.input_shape.as_slice() != shape.as_slice() {
        return Err(UsageError(format!(
            "{} takes inputs of shape {:?}, but the spec's network takes {:?}",
            a.model.display(),
            info.input_shape,
            shape
        ))
        .into());
    }
    let classes = spec.graph.classes();
    let (all, what) = inputs(&spec, &meta, a.batch);
    println!("inputs: {what}");
    let numel: usize = shape.iter().product();
    let mut ok = true;
    let mut batches = vec![1];
    if a.batch > 1 {
        batches.push(a.batch);
    }
    for n in batches {
        let x = &all[..n * numel];
        let tract = TractModel::load(&a.model, Some(n))?;
        let (onnx_logits, _) = tract.run(x, [n, shape[0], shape[1], shape[2]])?;
        let candle_logits = wrnc_train::predict_logits(&spec.graph, &weights, x, n)?;
        let c = compare(&onnx_logits, &candle_logits, classes)?;
        let within = onnx_logits
            .iter()
            .zip(&candle_logits)
            .all(|(o, r)| ((o - r).abs() as f64) <= a.atol + a.rtol * (r.abs() as f64));
        ok &= within;
        println!(
            "batch {n}: max abs diff {:.3e}, max rel diff {:.3e}, top-1 agreement {}/{} -> {}",
            c.max_abs_diff,
            c.max_rel_diff,
            c.top1_agree,
            c.samples,
            if within { "ok" } else { "MISMATCH" }
        );
    }
    if ok {
        println!(
            "verified: {} computes what the weights compute (atol {:e}, rtol {:e})",
            a.model.display(),
            a.atol,
            a.rtol
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} differs from the Candle model beyond atol {:e} / rtol {:e}",
            a.model.display(),
            a.atol,
            a.rtol
        );
        Ok(ExitCode::from(1))
    }
}
