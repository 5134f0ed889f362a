//! The SGD update of `torch.optim.SGD` applied in place, one fused pass per tensor, for a
//! parameter whose momentum buffer already exists (the first step, which creates the buffer,
//! goes through the reference path in [`crate::optim`]).
//!
//! ```text
//! g   = grad + wd * p
//! buf = momentum * buf + (1 - dampening) * g
//! p   = p - lr * (nesterov ? g + momentum * buf : buf)      (momentum > 0)
//! p   = p - lr * g                                          (momentum = 0)
//! ```

use super::f32_slice;
use candle_core::{bail, CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};

/// Hyper-parameters of one update.
#[derive(Debug, Clone, Copy)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor.
    pub momentum: f32,
    /// Dampening.
    pub dampening: f32,
    /// Weight decay for this parameter (0 when it does not decay).
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// The contiguous f32 data of the destination `what`, mutably.
fn f32_dst<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("sgd: strided {what}")
    };
    match s {
        CpuStorage::F32(v) => Ok(&mut v[a..b]),
        _ => bail!("sgd: expected f32 storage"),
    }
}

/// Checks that three slices have one length.
fn same_len(a: usize, b: usize, c: usize) -> Result<()> {
    if a != b || a != c {
        bail!("sgd: parameter, gradient and buffer sizes differ ({a}, {b}, {c})")
    }
    Ok(())
}

/// The two in-place steps of a momentum update, each writing one tensor from the gradient
/// and one other tensor.
#[derive(Debug, Clone, Copy)]
enum MomentumStep {
    /// `buf` in place from `(grad, p)`.
    Buffer,
    /// `p` in place from `(grad, buf)` (`buf` already updated).
    Param,
}

/// One [`MomentumStep`] with its hyper-parameters.
struct MomentumUpdate(MomentumStep, SgdStep);

impl InplaceOp3 for MomentumUpdate {
    fn name(&self) -> &'static str {
        match self.0 {
            MomentumStep::Buffer => "wrnc-sgd-momentum",
            MomentumStep::Param => "wrnc-sgd-param",
        }
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        os: &CpuStorage,
        ol: &Layout,
    ) -> Result<()> {
        let s = self.1;
        let (g, other) = (f32_slice(gs, gl)?, f32_slice(os, ol)?);
        match self.0 {
            MomentumStep::Buffer => {
                let (buf, p) = (f32_dst(dst, dst_l, "momentum buffer")?, other);
                same_len(buf.len(), g.len(), p.len())?;
                for ((b, &g), &p) in buf.iter_mut().zip(g).zip(p) {
                    *b = s.momentum * *b + (1.0 - s.dampening) * (g + s.weight_decay * p);
                }
            }
            MomentumStep::Param => {
                let (p, buf) = (f32_dst(dst, dst_l, "parameter")?, other);
                same_len(p.len(), g.len(), buf.len())?;
                for ((p, &g), &b) in p.iter_mut().zip(g).zip(buf) {
                    let d = if s.nesterov {
                        g + s.weight_decay * *p + s.momentum * b
                    } else {
                        b
                    };
                    *p -= s.lr * d;
                }
            }
        }
        Ok(())
    }
}

/// `p` in place from `grad` alone (no momentum).
struct PlainUpdate(SgdStep);

impl InplaceOp2 for PlainUpdate {
    fn name(&self) -> &'static str {
        "wrnc-sgd-plain"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let s = self.0;
        let g = f32_slice(gs, gl)?;
        let p = f32_dst(dst, dst_l, "parameter")?;
        same_len(p.len(), g.len(), g.len())?;
        for (p, &g) in p.iter_mut().zip(g) {
            *p -= s.lr * (g + s.weight_decay * *p);
        }
        Ok(())
    }
}

/// Updates `param` (and `buf`, when momentum is on) in place from `grad`. `buf` must exist
/// when `momentum > 0`; all three are contiguous f32 CPU tensors of one shape.
pub fn sgd_step(param: &Tensor, grad: &Tensor, buf: Option<&Tensor>, s: SgdStep) -> Result<()> {
    let grad = grad.contiguous()?;
    match buf {
        Some(buf) if s.momentum != 0.0 => {
            buf.inplace_op3(&grad, param, &MomentumUpdate(MomentumStep::Buffer, s))?;
            param.inplace_op3(&grad, buf, &MomentumUpdate(MomentumStep::Param, s))
        }
        None if s.momentum == 0.0 => param.inplace_op2(&grad, &PlainUpdate(s)),
        _ => bail!("sgd: momentum {} with buffer {}", s.momentum, buf.is_some()),
    }
}
