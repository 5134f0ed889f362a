//! The convolution op: one entry point for every 2-D convolution of the executor, which
//! picks the implementation from the model's [`Kernels`] (wrnc's CPU kernels, cuDNN, or
//! Candle's reference op), with its parameters named in a [`ConvParams`].

use crate::backend::Kernels;
use crate::error::{Result, TrainError};
use crate::kernels::bn::{BnReluInput, GradSumsFor};
use crate::kernels::conv::ConvGrads;
use candle_core::Tensor;
use std::sync::Arc;

/// The parameters of a 2-D convolution (square kernel, dilation 1, one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Step between output positions, both axes.
    pub stride: usize,
    /// Zero padding on each side, both axes.
    pub padding: usize,
}

/// Convolves `x` `[N, C, H, W]` with `w` `[O, C, k, k]` (no bias), differentiable, with the
/// implementation `kernels` selects. `need_input_grad = false` (the input is the network
/// input) lets the fast CPU kernel and cuDNN skip the input gradient.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    params: ConvParams,
    kernels: Kernels,
    need_input_grad: bool,
) -> Result<Tensor> {
    match kernels {
        Kernels::CpuFast | Kernels::CpuFastBf16 => Ok(crate::kernels::conv::conv2d(
            x,
            w,
            params,
            need_input_grad,
            winograd_math(kernels),
        )?),
        Kernels::Cudnn => cudnn_conv2d(x, w, params, need_input_grad),
        Kernels::Reference => Ok(reference_conv2d(x, w, params)?),
    }
}

/// `conv2d(x, w)` outside Candle's autograd (nothing recorded), plus `residual` when given;
/// on the fast CPU kernels the addition happens in the pass that writes the output. With
/// `input` (the fast CPU kernels only), the convolution reads that batch norm + ReLU of `x`,
/// applied as the kernel reads its input.
pub fn conv2d_detached(
    x: &Tensor,
    w: &Tensor,
    params: ConvParams,
    residual: Option<&Tensor>,
    input: Option<Arc<BnReluInput>>,
    kernels: Kernels,
) -> Result<Tensor> {
    if kernels.is_cpu_fast() {
        let math = winograd_math(kernels);
        return Ok(crate::kernels::conv::conv2d_detached(
            x, w, params, residual, input, math,
        )?);
    }
    if input.is_some() {
        return Err(TrainError::Internal(
            "a batch norm applied by its reader needs the fast CPU kernels".into(),
        ));
    }
    let y = conv2d(x, w, params, kernels, true)?.detach();
    Ok(match residual {
        Some(r) => (y + r)?,
        None => y,
    })
}

/// The gradients `(dx, dw)` of [`conv2d`] outside Candle's autograd (the taped backward
/// pass, which runs only on the fast CPU kernels), in the precision `kernels` computes in.
/// `prior`, the gradient the input already has from its other readers, comes back summed
/// into `dx`; with `bn`, also the per-plane backward sums of the batch norm that produced
/// `x` (see [`crate::kernels::conv::conv2d_backward`]); with `input`, the convolution read
/// that batch norm + ReLU of `x` ([`conv2d_detached`]).
pub fn conv2d_backward(
    x: (&Tensor, Option<Arc<BnReluInput>>),
    w: &Tensor,
    grad: &Tensor,
    params: ConvParams,
    (need_input_grad, prior): (bool, Option<Tensor>),
    bn: Option<GradSumsFor>,
    kernels: Kernels,
) -> Result<ConvGrads> {
    let math = winograd_math(kernels);
    let grads =
        crate::kernels::conv::conv2d_backward(x, w, grad, params, need_input_grad, prior, bn, math);
    Ok(grads?)
}

/// The precision of the convolution products the fast CPU kernels `kernels` use.
fn winograd_math(kernels: Kernels) -> crate::kernels::winograd::Math {
    match kernels {
        Kernels::CpuFastBf16 => crate::kernels::winograd::Math::Bf16,
        _ => crate::kernels::winograd::Math::F32,
    }
}

/// Candle's own convolution (the reference).
fn reference_conv2d(x: &Tensor, w: &Tensor, params: ConvParams) -> candle_core::Result<Tensor> {
    x.conv2d(w, params.padding, params.stride, 1, 1)
}

/// cuDNN forward, backward-data and backward-filter ([`crate::cuda::conv`]).
#[cfg(feature = "cudnn")]
fn cudnn_conv2d(x: &Tensor, w: &Tensor, params: ConvParams, input_grad: bool) -> Result<Tensor> {
    if x.device().is_cuda() {
        Ok(crate::conv_op::conv2d(x, w, params, input_grad)?)
    } else {
        Ok(reference_conv2d(x, w, params)?)
    }
}

/// Without the `cudnn` feature [`Kernels::select`] never picks cuDNN.
#[cfg(not(feature = "cudnn"))]
fn cudnn_conv2d(
    _x: &Tensor,
    _w: &Tensor,
    _params: ConvParams,
    _input_grad: bool,
) -> Result<Tensor> {
    Err(crate::error::TrainError::Internal(
        "cuDNN convolution asked for in a build without the `cudnn` feature".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, rand};

    #[test]
    fn fast_and_reference_agree_and_name_their_parameters() {
        let x = rand(&[2, 3, 7, 7], 1);
        let w = rand(&[4, 3, 3, 3], 2);
        let p = ConvParams {
            stride: 2,
            padding: 1,
        };
        let fast = conv2d(&x, &w, p, Kernels::CpuFast, true).unwrap();
        let reference = conv2d(&x, &w, p, Kernels::Reference, true).unwrap();
        assert_eq!(fast.dims(), &[2, 4, 4, 4]);
        assert_close(&fast, &reference, 1e-5, "stride 2 padding 1");
    }
}
