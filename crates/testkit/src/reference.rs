//! A slow, plain-Rust f64 executor of IR graphs in inference mode.
//!
//! It exists to check other executors (tract running the exported ONNX, or the trainer)
//! against an independent, obviously-correct implementation: direct loops, no im2col, no
//! fused kernels. Dropout is the identity, max pooling ignores its padding and BatchNorm uses its running statistics.

use std::fmt;
use wrnc_ir::{passes, Graph, Op, ParamId, Weights};

/// Why the reference executor could not run: a malformed graph, weights that do not fit it,
/// or an input of the wrong size.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceError(pub String);

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReferenceError {}

/// The reference executor's result.
pub type Result<T> = std::result::Result<T, ReferenceError>;

/// Runs `graph` on a batch `input` (row-major `[n, C, H, W]`) and returns
/// `(logits, output)`, each row-major `[n, ...]`; `output` is the last node's value (the
/// probabilities when the graph ends in softmax).
pub fn evaluate(
    graph: &Graph,
    weights: &Weights,
    input: &[f32],
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if !passes::is_well_formed(graph) {
        return Err(ReferenceError("the graph is malformed".into()));
    }
    weights
        .check_against(graph, "the weights")
        .map_err(|e| ReferenceError(e.to_string()))?;
    let per = graph.input_shape().iter().product::<usize>();
    if n == 0 || input.len() != n * per {
        return Err(ReferenceError(format!(
            "input holds {} values; {n} images of {:?} need {}",
            input.len(),
            graph.input_shape(),
            n * per
        )));
    }
    let (logits_id, out_id) = (graph.logits(), graph.output());
    let mut logits = Vec::new();
    let mut output = Vec::new();
    for img in input.chunks(per) {
        let vals = run_one(graph, weights, img)?;
        logits.extend(vals[logits_id.0].iter().map(|&v| v as f32));
        output.extend(vals[out_id.0].iter().map(|&v| v as f32));
    }
    Ok((logits, output))
}

fn run_one(g: &Graph, w: &Weights, img: &[f32]) -> Result<Vec<Vec<f64>>> {
    let p = |id: ParamId| -> Result<Vec<f64>> {
        let name = &g.param(id).name;
        let t = w
            .get(name)
            .ok_or_else(|| ReferenceError(format!("missing tensor `{name}`")))?;
        if t.data.len() != g.param(id).numel() {
            return Err(ReferenceError(format!(
                "tensor `{name}` has the wrong length"
            )));
        }
        Ok(t.data.iter().map(|&v| v as f64).collect())
    };
    let mut vals: Vec<Vec<f64>> = vec![Vec::new(); g.values.len()];
    vals[0] = img.iter().map(|&v| v as f64).collect();
    for node in &g.nodes {
        let x = &vals[node.inputs[0].0];
        let xs = g.shape(node.inputs[0]);
        let ys = g.shape(node.output);
        let y: Vec<f64> = match &node.op {
            Op::Conv {
                kernel,
                stride,
                padding,
                weight,
                bias,
                out_channels,
            } => {
                let (c, h, wd) = (xs[0], xs[1], xs[2]);
                let (oh, ow) = (ys[1], ys[2]);
                let (k, s, pd) = (*kernel, *stride, *padding as isize);
                let wt = p(*weight)?;
                let b = match bias {
                    Some(b) => p(*b)?,
                    None => vec![0.0; *out_channels],
                };
                let mut y = vec![0.0; out_channels * oh * ow];
                for o in 0..*out_channels {
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut acc = b[o];
                            for ci in 0..c {
                                for ki in 0..k {
                                    let yy = (i * s + ki) as isize - pd;
                                    if yy < 0 || yy >= h as isize {
                                        continue;
                                    }
                                    for kj in 0..k {
                                        let xx = (j * s + kj) as isize - pd;
                                        if xx < 0 || xx >= wd as isize {
                                            continue;
                                        }
                                        acc += wt[((o * c + ci) * k + ki) * k + kj]
                                            * x[(ci * h + yy as usize) * wd + xx as usize];
                                    }
                                }
                            }
                            y[(o * oh + i) * ow + j] = acc;
                        }
                    }
                }
                y
            }
            Op::BatchNorm {
                eps,
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => {
                let (gm, bt, mu, var) =
                    (p(*weight)?, p(*bias)?, p(*running_mean)?, p(*running_var)?);
                let plane = xs[1..].iter().product::<usize>().max(1);
                x.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let c = i / plane;
                        (v - mu[c]) / (var[c] + eps).sqrt() * gm[c] + bt[c]
                    })
                    .collect()
            }
            Op::Relu => x.iter().map(|&v| v.max(0.0)).collect(),
            Op::Dropout { .. } | Op::Flatten => x.clone(),
            Op::Add => {
                let z = &vals[node.inputs[1].0];
                x.iter().zip(z).map(|(a, b)| a + b).collect()
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let (c, h, wd) = (xs[0], xs[1], xs[2]);
                let (oh, ow) = (ys[1], ys[2]);
                let (k, s, pd) = (*kernel, *stride, *padding as isize);
                let mut y = vec![0.0; c * oh * ow];
                for ci in 0..c {
                    for i in 0..oh {
                        for j in 0..ow {
                            let (mut acc, mut cnt) = (0.0, 0usize);
                            for ki in 0..k {
                                let yy = (i * s + ki) as isize - pd;
                                for kj in 0..k {
                                    let xx = (j * s + kj) as isize - pd;
                                    if yy >= 0 && yy < h as isize && xx >= 0 && xx < wd as isize {
                                        acc += x[(ci * h + yy as usize) * wd + xx as usize];
                                        cnt += 1;
                                    }
                                }
                            }
                            y[(ci * oh + i) * ow + j] = acc / cnt.max(1) as f64;
                        }
                    }
                }
                y
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let (c, h, wd) = (xs[0], xs[1], xs[2]);
                let (oh, ow) = (ys[1], ys[2]);
                let (k, s, pd) = (*kernel, *stride, *padding as isize);
                let mut y = vec![f64::NEG_INFINITY; c * oh * ow];
                for ci in 0..c {
                    for i in 0..oh {
                        for j in 0..ow {
                            let out = &mut y[(ci * oh + i) * ow + j];
                            for ki in 0..k {
                                let yy = (i * s + ki) as isize - pd;
                                for kj in 0..k {
                                    let xx = (j * s + kj) as isize - pd;
                                    if yy >= 0 && yy < h as isize && xx >= 0 && xx < wd as isize {
                                        let v = x[(ci * h + yy as usize) * wd + xx as usize];
                                        // PyTorch: padding never wins, NaN propagates
                                        if v > *out || v.is_nan() {
                                            *out = v;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                y
            }
            Op::GlobalAvgPool => {
                let plane = xs[1] * xs[2];
                x.chunks(plane)
                    .map(|c| c.iter().sum::<f64>() / plane as f64)
                    .collect()
            }
            Op::Linear {
                out_features,
                weight,
                bias,
            } => {
                let wt = p(*weight)?;
                let b = match bias {
                    Some(b) => p(*b)?,
                    None => vec![0.0; *out_features],
                };
                let f = x.len();
                (0..*out_features)
                    .map(|o| b[o] + (0..f).map(|i| wt[o * f + i] * x[i]).sum::<f64>())
                    .collect()
            }
            Op::Softmax => softmax(x),
        };
        vals[node.output.0] = y;
    }
    Ok(vals)
}

/// Numerically stable softmax of one row.
pub fn softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|&v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}
