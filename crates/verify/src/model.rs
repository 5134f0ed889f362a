//! Loading an ONNX file into tract and running it.

use crate::error::{Result, VerifyError};
use std::path::Path;
use tract_onnx::prelude::*;
use wrnc_onnx::{check_structure, read_model_with, ModelInfo, ReadLimits};
use wrnc_recipe::ExportTta;

/// Where a model comes from.
#[derive(Debug, Clone, Copy)]
pub enum ModelSource<'a> {
    /// Bytes of an ONNX file.
    Bytes(&'a [u8]),
    /// Path of an ONNX file.
    Path(&'a Path),
}

impl<'a> From<&'a [u8]> for ModelSource<'a> {
    fn from(b: &'a [u8]) -> Self {
        ModelSource::Bytes(b)
    }
}

impl<'a> From<&'a Vec<u8>> for ModelSource<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        ModelSource::Bytes(b)
    }
}

impl<'a> From<&'a Path> for ModelSource<'a> {
    fn from(p: &'a Path) -> Self {
        ModelSource::Path(p)
    }
}

impl<'a> From<&'a std::path::PathBuf> for ModelSource<'a> {
    fn from(p: &'a std::path::PathBuf) -> Self {
        ModelSource::Path(p)
    }
}

/// An ONNX classifier loaded, optimised and planned by tract.
#[derive(Debug, Clone)]
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    info: ModelInfo,
    batch: Option<usize>,
    /// None for a model with test-time augmentation, which outputs probabilities only.
    logits_ix: Option<usize>,
    probs_ix: usize,
    notes: Vec<String>,
}

impl TractModel {
    /// Loads a model. The file goes through the wrnc reader first (size limits, structural
    /// check, metadata), then through tract. With `batch = Some(n)` the batch dimension is
    /// fixed to `n` before optimisation; with `None` it stays symbolic and any batch size can
    /// be run.
    pub fn load<'a>(source: impl Into<ModelSource<'a>>, batch: Option<usize>) -> Result<Self> {
        let owned;
        let bytes: &[u8] = match source.into() {
            ModelSource::Bytes(b) => b,
            ModelSource::Path(p) => {
                // Bounded read: a device or a growing file reports a size of 0 or less than
                // it holds, so the limit is applied while reading too.
                use std::io::Read;
                let max = ReadLimits::default().max_file_bytes;
                let io = |source| VerifyError::Io {
                    path: p.to_path_buf(),
                    source,
                };
                let f = std::fs::File::open(p).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                if len > max {
                    return Err(wrnc_onnx::OnnxError::TooLarge(format!(
                        "{} is {len} bytes, more than the limit of {max}",
                        p.display()
                    ))
                    .into());
                }
                let mut buf = Vec::new();
                f.take(max + 1).read_to_end(&mut buf).map_err(io)?;
                if buf.len() as u64 > max {
                    return Err(wrnc_onnx::OnnxError::TooLarge(format!(
                        "{} is more than the limit of {max} bytes",
                        p.display()
                    ))
                    .into());
                }
                owned = buf;
                &owned
            }
        };
        Self::load_bytes(bytes, batch, &ReadLimits::default())
    }

    /// Like [`TractModel::load`] from bytes, with explicit reader limits.
    pub fn load_bytes(bytes: &[u8], batch: Option<usize>, limits: &ReadLimits) -> Result<Self> {
        if batch == Some(0) {
            return Err(VerifyError::Input(
                "the batch size must be at least 1".into(),
            ));
        }
        let proto = read_model_with(bytes, limits)?;
        let notes = check_structure(&proto)?;
        let info = ModelInfo::from_model(&proto)?;
        let outputs: Vec<&str> = proto
            .graph
            .as_ref()
            .map(|g| g.output.iter().filter_map(|o| o.name.as_deref()).collect())
            .unwrap_or_default();
        let find =
            |name: &str, default: usize| outputs.iter().position(|o| *o == name).unwrap_or(default);
        let (logits_ix, probs_ix) = match info.tta {
            ExportTta::None => {
                let (l, p) = (
                    find(wrnc_onnx::LOGITS_NAME, 0),
                    find(wrnc_onnx::PROBABILITIES_NAME, 1),
                );
                if outputs.len() < 2 || l == p {
                    return Err(VerifyError::Input(format!(
                        "the model must have outputs `logits` and `probabilities`, it has \
                         {outputs:?}"
                    )));
                }
                (Some(l), p)
            }
            ExportTta::Flip => {
                if outputs != [wrnc_onnx::PROBABILITIES_NAME] {
                    return Err(VerifyError::Input(format!(
                        "the model records test-time augmentation `flip`, so its one output \
                         must be `probabilities`; it has {outputs:?}"
                    )));
                }
                (None, 0)
            }
        };

        // With a fixed batch, the file's symbolic `N` in value_info and output shapes would
        // not unify with the concrete input fact, so tract is told to ignore those hints.
        let fixed = batch.is_some();
        let mut model = tract_onnx::onnx()
            .with_ignore_value_info(fixed)
            .with_ignore_output_shapes(fixed)
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(VerifyError::tract)?;
        let [c, h, w] = info.input_shape;
        if let Some(n) = batch {
            model
                .set_input_fact(0, f32::fact([n, c, h, w]).into())
                .map_err(VerifyError::tract)?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(VerifyError::tract)?;
        Ok(TractModel {
            plan,
            info,
            batch,
            logits_ix,
            probs_ix,
            notes,
        })
    }

    /// Metadata read from the file.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The fixed batch size, or None when it is symbolic.
    pub fn batch(&self) -> Option<usize> {
        self.batch
    }

    /// Non-fatal notes from the structural check.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Number of classes (from the metadata labels).
    pub fn classes(&self) -> usize {
        self.info.class_labels.len()
    }

    /// The test-time augmentation built into the file ([`ExportTta::Flip`]: the model outputs
    /// probabilities only; [`TractModel::run`] then fails and
    /// [`TractModel::run_probabilities`] is the way to run it).
    pub fn tta(&self) -> ExportTta {
        self.info.tta
    }

    /// Runs a batch. `input` is row-major `[n, c, h, w]` with `shape = [n, c, h, w]`;
    /// `c, h, w` must be the model's and `n` its fixed batch, if any. Returns
    /// `(logits, probabilities)`, each row-major `[n, classes]`. A model with test-time
    /// augmentation has no logits: use [`TractModel::run_probabilities`].
    pub fn run(&self, input: &[f32], shape: [usize; 4]) -> Result<(Vec<f32>, Vec<f32>)> {
        let Some(logits_ix) = self.logits_ix else {
            return Err(VerifyError::Input(format!(
                "the model has no logits output: it averages probabilities over test-time \
                 augmentation `{}` (metadata `{}`)",
                self.info.tta.as_str(),
                wrnc_onnx::MetaKey::Tta
            )));
        };
        let n = shape[0];
        let out = self.run_plan(input, shape)?;
        let logits = take(&out, logits_ix)?;
        let probabilities = take(&out, self.probs_ix)?;
        if logits.len() != probabilities.len() || !logits.len().is_multiple_of(n) {
            return Err(VerifyError::Tract(format!(
                "unexpected output sizes: {} logits and {} probabilities for {n} images",
                logits.len(),
                probabilities.len()
            )));
        }
        Ok((logits, probabilities))
    }

    /// Runs a batch as [`TractModel::run`] does and returns only the probabilities, row-major
    /// `[n, classes]`: the softmax of the logits, or for a model with test-time augmentation
    /// its averaged probabilities (never a softmax applied twice).
    pub fn run_probabilities(&self, input: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
        let n = shape[0];
        let out = self.run_plan(input, shape)?;
        let probabilities = take(&out, self.probs_ix)?;
        if !probabilities.len().is_multiple_of(n) {
            return Err(VerifyError::Tract(format!(
                "unexpected output size: {} probabilities for {n} images",
                probabilities.len()
            )));
        }
        Ok(probabilities)
    }

    /// Checks the input and runs the plan; the raw outputs.
    fn run_plan(&self, input: &[f32], shape: [usize; 4]) -> Result<TVec<TValue>> {
        let [n, c, h, w] = shape;
        if [c, h, w] != self.info.input_shape {
            let [mc, mh, mw] = self.info.input_shape;
            return Err(VerifyError::Input(format!(
                "input shape {shape:?} does not fit the model's [N, {mc}, {mh}, {mw}]"
            )));
        }
        if n == 0 {
            return Err(VerifyError::Input("the batch is empty".into()));
        }
        if let Some(b) = self.batch {
            if n != b {
                return Err(VerifyError::Input(format!(
                    "the model was loaded for batch {b}, got a batch of {n}"
                )));
            }
        }
        let want = n
            .checked_mul(c * h * w)
            .ok_or_else(|| VerifyError::Input(format!("input shape {shape:?} is too large")))?;
        if input.len() != want {
            return Err(VerifyError::Input(format!(
                "input holds {} values; shape {shape:?} needs {want}",
                input.len()
            )));
        }
        let t = Tensor::from_shape(&[n, c, h, w], input).map_err(VerifyError::tract)?;
        self.plan.run(tvec!(t.into())).map_err(VerifyError::tract)
    }
}

/// Output `i` of a run as f32 values.
fn take(out: &TVec<TValue>, i: usize) -> Result<Vec<f32>> {
    let v = out
        .get(i)
        .ok_or_else(|| VerifyError::Tract(format!("tract returned no output #{i}")))?;
    Ok(v.to_plain_array_view::<f32>()
        .map_err(VerifyError::tract)?
        .iter()
        .copied()
        .collect())
}
