//! The int8 and float16 forms of an export, shared by `wrnc export --quantize int8 /
//! --dtype fp16` and `wrnc train` (`export.quantize`): calibration images, the rewrite,
//! the accuracy of both files in tract and the report lines.

use super::deploy::load_spec_splits;
use crate::exit::UsageError;
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use wrnc_onnx::quantize::{fp16, qdq};
use wrnc_onnx::{AccuracyInfo, CalibrationInfo, ModelInfo, ModelProto, QuantizationInfo};
use wrnc_recipe::CalibrationMethod;
use wrnc_verify::{argmax, TractModel};

/// Test images the accuracy of a converted file is measured on, unless told otherwise.
pub const DEFAULT_EVAL_IMAGES: usize = 2000;

/// Images per tract batch when calibrating and measuring accuracy.
const BATCH: usize = 64;

/// How an int8 file is calibrated.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Range method.
    pub method: CalibrationMethod,
    /// Images to run.
    pub images: usize,
    /// An image folder to calibrate on instead of the training split.
    pub dir: Option<PathBuf>,
}

/// Images of a split, normalised as the float file records, with their labels.
pub struct EvalSet {
    /// Row-major `[n, C, H, W]`.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Vec<u32>,
    /// What they are, e.g. `360 digits test images`.
    pub what: String,
}

/// The `[C, H, W]` input and the recorded normalisation of a float file.
fn input_of(model: &ModelProto) -> Result<([usize; 3], Option<wrnc_onnx::Normalization>)> {
    let info = ModelInfo::from_model(model)?;
    Ok((info.input_shape, info.normalization))
}

/// Model pixels (u8, CHW) to normalised floats, as `wrnc predict` does.
fn normalise(
    px: &[u8],
    shape: [usize; 3],
    norm: Option<&wrnc_onnx::Normalization>,
) -> Result<Vec<f32>> {
    let mut chw: Vec<f32> = px.iter().map(|&v| f32::from(v)).collect();
    match norm {
        Some(n) => n.apply(&mut chw, shape)?,
        None => chw.iter_mut().for_each(|v| *v /= 255.0),
    }
    Ok(chw)
}

/// `n` indices spread evenly over `0..len`.
fn spread(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|i| i * len / n).collect()
}

/// The calibration images: `c.images` images of the spec's training split (spread evenly
/// over it), or of `c.dir`; with a phrase saying which.
pub fn calibration_images(
    spec: &wrnc_spec::Spec,
    model: &ModelProto,
    c: &Calibration,
) -> Result<(Vec<f32>, usize, String)> {
    let (shape, norm) = input_of(model)?;
    if let Some(dir) = &c.dir {
        let shown = wrnc_verify::printable_path(dir);
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "--calibration-dir {shown} is not a folder; give a folder of .png/.jpg images \
                 like the training images"
            ))
            .into());
        }
        let files = wrnc_verify::collect_images(&[dir])
            .with_context(|| format!("cannot list the images of {shown}"))?;
        if files.is_empty() {
            return Err(UsageError(format!(
                "--calibration-dir {shown} holds no .png, .jpg or .jpeg images"
            ))
            .into());
        }
        let mut out = Vec::new();
        let picked = spread(files.len(), c.images);
        for &i in &picked {
            let img = wrnc_verify::load_image(&files[i])?;
            out.extend(wrnc_verify::preprocess_with(
                &img,
                shape,
                spec.resolved.data.resize,
                norm.as_ref(),
            )?);
        }
        return Ok((out, picked.len(), format!("images of {shown}")));
    }
    let kind = spec.resolved.data.dataset;
    let splits = match load_spec_splits(spec) {
        Ok(s) => s,
        Err(e) => {
            let root = spec.resolved.data.root_dir();
            return Err(UsageError(format!(
                "int8 calibration needs {} images of the {kind} training split, read from {} \
                 ({e}). Put the dataset there (`wrnc data fetch {kind}` for a downloadable one) \
                 or pass --calibration-dir FOLDER with .png/.jpg images like the training data",
                c.images,
                root.display(),
            ))
            .into());
        }
    };
    let train = &splits.train;
    let mut out = Vec::new();
    let picked = spread(train.len(), c.images);
    for &i in &picked {
        let px = train
            .image(i)
            .ok_or_else(|| anyhow!("training image {i} is missing"))?;
        out.extend(normalise(px, shape, norm.as_ref())?);
    }
    Ok((out, picked.len(), format!("{kind} training split")))
}

/// The first `limit` images of the spec's test split, normalised as `model` records; None
/// when the dataset is not on this machine.
pub fn test_set(
    spec: &wrnc_spec::Spec,
    model: &ModelProto,
    limit: usize,
) -> Result<Option<EvalSet>> {
    let (shape, norm) = input_of(model)?;
    let Ok(splits) = load_spec_splits(spec) else {
        return Ok(None);
    };
    let test = &splits.test;
    let n = test.len().min(limit);
    if n == 0 {
        return Ok(None);
    }
    let mut images = Vec::new();
    for i in 0..n {
        let px = test
            .image(i)
            .ok_or_else(|| anyhow!("test image {i} is missing"))?;
        images.extend(normalise(px, shape, norm.as_ref())?);
    }
    let labels = test.labels()[..n].to_vec();
    let kind = spec.resolved.data.dataset;
    let what = if n < test.len() {
        format!("the first {n} of {} {kind} test images", test.len())
    } else {
        format!("{n} {kind} test images")
    };
    Ok(Some(EvalSet {
        images,
        labels,
        what,
    }))
}

/// Logits of `bytes` (an ONNX file) in tract for `images` (`[n, C, H, W]`), batch by batch.
pub fn tract_logits(bytes: &[u8], images: &[f32], shape: [usize; 3]) -> Result<Vec<f32>> {
    let numel: usize = shape.iter().product();
    let n = images.len() / numel;
    let batch = BATCH.min(n.max(1));
    let model = TractModel::load(bytes, Some(batch)).context("loading the file into tract")?;
    let classes = model.classes();
    let mut out = Vec::with_capacity(n * classes);
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let mut x = images[start * numel..end * numel].to_vec();
        x.resize(batch * numel, 0.0);
        let (logits, _) = model.run(&x, [batch, shape[0], shape[1], shape[2]])?;
        let per = logits.len() / batch;
        out.extend_from_slice(&logits[..(end - start) * per]);
        start = end;
    }
    Ok(out)
}

/// Top-1 accuracy of `logits` against `labels`.
pub fn accuracy(logits: &[f32], labels: &[u32]) -> f64 {
    let classes = logits.len() / labels.len().max(1);
    let right = logits
        .chunks(classes.max(1))
        .zip(labels)
        .filter(|(l, &y)| argmax(l) == Some(y as usize))
        .count();
    right as f64 / labels.len().max(1) as f64
}

/// Fraction of rows where both logit sets pick the same class, and the max |difference|.
pub fn agreement(a: &[f32], b: &[f32], classes: usize) -> (f64, f32) {
    let rows = a.len() / classes.max(1);
    let same = a
        .chunks(classes)
        .zip(b.chunks(classes))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    (same as f64 / rows.max(1) as f64, diff)
}

/// One quantized or float16 file, with what its report says.
pub struct Converted {
    /// The model, metadata included.
    pub model: ModelProto,
    /// Lines for the user.
    pub lines: Vec<String>,
}

/// Measures `converted` against `float` on the test split (when here), records the accuracy
/// in `info`, and returns the report line.
fn measure(
    spec: &wrnc_spec::Spec,
    float: &ModelProto,
    converted: &ModelProto,
    info: &mut QuantizationInfo,
    label: &str,
    limit: usize,
) -> Result<String> {
    let Some(set) = test_set(spec, float, limit)? else {
        return Ok(format!(
            "accuracy: not measured ({} is not on this machine)",
            spec.resolved.data.dataset
        ));
    };
    let (shape, _) = input_of(float)?;
    let a = tract_logits(&wrnc_onnx::to_bytes(float), &set.images, shape)?;
    let b = tract_logits(&wrnc_onnx::to_bytes(converted), &set.images, shape)?;
    let classes = a.len() / set.labels.len().max(1);
    let (acc_f, acc_q) = (accuracy(&a, &set.labels), accuracy(&b, &set.labels));
    let (agree, diff) = agreement(&a, &b, classes);
    info.accuracy = Some(AccuracyInfo {
        split: "test".into(),
        images: set.labels.len(),
        float32: acc_f,
        quantized: acc_q,
        agreement: agree,
    });
    Ok(format!(
        "accuracy on {} (tract): float32 {:.2}%, {label} {:.2}% ({:+.2} points), top-1 \
         agreement {:.2}%, max |logit diff| {diff:.4}",
        set.what,
        acc_f * 100.0,
        acc_q * 100.0,
        (acc_q - acc_f) * 100.0,
        agree * 100.0,
    ))
}

/// The int8 QDQ form of `float`, calibrated by `c`, measured on the test split.
pub fn int8(
    spec: &wrnc_spec::Spec,
    float: &ModelProto,
    c: &Calibration,
    eval_limit: usize,
) -> Result<Converted> {
    if c.images == 0 {
        return Err(UsageError("--calibration must be at least 1 image".into()).into());
    }
    let (images, n, source) = calibration_images(spec, float, c)?;
    let (shape, _) = input_of(float)?;
    let ranges = wrnc_verify::calibrate(float, &images, shape, BATCH, c.method)
        .context("calibrating the activation ranges in tract")?;
    let (mut model, summary) = qdq::rewrite(float, &ranges).map_err(|e| match e {
        e @ wrnc_onnx::OnnxError::Quantize(_) => anyhow::Error::from(UsageError(e.to_string())),
        e => e.into(),
    })?;
    let mut info = QuantizationInfo::int8(summary.float_ops.iter().cloned().collect());
    info.calibration = Some(CalibrationInfo {
        method: c.method.to_string(),
        images: n,
        source: source.clone(),
    });
    let quantized: Vec<String> = summary
        .quantized
        .iter()
        .map(|(op, k)| format!("{k} {op}"))
        .collect();
    let mut lines = vec![format!(
        "calibration: {} on {n} images ({source}); int8: {}, {} Relu folded into the \
         quantization; float: {}",
        c.method,
        quantized.join(", "),
        summary.folded_relus,
        summary
            .float_ops
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    )];
    lines.push(measure(spec, float, &model, &mut info, "int8", eval_limit)?);
    info.store(&mut model);
    Ok(Converted { model, lines })
}

/// The float16 form of `float`, measured on the test split.
pub fn float16(spec: &wrnc_spec::Spec, float: &ModelProto, eval_limit: usize) -> Result<Converted> {
    let mut model = fp16::to_fp16(float).map_err(|e| UsageError(e.to_string()))?;
    let mut info = QuantizationInfo::float16();
    let line = measure(spec, float, &model, &mut info, "float16", eval_limit)?;
    info.store(&mut model);
    Ok(Converted {
        model,
        lines: vec![line],
    })
}

/// The path of a converted file next to the float one: `model.onnx` -> `model.int8.onnx`.
pub fn path_next_to(float_path: &Path, suffix: &str) -> PathBuf {
    let name = float_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.onnx".into());
    let stem = name.strip_suffix(".onnx").unwrap_or(&name);
    float_path.with_file_name(format!("{stem}.{suffix}.onnx"))
}

/// Writes a converted file next to the float one; returns the lines to print (its size
/// against the float file's, then its report).
pub fn write_next_to(
    float_path: &Path,
    float_bytes: usize,
    suffix: &str,
    c: &Converted,
) -> Result<Vec<String>> {
    let path = path_next_to(float_path, suffix);
    let bytes = wrnc_onnx::write_model(&path, &c.model).map_err(|e| match e {
        wrnc_onnx::OnnxError::Io { source, .. } => super::common::cannot_write(&path, &source),
        other => other.into(),
    })?;
    let mut lines = vec![format!(
        "wrote {} ({bytes} bytes, {:.2}x of the float32 file's {float_bytes})",
        wrnc_verify::printable_path(&path),
        bytes as f64 / float_bytes.max(1) as f64,
    )];
    lines.extend(c.lines.iter().cloned());
    Ok(lines)
}

/// The criteria `wrnc verify` applies to an int8 or float16 file.
#[derive(Debug, Clone, Copy)]
pub struct Criteria {
    /// Least top-1 agreement with the float32 computation, in percent.
    pub min_agreement: f64,
    /// Largest accuracy drop against the float32 computation, in points.
    pub max_drop: f64,
    /// Images compared.
    pub images: usize,
}

/// `wrnc verify` of an int8 or float16 file: top-1 agreement and accuracy against Candle's
/// float32 computation of `weights` on the test split (seeded random inputs, agreement only,
/// when the dataset is not here); prints the result and returns whether it passes.
pub fn verify(
    spec: &wrnc_spec::Spec,
    weights: &wrnc_ir::Weights,
    proto: &ModelProto,
    bytes: &[u8],
    info: &QuantizationInfo,
    c: &Criteria,
) -> Result<bool> {
    let print = super::common::print_line;
    let how = match &info.calibration {
        Some(cal) => format!(
            ", {} calibration on {} images ({})",
            cal.method, cal.images, cal.source
        ),
        None => String::new(),
    };
    print(&format!(
        "quantization: {}{}{how}; criteria: top-1 agreement >= {}%, accuracy drop <= {} points",
        info.dtype,
        info.scheme
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        c.min_agreement,
        c.max_drop,
    ))?;
    let (shape, _) = input_of(proto)?;
    let numel: usize = shape.iter().product();
    let (images, labels, what) = match test_set(spec, proto, c.images)? {
        Some(set) => (set.images, Some(set.labels), set.what),
        None => {
            // Seeded random pixels, normalised as the file records: inputs the model can
            // receive (standard-normal values would fall outside the calibrated input range).
            use rand::{Rng, SeedableRng};
            let (_, norm) = input_of(proto)?;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let mut v = Vec::with_capacity(c.images * numel);
            for _ in 0..c.images {
                let px: Vec<u8> = (0..numel).map(|_| rng.random::<u8>()).collect();
                v.extend(normalise(&px, shape, norm.as_ref())?);
            }
            (
                v,
                None,
                format!(
                    "{} seeded random-pixel images ({} is not on this machine; accuracy not \
                     measured)",
                    c.images, spec.resolved.data.dataset
                ),
            )
        }
    };
    print(&format!("inputs: {what}"))?;
    let n = images.len() / numel;
    let file = tract_logits(bytes, &images, shape)?;
    let mut reference = Vec::with_capacity(file.len());
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        reference.extend(wrnc_train::predict_logits(
            &spec.graph,
            weights,
            &images[start * numel..end * numel],
            end - start,
        )?);
    }
    let classes = file.len() / n.max(1);
    let (agree, diff) = agreement(&file, &reference, classes);
    let mut ok = agree * 100.0 >= c.min_agreement;
    let acc = match &labels {
        Some(l) => {
            let (af, ar) = (accuracy(&file, l), accuracy(&reference, l));
            let drop = (ar - af) * 100.0;
            ok &= drop <= c.max_drop + 1e-9;
            format!(
                ", accuracy {:.2}% vs {:.2}% ({:+.2} points)",
                af * 100.0,
                ar * 100.0,
                (af - ar) * 100.0
            )
        }
        None => String::new(),
    };
    print(&format!(
        "{} (tract) vs float32 (Candle): top-1 agreement {:.2}% ({}/{n}){acc}, max |logit \
         diff| {diff:.4} -> {}",
        info.dtype,
        agree * 100.0,
        (agree * n as f64).round() as usize,
        if ok { "ok" } else { "MISMATCH" }
    ))?;
    Ok(ok)
}
