//! The backward pass over the IR ("tape") of the fast CPU path.
//!
//! Candle's autograd gives every value's gradient a freshly zeroed buffer and adds each
//! contribution into it, and records every op of the forward pass. The model compiler knows
//! the graph: a taped step runs the forward pass with detached parameters (nothing recorded
//! by Candle) into a [`Tape`], which keeps exactly the inputs each node's backward needs,
//! then walks the nodes in reverse, calling the fast kernels' backward functions directly. A
//! gradient is summed only where a value really has several readers (the residual fan-outs).
//! The tape owns all of this state; the model it reads parameters from stays untouched.
//! [`crate::step`] chooses between the tape and Candle's autograd; both compute the same
//! gradients (`tests` below and the loss-curve test in [`crate::bench`] compare them).

use crate::conv::{self, ConvParams};
use crate::error::{Result, TrainError};
use crate::model::{dropout_kernel, dropout_mask, Mode, Model, NodeRun};
use crate::{kernels, ops};
use candle_core::{DType, Tensor, TensorId};
use std::collections::HashMap;
use std::sync::Arc;
use wrnc_ir::{Graph, Op, ParamId, ValueId};

/// One node of the taped forward pass.
struct Record {
    node: usize,
    /// The node's inputs, where its backward reads them (conv, batch norm, linear).
    ins: Vec<Tensor>,
    /// The shape of the first input.
    in_dims: Vec<usize>,
    /// The value whose gradient flows back into this node (a fused ReLU's output).
    output: ValueId,
    /// The output itself, for a standalone ReLU's mask and a batch norm's fused dropout.
    out: Option<Tensor>,
    /// A training-mode batch norm's op (statistics and ReLU flag).
    bn: Option<kernels::bn::BnRelu>,
    /// The other operand of a residual addition fused into this convolution.
    residual: Option<ValueId>,
    /// The batch norm + ReLU this convolution applied to its input `ins[0]`.
    input: Option<Arc<kernels::bn::BnReluInput>>,
}

/// What one forward pass left for its backward pass: per node run, in order, the tensors
/// its backward reads. Filled by [`Model::forward`] (which runs outside Candle's autograd
/// when given a tape), consumed by [`Tape::backward`].
pub(crate) struct Tape {
    /// The forward pass's mode (the dropout masks are drawn again from it).
    mode: Mode,
    records: Vec<Record>,
}

impl Tape {
    /// An empty tape for a forward pass in `mode`.
    pub(crate) fn new(mode: Mode) -> Tape {
        Tape {
            mode,
            records: Vec::new(),
        }
    }

    /// Whether the tape has a backward for every node of `graph` up to its logits (batch
    /// norm only over feature maps: over flat features it runs on Candle's ops, which keep
    /// no statistics for the tape).
    pub(crate) fn supports(graph: &Graph) -> bool {
        let logits = graph.logits();
        let Some(last) = graph.nodes.iter().position(|n| n.output == logits) else {
            return false;
        };
        graph.nodes[..=last].iter().all(|n| match n.op {
            Op::BatchNorm { .. } => graph.shape(n.inputs[0]).len() == 3,
            Op::Conv { .. }
            | Op::Relu
            | Op::Dropout { .. }
            | Op::Add
            | Op::MaxPool { .. }
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Linear { .. } => true,
            Op::AvgPool { .. } | Op::Softmax => false,
        })
    }

    /// Records one node as the forward pass ran it.
    pub(crate) fn record(&mut self, op: &Op, run: NodeRun<'_>) {
        // Ops with parameters need their input for the weight gradient (BN also for its
        // input gradient), max pooling to find each window's maximum; the others' backward
        // reads only the output gradient and shapes.
        let keep_ins = !op.params().is_empty() || matches!(op, Op::MaxPool { .. });
        self.records.push(Record {
            node: run.node,
            in_dims: run.ins[0].dims().to_vec(),
            ins: if keep_ins {
                run.ins.to_vec()
            } else {
                Vec::new()
            },
            output: run.output,
            out: (*op == Op::Relu || run.bn.as_ref().is_some_and(|b| b.needs_output()))
                .then(|| run.out.clone()),
            bn: run.bn,
            residual: run.residual,
            input: run.input,
        });
    }

    /// Walks the recorded nodes in reverse from the gradient `dlogits` of the loss with
    /// respect to the logits, and returns the gradient of every trainable parameter of
    /// `model` that influences the loss, by parameter tensor.
    pub(crate) fn backward(
        self,
        model: &Model,
        dlogits: Tensor,
    ) -> Result<HashMap<TensorId, Tensor>> {
        let Tape { mode, mut records } = self;
        let graph = model.graph();
        let mut grads: Vec<Option<Tensor>> = vec![None; graph.values.len()];
        grads[graph.logits().0] = Some(dlogits);
        let mut params: Vec<Option<Tensor>> = vec![None; graph.params.len()];
        let mut add_param = |id: ParamId, g: Tensor| accumulate(&mut params[id.0], g);
        // per batch-norm output, its backward's per-plane sums when the convolution that
        // completed its gradient took them
        let mut bn_sums: Vec<Option<Vec<(f64, f64)>>> = vec![None; graph.values.len()];
        while let Some(rec) = records.pop() {
            let Some(dy) = grads[rec.output.0].take() else {
                continue;
            };
            let node = &graph.nodes[rec.node];
            // a fused residual addition passes the output gradient to its other operand too
            // (before a convolution reading that same value takes its gradient so far)
            if let Some(r) = rec.residual.filter(|&r| r != graph.input()) {
                accumulate(&mut grads[r.0], dy.clone())?;
            }
            let mut to_inputs: Vec<Option<Tensor>> = vec![None; node.inputs.len()];
            match &node.op {
                Op::Conv {
                    stride,
                    padding,
                    weight,
                    bias,
                    ..
                } => {
                    let need_input_grad = node.inputs[0] != graph.input();
                    let w = model.param_detached(*weight)?;
                    let params = ConvParams {
                        stride: *stride,
                        padding: *padding,
                    };
                    // the gradient the input already has (its other readers ran their
                    // backward first) is summed inside the kernel that writes `dx`
                    let prior = match need_input_grad {
                        true => grads[node.inputs[0].0].take(),
                        false => None,
                    };
                    let input = node.inputs[0];
                    let bn = match need_input_grad {
                        true => grad_sums_request(&records, model, input)?,
                        false => None,
                    };
                    let (dx, dw, sums) = conv::conv2d_backward(
                        (&rec.ins[0], rec.input.clone()),
                        &w,
                        &dy,
                        params,
                        (need_input_grad, prior),
                        bn,
                        model.kernels(),
                    )?;
                    bn_sums[input.0] = sums;
                    add_param(*weight, dw)?;
                    if let Some(b) = bias {
                        add_param(*b, dy.sum((0, 2, 3))?)?;
                    }
                    to_inputs[0] = dx;
                }
                Op::BatchNorm { weight, bias, .. } => {
                    let bn = rec.bn.as_ref().ok_or_else(|| {
                        TrainError::Internal(format!("layer `{}`: no batch statistics", node.name))
                    })?;
                    let g = model.param_detached(*weight)?;
                    let b = model.param_detached(*bias)?;
                    let out = rec.out.as_ref().unwrap_or(&dy);
                    // as for convolutions: the input's gradient so far is summed in the kernel
                    let prior = grads[node.inputs[0].0].take();
                    let sums = bn_sums[rec.output.0].take();
                    let (dx, dg, db) = bn.backward(
                        &rec.ins[0],
                        &g,
                        &b,
                        out,
                        &dy,
                        prior.as_ref(),
                        sums.as_deref(),
                    )?;
                    add_param(*weight, dg)?;
                    add_param(*bias, db)?;
                    to_inputs[0] = Some(dx);
                }
                Op::Relu => {
                    let out = rec.out.as_ref().ok_or_else(|| {
                        TrainError::Internal(format!("layer `{}`: no recorded output", node.name))
                    })?;
                    to_inputs[0] = Some(dy.mul(&out.gt(0.0)?.to_dtype(dy.dtype())?)?);
                }
                Op::Dropout { p } => {
                    // the forward's mask, drawn again from the same stream
                    to_inputs[0] = Some(if model.uses_fast_kernels() {
                        match dropout_kernel(mode, rec.node, *p) {
                            Some(d) => d.apply(&dy.contiguous()?)?,
                            None => dy,
                        }
                    } else {
                        match dropout_mask(mode, rec.node, *p, &dy)? {
                            Some(mask) => (dy * mask)?,
                            None => dy,
                        }
                    });
                }
                Op::Add => {
                    to_inputs[0] = Some(dy.clone());
                    to_inputs[1] = Some(dy);
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    let dx = ops::max_pool_backward(&rec.ins[0], &dy, *kernel, *stride, *padding)?;
                    to_inputs[0] = Some(dx);
                }
                Op::GlobalAvgPool => {
                    let dims = rec.in_dims.clone();
                    let hw = (dims[2] * dims[3]) as f64;
                    let fast =
                        model.uses_fast_kernels() && kernels::supported(dy.device(), dy.dtype());
                    to_inputs[0] = Some(if fast {
                        kernels::spread::spread_planes(&dy, &dims, (1.0 / hw) as f32)?
                    } else {
                        dy.affine(1.0 / hw, 0.0)?.broadcast_as(dims)?.contiguous()?
                    });
                }
                Op::Flatten => to_inputs[0] = Some(dy.reshape(rec.in_dims.as_slice())?),
                Op::Linear { weight, bias, .. } => {
                    let w = model.param_detached(*weight)?;
                    add_param(*weight, dy.t()?.matmul(&rec.ins[0])?)?;
                    if let Some(b) = bias {
                        add_param(*b, dy.sum(0)?)?;
                    }
                    to_inputs[0] = Some(dy.matmul(&w)?);
                }
                // Tape::supports keeps these off the taped path.
                Op::AvgPool { .. } | Op::Softmax => {
                    return Err(TrainError::Internal(format!(
                        "layer `{}`: no taped backward for {:?}",
                        node.name, node.op
                    )))
                }
            }
            for (v, g) in node.inputs.iter().zip(to_inputs) {
                if let (Some(g), true) = (g, *v != graph.input()) {
                    accumulate(&mut grads[v.0], g)?;
                }
            }
        }
        Ok(model
            .trainable()
            .into_iter()
            .filter_map(|(id, var)| params[id.0].take().map(|g| (var.as_tensor().id(), g)))
            .collect())
    }
}

/// The request for the backward sums of the batch norm whose (fused) output is `v`, made by
/// the reader of `v` whose backward runs now, when no record still to come (`records`, in
/// forward order) reads `v`: this reader's input gradient completes `v`'s gradient, so the
/// batch norm's first backward pass can be taken as it is written.
fn grad_sums_request(
    records: &[Record],
    model: &Model,
    v: ValueId,
) -> Result<Option<kernels::bn::GradSumsFor>> {
    let graph = model.graph();
    let Some(j) = records.iter().rposition(|r| r.output == v) else {
        return Ok(None);
    };
    let r = &records[j];
    let (Some(bn), Op::BatchNorm { weight, bias, .. }) = (&r.bn, &graph.nodes[r.node].op) else {
        return Ok(None);
    };
    let reads_v = |o: &Record| graph.nodes[o.node].inputs.contains(&v) || o.residual == Some(v);
    if records[j + 1..].iter().any(reads_v) {
        return Ok(None);
    }
    Ok(Some(kernels::bn::GradSumsFor {
        bn: bn.clone(),
        x: r.ins[0].clone(),
        gamma: model.param_detached(*weight)?,
        beta: model.param_detached(*bias)?,
        out: r.out.clone(),
    }))
}

/// Adds the gradient contribution `g` into `slot` (the first one is taken as is).
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(prev) if prev.dims() == g.dims() && kernels::supported(g.device(), g.dtype()) => {
            kernels::add::add(&prev, &g)?
        }
        Some(prev) => (prev + g)?,
        None => g,
    });
    Ok(())
}

/// Mean cross-entropy of `logits` (`[N, K]`) against `labels` and its gradient
/// `(softmax - onehot) / N`, computed in f64 on the host.
#[cfg(test)]
pub(crate) fn cross_entropy_grad(logits: &Tensor, labels: &[u32]) -> Result<(f32, Tensor)> {
    cross_entropy_grad_smoothed(logits, labels, 0.0)
}

/// [`cross_entropy_grad`] with label smoothing `eps` (PyTorch's
/// `cross_entropy(label_smoothing=eps)`): per row, `(1 - eps) * (lse - x_y) + eps * mean_j
/// (lse - x_j)`, whose gradient is `softmax - (1 - eps) * onehot - eps / K`. With `eps` 0 the
/// arithmetic is exactly that of the plain loss.
pub(crate) fn cross_entropy_grad_smoothed(
    logits: &Tensor,
    labels: &[u32],
    eps: f64,
) -> Result<(f32, Tensor)> {
    let (n, k) = logits.dims2()?;
    if labels.len() != n {
        return Err(TrainError::Internal(format!(
            "{} labels for {n} logits rows",
            labels.len()
        )));
    }
    let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
    let mut grad = Vec::with_capacity(n * k);
    let mut total = 0f64;
    for (row, &label) in rows.iter().zip(labels) {
        let label = label as usize;
        if label >= k {
            return Err(TrainError::Data(format!(
                "label {label} out of range for {k} classes"
            )));
        }
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let lse = max + sum.ln();
        if eps == 0.0 {
            total += lse - f64::from(row[label]);
            for (j, &v) in row.iter().enumerate() {
                let p = (f64::from(v) - lse).exp();
                let onehot = if j == label { 1.0 } else { 0.0 };
                grad.push(((p - onehot) / n as f64) as f32);
            }
            continue;
        }
        let mean_logit = row.iter().map(|&v| f64::from(v)).sum::<f64>() / k as f64;
        total += (1.0 - eps) * (lse - f64::from(row[label])) + eps * (lse - mean_logit);
        let uniform = eps / k as f64;
        for (j, &v) in row.iter().enumerate() {
            let p = (f64::from(v) - lse).exp();
            let target = if j == label { 1.0 - eps } else { 0.0 } + uniform;
            grad.push(((p - target) / n as f64) as f32);
        }
    }
    let g = Tensor::from_vec(grad, (n, k), logits.device())?.to_dtype(logits.dtype())?;
    Ok(((total / n as f64) as f32, g))
}

/// Mean soft-target cross-entropy of `logits` `[N, K]` against the row-major target
/// distributions `targets` (`N * K` values; timm's `SoftTargetCrossEntropy`, the loss of
/// mixup and CutMix): per row `-sum_j t_j (x_j - lse)`, whose gradient is
/// `(softmax - t) / N` (for targets summing to 1 per row).
pub(crate) fn soft_cross_entropy_grad(logits: &Tensor, targets: &[f32]) -> Result<(f32, Tensor)> {
    let (n, k) = logits.dims2()?;
    if targets.len() != n * k {
        return Err(TrainError::Internal(format!(
            "{} target values for {n} x {k} logits",
            targets.len()
        )));
    }
    let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
    let mut grad = Vec::with_capacity(n * k);
    let mut total = 0f64;
    for (row, t) in rows.iter().zip(targets.chunks_exact(k)) {
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let lse = max + sum.ln();
        let mass: f64 = t.iter().map(|&q| f64::from(q)).sum();
        for (&v, &q) in row.iter().zip(t) {
            let logp = f64::from(v) - lse;
            total -= f64::from(q) * logp;
            // d/dx_j of -sum_i t_i (x_i - lse) = softmax_j * sum_i t_i - t_j.
            grad.push(((logp.exp() * mass - f64::from(q)) / n as f64) as f32);
        }
    }
    let g = Tensor::from_vec(grad, (n, k), logits.device())?.to_dtype(logits.dtype())?;
    Ok(((total / n as f64) as f32, g))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::init::init_weights;
    use crate::ops;
    use crate::step::{Gradients, Targets};
    use candle_core::Device;
    use wrnc_ir::GraphBuilder;

    /// A residual network with every op the tape knows: a standalone ReLU, dropout, conv
    /// bias, a BN without ReLU, an add whose inputs fan out, pooling and a linear layer.
    fn net() -> Graph {
        let mut b = GraphBuilder::new("taped", [3, 8, 8]).unwrap();
        let bn = Op::batch_norm(1e-5, 0.1);
        let x = b.input();
        let c0 = b.layer("stem", &Op::conv(8, 3, 1, 1, true), &[x]).unwrap();
        let n0 = b.layer("bn0", &bn, &[c0]).unwrap();
        let r0 = b.layer("relu0", &Op::Relu, &[n0]).unwrap();
        let c1 = b
            .layer("conv1", &Op::conv(8, 3, 1, 1, false), &[r0])
            .unwrap();
        let n1 = b.layer("bn1", &bn, &[c1]).unwrap();
        let d1 = b.layer("drop", &Op::dropout(0.3), &[n1]).unwrap();
        let a = b.layer("add", &Op::Add, &[d1, r0]).unwrap();
        let r1 = b.layer("relu1", &Op::Relu, &[a]).unwrap();
        let c2 = b
            .layer("conv2", &Op::conv(12, 3, 2, 1, false), &[r1])
            .unwrap();
        let a2 = b.layer("add2", &Op::Add, &[c2, c2]).unwrap();
        let p = b.layer("pool", &Op::GlobalAvgPool, &[a2]).unwrap();
        let f = b.layer("flat", &Op::Flatten, &[p]).unwrap();
        b.layer("fc", &Op::linear(5, true), &[f]).unwrap();
        b.finish().unwrap()
    }

    /// Pre-activation blocks whose batch norms + ReLUs are read by convolutions only (left
    /// to them, [`Model::reader_applies_bn`]): one Winograd convolution (one of them also
    /// followed by a residual addition, on maps with cut edge tiles, 7x7), and a stride-2
    /// 3x3 with a stride-2 1x1 shortcut; and one read by a convolution and an addition.
    pub(crate) fn read_through_net() -> Graph {
        let mut b = GraphBuilder::new("read-through", [3, 7, 7]).unwrap();
        let bn = Op::batch_norm(1e-5, 0.1);
        let input = b.input();
        let mut layer = |name: &str, op: Op, ins: &[ValueId]| b.layer(name, &op, ins).unwrap();
        let c0 = layer("stem", Op::conv(8, 3, 1, 1, false), &[input]);
        let x = layer("bn1", bn.clone(), &[c0]);
        let x = layer("relu1", Op::Relu, &[x]);
        let x = layer("conv1", Op::conv(12, 3, 1, 1, false), &[x]);
        let x = layer("bn2", bn.clone(), &[x]);
        let x = layer("relu2", Op::Relu, &[x]);
        let x = layer("conv2", Op::conv(8, 3, 1, 1, false), &[x]);
        let a = layer("add", Op::Add, &[x, c0]);
        let x = layer("bn3", bn.clone(), &[a]);
        let x = layer("relu3", Op::Relu, &[x]);
        // read by a stride-2 3x3 convolution and a stride-2 1x1 shortcut
        let y = layer("conv3", Op::conv(16, 3, 2, 1, false), &[x]);
        let s = layer("convdim", Op::conv(16, 1, 2, 0, false), &[x]);
        let a = layer("add2", Op::Add, &[y, s]);
        let x = layer("bn4", bn.clone(), &[a]);
        let x = layer("relu4", Op::Relu, &[x]);
        // read by a convolution and an addition: written
        let y = layer("conv4", Op::conv(16, 3, 1, 1, false), &[x]);
        let a = layer("add3", Op::Add, &[y, x]);
        let x = layer("bn5", bn, &[a]);
        let x = layer("relu5", Op::Relu, &[x]);
        let p = layer("pool", Op::GlobalAvgPool, &[x]);
        let f = layer("flat", Op::Flatten, &[p]);
        layer("fc", Op::linear(5, true), &[f]);
        b.finish().unwrap()
    }

    /// A post-activation ResNet stem and bottleneck block (conv-BN-ReLU, a padded max pool,
    /// 1x1 / 3x3 / 1x1 convs each followed by BN, a projection shortcut conv + BN, ReLU after
    /// the add), the ImageNet form of `model.wrn`.
    fn pooled_net() -> Graph {
        let mut b = GraphBuilder::new("pooled", [3, 8, 8]).unwrap();
        let bn = Op::batch_norm(1e-5, 0.1);
        let input = b.input();
        let mut layer = |name: &str, op: Op, ins: &[ValueId]| b.layer(name, &op, ins).unwrap();
        let x = layer("conv1", Op::conv(6, 3, 1, 1, false), &[input]);
        let x = layer("bn1", bn.clone(), &[x]);
        let x = layer("relu", Op::Relu, &[x]);
        let x = layer("maxpool", Op::max_pool(3, 2, 1), &[x]);
        let y = layer("b.conv1", Op::conv(4, 1, 1, 0, false), &[x]);
        let y = layer("b.bn1", bn.clone(), &[y]);
        let y = layer("b.relu1", Op::Relu, &[y]);
        let y = layer("b.conv2", Op::conv(4, 3, 2, 1, false), &[y]);
        let y = layer("b.bn2", bn.clone(), &[y]);
        let y = layer("b.relu2", Op::Relu, &[y]);
        let y = layer("b.conv3", Op::conv(8, 1, 1, 0, false), &[y]);
        let y = layer("b.bn3", bn.clone(), &[y]);
        let s = layer("b.down", Op::conv(8, 1, 2, 0, false), &[x]);
        let s = layer("b.down_bn", bn, &[s]);
        let a = layer("b.add", Op::Add, &[y, s]);
        let a = layer("b.relu", Op::Relu, &[a]);
        let p = layer("pool", Op::GlobalAvgPool, &[a]);
        let f = layer("flat", Op::Flatten, &[p]);
        layer("fc", Op::linear(5, true), &[f]);
        b.finish().unwrap()
    }

    #[test]
    fn taped_gradients_match_candle_autograd() {
        assert_taped_matches_autograd(&net(), 0.0);
    }

    #[test]
    fn taped_label_smoothing_matches_candle_autograd() {
        assert_taped_matches_autograd(&net(), 0.1);
    }

    #[test]
    fn taped_fused_dropout_matches_candle_autograd() {
        // BN-ReLU-dropout in every block: the dropout runs inside the batch norm
        let g = wrnc_testkit::graphs::wrn([3, 8, 8], 10, 1, 5, 0.3);
        assert_taped_matches_autograd(&g, 0.0);
    }

    #[test]
    fn taped_max_pool_and_bottleneck_match_candle_autograd() {
        assert_taped_matches_autograd(&pooled_net(), 0.0);
    }

    /// One training step of `g` (3x8x8 inputs, 5 classes) on the tape (fast kernels) and on
    /// Candle's autograd over the reference ops, with label smoothing `eps`: the same loss and
    /// the same gradient for every parameter.
    fn assert_taped_matches_autograd(g: &Graph, eps: f64) {
        assert_taped_matches_autograd_for(g, Targets::Labels(&[0u32, 3, 1, 4]), eps);
    }

    /// Batch norms + ReLUs applied by the convolutions that read them ([`read_through_net`])
    /// on the tape and on Candle's autograd: the same loss and gradients, with and without
    /// label smoothing.
    #[test]
    fn batch_norms_left_to_their_convolutions_match_candle_autograd() {
        assert_taped_matches_autograd(&read_through_net(), 0.0);
        assert_taped_matches_autograd(&read_through_net(), 0.1);
    }

    /// Mixup's soft targets (timm's `mixup_target` of labels [0, 3, 1, 4] with lam 0.3 and
    /// smoothing 0.1) on the tape and on Candle's autograd: the same loss and gradients.
    #[test]
    fn taped_mixup_targets_match_candle_autograd() {
        let t = crate::mixup::mixup_targets(&[0, 3, 1, 4], 5, 0.3, 0.1);
        assert_taped_matches_autograd_for(&net(), Targets::Soft(&t), 0.0);
        assert_taped_matches_autograd_for(&pooled_net(), Targets::Soft(&t), 0.0);
    }

    /// [`assert_taped_matches_autograd`] against `targets`.
    fn assert_taped_matches_autograd_for(g: &Graph, targets: Targets<'_>, eps: f64) {
        let w = init_weights(g, 3);
        let n = 4;
        let per_image: usize = g.input_shape().iter().product();
        let images: Vec<f32> = (0..n * per_image)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let mode = Mode::Train { seed: 5, step: 2 };
        let mut fast = Model::new(g, &w, &Device::Cpu, DType::F32).unwrap();
        fast.set_reference_ops(false);
        assert!(fast.tape_applies(mode));
        let mut auto = Model::new(g, &w, &Device::Cpu, DType::F32).unwrap();
        auto.set_reference_ops(true);
        assert!(!auto.tape_applies(mode));
        let x = fast.input_tensor(&images, n).unwrap();
        let a = fast.loss_and_grads_for(&x, targets, mode, eps).unwrap();
        let b = auto.loss_and_grads_for(&x, targets, mode, eps).unwrap();
        assert!(matches!(a.grads, Gradients::Tape(_)));
        assert!(
            (a.loss - b.loss).abs() <= 1e-5 * b.loss.abs(),
            "{} vs {}",
            a.loss,
            b.loss
        );
        for ((id, va), (_, vb)) in fast.trainable().into_iter().zip(auto.trainable()) {
            let name = &g.params[id.0].name;
            let ga = a
                .grads
                .get(va.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let gb = b.grads.get(vb.as_tensor()).unwrap();
            let ga: Vec<f32> = ga.flatten_all().unwrap().to_vec1().unwrap();
            let gb: Vec<f32> = gb.flatten_all().unwrap().to_vec1().unwrap();
            // the floor: a gradient that is zero in exact arithmetic (a conv bias before batch
            // norm) is f32 rounding noise of order 1e-7 on both sides
            let scale = gb.iter().fold(1e-2f32, |m, v| m.max(v.abs()));
            for (p, q) in ga.iter().zip(&gb) {
                assert!((p - q).abs() <= 1e-4 * scale, "{name}: {p} vs {q}");
            }
        }
    }

    #[test]
    fn batch_norm_over_flat_features_keeps_autograd() {
        let mut b = GraphBuilder::new("flatbn", [2, 4, 4]).unwrap();
        let x = b.input();
        let p = b.layer("pool", &Op::GlobalAvgPool, &[x]).unwrap();
        let f = b.layer("flat", &Op::Flatten, &[p]).unwrap();
        let bn = Op::batch_norm(1e-5, 0.1);
        let n = b.layer("bn", &bn, &[f]).unwrap();
        b.layer("fc", &Op::linear(3, true), &[n]).unwrap();
        let g = b.finish().unwrap();
        let mut m = Model::new(&g, &init_weights(&g, 1), &Device::Cpu, DType::F32).unwrap();
        m.set_reference_ops(false);
        let mode = Mode::Train { seed: 0, step: 0 };
        assert!(!m.tape_applies(mode));
        let images: Vec<f32> = (0..4 * 32).map(|i| (i % 7) as f32 - 3.0).collect();
        let x = m.input_tensor(&images, 4).unwrap();
        let out = m.loss_and_grads(&x, &[0, 1, 2, 0], mode).unwrap();
        assert!(matches!(out.grads, Gradients::Autograd(_)) && out.loss.is_finite());
    }

    #[test]
    fn fast_eval_matches_the_reference_ops() {
        assert_fast_eval_matches_the_reference(&net());
        // batch norms left to the Winograd convolutions that read them
        assert_fast_eval_matches_the_reference(&read_through_net());
        // a fused BN-ReLU-dropout is the identity in eval mode
        assert_fast_eval_matches_the_reference(&wrnc_testkit::graphs::wrn(
            [3, 8, 8],
            10,
            1,
            5,
            0.3,
        ));
    }

    fn assert_fast_eval_matches_the_reference(g: &Graph) {
        // eval-mode BN (+ fused ReLU) kernels against Candle's ops, after a training step has
        // moved the running statistics away from their initial values
        let g = g.clone();
        let w = init_weights(&g, 4);
        let per_image: usize = g.input_shape().iter().product();
        let images: Vec<f32> = (0..2 * per_image)
            .map(|i| ((i * 53 % 97) as f32 / 40.0) - 1.2)
            .collect();
        let mut fast = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        fast.set_reference_ops(false);
        let x = fast.input_tensor(&images, 2).unwrap();
        fast.loss_and_grads(&x, &[1, 2], Mode::Train { seed: 1, step: 0 })
            .unwrap();
        let mut reference =
            Model::new(&g, &fast.to_weights().unwrap(), &Device::Cpu, DType::F32).unwrap();
        reference.set_reference_ops(true);
        let eval_logits = |m: &mut Model| -> Vec<f32> {
            let l = m.logits(&x, Mode::Eval).unwrap();
            l.flatten_all().unwrap().to_vec1().unwrap()
        };
        let (a, b) = (eval_logits(&mut fast), eval_logits(&mut reference));
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-5 * scale, "{p} vs {q}");
        }
    }

    #[test]
    fn a_candle_failure_inside_a_layer_is_a_runtime_error() {
        // A running-mean buffer of the wrong length: batch norm fails inside Candle (or the
        // fast kernel), on either implementation, and the error names the layer.
        let g = net();
        let w = init_weights(&g, 6);
        let images: Vec<f32> = (0..2 * 3 * 64).map(|i| (i % 11) as f32 / 5.0).collect();
        for reference in [false, true] {
            let mut m = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
            m.set_reference_ops(reference);
            let (id, _) = g.param_by_name("bn1.running_mean").unwrap();
            m.set_param(id, &Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap())
                .unwrap();
            let x = m.input_tensor(&images, 2).unwrap();
            let e = m.logits(&x, Mode::Eval).unwrap_err();
            assert!(
                matches!(&e, TrainError::Layer { layer, .. } if layer == "bn1"),
                "{e:?}"
            );
            assert!(!e.is_user_error(), "{e}");
            assert_eq!(e.kind(), crate::ErrorKind::Runtime);
            assert!(e.to_string().starts_with("layer `bn1`: "), "{e}");
        }
    }

    #[test]
    fn cross_entropy_gradient_is_softmax_minus_onehot() {
        let logits = Tensor::new(&[[1f32, 2.0, 0.5], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let (loss, g) = cross_entropy_grad(&logits, &[1, 2]).unwrap();
        let labels = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        let want: f32 = ops::cross_entropy(&logits, &labels)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((loss - want).abs() < 1e-6);
        let g: Vec<Vec<f32>> = g.to_vec2().unwrap();
        let row_sum: f32 = g[0].iter().sum();
        assert!(row_sum.abs() < 1e-6 && (g[1][2] - (1.0 / 3.0 - 1.0) / 2.0).abs() < 1e-6);
        assert!(cross_entropy_grad(&logits, &[1, 3]).is_err());
    }

    /// PyTorch's smoothed cross-entropy, written out in f64: the loss of each row is
    /// `-sum_j q_j log p_j` with `q = (1 - eps) onehot + eps / K`, and its gradient `p - q`.
    #[test]
    fn label_smoothing_matches_an_f64_computation() {
        let rows = [[1.5f32, -0.5, 0.25, 2.0], [0.0, 3.0, -1.0, 0.5]];
        let labels = [3u32, 0];
        let eps = 0.2;
        let logits = Tensor::new(&rows, &Device::Cpu).unwrap();
        let (loss, g) = cross_entropy_grad_smoothed(&logits, &labels, eps).unwrap();
        let g: Vec<Vec<f32>> = g.to_vec2().unwrap();
        let mut want = 0.0;
        for (r, (row, &y)) in rows.iter().zip(&labels).enumerate() {
            let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            for (j, &v) in row.iter().enumerate() {
                let p = (v as f64).exp() / z;
                let q = if j == y as usize { 1.0 - eps } else { 0.0 } + eps / 4.0;
                want -= q * p.ln() / 2.0;
                assert!(
                    (g[r][j] as f64 - (p - q) / 2.0).abs() < 1e-7,
                    "grad {r},{j}"
                );
            }
        }
        assert!((loss as f64 - want).abs() < 1e-6, "{loss} vs {want}");
        // Candle's reference ops give the same loss.
        let y = Tensor::new(&labels, &Device::Cpu).unwrap();
        let candle: f32 = ops::cross_entropy_smoothed(&logits, &y, eps)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((candle as f64 - want).abs() < 1e-6, "{candle} vs {want}");
        // eps 0 is the plain loss, bit for bit.
        let (l0, g0) = cross_entropy_grad_smoothed(&logits, &labels, 0.0).unwrap();
        let (l1, g1) = cross_entropy_grad(&logits, &labels).unwrap();
        assert_eq!(l0.to_bits(), l1.to_bits());
        assert_eq!(g0.to_vec2::<f32>().unwrap(), g1.to_vec2::<f32>().unwrap());
    }

    /// timm's `SoftTargetCrossEntropy` written out in f64: the loss of a row is
    /// `-sum_j t_j log p_j` and its gradient `(p - t) / N`; Candle's reference op gives the
    /// same loss, and one-hot targets give the plain cross-entropy.
    #[test]
    fn soft_cross_entropy_matches_an_f64_computation() {
        let rows = [
            [1.5f32, -0.5, 0.25, 2.0],
            [0.0, 3.0, -1.0, 0.5],
            [0.3, 0.3, 0.3, 0.3],
        ];
        let t = [
            0.1f32, 0.6, 0.1, 0.2, 0.7, 0.0, 0.3, 0.0, 0.25, 0.25, 0.25, 0.25,
        ];
        let logits = Tensor::new(&rows, &Device::Cpu).unwrap();
        let (loss, g) = soft_cross_entropy_grad(&logits, &t).unwrap();
        let g: Vec<Vec<f32>> = g.to_vec2().unwrap();
        let mut want = 0.0;
        for (r, row) in rows.iter().enumerate() {
            let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            for (j, &v) in row.iter().enumerate() {
                let p = (v as f64).exp() / z;
                let q = t[r * 4 + j] as f64;
                want -= q * p.ln() / 3.0;
                assert!((g[r][j] as f64 - (p - q) / 3.0).abs() < 1e-7, "{r},{j}");
            }
        }
        assert!((loss as f64 - want).abs() < 1e-6, "{loss} vs {want}");
        let tt = Tensor::from_slice(&t, (3, 4), &Device::Cpu).unwrap();
        let candle: f32 = ops::soft_cross_entropy(&logits, &tt)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((candle as f64 - want).abs() < 1e-6, "{candle} vs {want}");
        // The uniform row of logits costs ln 4 whatever its targets.
        let (u, _) = soft_cross_entropy_grad(&logits.narrow(0, 2, 1).unwrap(), &t[..4]).unwrap();
        assert!((u as f64 - 4f64.ln()).abs() < 1e-6);
        let onehot = [0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let two = logits.narrow(0, 0, 2).unwrap();
        let (ls, _) = soft_cross_entropy_grad(&two, &onehot).unwrap();
        let (lh, _) = cross_entropy_grad(&two, &[3, 0]).unwrap();
        assert!((ls - lh).abs() < 1e-6);
        assert!(soft_cross_entropy_grad(&two, &onehot[..4]).is_err());
    }
}
