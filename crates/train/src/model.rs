//! The IR executor: one Candle [`Var`] per trainable parameter, plain tensors for the BN
//! running statistics, and a forward pass in training or inference mode for every [`Op`].

use crate::error::{Result, TrainError};
use crate::ops;
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
    dtype: DType,
    slots: Vec<Slot>,
    last_uses: Vec<Option<usize>>,
}

impl Model {
    /// Binds `graph` to `weights` (checked by name and shape) on `device`, computing in
    /// `dtype` (F32 for training; F64 serves gradient checks).
    pub fn new(graph: &Graph, weights: &Weights, device: &Device, dtype: DType) -> Result<Model> {
        weights.check_against(graph, "the weights")?;
        let mut slots = Vec::with_capacity(graph.params.len());
        for p in &graph.params {
            let host = weights
                .get(&p.name)
                .ok_or_else(|| TrainError::Invalid(format!("missing tensor `{}`", p.name)))?;
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
            slots,
            last_uses: graph.last_uses(),
        })
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
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

    /// The current value of a parameter or buffer.
    pub fn param_tensor(&self, id: ParamId) -> Option<&Tensor> {
        self.slots.get(id.0).map(Slot::tensor)
    }

    /// Replaces the value of a parameter or buffer (same shape), e.g. for an optimiser step.
    pub fn set_param(&mut self, id: ParamId, value: &Tensor) -> Result<()> {
        let slot = self
            .slots
            .get_mut(id.0)
            .ok_or_else(|| TrainError::Invalid(format!("no parameter #{}", id.0)))?;
        let value = value.to_dtype(self.dtype)?;
        match slot {
            Slot::Var(v) => v.set(&value)?,
            Slot::Buffer(t) => *t = value,
        }
        Ok(())
    }

    /// Copies every parameter and buffer back to host f32 weights.
    pub fn to_weights(&self) -> Result<Weights> {
        let mut w = Weights::default();
        for (p, s) in self.graph.params.iter().zip(&self.slots) {
            let data = s
                .tensor()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            w.tensors.insert(
                p.name.clone(),
                HostTensor {
                    shape: p.shape.clone(),
                    data,
                },
            );
        }
        Ok(w)
    }

    /// Uploads an `[n, C, H, W]` batch of f32 images.
    pub fn input_tensor(&self, images: &[f32], n: usize) -> Result<Tensor> {
        let shape = self.graph.input_shape();
        let per: usize = shape.iter().product();
        if images.len() != n * per {
            return Err(TrainError::Invalid(format!(
                "got {} input values for {n} images of shape {shape:?} ({} expected)",
                images.len(),
                n * per
            )));
        }
        let mut dims = vec![n];
        dims.extend_from_slice(shape);
        Ok(Tensor::from_slice(images, dims.as_slice(), &self.device)?.to_dtype(self.dtype)?)
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
        let graph = Arc::clone(&self.graph);
        let want = graph.input_shape();
        if x.rank() != 4 || &x.dims()[1..] != want {
            return Err(TrainError::Invalid(format!(
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
            return Ok(x.clone());
        }
        let mut values: Vec<Option<Tensor>> = vec![None; graph.values.len()];
        values[0] = Some(x.clone());
        for (i, node) in graph.nodes.iter().enumerate() {
            let ins = node
                .inputs
                .iter()
                .map(|v| {
                    values[v.0].clone().ok_or_else(|| {
                        TrainError::Invalid(format!(
                            "layer `{}`: input `{}` is not available",
                            node.name, graph.values[v.0].name
                        ))
                    })
                })
                .collect::<Result<Vec<Tensor>>>()?;
            let out = self.run_op(i, &node.op, &ins, mode).map_err(|e| match e {
                TrainError::Candle(c) => TrainError::Invalid(format!("layer `{}`: {c}", node.name)),
                other => other,
            })?;
            if node.output == target {
                return Ok(out);
            }
            values[node.output.0] = Some(out);
            for v in &node.inputs {
                if self.last_uses[v.0] == Some(i) {
                    values[v.0] = None;
                }
            }
        }
        Err(TrainError::Invalid(format!(
            "value #{} is not produced by the graph",
            target.0
        )))
    }

    fn p(&self, id: ParamId) -> Result<Tensor> {
        self.param_tensor(id)
            .cloned()
            .ok_or_else(|| TrainError::Invalid(format!("no parameter #{}", id.0)))
    }

    fn run_op(&mut self, index: usize, op: &Op, ins: &[Tensor], mode: Mode) -> Result<Tensor> {
        let x = ins
            .first()
            .ok_or_else(|| TrainError::Invalid("layer without input".into()))?;
        Ok(match op {
            Op::Conv {
                stride,
                padding,
                weight,
                bias,
                ..
            } => {
                let y = x.conv2d(&self.p(*weight)?, *padding, *stride, 1, 1)?;
                match bias {
                    Some(b) => {
                        let b = self.p(*b)?;
                        let c = b.dim(0)?;
                        y.broadcast_add(&b.reshape((1, c, 1, 1))?)?
                    }
                    None => y,
                }
            }
            Op::BatchNorm {
                eps,
                momentum,
                weight,
                bias,
                running_mean,
                running_var,
            } => {
                let (g, b) = (self.p(*weight)?, self.p(*bias)?);
                let (rm, rv) = (self.p(*running_mean)?, self.p(*running_var)?);
                match mode {
                    Mode::Train { .. } => {
                        let out = ops::batch_norm_train(x, &g, &b, &rm, &rv, *eps, *momentum)?;
                        self.set_param(*running_mean, &out.running_mean)?;
                        self.set_param(*running_var, &out.running_var)?;
                        out.y
                    }
                    Mode::Eval => ops::batch_norm_eval(x, &g, &b, &rm, &rv, *eps)?,
                }
            }
            Op::Relu => x.relu()?,
            Op::Dropout { p } => match mode {
                Mode::Train { seed, step } if *p > 0.0 => {
                    let mut rng = ops::dropout_rng(seed, step, index);
                    let mask = ops::dropout_mask(&mut rng, x.dims(), *p, x.dtype(), x.device())?;
                    (x * mask)?
                }
                _ => x.clone(),
            },
            Op::Add => {
                let y = ins
                    .get(1)
                    .ok_or_else(|| TrainError::Invalid("add needs two inputs".into()))?;
                (x + y)?
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => ops::avg_pool(x, *kernel, *stride, *padding)?,
            Op::GlobalAvgPool => x.mean_keepdim((2, 3))?,
            Op::Flatten => x.flatten_from(1)?,
            Op::Linear { weight, bias, .. } => {
                let y = x.matmul(&self.p(*weight)?.t()?)?;
                match bias {
                    Some(b) => y.broadcast_add(&self.p(*b)?)?,
                    None => y,
                }
            }
            Op::Softmax => candle_nn::ops::softmax(x, candle_core::D::Minus1)?,
        })
    }
}
