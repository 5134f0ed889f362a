//! The closed set of operations the IR knows. Every back end matches [`Op`] exhaustively.

use crate::param::ParamId;
use serde::Serialize;

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
    /// The short op name used in specs, summaries and DOT output.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Relu => "relu",
            Op::Dropout { .. } => "dropout",
            Op::Add => "add",
            Op::AvgPool { .. } => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
            Op::Softmax => "softmax",
        }
    }

    /// The parameters this op reads, in a fixed order.
    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Op::Conv { weight, bias, .. } | Op::Linear { weight, bias, .. } => {
                let mut v = vec![*weight];
                v.extend(bias.iter().copied());
                v
            }
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => vec![*weight, *bias, *running_mean, *running_var],
            _ => Vec::new(),
        }
    }

    /// Number of value inputs the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::Add => 2,
            _ => 1,
        }
    }
}
