//! Calibration of int8 activation ranges: the float model runs in tract with its
//! intermediate tensors as extra outputs, and their statistics go into
//! [`wrnc_onnx::quantize::calibrate::RangeStats`].

use crate::error::{Result, VerifyError};
use std::collections::BTreeMap;
use tract_onnx::prelude::*;
use wrnc_onnx::proto::{ModelProto, ValueInfoProto};
use wrnc_onnx::quantize::calibrate::RangeStats;
use wrnc_onnx::quantize::qdq;
use wrnc_recipe::CalibrationMethod;

/// A float model planned by tract to return the named intermediate tensors.
#[derive(Debug, Clone)]
pub struct TensorTap {
    plan: Arc<TypedRunnableModel>,
    /// Names returned by the plan, in output order.
    outputs: Vec<String>,
    /// Whether the graph input itself is one of the tensors asked for.
    input_name: Option<String>,
    batch: usize,
    shape: [usize; 3],
}

impl TensorTap {
    /// Plans `model` (a float model as `wrnc_onnx::export` writes it) for batches of `batch`
    /// images of shape `shape`, returning the tensors `names`.
    pub fn new(
        model: &ModelProto,
        names: &[String],
        batch: usize,
        shape: [usize; 3],
    ) -> Result<Self> {
        if batch == 0 {
            return Err(VerifyError::Input(
                "the batch size must be at least 1".into(),
            ));
        }
        let mut m = model.clone();
        let g = m
            .graph
            .as_mut()
            .ok_or_else(|| VerifyError::Input("the model has no graph".into()))?;
        let input = g
            .input
            .first()
            .and_then(|i| i.name.clone())
            .unwrap_or_default();
        let input_name = names.iter().find(|n| **n == input).cloned();
        let outputs: Vec<String> = names.iter().filter(|n| **n != input).cloned().collect();
        g.output = outputs
            .iter()
            .map(|n| ValueInfoProto {
                name: Some(n.clone()),
                r#type: None,
                doc_string: None,
            })
            .collect();
        let bytes = wrnc_onnx::to_bytes(&m);
        let mut model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .with_ignore_output_shapes(true)
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(VerifyError::tract)?;
        let [c, h, w] = shape;
        model
            .set_input_fact(0, f32::fact([batch, c, h, w]).into())
            .map_err(VerifyError::tract)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(VerifyError::tract)?;
        Ok(TensorTap {
            plan,
            outputs,
            input_name,
            batch,
            shape,
        })
    }

    /// Runs one batch (row-major `[batch, C, H, W]`) and returns every tensor asked for.
    pub fn run(&self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>> {
        let [c, h, w] = self.shape;
        if input.len() != self.batch * c * h * w {
            return Err(VerifyError::Input(format!(
                "a batch of {} values, expected {}",
                input.len(),
                self.batch * c * h * w
            )));
        }
        let t = Tensor::from_shape(&[self.batch, c, h, w], input).map_err(VerifyError::tract)?;
        let out = self.plan.run(tvec!(t.into())).map_err(VerifyError::tract)?;
        let mut all = Vec::with_capacity(self.outputs.len() + 1);
        if let Some(n) = &self.input_name {
            all.push((n.clone(), input.to_vec()));
        }
        for (name, v) in self.outputs.iter().zip(out.iter()) {
            let v = v
                .to_plain_array_view::<f32>()
                .map_err(VerifyError::tract)?
                .iter()
                .copied()
                .collect();
            all.push((name.clone(), v));
        }
        Ok(all)
    }
}

/// Calibrates the int8 activation ranges of `model` on `images` (row-major `[n, C, H, W]`,
/// normalised as the model expects) by `method`, in batches of at most `batch` (a short
/// last batch is padded with its first image, whose tensors are not counted). Returns one `[lo, hi]` range per tensor of [`qdq::plan`].
pub fn calibrate(
    model: &ModelProto,
    images: &[f32],
    shape: [usize; 3],
    batch: usize,
    method: CalibrationMethod,
) -> Result<BTreeMap<String, (f32, f32)>> {
    let plan = qdq::plan(model)?;
    let numel: usize = shape.iter().product();
    let n = images.len() / numel.max(1);
    if n == 0 || images.len() != n * numel {
        return Err(VerifyError::Input(format!(
            "calibration needs at least one image of shape {shape:?}"
        )));
    }
    let batch = batch.clamp(1, n);
    let tap = TensorTap::new(model, &plan.activations, batch, shape)?;
    let mut stats = RangeStats::default();
    let passes = if method == CalibrationMethod::Minmax {
        1
    } else {
        2
    };
    for pass in 0..passes {
        let mut start = 0;
        while start < n {
            let end = (start + batch).min(n);
            let mut x = images[start * numel..end * numel].to_vec();
            // Pad a short last batch with its own first image.
            while x.len() < batch * numel {
                x.extend_from_slice(&images[start * numel..(start + 1) * numel]);
            }
            for (name, v) in tap.run(&x)? {
                let real = &v[..v.len() / batch * (end - start)];
                if pass == 0 {
                    stats.observe(&name, real);
                } else {
                    stats.observe_hist(&name, real);
                }
            }
            start = end;
        }
    }
    Ok(stats.ranges(method))
}
