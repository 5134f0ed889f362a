//! The IR executor: one Candle [`Var`] per trainable parameter, plain tensors for the BN
//! running statistics, and a forward pass in training or inference mode for every [`Op`].
//!
//! The model only runs forward. Which implementation runs the layers is its [`Kernels`]
//! (chosen once, per device); a backward pass over the IR records a forward pass into a
//! [`Tape`], which owns everything it keeps ([`crate::tape`]).

use crate::backend::Kernels;
use crate::conv::{self, ConvParams};
use crate::error::{Result, TrainError};
use crate::tape::Tape;
use crate::{kernels, ops};
use candle_core::{DType, Device, Tensor, Var};
use std::sync::Arc;
use wrnc_ir::weights::Tensor as HostTensor;
use wrnc_ir::{Graph, Op, ParamId, ValueId, Weights};

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training: batch statistics (running statistics updated), dropout active with masks
    /// drawn from `(seed, step, node index)`.
    Train {
        /// The training seed.
        seed: u64,
        /// Global step, from 0 (selects the dropout masks).
        step: u64,
    },
    /// Inference: running statistics, no dropout.
    Eval,
}

/// The mask dropout node `index` (rate `p`) applies in `mode` to a tensor shaped like `like`,
/// drawn from `(seed, step, node)` so that a backward pass or a resumed run draws it again;
/// `None` (identity) outside training or with `p = 0`.
pub(crate) fn dropout_mask(
    mode: Mode,
    index: usize,
    p: f64,
    like: &Tensor,
) -> Result<Option<Tensor>> {
    match mode {
        Mode::Train { seed, step } if p > 0.0 => {
            let (dims, dtype, device) = (like.dims(), like.dtype(), like.device());
            Ok(Some(ops::dropout_mask(
                seed, step, index, dims, p, dtype, device,
            )?))
        }
        _ => Ok(None),
    }
}

/// The fast kernels' mask of dropout node `index` (rate `p`) in `mode`: `None` outside
/// training or with `p = 0` (identity). Draws the same masks as [`dropout_mask`].
pub(crate) fn dropout_kernel(
    mode: Mode,
    index: usize,
    p: f64,
) -> Option<kernels::dropout::Dropout> {
    match mode {
        Mode::Train { seed, step } if p > 0.0 => {
            Some(kernels::dropout::Dropout::new(seed, step, index, p))
        }
        _ => None,
    }
}

/// What a node absorbs of the nodes after it (fast kernels): a batch norm the ReLU that
/// follows it, and that ReLU the dropout that follows it; a convolution the residual
/// addition that follows it (outside Candle's autograd).
#[derive(Debug, Clone, Copy, Default)]
struct Fused {
    /// The absorbed ReLU's output.
    relu: Option<ValueId>,
    /// That output is applied by the convolution that reads it, as it reads its input: the
    /// batch norm takes its statistics and writes nothing ([`Model::reader_applies_bn`]).
    read_through: bool,
    /// The absorbed dropout: its node index, output and rate.
    dropout: Option<(usize, ValueId, f64)>,
    /// The absorbed addition: its other operand and its output.
    residual: Option<(ValueId, ValueId)>,
}

impl Fused {
    /// The value the fused nodes produce.
    fn output(&self) -> Option<ValueId> {
        self.residual
            .map(|(_, v)| v)
            .or(self.dropout.map(|(_, v, _)| v))
            .or(self.relu)
    }

    /// How many graph nodes the fused run covers besides the first.
    fn absorbed(&self) -> usize {
        usize::from(self.relu.is_some())
            + usize::from(self.dropout.is_some())
            + usize::from(self.residual.is_some())
    }
}

/// One node as a forward pass ran it: what a [`Tape`] records.
pub(crate) struct NodeRun<'a> {
    /// Index of the node in the graph.
    pub node: usize,
    /// Its inputs.
    pub ins: &'a [Tensor],
    /// The value it produced (a fused ReLU's output for a BN+ReLU pair).
    pub output: ValueId,
    /// That value.
    pub out: &'a Tensor,
    /// A training-mode batch norm's op on the fast kernels (its batch statistics).
    pub bn: Option<kernels::bn::BnRelu>,
    /// The other operand of a residual addition fused into a convolution: it receives the
    /// output's gradient as well.
    pub residual: Option<ValueId>,
    /// The batch norm + ReLU a convolution applied to its input `ins[0]` as it read it.
    pub input: Option<Arc<kernels::bn::BnReluInput>>,
}

/// What one layer computed.
struct LayerOut {
    /// Its output (a batch norm applied by its reader: its input).
    y: Tensor,
    /// A training-mode batch norm's op on the fast kernels (for a taped backward).
    bn: Option<kernels::bn::BnRelu>,
    /// A batch norm + ReLU left to the convolution that reads it: what that one applies.
    input: Option<Arc<kernels::bn::BnReluInput>>,
}

impl From<Tensor> for LayerOut {
    fn from(y: Tensor) -> Self {
        LayerOut {
            y,
            bn: None,
            input: None,
        }
    }
}

/// How one forward pass runs.
#[derive(Debug, Clone, Copy)]
struct Pass {
    mode: Mode,
    /// Parameters are read detached from their variables: the pass runs outside Candle's
    /// autograd (a [`Tape`] records it instead).
    detached: bool,
}

/// One parameter's storage.
#[derive(Debug)]
enum Slot {
    /// Trainable: differentiated and updated by the optimiser.
    Var(Var),
    /// Buffer (BN running statistic).
    Buffer(Tensor),
}

impl Slot {
    fn tensor(&self) -> &Tensor {
        match self {
            Slot::Var(v) => v.as_tensor(),
            Slot::Buffer(t) => t,
        }
    }
}

/// A graph bound to parameter tensors on a device.
#[derive(Debug)]
pub struct Model {
    graph: Arc<Graph>,
    device: Device,
    /// Storage dtype of parameters, buffers and returned values (the master copy).
    dtype: DType,
    /// Dtype the layers compute in: `dtype`, or bf16 for mixed precision (BN in `dtype`);
    /// f32 for bf16 on the CPU, where only the kernels' products round to bf16.
    compute: DType,
    /// The compute dtype asked for, which selects the kernels.
    kernel_compute: DType,
    slots: Vec<Slot>,
    last_uses: Vec<Option<usize>>,
    /// Per value: whether it has readers and all are convolutions of it alone
    /// ([`read_only_by_convolutions`], taken once: the graph does not change).
    conv_only_readers: Vec<bool>,
    /// Which implementation runs the layers.
    kernels: Kernels,
}

impl Model {
    /// Binds `graph` to `weights` (checked by name and shape) on `device`, computing in
    /// `dtype` (F32 for training; F64 serves gradient checks).
    pub fn new(graph: &Graph, weights: &Weights, device: &Device, dtype: DType) -> Result<Model> {
        Model::with_precision(graph, weights, device, dtype, dtype)
    }

    /// Like [`Model::new`], with the layers computing in `compute` while the parameters, the
    /// BN statistics and every returned value stay in `master` (mixed precision: `master`
    /// F32, `compute` BF16). Convolutions and linear layers cast their weights to `compute`
    /// each pass, so gradients reach the `master` variables through the cast; batch norm
    /// runs in `master`. Half-precision compute needs a CUDA device.
    pub fn with_precision(
        graph: &Graph,
        weights: &Weights,
        device: &Device,
        master: DType,
        compute: DType,
    ) -> Result<Model> {
        let dtype = master;
        if compute != master && !matches!(compute, DType::BF16 | DType::F16) {
            return Err(TrainError::Internal(format!(
                "mixed precision computes in bf16 or f16, not {compute:?}"
            )));
        }
        // bf16 on the CPU: the fast kernels' bf16 products (AVX-512 BF16), every tensor f32.
        let cpu_bf16 = compute == DType::BF16
            && master == DType::F32
            && device.is_cpu()
            && Kernels::select(device, compute, false) == Kernels::CpuFastBf16;
        // The crate's unit tests exercise mixed precision on the CPU with f16 compute
        // (Candle's CPU convolutions and matmuls take f16, not bf16).
        if matches!(compute, DType::BF16 | DType::F16)
            && !device.is_cuda()
            && !cpu_bf16
            && !cfg!(test)
        {
            return Err(TrainError::Invalid(format!(
                "{} compute (train.precision: bf16) needs a CUDA device or a CPU with \
                 AVX-512 BF16; use precision f32 on this CPU",
                compute.as_str()
            )));
        }
        weights.check_against(graph, "the weights")?;
        let mut slots = Vec::with_capacity(graph.params.len());
        for p in &graph.params {
            let host = weights
                .get(&p.name)
                .ok_or_else(|| TrainError::Internal(format!("missing tensor `{}`", p.name)))?;
            let t =
                Tensor::from_slice(&host.data, host.shape.as_slice(), device)?.to_dtype(dtype)?;
            slots.push(if p.trainable {
                Slot::Var(Var::from_tensor(&t)?)
            } else {
                Slot::Buffer(t)
            });
        }
        Ok(Model {
            graph: Arc::new(graph.clone()),
            device: device.clone(),
            dtype,
            compute: if cpu_bf16 { master } else { compute },
            kernel_compute: compute,
            slots,
            last_uses: graph.last_uses(),
            conv_only_readers: conv_only_readers(graph),
            kernels: Kernels::default_for(device, compute),
        })
    }

    /// Selects Candle's plain ops (`true`) or the fast CPU kernels where they apply (`false`,
    /// the default unless `WRNC_REFERENCE_OPS` is set). Results agree to f32 rounding.
    pub fn set_reference_ops(&mut self, reference: bool) {
        self.kernels = Kernels::select(&self.device, self.kernel_compute, reference);
    }

    /// Which implementation runs the layers.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Whether the fast CPU kernels are in use.
    pub fn uses_fast_kernels(&self) -> bool {
        self.kernels.is_cpu_fast()
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the parameters, buffers and returned values (the master dtype).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dtype the layers compute in (see [`Model::with_precision`]).
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// The trainable parameters with their ids, in graph order.
    pub fn trainable(&self) -> Vec<(ParamId, &Var)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Var(v) => Some((ParamId(i), v)),
                Slot::Buffer(_) => None,
            })
            .collect()
    }

    /// Every trainable parameter that `grad_of` gives a gradient for: its id, its current
    /// value and that gradient (what an optimiser step updates; parameters without one are
    /// skipped, as in PyTorch). The value is detached from its variable (same storage, so an
    /// in-place update still reaches the model): arithmetic on a variable records its inputs
    /// for Candle's autograd, and an optimiser state computed from it would keep them alive.
    pub(crate) fn trainable_with_grads(
        &self,
        grad_of: impl Fn(&Tensor) -> Option<Tensor>,
    ) -> Vec<(ParamId, Tensor, Tensor)> {
        self.trainable()
            .into_iter()
            .filter_map(|(id, var)| {
                grad_of(var.as_tensor()).map(|g| (id, var.as_tensor().detach(), g.detach()))
            })
            .collect()
    }

    /// The current value of a parameter or buffer.
    pub fn param_tensor(&self, id: ParamId) -> Option<&Tensor> {
        self.slots.get(id.0).map(Slot::tensor)
    }

    /// Replaces the value of a parameter or buffer (same shape), e.g. for an optimiser step.
    pub fn set_param(&mut self, id: ParamId, value: &Tensor) -> Result<()> {
        let slot = self.slots.get_mut(id.0).ok_or_else(|| no_param(id))?;
        let value = value.to_dtype(self.dtype)?;
        match slot {
            Slot::Var(v) => v.set(&value)?,
            // a buffer holds a value, never the graph that computed it
            Slot::Buffer(t) => *t = value.detach(),
        }
        Ok(())
    }

    /// Copies every parameter and buffer back to host f32 weights.
    pub fn to_weights(&self) -> Result<Weights> {
        let mut w = Weights::default();
        for (p, s) in self.graph.params.iter().zip(&self.slots) {
            w.tensors
                .insert(p.name.clone(), to_host(s.tensor(), &p.shape)?);
        }
        Ok(w)
    }

    /// Uploads an `[n, C, H, W]` batch of f32 images.
    pub fn input_tensor(&self, images: &[f32], n: usize) -> Result<Tensor> {
        let shape = self.graph.input_shape();
        let per: usize = shape.iter().product();
        if images.len() != n * per {
            return Err(TrainError::Internal(format!(
                "got {} input values for {n} images of shape {shape:?} ({} expected)",
                images.len(),
                n * per
            )));
        }
        let mut dims = vec![n];
        dims.extend_from_slice(shape);
        Ok(Tensor::from_slice(images, dims.as_slice(), &self.device)?.to_dtype(self.compute)?)
    }

    /// The logits ([`Graph::logits`]) of a batch.
    pub fn logits(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let target = self.graph.logits();
        self.forward_to(x, mode, target)
    }

    /// Runs the graph on `x` (`[N, C, H, W]`) until `target` is computed and returns it.
    /// In training mode the BN running statistics are updated. Intermediate values are
    /// dropped after their last use.
    pub fn forward_to(&mut self, x: &Tensor, mode: Mode, target: ValueId) -> Result<Tensor> {
        self.forward(x, mode, target, None)
    }

    /// [`Model::forward_to`]. With a `tape`, the pass runs outside Candle's autograd
    /// (parameters read detached) and records every node it runs into the tape (a fused
    /// BN+ReLU pair counts as one), in order, for the tape's backward pass.
    pub(crate) fn forward(
        &mut self,
        x: &Tensor,
        mode: Mode,
        target: ValueId,
        mut tape: Option<&mut Tape>,
    ) -> Result<Tensor> {
        // Evaluation builds no autograd graph: with tracked parameters Candle would keep
        // every activation of the pass alive until its output is dropped.
        let pass = Pass {
            mode,
            detached: tape.is_some() || mode == Mode::Eval,
        };
        let graph = Arc::clone(&self.graph);
        let want = graph.input_shape();
        if x.rank() != 4 || &x.dims()[1..] != want {
            return Err(TrainError::Internal(format!(
                "model `{}` takes input [N, {}], got {:?}",
                graph.name,
                want.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                x.dims()
            )));
        }
        if target == graph.input() {
            return Ok(x.to_dtype(self.dtype)?);
        }
        let mut values: Vec<Option<Tensor>> = vec![None; graph.values.len()];
        values[0] = Some(x.to_dtype(self.compute)?);
        // per value held as a batch norm's input: the batch norm + ReLU its reader applies
        let mut read_through: Vec<Option<Arc<kernels::bn::BnReluInput>>> =
            vec![None; graph.values.len()];
        let mut i = 0;
        while let Some(node) = graph.nodes.get(i) {
            let ins = node
                .inputs
                .iter()
                .map(|v| {
                    values[v.0].clone().ok_or_else(|| {
                        TrainError::Internal(format!(
                            "layer `{}`: input `{}` is not available",
                            node.name, graph.values[v.0].name
                        ))
                    })
                })
                .collect::<Result<Vec<Tensor>>>()?;
            // Mixed precision: batch norm (statistics included) runs in the master dtype.
            let master_op = self.compute != self.dtype && matches!(node.op, Op::BatchNorm { .. });
            // Fast kernels: a BN absorbs the ReLU that follows it (training and eval), and the
            // dropout after that ReLU.
            let fused = self.fusion(i, target, pass);
            let input = node.inputs.first().and_then(|v| read_through[v.0].clone());
            let residual = match fused.residual {
                Some((v, _)) => Some(values[v.0].clone().ok_or_else(|| {
                    TrainError::Internal(format!(
                        "layer `{}`: residual `{}` is not available",
                        node.name, graph.values[v.0].name
                    ))
                })?),
                None => None,
            };
            let LayerOut {
                y: out,
                bn,
                input: left,
            } = if master_op {
                let ins = ins
                    .iter()
                    .map(|t| t.to_dtype(self.dtype))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                self.run_op(i, &node.op, &ins, pass, fused, (None, None))
                    .and_then(|o| {
                        Ok(LayerOut {
                            y: o.y.to_dtype(self.compute)?,
                            ..o
                        })
                    })
            } else {
                let input = input.clone();
                self.run_op(i, &node.op, &ins, pass, fused, (residual.as_ref(), input))
            }
            .map_err(|e| e.in_layer(&node.name))?;
            // A fused ReLU's (dropout's, addition's) output stands in for the absorbed nodes'.
            let output = fused.output().unwrap_or(node.output);
            if let Some(tape) = tape.as_deref_mut() {
                tape.record(
                    &node.op,
                    NodeRun {
                        node: i,
                        ins: &ins,
                        output,
                        out: &out,
                        bn,
                        residual: fused.residual.map(|(v, _)| v),
                        input,
                    },
                );
            }
            if output == target {
                return Ok(out.to_dtype(self.dtype)?);
            }
            values[output.0] = Some(out);
            read_through[output.0] = left;
            // inputs read last by this node or by a node it absorbed
            let last = i + fused.absorbed();
            for v in graph.nodes[i..=last].iter().flat_map(|n| &n.inputs) {
                if self.last_uses[v.0].is_some_and(|u| (i..=last).contains(&u)) {
                    values[v.0] = None;
                    read_through[v.0] = None;
                }
            }
            i = last + 1;
        }
        Err(TrainError::Internal(format!(
            "value #{} is not produced by the graph",
            target.0
        )))
    }

    /// The output of the ReLU node that BatchNorm node `i` can absorb (fast kernels): the next
    /// node, a ReLU that is the only reader of the BN output, which is not `target` itself.
    pub(crate) fn fuses_relu(&self, i: usize, target: ValueId) -> Option<ValueId> {
        let bn = &self.graph.nodes[i];
        let next = self.graph.nodes.get(i + 1)?;
        let fusable = self.kernels.is_cpu_fast()
            && matches!(bn.op, Op::BatchNorm { .. })
            && next.op == Op::Relu
            && next.inputs == [bn.output]
            && self.last_uses[bn.output.0] == Some(i + 1)
            && bn.output != target
            && self.graph.shape(bn.output).len() == 3;
        fusable.then_some(next.output)
    }

    /// The addition that convolution node `i` can absorb on the fast CPU kernels in a pass
    /// outside Candle's autograd (`detached`): the next node, adding the convolution's
    /// output (read by nothing else, and not `target`) and a value of the same shape
    /// computed before it. Returns that value and the addition's output.
    fn fuses_residual(
        &self,
        i: usize,
        target: ValueId,
        detached: bool,
    ) -> Option<(ValueId, ValueId)> {
        let conv = &self.graph.nodes[i];
        let next = self.graph.nodes.get(i + 1)?;
        let fusable = detached
            && self.kernels.is_cpu_fast()
            && matches!(conv.op, Op::Conv { bias: None, .. })
            && next.op == Op::Add
            && self.last_uses[conv.output.0] == Some(i + 1)
            && conv.output != target;
        let other = match next.inputs.as_slice() {
            [a, b] if *a == conv.output => *b,
            [a, b] if *b == conv.output => *a,
            _ => return None,
        };
        let same = other != conv.output && self.graph.shape(other) == self.graph.shape(conv.output);
        (fusable && same).then_some((other, next.output))
    }

    /// Whether the batch norm + ReLU whose fused output `out` node `last` produces (the ReLU,
    /// or in evaluation an absorbed dropout, which is the identity there) is left to the
    /// convolutions that read it, to apply as they read their input: a taped training pass
    /// or an evaluation pass on the fast CPU kernels in f32, every reader of `out` (which is
    /// not `target`) a convolution of it alone. Its output is then never written: the
    /// convolutions' forward (and weight gradient) compute it from the batch norm's input —
    /// Winograd in its padded copy, the others per task into a buffer in cache — bit for bit
    /// the values the normalise pass would have written.
    fn reader_applies_bn(&self, out: ValueId, target: ValueId, pass: Pass) -> bool {
        pass.detached
            && self.kernels.is_cpu_fast()
            && self.compute == DType::F32
            && self.dtype == DType::F32
            && out != target
            && self.conv_only_readers[out.0]
    }

    /// What node `i` absorbs ([`Fused`]): the ReLU of [`Model::fuses_relu`], and then a
    /// dropout that is the only reader of that ReLU's output (which is not `target`), or else
    /// possibly the convolution reading it applies it ([`Model::reader_applies_bn`]); or the
    /// addition of [`Model::fuses_residual`].
    fn fusion(&self, i: usize, target: ValueId, pass: Pass) -> Fused {
        if let Some(residual) = self.fuses_residual(i, target, pass.detached) {
            return Fused {
                residual: Some(residual),
                ..Fused::default()
            };
        }
        let Some(relu) = self.fuses_relu(i, target) else {
            return Fused::default();
        };
        let dropout = self.graph.nodes.get(i + 2).and_then(|next| match next.op {
            Op::Dropout { p }
                if next.inputs == [relu]
                    && self.last_uses[relu.0] == Some(i + 2)
                    && relu != target =>
            {
                Some((i + 2, next.output, p))
            }
            _ => None,
        });
        Fused {
            relu: Some(relu),
            dropout,
            read_through: match dropout {
                None => self.reader_applies_bn(relu, target, pass),
                // evaluation: the dropout passes its input through
                Some((_, out, _)) => {
                    pass.mode == Mode::Eval && self.reader_applies_bn(out, target, pass)
                }
            },
            residual: None,
        }
    }

    /// A batch norm's `[gamma, beta, running_mean, running_var]`.
    fn bn_tensors(&self, params: [ParamId; 4], detached: bool) -> Result<[Tensor; 4]> {
        let [g, b, rm, rv] = params;
        Ok([
            self.p(g, detached)?,
            self.p(b, detached)?,
            self.p(rm, detached)?,
            self.p(rv, detached)?,
        ])
    }

    /// Training-mode batch norm (followed by a ReLU when `relu`, and by `dropout` after it),
    /// running statistics updated. The fused kernel serves 4-D inputs when the fast kernels
    /// are on.
    fn batch_norm_train(
        &mut self,
        x: &Tensor,
        params: [ParamId; 4],
        (eps, momentum): (f64, f64),
        (relu, dropout, read_through): (bool, Option<kernels::dropout::Dropout>, bool),
        detached: bool,
    ) -> Result<LayerOut> {
        let [_, _, running_mean, running_var] = params;
        let [g, b, rm, rv] = self.bn_tensors(params, detached)?;
        if self.kernels.is_cpu_fast() && x.rank() == 4 {
            let (out, input) = if read_through {
                let (out, input) = kernels::bn::batch_norm_train_for_reader(x, &g, &b, eps)?;
                (out, Some(Arc::new(input)))
            } else {
                let out = kernels::bn::batch_norm_train(x, &g, &b, eps, relu, dropout)?;
                (out, None)
            };
            let (n, _, h, w) = x.dims4()?;
            let count = (n * h * w) as f64;
            let c = out.mean.len();
            let mean = Tensor::from_vec(out.mean, c, &self.device)?;
            let unbiased =
                Tensor::from_vec(out.var, c, &self.device)?.affine(count / (count - 1.0), 0.0)?;
            let (new_rm, new_rv) =
                ops::updated_running_stats([&rm, &rv], [&mean, &unbiased], momentum)?;
            self.set_param(running_mean, &new_rm)?;
            self.set_param(running_var, &new_rv)?;
            return Ok(LayerOut {
                y: out.y,
                bn: Some(out.op),
                input,
            });
        }
        let out = ops::batch_norm_train(x, [&g, &b, &rm, &rv], eps, momentum)?;
        self.set_param(running_mean, &out.running_mean)?;
        self.set_param(running_var, &out.running_var)?;
        Ok(if relu { out.y.relu()? } else { out.y }.into())
    }

    /// A parameter or buffer: the variable itself (differentiable), or `detached` from it.
    fn p(&self, id: ParamId, detached: bool) -> Result<Tensor> {
        let t = self.param_tensor(id).ok_or_else(|| no_param(id))?;
        Ok(if detached { t.detach() } else { t.clone() })
    }

    /// A parameter's current value, outside Candle's autograd (what a taped backward reads).
    pub(crate) fn param_detached(&self, id: ParamId) -> Result<Tensor> {
        self.p(id, true)
    }

    /// A parameter cast to the compute dtype (a no-op without mixed precision); the cast is
    /// differentiable, so the gradient reaches the master variable in its own dtype.
    fn pc(&self, id: ParamId, detached: bool) -> Result<Tensor> {
        Ok(self.p(id, detached)?.to_dtype(self.compute)?)
    }

    fn run_op(
        &mut self,
        index: usize,
        op: &Op,
        ins: &[Tensor],
        pass: Pass,
        fused: Fused,
        (residual, input): (Option<&Tensor>, Option<Arc<kernels::bn::BnReluInput>>),
    ) -> Result<LayerOut> {
        let Pass { mode, detached } = pass;
        let x = ins
            .first()
            .ok_or_else(|| TrainError::Internal("layer without input".into()))?;
        Ok(match op {
            Op::Conv {
                stride,
                padding,
                weight,
                bias,
                ..
            } => {
                let from_input =
                    self.graph.nodes[index].inputs.first() == Some(&self.graph.input());
                let params = ConvParams {
                    stride: *stride,
                    padding: *padding,
                };
                let w = self.pc(*weight, detached)?;
                let y = match (residual, input) {
                    (None, None) => conv::conv2d(x, &w, params, self.kernels, !from_input)?,
                    (r, input) => conv::conv2d_detached(x, &w, params, r, input, self.kernels)?,
                };
                match bias {
                    Some(b) => {
                        let b = self.pc(*b, detached)?;
                        let c = b.dim(0)?;
                        y.broadcast_add(&b.reshape((1, c, 1, 1))?)?
                    }
                    None => y,
                }
                .into()
            }
            Op::BatchNorm {
                eps,
                momentum,
                weight,
                bias,
                running_mean,
                running_var,
            } => match mode {
                Mode::Train { .. } => self.batch_norm_train(
                    x,
                    [*weight, *bias, *running_mean, *running_var],
                    (*eps, *momentum),
                    (
                        fused.relu.is_some(),
                        fused
                            .dropout
                            .and_then(|(node, _, p)| dropout_kernel(mode, node, p)),
                        fused.read_through,
                    ),
                    detached,
                )?,
                Mode::Eval => {
                    let params = [*weight, *bias, *running_mean, *running_var];
                    let tensors = self.bn_tensors(params, detached)?;
                    let stats = tensors.each_ref();
                    if fused.read_through {
                        let input = kernels::bn::batch_norm_eval_for_reader(x, stats, *eps)?;
                        return Ok(LayerOut {
                            y: x.clone(),
                            bn: None,
                            input: Some(Arc::new(input)),
                        });
                    }
                    if self.kernels.is_cpu_fast() && x.rank() == 4 {
                        kernels::bn::batch_norm_eval(x, stats, *eps, fused.relu.is_some())?
                    } else {
                        ops::batch_norm_eval(x, stats, *eps)?
                    }
                    .into()
                }
            },
            Op::Relu => x.relu()?.into(),
            Op::Dropout { p } if self.kernels.is_cpu_fast() => {
                match dropout_kernel(mode, index, *p) {
                    Some(d) if detached => d.apply(&x.contiguous()?)?,
                    Some(d) => d.apply_differentiable(&x.contiguous()?)?,
                    None => x.clone(),
                }
                .into()
            }
            Op::Dropout { p } => match dropout_mask(mode, index, *p, x)? {
                Some(mask) => (x * mask)?,
                None => x.clone(),
            }
            .into(),
            Op::Add => {
                let y = ins
                    .get(1)
                    .ok_or_else(|| TrainError::Internal("add needs two inputs".into()))?;
                // nothing to differentiate through (taped or eval): the rayon kernel
                if detached && self.kernels.is_cpu_fast() && x.dims() == y.dims() {
                    kernels::add::add(x, y)?.into()
                } else {
                    (x + y)?.into()
                }
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => ops::avg_pool(x, *kernel, *stride, *padding)?.into(),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => ops::max_pool(x, *kernel, *stride, *padding)?.into(),
            Op::GlobalAvgPool => global_avg_pool(x)?.into(),
            Op::Flatten => x.flatten_from(1)?.into(),
            Op::Linear { weight, bias, .. } => {
                let y = x.matmul(&self.pc(*weight, detached)?.t()?)?;
                match bias {
                    Some(b) => y.broadcast_add(&self.pc(*b, detached)?)?,
                    None => y,
                }
                .into()
            }
            Op::Softmax => candle_nn::ops::softmax(x, candle_core::D::Minus1)?.into(),
        })
    }
}

/// Per value of `graph`: [`read_only_by_convolutions`] for the node outputs, false for the
/// graph's input.
fn conv_only_readers(graph: &Graph) -> Vec<bool> {
    let mut only = vec![false; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        only[node.output.0] = read_only_by_convolutions(graph, node.output, i);
    }
    only
}

/// Whether value `v`, produced by node `producer`, has readers and all of them are
/// convolutions of `v` alone (which can apply a batch norm + ReLU as they read it).
pub(crate) fn read_only_by_convolutions(graph: &Graph, v: ValueId, producer: usize) -> bool {
    let mut readers = graph.nodes[producer + 1..]
        .iter()
        .filter(|n| n.inputs.contains(&v))
        .peekable();
    readers.peek().is_some() && readers.all(|n| matches!(n.op, Op::Conv { .. }) && n.inputs == [v])
}

/// The mean over the spatial axes; half-precision inputs are summed in f32 (a bf16
/// accumulator over 64 positions of a WRN's last stage would lose most of its bits).
fn global_avg_pool(x: &Tensor) -> candle_core::Result<Tensor> {
    match x.dtype() {
        DType::BF16 | DType::F16 => x
            .to_dtype(DType::F32)?
            .mean_keepdim((2, 3))?
            .to_dtype(x.dtype()),
        _ => x.mean_keepdim((2, 3)),
    }
}

/// The error for a parameter id outside the graph (a bug: ids come from the graph).
fn no_param(id: ParamId) -> TrainError {
    TrainError::Internal(format!("no parameter #{}", id.0))
}

/// A device tensor as host f32 values of `shape` (for weights files and checkpoints).
pub(crate) fn to_host(t: &Tensor, shape: &[usize]) -> Result<HostTensor> {
    Ok(HostTensor {
        shape: shape.to_vec(),
        data: t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrnc_testkit::graphs::conv;
    use wrnc_testkit::Net;

    /// conv3x3(3->8) -> bn -> relu -> conv3x3 stride 2 (8->16) -> bn -> relu -> gap ->
    /// flatten -> linear(10).
    fn small_net() -> Graph {
        let mut b = Net::new("small", [3, 12, 12]);
        let mut v = b.input();
        for (i, (out, stride)) in [(8usize, 1usize), (16, 2)].into_iter().enumerate() {
            v = b.then(&format!("conv{i}"), conv(out, 3, stride), v);
            v = b.bn_relu(&format!("bn{i}"), &format!("relu{i}"), v);
        }
        b.classifier(v, 10, true);
        b.finish()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let s = b.abs().unwrap().max_all().unwrap();
        d.to_scalar::<f32>().unwrap() / s.to_scalar::<f32>().unwrap().max(1e-6)
    }

    /// Mixed precision (f32 master weights, BN and loss around f16 compute) on the CPU:
    /// the same code path as bf16 on CUDA, against plain f32.
    #[test]
    fn mixed_precision_keeps_master_weights_bn_and_loss_in_f32() {
        let g = small_net();
        let w = crate::init_weights(&g, 7);
        let n = 8;
        let images = wrnc_testkit::values(n * 3 * 12 * 12, 11);
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
        let run = |compute: DType| {
            let mut m = Model::with_precision(&g, &w, &Device::Cpu, DType::F32, compute).unwrap();
            m.set_reference_ops(true);
            let x = m.input_tensor(&images, n).unwrap();
            let out = m
                .loss_and_grads(&x, &labels, Mode::Train { seed: 0, step: 0 })
                .unwrap();
            (m, out)
        };
        let (full, f) = run(DType::F32);
        let (mixed, h) = run(DType::F16);
        assert_eq!(mixed.compute_dtype(), DType::F16);
        assert!(
            (f.loss - h.loss).abs() < 1e-2 * f.loss.abs().max(1.0),
            "loss {} vs {}",
            f.loss,
            h.loss
        );
        for (id, var) in full.trainable() {
            let name = &g.params[id.0].name;
            let a = f.grads.get(var.as_tensor()).expect("f32 gradient");
            let (_, mvar) = mixed
                .trainable()
                .into_iter()
                .find(|(i, _)| *i == id)
                .unwrap();
            assert_eq!(mvar.dtype(), DType::F32, "{name}: master weight is f32");
            let b = h.grads.get(mvar.as_tensor()).expect("mixed gradient");
            assert_eq!(
                b.dtype(),
                DType::F32,
                "{name}: gradient reaches the f32 weight"
            );
            let e = max_rel(&b, &a);
            assert!(e < 3e-2, "{name}: relative error {e}");
        }
        let rm = |m: &Model| {
            let (id, _) = m.graph().param_by_name("bn1.running_var").unwrap();
            m.param_tensor(id).unwrap().clone()
        };
        assert_eq!(rm(&mixed).dtype(), DType::F32);
        assert!(max_rel(&rm(&mixed), &rm(&full)) < 1e-2);
        // The logits come back in the master dtype.
        let mut m = mixed;
        let x = m.input_tensor(&images, n).unwrap();
        assert_eq!(m.logits(&x, Mode::Eval).unwrap().dtype(), DType::F32);
    }

    /// Which batch norms a pass leaves to the convolutions reading them: the taped training
    /// pass and evaluation on the fast kernels, for a batch norm + ReLU read by convolutions
    /// only; never one also read by an addition or the final one (read by pooling), never on
    /// Candle's autograd or the reference ops, never when the ReLU's output is asked for.
    #[test]
    fn batch_norms_are_left_to_their_reader_only_where_it_applies_them() {
        let g = crate::tape::tests::read_through_net();
        let w = crate::init::init_weights(&g, 1);
        let mut m = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        m.set_reference_ops(false);
        let train = Pass {
            mode: Mode::Train { seed: 1, step: 0 },
            detached: true,
        };
        let logits = g.logits();
        let node = |name: &str| g.nodes.iter().position(|n| n.name == name).unwrap();
        let left = |m: &Model, name: &str, pass: Pass, target: ValueId| {
            m.fusion(node(name), target, pass).read_through
        };
        assert!(left(&m, "bn1", train, logits));
        assert!(left(&m, "bn2", train, logits));
        assert!(left(&m, "bn3", train, logits), "two convolutions");
        assert!(!left(&m, "bn4", train, logits), "read by an addition too");
        assert!(!left(&m, "bn5", train, logits), "read by pooling");
        let relu2 = g.nodes[node("relu2")].output;
        assert!(!left(&m, "bn2", train, relu2), "its output is asked for");
        let eval = Pass {
            mode: Mode::Eval,
            detached: true,
        };
        assert!(left(&m, "bn1", eval, logits));
        assert!(left(&m, "bn3", eval, logits));
        assert!(!left(&m, "bn5", eval, logits));
        // a batch norm + ReLU + dropout: written in training, left to its reader in evaluation
        let g = wrnc_testkit::graphs::wrn([3, 8, 8], 10, 1, 5, 0.3);
        let mut m = Model::new(
            &g,
            &crate::init::init_weights(&g, 1),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        m.set_reference_ops(false);
        let dropped = g
            .nodes
            .iter()
            .position(|n| matches!(n.op, Op::Dropout { .. }))
            .unwrap()
            - 2;
        let logits = g.logits();
        assert!(!m.fusion(dropped, logits, train).read_through);
        assert!(m.fusion(dropped, logits, eval).read_through);
        let autograd = Pass {
            detached: false,
            ..train
        };
        assert!(!left(&m, "bn1", autograd, logits));
        m.set_reference_ops(true);
        assert!(!left(&m, "bn1", train, logits));
    }

    #[test]
    fn evaluation_builds_no_autograd_graph() {
        let g = small_net();
        let w = crate::init_weights(&g, 3);
        let mut m = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        m.set_reference_ops(true);
        let x = m
            .input_tensor(&wrnc_testkit::values(2 * 3 * 12 * 12, 1), 2)
            .unwrap();
        assert!(!m.logits(&x, Mode::Eval).unwrap().track_op());
        assert!(m
            .logits(&x, Mode::Train { seed: 0, step: 0 })
            .unwrap()
            .track_op());
    }
}
