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

/// The f32 data of a storage, mutably.
fn f32_mut(s: &mut CpuStorage) -> Result<&mut [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v.as_mut_slice()),
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

/// `buf` in place from `(grad, p)`.
struct MomentumUpdate(SgdStep);

impl InplaceOp3 for MomentumUpdate {
    fn name(&self) -> &'static str {
        "wrnc-sgd-momentum"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<()> {
        let s = self.0;
        let (g, p) = (f32_slice(gs, gl)?, f32_slice(ps, pl)?);
        let Some((a, b)) = dst_l.contiguous_offsets() else {
            bail!("sgd: strided momentum buffer")
        };
        let buf = &mut f32_mut(dst)?[a..b];
        same_len(buf.len(), g.len(), p.len())?;
        for ((b, &g), &p) in buf.iter_mut().zip(g).zip(p) {
            *b = s.momentum * *b + (1.0 - s.dampening) * (g + s.weight_decay * p);
        }
        Ok(())
    }
}

/// `p` in place from `(grad, buf)` (`buf` already updated).
struct ParamUpdate(SgdStep);

impl InplaceOp3 for ParamUpdate {
    fn name(&self) -> &'static str {
        "wrnc-sgd-param"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<()> {
        let s = self.0;
        let (g, buf) = (f32_slice(gs, gl)?, f32_slice(bs, bl)?);
        let Some((a, b)) = dst_l.contiguous_offsets() else {
            bail!("sgd: strided parameter")
        };
        let p = &mut f32_mut(dst)?[a..b];
        same_len(p.len(), g.len(), buf.len())?;
        for ((p, &g), &b) in p.iter_mut().zip(g).zip(buf) {
            let d = if s.nesterov {
                g + s.weight_decay * *p + s.momentum * b
            } else {
                b
            };
            *p -= s.lr * d;
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
        let Some((a, b)) = dst_l.contiguous_offsets() else {
            bail!("sgd: strided parameter")
        };
        let p = &mut f32_mut(dst)?[a..b];
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
            buf.inplace_op3(&grad, param, &MomentumUpdate(s))?;
            param.inplace_op3(&grad, buf, &ParamUpdate(s))
        }
        None if s.momentum == 0.0 => param.inplace_op2(&grad, &PlainUpdate(s)),
        _ => bail!("sgd: momentum {} with buffer {}", s.momentum, buf.is_some()),
    }
}
