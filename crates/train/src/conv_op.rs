//! The cuDNN convolution as Candle custom ops, with their backward wiring: compiled in every
//! build. On CUDA tensors (a `cudnn` build) each op runs its cuDNN call
//! (`cuda::conv`); on CPU tensors it runs the same computation with Candle's CPU convolution,
//! so that the wiring of the gradients (which op computes which gradient from which operands
//! and shapes) is tested against `Tensor::conv2d`'s in the ordinary CPU test run.
//!
//! [`conv2d`] is a differentiable `x.conv2d(w, padding, stride, 1, 1)`: its backward returns
//! `dx` from the backward-data op (unless the input needs no gradient) and `dw` from the
//! backward-filter op (first-order gradients only).

use crate::conv::ConvParams;
use crate::conv_plan::{Geometry, Pass};
use candle_core::{bail, CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};

/// The forward op: `y = conv2d(x, w)` (cross-correlation, no groups or dilation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CudnnConv2d {
    pub(crate) padding: usize,
    pub(crate) stride: usize,
    /// Whether the backward pass computes `dx` (off for the network's first convolution).
    pub(crate) input_grad: bool,
}

/// Which gradient a [`CudnnConv2dBackward`] computes.
#[derive(Debug, Clone, Copy)]
enum Grad {
    /// `dx = conv2d_backward_data(dy, w)` for an input of shape `dims`.
    Data,
    /// `dw = conv2d_backward_filter(x, dy)` for a kernel of shape `dims`.
    Filter,
}

/// One backward pass of [`CudnnConv2d`].
#[derive(Debug, Clone, Copy)]
struct CudnnConv2dBackward {
    grad: Grad,
    padding: usize,
    stride: usize,
    dims: [usize; 4],
}

fn dims4(l: &Layout, what: &str) -> Result<[usize; 4]> {
    match *l.dims() {
        [a, b, c, d] => Ok([a, b, c, d]),
        ref other => bail!("cuDNN conv2d: {what} must be 4-D, got {other:?}"),
    }
}

fn tensor_dims4(t: &Tensor) -> Result<[usize; 4]> {
    let (a, b, c, d) = t.dims4()?;
    Ok([a, b, c, d])
}

impl CudnnConv2d {
    fn geometry(&self, l1: &Layout, l2: &Layout) -> Result<Geometry> {
        Geometry::new(
            dims4(l1, "input")?,
            dims4(l2, "kernel")?,
            self.padding,
            self.stride,
        )
    }
}

impl CudnnConv2dBackward {
    /// The pass and geometry of this backward op on operands of layouts `l1`, `l2`, with the
    /// output gradient's shape checked.
    fn plan(&self, l1: &Layout, l2: &Layout) -> Result<(Pass, Geometry)> {
        let (pass, x, w, dy) = match self.grad {
            Grad::Data => (Pass::BackwardData, self.dims, dims4(l2, "kernel")?, l1),
            Grad::Filter => (Pass::BackwardFilter, dims4(l1, "input")?, self.dims, l2),
        };
        let g = Geometry::new(x, w, self.padding, self.stride)?;
        if dims4(dy, "output gradient")? != g.y {
            bail!(
                "cuDNN conv2d {}: output gradient {:?} does not match {:?}",
                pass.name(),
                dy.dims(),
                g.y
            );
        }
        Ok((pass, g))
    }
}

/// A CPU storage viewed as a tensor (contiguous layouts only).
fn cpu_tensor(s: &CpuStorage, l: &Layout) -> Result<Tensor> {
    if !l.is_contiguous() {
        bail!("cuDNN conv2d: operands must be contiguous");
    }
    let range = l.start_offset()..l.start_offset() + l.shape().elem_count();
    let dev = &Device::Cpu;
    Ok(match s {
        CpuStorage::F32(v) => Tensor::from_slice(&v[range], l.shape(), dev)?,
        CpuStorage::F64(v) => Tensor::from_slice(&v[range], l.shape(), dev)?,
        CpuStorage::BF16(v) => Tensor::from_slice(&v[range], l.shape(), dev)?,
        CpuStorage::F16(v) => Tensor::from_slice(&v[range], l.shape(), dev)?,
        _ => bail!("cuDNN conv2d: operands must be f32, bf16, f16 or f64"),
    })
}

/// A CPU tensor's values as a storage and its shape.
fn cpu_storage(t: &Tensor) -> Result<(CpuStorage, Shape)> {
    let shape = t.shape().clone();
    let flat = t.flatten_all()?;
    let s = match t.dtype() {
        DType::F32 => CpuStorage::F32(flat.to_vec1()?),
        DType::F64 => CpuStorage::F64(flat.to_vec1()?),
        DType::BF16 => CpuStorage::BF16(flat.to_vec1()?),
        DType::F16 => CpuStorage::F16(flat.to_vec1()?),
        other => bail!("cuDNN conv2d: unsupported dtype {other:?}"),
    };
    Ok((s, shape))
}

/// `pass` of geometry `g` with Candle's CPU convolutions (what cuDNN computes on CUDA);
/// `a` and `b` are the operands in the op's order: (x, w), (dy, w) or (x, dy).
fn cpu_pass(pass: Pass, g: &Geometry, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (p, s) = (g.padding, g.stride);
    match pass {
        Pass::Forward => a.conv2d(b, p, s, 1, 1),
        Pass::BackwardData => {
            // conv_transpose2d's output is (oh - 1) * s - 2p + k + output_padding, with one
            // output padding for both axes: take the larger and cut the other axis back.
            let pad_for = |axis: usize| g.x[axis] + 2 * p - ((g.y[axis] - 1) * s + g.w[axis]);
            let out_pad = pad_for(2).max(pad_for(3));
            let dx = a.conv_transpose2d(b, p, out_pad, s, 1)?;
            dx.narrow(2, 0, g.x[2])?.narrow(3, 0, g.x[3])?.contiguous()
        }
        Pass::BackwardFilter => {
            // dw[k, c] = sum over n of x[n, c] correlated with dy[n, k] dilated by the stride.
            let dw = a
                .transpose(0, 1)?
                .conv2d(&b.transpose(0, 1)?, p, 1, s, 1)?
                .transpose(0, 1)?;
            dw.narrow(2, 0, g.w[2])?.narrow(3, 0, g.w[3])?.contiguous()
        }
    }
}

impl CustomOp2 for CudnnConv2d {
    fn name(&self) -> &'static str {
        "cudnn-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1, l2)?;
        let y = cpu_pass(
            Pass::Forward,
            &g,
            &cpu_tensor(s1, l1)?,
            &cpu_tensor(s2, l2)?,
        )?;
        cpu_storage(&y)
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = self.geometry(l1, l2)?;
        crate::cuda::conv::run(Pass::Forward, &g, s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let backward = |grad, dims| CudnnConv2dBackward {
            grad,
            padding: self.padding,
            stride: self.stride,
            dims,
        };
        let dx = if self.input_grad {
            Some(dy.apply_op2_no_bwd(w, &backward(Grad::Data, tensor_dims4(x)?))?)
        } else {
            None
        };
        let dw = x.apply_op2_no_bwd(&dy, &backward(Grad::Filter, tensor_dims4(w)?))?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp2 for CudnnConv2dBackward {
    fn name(&self) -> &'static str {
        match self.grad {
            Grad::Data => "cudnn-conv2d-backward-data",
            Grad::Filter => "cudnn-conv2d-backward-filter",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (pass, g) = self.plan(l1, l2)?;
        let out = cpu_pass(pass, &g, &cpu_tensor(s1, l1)?, &cpu_tensor(s2, l2)?)?;
        cpu_storage(&out)
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (pass, g) = self.plan(l1, l2)?;
        crate::cuda::conv::run(pass, &g, s1, l1, s2, l2)
    }
}

/// Differentiable 2-D convolution through the cuDNN ops (on the CPU: their Candle
/// stand-ins): the same result as `x.conv2d(w, params.padding, params.stride, 1, 1)`. With
/// `input_grad = false` the backward pass computes no gradient for `x` (the network input).
pub fn conv2d(x: &Tensor, w: &Tensor, params: ConvParams, input_grad: bool) -> Result<Tensor> {
    let ConvParams { stride, padding } = params;
    if x.dtype() != w.dtype() {
        bail!(
            "cuDNN conv2d: input is {:?} but the kernel is {:?}",
            x.dtype(),
            w.dtype()
        );
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    x.apply_op2(
        &w,
        CudnnConv2d {
            padding,
            stride,
            input_grad,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn seeded(dims: &[usize], seed: u64) -> Tensor {
        // Deterministic values in [-1, 1) without an RNG dependency.
        let n: usize = dims.iter().product();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f64> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Value, dx and dw of the custom ops against `Tensor::conv2d`'s, for a weighted sum of the
    /// output (so that every output element gets its own gradient).
    #[test]
    fn backward_wiring_matches_candles_convolution_gradients() {
        for (i, (x_dims, w_dims, padding, stride)) in [
            ([2, 3, 8, 8], [4, 3, 3, 3], 1, 1),
            ([2, 3, 9, 9], [5, 3, 3, 3], 1, 2),
            ([1, 4, 9, 9], [6, 4, 1, 1], 0, 2),
            ([3, 2, 6, 7], [2, 2, 3, 3], 0, 1),
            ([2, 2, 8, 8], [3, 2, 3, 3], 1, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = i as u64 * 3;
            let x = Var::from_tensor(&seeded(&x_dims, seed + 1)).unwrap();
            let w = Var::from_tensor(&seeded(&w_dims, seed + 2)).unwrap();
            let params = ConvParams { stride, padding };
            let ours = conv2d(&x, &w, params, true).unwrap();
            let theirs = x.conv2d(&w, padding, stride, 1, 1).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12, "value, case {i}");
            let weights = seeded(ours.dims(), seed + 3);
            let g_ours = (&ours * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g_theirs = (&theirs * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (what, v) in [("dx", x.as_tensor()), ("dw", w.as_tensor())] {
                let a = g_ours.get(v).unwrap();
                let b = g_theirs.get(v).unwrap();
                assert!(max_diff(a, b) < 1e-10, "{what}, case {i}");
            }
        }
    }

    #[test]
    fn the_first_convolution_gets_no_input_gradient() {
        let x = Var::from_tensor(&seeded(&[1, 3, 6, 6], 1)).unwrap();
        let w = Var::from_tensor(&seeded(&[2, 3, 3, 3], 2)).unwrap();
        let p = ConvParams {
            stride: 1,
            padding: 1,
        };
        let grads = conv2d(&x, &w, p, false)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(x.as_tensor()).is_none());
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn f32_and_f16_operands_run_on_the_cpu_too() {
        let x = seeded(&[1, 2, 5, 5], 4);
        let w = seeded(&[3, 2, 3, 3], 5);
        let p = ConvParams {
            stride: 2,
            padding: 1,
        };
        for dtype in [DType::F32, DType::F16] {
            let (xd, wd) = (x.to_dtype(dtype).unwrap(), w.to_dtype(dtype).unwrap());
            let ours = conv2d(&xd, &wd, p, true).unwrap();
            let theirs = xd.conv2d(&wd, 1, 2, 1, 1).unwrap();
            assert_eq!(ours.dtype(), dtype);
            let diff = max_diff(
                &ours.to_dtype(DType::F64).unwrap(),
                &theirs.to_dtype(DType::F64).unwrap(),
            );
            assert!(diff < 1e-6, "{dtype:?}: {diff}");
        }
        let e = conv2d(&x, &w.to_dtype(DType::F32).unwrap(), p, true).unwrap_err();
        assert!(e.to_string().contains("kernel is F32"), "{e}");
    }
}
