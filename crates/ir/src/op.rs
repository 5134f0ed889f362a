//! The closed set of operations the IR knows, and everything the IR knows about each one.
//!
//! An op is defined here once: its variant of [`Op`] (hyper-parameters and parameter ids), its
//! [`OpKind`] (the name used in specs, summaries and DOT, its arity and its hyper-parameter
//! keys), and the methods of [`Op`] that the builder, the stats, the DOT renderer and the
//! passes call: [`Op::infer_shape`], [`Op::param_table`] / [`Op::params`], [`Op::flops`]
//! and [`Op::describe`]. Every one of them, and every back end, matches [`Op`] exhaustively, so
//! a new variant fails to compile until each place handles it.

use crate::error::IrError;
use crate::graph::Value;
use crate::param::{ParamId, ParamRole};
use serde::{Deserialize, Serialize};

/// An op without its hyper-parameters: its name in specs (`op: conv`), summaries and DOT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// See [`Op::Conv`].
    Conv,
    /// See [`Op::BatchNorm`].
    BatchNorm,
    /// See [`Op::Relu`].
    Relu,
    /// See [`Op::Dropout`].
    Dropout,
    /// See [`Op::Add`].
    Add,
    /// See [`Op::AvgPool`].
    AvgPool,
    /// See [`Op::MaxPool`].
    MaxPool,
    /// See [`Op::GlobalAvgPool`].
    GlobalAvgPool,
    /// See [`Op::Flatten`].
    Flatten,
    /// See [`Op::Linear`].
    Linear,
    /// See [`Op::Softmax`].
    Softmax,
}

impl OpKind {
    /// The short op name used in specs, summaries and DOT output.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Conv => "conv",
            OpKind::BatchNorm => "batch_norm",
            OpKind::Relu => "relu",
            OpKind::Dropout => "dropout",
            OpKind::Add => "add",
            OpKind::AvgPool => "avg_pool",
            OpKind::MaxPool => "max_pool",
            OpKind::GlobalAvgPool => "global_avg_pool",
            OpKind::Flatten => "flatten",
            OpKind::Linear => "linear",
            OpKind::Softmax => "softmax",
        }
    }

    /// Number of value inputs the op takes.
    pub fn arity(self) -> usize {
        match self {
            OpKind::Add => 2,
            OpKind::Conv
            | OpKind::BatchNorm
            | OpKind::Relu
            | OpKind::Dropout
            | OpKind::AvgPool
            | OpKind::MaxPool
            | OpKind::GlobalAvgPool
            | OpKind::Flatten
            | OpKind::Linear
            | OpKind::Softmax => 1,
        }
    }

    /// The hyper-parameters a layer of this op takes: the arguments of its constructor
    /// ([`Op::conv`], [`Op::batch_norm`], ...; none for the unit variants), which are also the
    /// keys of a spec layer besides `op`, `name` and `from`.
    pub fn hyper_parameters(self) -> &'static [&'static str] {
        match self {
            OpKind::Conv => &["out", "kernel", "stride", "padding", "bias"],
            OpKind::BatchNorm => &["eps", "momentum"],
            OpKind::Dropout => &["p"],
            OpKind::AvgPool | OpKind::MaxPool => &["kernel", "stride", "padding"],
            OpKind::Linear => &["out", "bias"],
            OpKind::Relu
            | OpKind::Add
            | OpKind::GlobalAvgPool
            | OpKind::Flatten
            | OpKind::Softmax => &[],
        }
    }
}

/// A parameter an op owns, before it is created: what it is for (which fixes its name suffix,
/// init rule and optimiser flags, see [`ParamRole`]) and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDecl {
    /// What the tensor is.
    pub role: ParamRole,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// One operation of the graph. Parameters are referenced by [`ParamId`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// 2-D convolution, NCHW, square kernel, no dilation, no groups.
    Conv {
        /// Output channels.
        out_channels: usize,
        /// Kernel size (square).
        kernel: usize,
        /// Stride (both axes).
        stride: usize,
        /// Zero padding (all four sides).
        padding: usize,
        /// Weight `[out, in, k, k]`.
        weight: ParamId,
        /// Optional bias `[out]`.
        bias: Option<ParamId>,
    },
    /// Batch normalisation over the channel axis (PyTorch semantics).
    BatchNorm {
        /// Epsilon added to the variance.
        eps: f64,
        /// PyTorch momentum: `running = (1 - momentum) * running + momentum * batch`.
        momentum: f64,
        /// Scale (gamma) `[C]`.
        weight: ParamId,
        /// Shift (beta) `[C]`.
        bias: ParamId,
        /// Running mean `[C]` (buffer, not trainable).
        running_mean: ParamId,
        /// Running variance `[C]` (buffer, not trainable, unbiased estimate).
        running_var: ParamId,
    },
    /// Rectified linear unit.
    Relu,
    /// Inverted dropout with drop probability `p` (identity at inference).
    Dropout {
        /// Probability of zeroing an element, in [0, 1).
        p: f64,
    },
    /// Element-wise sum of two values of equal shape.
    Add,
    /// Average pooling, square window, zero padding counted out (count_include_pad = false).
    AvgPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: usize,
    },
    /// Max pooling, square window, PyTorch semantics: padding is -inf (never the maximum),
    /// the output size rounds down (`ceil_mode = false`), and the gradient of a window goes to
    /// its first maximum in row-major window order.
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding (at most half the kernel, as in PyTorch).
        padding: usize,
    },
    /// Mean over all spatial positions: `[C, H, W] -> [C, 1, 1]`.
    GlobalAvgPool,
    /// `[C, H, W] -> [C*H*W]`.
    Flatten,
    /// Fully connected layer `y = x W^T + b`.
    Linear {
        /// Output features.
        out_features: usize,
        /// Weight `[out, in]`.
        weight: ParamId,
        /// Optional bias `[out]`.
        bias: Option<ParamId>,
    },
    /// Softmax over the feature axis; only allowed as the last node.
    Softmax,
}

impl Op {
    /// A convolution layer's op, its parameters not yet created (their ids are
    /// [`ParamId::UNSET`]; `bias` asks for a bias).
    pub const fn conv(
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Op {
        Op::Conv {
            out_channels,
            kernel,
            stride,
            padding,
            weight: ParamId::UNSET,
            bias: unset_if(bias),
        }
    }

    /// A batch-norm layer's op, its parameters not yet created (their ids are
    /// [`ParamId::UNSET`]).
    pub const fn batch_norm(eps: f64, momentum: f64) -> Op {
        Op::BatchNorm {
            eps,
            momentum,
            weight: ParamId::UNSET,
            bias: ParamId::UNSET,
            running_mean: ParamId::UNSET,
            running_var: ParamId::UNSET,
        }
    }

    /// A dropout layer's op.
    pub const fn dropout(p: f64) -> Op {
        Op::Dropout { p }
    }

    /// An average-pooling layer's op.
    pub const fn avg_pool(kernel: usize, stride: usize, padding: usize) -> Op {
        Op::AvgPool {
            kernel,
            stride,
            padding,
        }
    }

    /// A max-pooling layer's op.
    pub const fn max_pool(kernel: usize, stride: usize, padding: usize) -> Op {
        Op::MaxPool {
            kernel,
            stride,
            padding,
        }
    }

    /// A fully connected layer's op, its parameters not yet created (their ids are
    /// [`ParamId::UNSET`]; `bias` asks for a bias).
    pub const fn linear(out_features: usize, bias: bool) -> Op {
        Op::Linear {
            out_features,
            weight: ParamId::UNSET,
            bias: unset_if(bias),
        }
    }

    /// The op's kind (its name, arity and hyper-parameter keys).
    pub fn op_kind(&self) -> OpKind {
        match self {
            Op::Conv { .. } => OpKind::Conv,
            Op::BatchNorm { .. } => OpKind::BatchNorm,
            Op::Relu => OpKind::Relu,
            Op::Dropout { .. } => OpKind::Dropout,
            Op::Add => OpKind::Add,
            Op::AvgPool { .. } => OpKind::AvgPool,
            Op::MaxPool { .. } => OpKind::MaxPool,
            Op::GlobalAvgPool => OpKind::GlobalAvgPool,
            Op::Flatten => OpKind::Flatten,
            Op::Linear { .. } => OpKind::Linear,
            Op::Softmax => OpKind::Softmax,
        }
    }

    /// The short op name used in specs, summaries and DOT output.
    pub fn kind(&self) -> &'static str {
        self.op_kind().name()
    }

    /// Number of value inputs the op takes.
    pub fn arity(&self) -> usize {
        self.op_kind().arity()
    }

    /// The op's parameter table, its one list of parameters in a fixed order: for each, where
    /// its id is kept and what it is (role, and shape when the op's first input has shape
    /// `input`). The builder creates the parameters from it and sets their ids.
    pub fn param_table(&mut self, input: &[usize]) -> Vec<(&mut ParamId, ParamDecl)> {
        let first = input.first().copied().unwrap_or(0);
        match self {
            Op::Conv {
                out_channels: out,
                kernel: k,
                weight,
                bias,
                ..
            } => weight_and_bias(weight, bias, vec![*out, first, *k, *k]),
            Op::Linear {
                out_features: out,
                weight,
                bias,
            } => weight_and_bias(weight, bias, vec![*out, first]),
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => [
                (weight, ParamRole::BnWeight),
                (bias, ParamRole::BnBias),
                (running_mean, ParamRole::RunningMean),
                (running_var, ParamRole::RunningVar),
            ]
            .into_iter()
            .map(|(id, role)| {
                let shape = vec![first];
                (id, ParamDecl { role, shape })
            })
            .collect(),
            Op::Relu
            | Op::Dropout { .. }
            | Op::Add
            | Op::AvgPool { .. }
            | Op::MaxPool { .. }
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Softmax => Vec::new(),
        }
    }

    /// The op's parameter ids, in the order of [`Op::param_table`] (passes renumber
    /// parameters through it).
    pub fn params_mut(&mut self) -> Vec<&mut ParamId> {
        self.param_table(&[])
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// The parameters this op reads, in the order of [`Op::param_table`].
    pub fn params(&self) -> Vec<ParamId> {
        self.clone()
            .params_mut()
            .into_iter()
            .map(|id| *id)
            .collect()
    }

    /// Refuses `count` inputs unless it is the op's [`arity`](Op::arity).
    pub fn check_arity(&self, layer: &str, count: usize) -> Result<(), IrError> {
        let want = self.arity();
        if count != want {
            return Err(shape_err(
                layer,
                format!("takes {want} input(s), got {count}"),
            ));
        }
        Ok(())
    }

    /// The output shape (without batch) of layer `layer` applying this op to `inputs`, or why
    /// the inputs do not fit the op.
    pub fn infer_shape(&self, layer: &str, inputs: &[&Value]) -> Result<Vec<usize>, IrError> {
        self.check_arity(layer, inputs.len())?;
        let x = inputs[0].shape.clone();
        Ok(match self {
            Op::Conv {
                out_channels,
                kernel,
                stride,
                padding,
                ..
            } => {
                let (_, h, w) = spatial(layer, &x, "conv")?;
                if *out_channels == 0 {
                    return Err(shape_err(layer, "out must be at least 1".into()));
                }
                let oh = out_size(layer, h, *kernel, *stride, *padding, "height")?;
                let ow = out_size(layer, w, *kernel, *stride, *padding, "width")?;
                vec![*out_channels, oh, ow]
            }
            Op::BatchNorm { .. } | Op::Relu | Op::Dropout { .. } => x,
            Op::Add => {
                let y = &inputs[1].shape;
                if x != *y {
                    return Err(shape_err(
                        layer,
                        format!(
                            "add needs two inputs of the same shape, got {x:?} from `{}` and \
                             {y:?} from `{}`",
                            inputs[0].name, inputs[1].name
                        ),
                    ));
                }
                x
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            }
            | Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let (c, h, w) = spatial(layer, &x, self.kind())?;
                if 2 * padding > *kernel {
                    return Err(shape_err(
                        layer,
                        "padding may be at most half the kernel".into(),
                    ));
                }
                let oh = out_size(layer, h, *kernel, *stride, *padding, "height")?;
                let ow = out_size(layer, w, *kernel, *stride, *padding, "width")?;
                vec![c, oh, ow]
            }
            Op::GlobalAvgPool => {
                let (c, _, _) = spatial(layer, &x, "global_avg_pool")?;
                vec![c, 1, 1]
            }
            Op::Flatten => vec![x.iter().product()],
            Op::Linear { out_features, .. } => {
                if x.len() != 1 {
                    return Err(shape_err(
                        layer,
                        format!("linear needs a flat [F] input, got {x:?}; add a flatten layer"),
                    ));
                }
                if *out_features == 0 {
                    return Err(shape_err(layer, "out must be at least 1".into()));
                }
                vec![*out_features]
            }
            Op::Softmax => {
                if x.len() != 1 {
                    return Err(shape_err(
                        layer,
                        format!("softmax needs a flat [F] input, got {x:?}"),
                    ));
                }
                x
            }
        })
    }

    /// Forward FLOPs per image of this op with (first) input shape `input` and output shape
    /// `output`: 2 per multiply-add of conv and linear layers, 0 for every other op.
    pub fn flops(&self, input: &[usize], output: &[usize]) -> u64 {
        let first = input.first().copied().unwrap_or(0) as u64;
        match self {
            Op::Conv { kernel, .. } => {
                let out_elems: u64 = output.iter().map(|&d| d as u64).product();
                2 * out_elems * first * (*kernel as u64) * (*kernel as u64)
            }
            Op::Linear { out_features, .. } => 2 * *out_features as u64 * first,
            Op::BatchNorm { .. }
            | Op::Relu
            | Op::Dropout { .. }
            | Op::Add
            | Op::AvgPool { .. }
            | Op::MaxPool { .. }
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Softmax => 0,
        }
    }

    /// A one-line description with the hyper-parameters, e.g. `conv 3x3/1 p1 -> 16`
    /// (the DOT label).
    pub fn describe(&self) -> String {
        match self {
            Op::Conv {
                out_channels,
                kernel,
                stride,
                padding,
                ..
            } => format!("conv {kernel}x{kernel}/{stride} p{padding} -> {out_channels}"),
            Op::Dropout { p } => format!("dropout p={p}"),
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => format!("avg_pool {kernel}x{kernel}/{stride} p{padding}"),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => format!("max_pool {kernel}x{kernel}/{stride} p{padding}"),
            Op::Linear { out_features, .. } => format!("linear -> {out_features}"),
            Op::BatchNorm { .. }
            | Op::Relu
            | Op::Add
            | Op::GlobalAvgPool
            | Op::Flatten
            | Op::Softmax => self.kind().to_string(),
        }
    }
}

/// An optional parameter not yet created: `Some(ParamId::UNSET)` when `wanted`.
const fn unset_if(wanted: bool) -> Option<ParamId> {
    if wanted {
        Some(ParamId::UNSET)
    } else {
        None
    }
}

/// The parameter table of a conv or linear layer: a weight of `shape` (`[out, ...]`) and an
/// optional bias `[out]`.
fn weight_and_bias<'a>(
    weight: &'a mut ParamId,
    bias: &'a mut Option<ParamId>,
    shape: Vec<usize>,
) -> Vec<(&'a mut ParamId, ParamDecl)> {
    let out = shape[0];
    let mut table = vec![(
        weight,
        ParamDecl {
            role: ParamRole::Weight,
            shape,
        },
    )];
    if let Some(b) = bias {
        let role = ParamRole::Bias;
        table.push((
            b,
            ParamDecl {
                role,
                shape: vec![out],
            },
        ));
    }
    table
}

fn shape_err(layer: &str, message: String) -> IrError {
    IrError::Shape {
        layer: layer.to_string(),
        message,
    }
}

fn spatial(layer: &str, s: &[usize], what: &str) -> Result<(usize, usize, usize), IrError> {
    match s {
        [c, h, w] => Ok((*c, *h, *w)),
        _ => Err(shape_err(
            layer,
            format!("{what} needs a [C, H, W] input, got {s:?}"),
        )),
    }
}

/// Output size along one axis of a `k`-window with stride `s` and padding `p` over `n`.
fn out_size(
    layer: &str,
    n: usize,
    k: usize,
    s: usize,
    p: usize,
    axis: &str,
) -> Result<usize, IrError> {
    if k == 0 || s == 0 {
        return Err(shape_err(
            layer,
            "kernel and stride must be at least 1".into(),
        ));
    }
    if n + 2 * p < k {
        return Err(shape_err(
            layer,
            format!(
                "input {axis} {n} with padding {p} is smaller than the kernel {k}; \
                 the input is too small for this layer"
            ),
        ));
    }
    Ok((n + 2 * p - k) / s + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ParamId = ParamId(0);

    /// One op of every kind (conv and linear with a bias).
    fn every_op() -> Vec<Op> {
        vec![
            Op::Conv {
                out_channels: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
                weight: P,
                bias: Some(P),
            },
            Op::BatchNorm {
                eps: 1e-5,
                momentum: 0.1,
                weight: P,
                bias: P,
                running_mean: P,
                running_var: P,
            },
            Op::Relu,
            Op::Dropout { p: 0.5 },
            Op::Add,
            Op::AvgPool {
                kernel: 2,
                stride: 2,
                padding: 0,
            },
            Op::GlobalAvgPool,
            Op::Flatten,
            Op::Linear {
                out_features: 3,
                weight: P,
                bias: None,
            },
            Op::Softmax,
            Op::MaxPool {
                kernel: 3,
                stride: 2,
                padding: 1,
            },
        ]
    }

    #[test]
    fn declarations_follow_the_parameter_order() {
        for mut op in every_op() {
            let kind = op.op_kind();
            let decls: Vec<ParamDecl> = op
                .param_table(&[2, 8, 8])
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            assert_eq!(decls.len(), op.params().len(), "{}", op.kind());
            let roles = decls.iter().map(|d| d.role.suffix());
            match kind {
                OpKind::Conv => assert!(roles.eq(["weight", "bias"])),
                OpKind::Linear => assert!(roles.eq(["weight"])),
                OpKind::BatchNorm => {
                    assert!(roles.eq(["weight", "bias", "running_mean", "running_var"]))
                }
                _ => assert!(decls.is_empty()),
            }
        }
    }

    #[test]
    fn kinds_serialise_as_their_names() {
        for op in every_op() {
            let k = op.op_kind();
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
            assert_eq!(op.kind(), k.name());
            assert_eq!(op.arity(), if k == OpKind::Add { 2 } else { 1 });
        }
    }

    #[test]
    fn infers_shapes_and_flops() {
        let v = |shape: &[usize]| Value {
            name: "x".into(),
            shape: shape.to_vec(),
        };
        let img = v(&[2, 8, 8]);
        let ops = every_op();
        assert_eq!(ops[0].infer_shape("c", &[&img]).unwrap(), [4, 8, 8]);
        assert_eq!(ops[0].flops(&img.shape, &[4, 8, 8]), 2 * 4 * 64 * 2 * 9);
        assert_eq!(ops[5].infer_shape("p", &[&img]).unwrap(), [2, 4, 4]);
        assert_eq!(ops[7].infer_shape("f", &[&img]).unwrap(), [128]);
        assert_eq!(ops[8].flops(&[128], &[3]), 2 * 3 * 128);
        let err = ops[8].infer_shape("l", &[&img]).unwrap_err();
        assert!(err.to_string().contains("flatten"), "{err}");
        let err = ops[4].infer_shape("a", &[&img]).unwrap_err();
        assert_eq!(err.to_string(), "layer `a`: takes 2 input(s), got 1");
        assert_eq!(ops[0].describe(), "conv 3x3/1 p1 -> 4");
    }

    #[test]
    fn max_pool_rounds_down_and_refuses_wide_padding() {
        let v = |shape: &[usize]| Value {
            name: "x".into(),
            shape: shape.to_vec(),
        };
        // PyTorch's floor mode: (112 + 2 - 3) / 2 + 1 = 56 (the ResNet stem), (7 + 2 - 3) / 2 + 1 = 4
        let pool = Op::max_pool(3, 2, 1);
        assert_eq!(
            pool.infer_shape("p", &[&v(&[64, 112, 112])]).unwrap(),
            [64, 56, 56]
        );
        assert_eq!(pool.infer_shape("p", &[&v(&[2, 7, 8])]).unwrap(), [2, 4, 4]);
        assert_eq!(pool.describe(), "max_pool 3x3/2 p1");
        assert_eq!(pool.flops(&[64, 112, 112], &[64, 56, 56]), 0);
        let wide = Op::max_pool(3, 1, 2).infer_shape("w", &[&v(&[1, 8, 8])]);
        assert!(wide.unwrap_err().to_string().contains("at most half"));
        let flat = pool.infer_shape("f", &[&v(&[16])]).unwrap_err();
        assert!(
            flat.to_string()
                .contains("max_pool needs a [C, H, W] input"),
            "{flat}"
        );
    }
}
