//! 2-D convolution (NCHW, square kernel, no dilation or groups) by im2col/col2im + gemm.
//!
//! Per image: `y = W · col(x)` with `W` the `[O, C·k·k]` weight and `col(x)` the
//! `[C·k·k, OH·OW]` patch matrix; the input gradient is `col2im(Wᵀ · dy)` and the weight
//! gradient `Σ dy · col(x)ᵀ`. A 1x1 stride-1 unpadded convolution skips the patch matrix.
//! Images are spread over the rayon pool; each worker keeps its patch buffer across calls.
//! Output maps under 64 pixels put several images' patch columns side by side in one
//! product ([`group_size`]); stride-2 patch rows of narrow maps are copied in vector
//! registers ([`super::stride2`]).

use super::add::add_assign_serial;
use super::bn::{BnReluInput, GradSumsFor};
use super::f32_slice;
use super::gemm::Mat;
use super::gemm_bf16::{self, Lhs, PackedA};
use super::stride2::Plan;
use super::winograd::{self, Math};
use super::{init_from, init_zeros, per_plane, with_f32, written_vec, PlaneFn};
use crate::conv::ConvParams;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub pad: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeom {
    /// The geometry of `x` `[N, C, H, W]` convolved with `w` `[O, C, k, k]`.
    pub fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, c, h, wd], &[o, wc, k, k2]) = (x, w) else {
            bail!("conv2d: expected 4-D input and weight, got {x:?} and {w:?}")
        };
        if wc != c || k != k2 || k == 0 || stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
            bail!("conv2d: input {x:?} does not fit weight {w:?} (stride {stride}, pad {pad})")
        }
        Ok(ConvGeom {
            n,
            c,
            h,
            w: wd,
            o,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (wd + 2 * pad - k) / stride + 1,
        })
    }

    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    fn chw(&self) -> usize {
        self.c * self.h * self.w
    }

    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// The Winograd geometry when this is a 3x3 stride-1 pad-1 convolution that
    /// [`winograd`] computes faster (and Winograd is not switched off).
    fn winograd(&self) -> Option<winograd::Geom> {
        let g = winograd::Geom {
            n: self.n,
            c: self.c,
            o: self.o,
            h: self.h,
            w: self.w,
        };
        (self.k == 3
            && self.stride == 1
            && self.pad == 1
            && g.worthwhile()
            && wrnc_ir::knobs::winograd())
        .then_some(g)
    }

    /// For kernel offset `kx` (or `ky`): the first and one-past-last output position whose
    /// input position `o * stride + kx - pad` lies inside `[0, len)`.
    pub(super) fn valid(&self, kx: usize, len: usize, out: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kx).div_ceil(self.stride).min(out);
        let hi = if len + self.pad > kx {
            (len + self.pad - kx).div_ceil(self.stride).min(out)
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

thread_local! {
    /// The patch buffer of this worker thread, kept across calls.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's patch buffer grown to `len` elements.
fn with_cols<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLS.with(|c| {
        let mut buf = c.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Writes the `[C·k·k, OH·OW]` patch matrix of one image `x` (`[C, H, W]`) into `col`, its
/// rows `ld` elements apart (`ld >= OH·OW`; the gaps are left alone); `plan` is
/// [`Plan::new`]'s for `g`, made once per call.
fn im2col(x: &[f32], g: &ConvGeom, plan: Option<&Plan>, col: &mut [f32], ld: usize) {
    if let Some(plan) = plan {
        return im2col_rows(x, g, col, ld, plan);
    }
    let ohw = g.ohw();
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.k {
            let (y0, y1) = g.valid(ky, g.h, g.oh);
            for kx in 0..g.k {
                let (x0, x1) = g.valid(kx, g.w, g.ow);
                let row = &mut col[((c * g.k + ky) * g.k + kx) * ld..][..ohw];
                row[..y0 * g.ow].fill(0.0);
                row[y1 * g.ow..].fill(0.0);
                for oy in y0..y1 {
                    let iy = oy * g.stride + ky - g.pad;
                    let out = &mut row[oy * g.ow..(oy + 1) * g.ow];
                    out[..x0].fill(0.0);
                    out[x1..].fill(0.0);
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let ix0 = x0 * g.stride + kx - g.pad;
                    match g.stride {
                        1 => out[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]),
                        // a constant stride lets the compiler vectorise the strided reads
                        2 => strided_copy::<2>(&mut out[x0..x1], &src[ix0..]),
                        s => {
                            for (i, o) in out[x0..x1].iter_mut().enumerate() {
                                *o = src[ix0 + i * s];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] a whole input row at a time: the kernel columns' patch rows of one output row
/// come from one load of the input row ([`super::stride2`]).
fn im2col_rows(x: &[f32], g: &ConvGeom, col: &mut [f32], ld: usize, plan: &Plan) {
    let ohw = g.ohw();
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.k {
            let (y0, y1) = g.valid(ky, g.h, g.oh);
            let first = (c * g.k + ky) * g.k * ld;
            for kx in 0..g.k {
                let row = &mut col[first + kx * ld..][..ohw];
                row[..y0 * g.ow].fill(0.0);
                row[y1 * g.ow..].fill(0.0);
            }
            for oy in y0..y1 {
                let iy = oy * g.stride + ky - g.pad;
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                plan.im2col_row(src, &mut col[first + oy * g.ow..], ld);
            }
        }
    }
}

/// [`col2im`] a whole input row at a time ([`super::stride2`]).
fn col2im_rows(col: &[f32], g: &ConvGeom, dx: &mut [f32], ld: usize, plan: &Plan) {
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.k {
            let (y0, y1) = g.valid(ky, g.h, g.oh);
            let first = (c * g.k + ky) * g.k * ld;
            for oy in y0..y1 {
                let iy = oy * g.stride + ky - g.pad;
                let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                plan.col2im_row(&col[first + oy * g.ow..], dst, ld);
            }
        }
    }
}

/// `dst[i · S] += src[i]`.
#[inline(always)]
fn strided_add<const S: usize>(dst: &mut [f32], src: &[f32]) {
    if src.is_empty() {
        return;
    }
    let dst = &mut dst[..(src.len() - 1) * S + 1];
    for (i, v) in src.iter().enumerate() {
        dst[i * S] += v;
    }
}

/// `dst[i] = src[i · S]`.
#[inline(always)]
fn strided_copy<const S: usize>(dst: &mut [f32], src: &[f32]) {
    if dst.is_empty() {
        return;
    }
    let src = &src[..(dst.len() - 1) * S + 1];
    for (i, d) in dst.iter_mut().enumerate() {
        *d = src[i * S];
    }
}

/// Adds the patch matrix `col` (rows `ld` elements apart) back onto one image gradient `dx`
/// (`[C, H, W]`).
fn col2im(col: &[f32], g: &ConvGeom, plan: Option<&Plan>, dx: &mut [f32], ld: usize) {
    if let Some(plan) = plan {
        return col2im_rows(col, g, dx, ld, plan);
    }
    let ohw = g.ohw();
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.k {
            let (y0, y1) = g.valid(ky, g.h, g.oh);
            for kx in 0..g.k {
                let (x0, x1) = g.valid(kx, g.w, g.ow);
                let row = &col[((c * g.k + ky) * g.k + kx) * ld..][..ohw];
                for oy in y0..y1 {
                    let iy = oy * g.stride + ky - g.pad;
                    let src = &row[oy * g.ow..(oy + 1) * g.ow];
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let ix0 = x0 * g.stride + kx - g.pad;
                    match g.stride {
                        1 => strided_add::<1>(&mut dst[ix0..], &src[x0..x1]),
                        2 => strided_add::<2>(&mut dst[ix0..], &src[x0..x1]),
                        s => {
                            for (i, v) in src[x0..x1].iter().enumerate() {
                                dst[ix0 + i * s] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// [`gemm_bf16::product_narrow_first`] into a row-major `dst` (rows `n` apart).
#[allow(clippy::too_many_arguments)]
fn product(
    math: Math,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: Lhs,
    rhs: Mat,
) {
    gemm_bf16::product_narrow_first(math, m, n, k, dst, n, accumulate, lhs, rhs)
}

/// Output columns a patch-matrix product should span at least: maps under 64 pixels (7x7,
/// 4x4) share one product among several images, as the gemm crate runs a 49-column product
/// at about two thirds of its speed on a wide one (it repacks the weights per product, and
/// its micro-kernel's rows are short).
const GROUP_COLUMNS: usize = 192;

/// Images per patch-matrix product for `g` (at most a worker's share of the batch).
fn group_size(g: &ConvGeom) -> usize {
    if g.pointwise() || g.ohw() >= 64 {
        return 1;
    }
    let share = g.n.div_ceil(rayon::current_num_threads().max(1));
    GROUP_COLUMNS.div_ceil(g.ohw()).min(share).max(1)
}

/// Copies the `[imgs, O, OH·OW]` gradient `dy` into `[O, imgs·OH·OW]` (`out`), one product's
/// operand.
fn gather_outputs(dy: &[f32], g: &ConvGeom, out: &mut [f32]) {
    let ohw = g.ohw();
    let cols = dy.len() / g.o;
    for (i, dyi) in dy.chunks_exact(g.o * ohw).enumerate() {
        for (o, row) in dyi.chunks_exact(ohw).enumerate() {
            out[o * cols + i * ohw..][..ohw].copy_from_slice(row);
        }
    }
}

/// `y (+)= W · col(x)` for a group of images (`x` `[imgs, C, H, W]`, `y` `[imgs, O, OH,
/// OW]`): one product over all their patch columns, added onto `y`'s values when `onto`
/// (a residual), written over them otherwise.
fn forward_images(
    x: &[f32],
    w: Lhs,
    math: Math,
    g: &ConvGeom,
    plan: Option<&Plan>,
    onto: bool,
    y: &mut [f32],
) {
    let (ckk, ohw) = (g.ckk(), g.ohw());
    let imgs = x.len() / g.chw();
    if g.pointwise() {
        for (xi, yi) in x.chunks_exact(g.chw()).zip(y.chunks_exact_mut(g.o * ohw)) {
            product(math, g.o, ohw, ckk, yi, onto, w, Mat::rows(xi, ohw));
        }
    } else if imgs == 1 {
        with_cols(ckk * ohw, |col| {
            im2col(x, g, plan, col, ohw);
            product(math, g.o, ohw, ckk, y, onto, w, Mat::rows(col, ohw));
        });
    } else {
        let cols = imgs * ohw;
        with_cols(ckk * cols + g.o * cols, |buf| {
            let (col, out) = buf.split_at_mut(ckk * cols);
            for (i, xi) in x.chunks_exact(g.chw()).enumerate() {
                im2col(xi, g, plan, &mut col[i * ohw..], cols);
            }
            product(math, g.o, cols, ckk, out, false, w, Mat::rows(col, cols));
            for (i, yi) in y.chunks_exact_mut(g.o * ohw).enumerate() {
                for (o, row) in yi.chunks_exact_mut(ohw).enumerate() {
                    let part = &out[o * cols + i * ohw..][..ohw];
                    match onto {
                        true => add_assign_serial(row, part),
                        false => row.copy_from_slice(part),
                    }
                }
            }
        });
    }
}

/// `dx += col2im(Wᵀ · dy)` for a group of images (`dx` zeroed by the caller or holding a
/// prior gradient); `wt` is `Wᵀ`. A 1x1 stride-1 convolution writes the product straight
/// into `dx`: onto its values when `onto`, over them otherwise.
fn input_grad_images(
    dy: &[f32],
    wt: Lhs,
    math: Math,
    g: &ConvGeom,
    plan: Option<&Plan>,
    onto: bool,
    dx: &mut [f32],
) {
    let (ckk, ohw) = (g.ckk(), g.ohw());
    let imgs = dx.len() / g.chw();
    if g.pointwise() {
        for (dyi, dxi) in dy.chunks_exact(g.o * ohw).zip(dx.chunks_exact_mut(g.chw())) {
            product(math, ckk, ohw, g.o, dxi, onto, wt, Mat::rows(dyi, ohw));
        }
    } else if imgs == 1 {
        with_cols(ckk * ohw, |col| {
            product(math, ckk, ohw, g.o, col, false, wt, Mat::rows(dy, ohw));
            col2im(col, g, plan, dx, ohw);
        });
    } else {
        let cols = imgs * ohw;
        with_cols(ckk * cols + g.o * cols, |buf| {
            let (col, dyg) = buf.split_at_mut(ckk * cols);
            gather_outputs(dy, g, dyg);
            product(math, ckk, cols, g.o, col, false, wt, Mat::rows(dyg, cols));
            for (i, dxi) in dx.chunks_exact_mut(g.chw()).enumerate() {
                col2im(&col[i * ohw..], g, plan, dxi, cols);
            }
        });
    }
}

/// `dw += dy · col(x)ᵀ` for a group of images: one product over all their patch columns.
fn weight_grad_images(
    x: &[f32],
    dy: &[f32],
    math: Math,
    g: &ConvGeom,
    plan: Option<&Plan>,
    dw: &mut [f32],
) {
    let (ckk, ohw) = (g.ckk(), g.ohw());
    let imgs = x.len() / g.chw();
    if g.pointwise() {
        for (xi, dyi) in x.chunks_exact(g.chw()).zip(dy.chunks_exact(g.o * ohw)) {
            let (dyi, xt) = (Lhs::Plain(Mat::rows(dyi, ohw)), Mat::transposed(xi, ohw));
            product(math, g.o, ckk, ohw, dw, true, dyi, xt);
        }
    } else if imgs == 1 {
        with_cols(ckk * ohw, |col| {
            im2col(x, g, plan, col, ohw);
            let (dy, ct) = (Lhs::Plain(Mat::rows(dy, ohw)), Mat::transposed(col, ohw));
            product(math, g.o, ckk, ohw, dw, true, dy, ct);
        });
    } else {
        let cols = imgs * ohw;
        with_cols(ckk * cols + g.o * cols, |buf| {
            let (col, dyg) = buf.split_at_mut(ckk * cols);
            gather_outputs(dy, g, dyg);
            for (i, xi) in x.chunks_exact(g.chw()).enumerate() {
                im2col(xi, g, plan, &mut col[i * ohw..], cols);
            }
            let (dyg, ct) = (Lhs::Plain(Mat::rows(dyg, cols)), Mat::transposed(col, cols));
            product(math, g.o, ckk, cols, dw, true, dyg, ct);
        });
    }
}

/// The weights `w` (`[O, C·k·k]`, or its transpose `[C·k·k, O]`) as the left operand of the
/// per-image products: packed once for every image under [`Math::Bf16`].
fn weights_lhs(math: Math, rows: usize, cols: usize, w: Mat) -> (Option<PackedA>, Mat) {
    match math {
        Math::F32 => (None, w),
        Math::Bf16 => (Some(PackedA::new(rows, cols, w)), w),
    }
}

/// The operand [`weights_lhs`] prepared.
fn lhs<'a>(packed: &'a Option<PackedA>, plain: Mat<'a>) -> Lhs<'a> {
    match packed {
        Some(p) => Lhs::Packed(p),
        None => Lhs::Plain(plain),
    }
}

/// Checks that a storage holds exactly `want` elements for the geometry.
fn sized<'a>(s: &'a CpuStorage, l: &Layout, want: usize, what: &str) -> Result<&'a [f32]> {
    let d = f32_slice(s, l)?;
    if d.len() != want {
        bail!("conv2d: {what} has {} elements, expected {want}", d.len())
    }
    Ok(d)
}

/// Forward convolution `(x, w) -> y`, differentiable through [`CustomOp2::bwd`].
#[derive(Debug, Clone, Copy)]
pub struct Conv2d {
    geom: ConvGeom,
    need_input_grad: bool,
    math: winograd::Math,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "wrnc-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        forward_storage(&self.geom, self.math, (s1, l1), (s2, l2), None, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (dx, dw, _) = self.gradients((x, None), w, &grad, None, None)?;
        Ok((dx, Some(dw)))
    }
}

impl Conv2d {
    /// `(dx, dw)` for the output gradient `grad` (contiguous); `dx` is `prior + dx` when the
    /// input already has the gradient `prior` from its other readers (`prior` itself when no
    /// input gradient is asked for). With `input`, the convolution's input was that batch
    /// norm + ReLU of `x` (the weight gradient applies it again).
    fn gradients(
        &self,
        (x, input): (&Tensor, Option<Arc<BnReluInput>>),
        w: &Tensor,
        grad: &Tensor,
        prior: Option<Tensor>,
        bn: Option<GradSumsFor>,
    ) -> Result<ConvGrads> {
        let (dx, sums) = if self.need_input_grad {
            let prior = match prior {
                Some(p) if p.dims() != x.dims() => {
                    bail!(
                        "conv2d: prior gradient {:?} for input {:?}",
                        p.dims(),
                        x.dims()
                    )
                }
                p => p.map(|p| p.contiguous()).transpose()?,
            };
            let want = bn.is_some();
            let op = InputGrad {
                geom: self.geom,
                math: self.math,
                prior,
                bn,
                sums: Mutex::new(Vec::new()),
            };
            let dx = grad.apply_op2_no_bwd(w, &op)?;
            let sums = op
                .sums
                .into_inner()
                .map_err(|_| candle_core::Error::Msg("conv2d: poisoned".into()))?;
            (Some(dx), want.then_some(sums))
        } else {
            (prior, None)
        };
        let dw = x.apply_op2_no_bwd(grad, &WeightGrad(self.geom, self.math, input))?;
        Ok((dx, dw, sums))
    }
}

/// A convolution's gradients outside Candle's autograd: `dx` (when asked, summed onto the
/// prior), `dw`, and the per-plane backward sums of the batch norm that produced the input
/// when asked for ([`GradSumsFor`]).
pub type ConvGrads = (Option<Tensor>, Tensor, Option<Vec<(f64, f64)>>);

/// `y = conv(x, w)`, plus `onto` (the output's shape) when given: a residual added in the
/// pass that writes `y` (the patch products accumulate onto it; Winograd adds it to each
/// chunk of outputs while they are in cache). With `input`, the convolution reads that batch
/// norm + ReLU of `x`: Winograd applies it as it copies its input, the other kernels' tasks
/// write it for their images into a buffer of their own (in cache) and read that.
fn forward(
    g: &ConvGeom,
    math: Math,
    (x, input): (&[f32], Option<&BnReluInput>),
    w: &[f32],
    onto: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let per = g.o * g.ohw();
    if let Some(r) = onto.filter(|r| r.len() != g.n * per) {
        bail!(
            "conv2d: a residual of {} values, {} expected",
            r.len(),
            g.n * per
        )
    }
    if let Some(wg) = g.winograd() {
        return Ok(winograd::forward(&wg, (x, input), w, math, onto));
    }
    let (packed, plain) = weights_lhs(math, g.o, g.ckk(), Mat::rows(w, g.ckk()));
    let (b, plan) = (group_size(g), Plan::new(g));
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(per * b)
            .zip(x.par_chunks(g.chw() * b))
            .enumerate()
            .for_each(|(i, (yi, xi))| {
                // started from the residual or zeros by the task that writes it (in cache,
                // on every worker)
                let yi = match onto {
                    Some(r) => init_from(yi, &r[i * per * b..][..yi.len()]),
                    None => init_zeros(yi),
                };
                let w = lhs(&packed, plain);
                // the batch norm's output of these images, written in cache
                let normalised = input.map(|bn| bn.apply(xi, g.h * g.w));
                let xi = normalised.as_deref().unwrap_or(xi);
                forward_images(xi, w, math, g, plan.as_ref(), onto.is_some(), yi)
            });
    };
    // SAFETY: the tasks cover `y`, and each initialises its whole part first.
    Ok(unsafe { written_vec(g.n * per, fill) })
}

/// [`forward`] from the op's input `x` and weight `w` storages.
fn forward_storage(
    g: &ConvGeom,
    math: Math,
    (sx, lx): (&CpuStorage, &Layout),
    (sw, lw): (&CpuStorage, &Layout),
    onto: Option<&[f32]>,
    input: Option<&BnReluInput>,
) -> Result<(CpuStorage, Shape)> {
    let x = sized(sx, lx, g.n * g.chw(), "input")?;
    let w = sized(sw, lw, g.o * g.ckk(), "weight")?;
    let y = forward(g, math, (x, input), w, onto)?;
    Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.oh, g.ow))))
}

/// `(x, w) -> conv(x, w) (+ residual)`, without a backward of its own: the taped path's
/// convolution, with the residual addition that reads its output and the batch norm + ReLU
/// that produces its input fused into it when there are such.
#[derive(Debug, Clone)]
struct ConvDetached {
    geom: ConvGeom,
    math: winograd::Math,
    /// The other operand of the addition (contiguous, the output's shape).
    residual: Option<Tensor>,
    /// The batch norm + ReLU to apply to the input as it is read.
    input: Option<Arc<BnReluInput>>,
}

impl CustomOp2 for ConvDetached {
    fn name(&self) -> &'static str {
        "wrnc-conv2d-detached"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, math, input) = (&self.geom, self.math, self.input.as_deref());
        match &self.residual {
            Some(r) => with_f32(r, |r| {
                forward_storage(g, math, (s1, l1), (s2, l2), Some(r), input)
            })?,
            None => forward_storage(g, math, (s1, l1), (s2, l2), None, input),
        }
    }
}

/// `(dy, w) -> prior + dx`.
#[derive(Debug)]
struct InputGrad {
    geom: ConvGeom,
    math: winograd::Math,
    /// The gradient the input already has (contiguous, the input's shape), added to `dx`
    /// in the pass that writes it: the patch columns are added onto it instead of onto
    /// zeros, a 1x1 product accumulates into it (no separate sum of the two gradients).
    prior: Option<Tensor>,
    /// The batch norm whose output the input is, when this gradient is the last part of its
    /// output gradient: its backward's per-plane sums are taken as `dx` is written, and
    /// left in `sums`.
    bn: Option<GradSumsFor>,
    sums: Mutex<Vec<(f64, f64)>>,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "wrnc-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, math) = (self.geom, self.math);
        let per = g.o * g.ohw();
        let dy = sized(s1, l1, g.n * per, "output gradient")?;
        let w = sized(s2, l2, g.o * g.ckk(), "weight")?;
        let len = g.n * g.chw();
        let run = |prior: Option<&[f32]>, plane_fn: Option<&PlaneFn<'_, (f64, f64)>>| {
            if let Some(p) = prior.filter(|p| p.len() != len) {
                bail!(
                    "conv2d: prior gradient of {} values, {len} expected",
                    p.len()
                )
            }
            if let Some(wg) = g.winograd() {
                return Ok(winograd::input_grad(&wg, dy, w, math, prior, plane_fn));
            }
            let (packed, plain) = weights_lhs(math, g.ckk(), g.o, Mat::transposed(w, g.ckk()));
            let (b, plan) = (group_size(&g), Plan::new(&g));
            let onto = prior.is_some();
            let mut parts: Vec<Vec<(f64, f64)>> = Vec::new();
            let fill = |dx: &mut [MaybeUninit<f32>]| {
                parts = dx
                    .par_chunks_mut(g.chw() * b)
                    .zip(dy.par_chunks(per * b))
                    .enumerate()
                    .map(|(i, (dxi, dyi))| {
                        // each task starts its part from the prior or zeros, in cache
                        let at = i * g.chw() * b;
                        let dxi = match prior {
                            Some(p) => init_from(dxi, &p[at..at + dxi.len()]),
                            None => init_zeros(dxi),
                        };
                        let wt = lhs(&packed, plain);
                        input_grad_images(dyi, wt, math, &g, plan.as_ref(), onto, dxi);
                        per_plane(dxi, i * b * g.c, g.h * g.w, plane_fn)
                    })
                    .collect();
            };
            // SAFETY: the tasks cover `dx`, and each initialises its whole part first.
            let dx = unsafe { written_vec(len, fill) };
            Ok((dx, parts.concat()))
        };
        let summed = |prior: Option<&[f32]>| match &self.bn {
            Some(bn) => bn.with_plane_fn(|f| run(prior, Some(f)))?,
            None => run(prior, None),
        };
        let (dx, sums) = match &self.prior {
            Some(prior) => with_f32(prior, |p| summed(Some(p)))??,
            None => summed(None)?,
        };
        if self.bn.is_some() {
            *self
                .sums
                .lock()
                .map_err(|_| candle_core::Error::Msg("conv2d: poisoned".into()))? = sums;
        }
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.c, g.h, g.w))))
    }
}

/// `(x, dy) -> dw`; with a batch norm + ReLU, the convolution's input was that of `x`.
#[derive(Debug, Clone)]
struct WeightGrad(ConvGeom, winograd::Math, Option<Arc<BnReluInput>>);

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "wrnc-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let per = g.o * g.ohw();
        let x = sized(s1, l1, g.n * g.chw(), "input")?;
        let dy = sized(s2, l2, g.n * per, "output gradient")?;
        let shape = Shape::from((g.o, g.c, g.k, g.k));
        let input = self.2.as_deref();
        if let Some(wg) = g.winograd() {
            return Ok((
                CpuStorage::F32(winograd::weight_grad(&wg, (x, input), dy, self.1)),
                shape,
            ));
        }
        let len = g.o * g.ckk();
        let workers = rayon::current_num_threads().clamp(1, g.n.max(1));
        let chunk = g.n.div_ceil(workers).max(1);
        let (b, plan) = (group_size(&g), Plan::new(&g));
        let dw = (0..workers)
            .into_par_iter()
            .map(|t| {
                let mut dw = vec![0f32; len];
                let (first, end) = (t * chunk, ((t + 1) * chunk).min(g.n));
                for i in (first..end).step_by(b) {
                    let j = (i + b).min(end);
                    let xs = &x[i * g.chw()..j * g.chw()];
                    // the batch norm's output of these images, written in cache
                    let normalised = input.map(|bn| bn.apply(xs, g.h * g.w));
                    let xs = normalised.as_deref().unwrap_or(xs);
                    let dys = &dy[i * per..j * per];
                    weight_grad_images(xs, dys, self.1, &g, plan.as_ref(), &mut dw);
                }
                dw
            })
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(p, q)| *p += q);
                a
            })
            .unwrap_or_else(|| vec![0f32; len]);
        Ok((CpuStorage::F32(dw), shape))
    }
}

/// The gradients `(dx, dw)` of [`conv2d`] for the output gradient `grad` (`dx` only when
/// `need_input_grad`), for a backward pass run outside Candle's autograd. `prior`, the
/// gradient the input already has from its other readers, comes back inside `dx` (`prior +
/// dx`, summed in the pass that writes `dx` where the kernel allows). With `bn` (the batch
/// norm that produced `x`, when `dx` completes its output gradient), also that batch norm's
/// per-plane backward sums, taken as `dx` is written. `math` is the precision of the
/// products. With `input`, the convolution read that batch norm + ReLU of `x`
/// ([`conv2d_detached`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    (x, input): (&Tensor, Option<Arc<BnReluInput>>),
    w: &Tensor,
    grad: &Tensor,
    params: ConvParams,
    need_input_grad: bool,
    prior: Option<Tensor>,
    bn: Option<GradSumsFor>,
    math: winograd::Math,
) -> Result<ConvGrads> {
    let geom = ConvGeom::new(x.dims(), w.dims(), params.stride, params.padding)?;
    let op = Conv2d {
        geom,
        need_input_grad,
        math,
    };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    op.gradients((&x, input), &w, &grad.contiguous()?, prior, bn)
}

/// `conv(x, w)` for `x` `[N, C, H, W]` and `w` `[O, C, k, k]` (f32, CPU), without a
/// recorded gradient (for a forward pass whose backward is taped, or none), plus `residual`
/// (the output's shape) when given, added in the pass that writes the output; with `input`,
/// the convolution reads that batch norm + ReLU of `x` instead of `x`, applied as the kernel
/// reads its input ([`BnReluInput`]).
pub fn conv2d_detached(
    x: &Tensor,
    w: &Tensor,
    params: ConvParams,
    residual: Option<&Tensor>,
    input: Option<Arc<BnReluInput>>,
    math: winograd::Math,
) -> Result<Tensor> {
    let geom = ConvGeom::new(x.dims(), w.dims(), params.stride, params.padding)?;
    if let Some(r) = residual.filter(|r| r.dims() != [geom.n, geom.o, geom.oh, geom.ow]) {
        bail!(
            "conv2d: residual {:?} for an output [{}, {}, {}, {}]",
            r.dims(),
            geom.n,
            geom.o,
            geom.oh,
            geom.ow
        )
    }
    if let Some(bn) = input.as_deref().filter(|bn| bn.channels() != geom.c) {
        bail!(
            "conv2d: a batch norm of {} channels for an input of {}",
            bn.channels(),
            geom.c
        )
    }
    let op = ConvDetached {
        geom,
        math,
        residual: residual.map(|r| r.contiguous()).transpose()?,
        input,
    };
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &op)
}

/// Convolves `x` `[N, C, H, W]` with `w` `[O, C, k, k]` (f32, CPU). With
/// `need_input_grad = false` the backward pass computes only the weight gradient (for a
/// convolution that reads the network input). `math` is the precision of the products
/// (Winograd's and im2col's alike).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    params: ConvParams,
    need_input_grad: bool,
    math: winograd::Math,
) -> Result<Tensor> {
    let geom = ConvGeom::new(x.dims(), w.dims(), params.stride, params.padding)?;
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        Conv2d {
            geom,
            need_input_grad,
            math,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, rand};
    use candle_core::Var;

    /// Stride 1, padding 1.
    const ONE: ConvParams = ConvParams {
        stride: 1,
        padding: 1,
    };

    /// Forward, input gradient and weight gradient against Candle's conv2d.
    fn check(x: &[usize], w: &[usize], stride: usize, pad: usize, seed: u64) {
        let xv = Var::from_tensor(&rand(x, seed)).unwrap();
        let wv = Var::from_tensor(&rand(w, seed + 1)).unwrap();
        let params = ConvParams {
            stride,
            padding: pad,
        };
        let ours = conv2d(&xv, &wv, params, true, winograd::Math::F32).unwrap();
        let theirs = xv.conv2d(&wv, pad, stride, 1, 1).unwrap();
        let what = format!("conv {x:?} * {w:?} s{stride} p{pad}");
        assert_close(&ours, &theirs, 1e-5, &format!("{what} forward"));
        let dy = rand(ours.dims(), seed + 2);
        let g1 = (ours * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &dy)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (v, name) in [(&xv, "dx"), (&wv, "dw")] {
            assert_close(
                g1.get(v).unwrap(),
                g2.get(v).unwrap(),
                1e-5,
                &format!("{what} {name}"),
            );
        }
    }

    #[test]
    fn matches_candle_on_wrn_shapes() {
        check(&[3, 4, 8, 8], &[6, 4, 3, 3], 1, 1, 1);
        check(&[2, 4, 8, 8], &[5, 4, 3, 3], 2, 1, 2);
        check(&[2, 6, 8, 8], &[4, 6, 1, 1], 1, 0, 3);
        check(&[2, 6, 9, 7], &[4, 6, 1, 1], 2, 0, 4);
        check(&[1, 3, 5, 6], &[2, 3, 3, 3], 1, 0, 5);
        check(&[2, 2, 7, 7], &[3, 2, 5, 5], 3, 2, 6);
    }

    #[test]
    fn strided_and_small_map_convolutions_match_candle() {
        // the strided patch copies and adds: odd and even widths, every padding parity,
        // even and odd kernels, maps smaller than the kernel reach with its padding
        // (Candle's own backward fails when the two axes leave different remainders)
        check(&[2, 3, 7, 7], &[4, 3, 3, 3], 2, 1, 21);
        check(&[2, 3, 9, 9], &[4, 3, 3, 3], 2, 0, 22);
        check(&[1, 2, 11, 9], &[3, 2, 5, 5], 2, 2, 23);
        check(&[2, 2, 6, 8], &[3, 2, 2, 2], 2, 0, 24);
        check(&[1, 2, 6, 8], &[2, 2, 4, 4], 2, 1, 25);
        check(&[2, 4, 3, 3], &[2, 4, 3, 3], 2, 1, 26);
        check(&[1, 1, 1, 1], &[2, 1, 3, 3], 2, 1, 27);
        check(&[2, 3, 8, 10], &[4, 3, 3, 3], 2, 1, 28);
        // the widest rows of the vector path (32 in, 16 out) and past it (33 in, 17 out)
        check(&[1, 2, 32, 32], &[3, 2, 3, 3], 2, 1, 29);
        check(&[1, 2, 33, 33], &[3, 2, 3, 3], 2, 1, 30);
        check(&[2, 5, 28, 28], &[4, 5, 1, 1], 2, 0, 31);
        // maps under 64 pixels share one product among several images (a worker's share,
        // the last group shorter): stride 2, 1x1 stride 2, and a small stride-1 stem
        check(&[7, 3, 7, 7], &[4, 3, 3, 3], 2, 1, 32);
        check(&[9, 5, 8, 8], &[6, 5, 1, 1], 2, 0, 33);
        check(&[11, 3, 6, 7], &[5, 3, 3, 3], 1, 1, 34);
        // products of more than 64 rows: through the narrow kernel while the right operand
        // stays small (70 output channels; 72 = 8·9 rows of the input gradient's patches),
        // through the gemm crate past that (a 360 x 256 right operand)
        check(&[3, 8, 14, 14], &[70, 8, 3, 3], 2, 1, 35);
        check(&[1, 40, 32, 32], &[72, 40, 3, 3], 2, 1, 36);
    }

    #[test]
    fn winograd_shapes_match_candle() {
        // 3x3 stride-1 pad-1 with 8+ channels on both sides goes through winograd.rs (unless
        // WRNC_WINOGRAD=0); ragged 10x7 maps leave partial tiles
        check(&[5, 8, 10, 7], &[12, 8, 3, 3], 1, 1, 11);
        check(&[3, 16, 8, 8], &[8, 16, 3, 3], 1, 1, 12);
    }

    #[test]
    fn bf16_products_follow_candle_within_bf16_rounding() {
        if !gemm_bf16::available() {
            eprintln!("skipped: no AVX-512 BF16 on this CPU");
            return;
        }
        // RMS error relative to the RMS of Candle's f32 result: bf16 keeps 8 significant
        // bits; Winograd's transforms amplify the rounding of its transformed operands
        let rms_rel = |a: &Tensor, b: &Tensor| {
            let d = (a - b).unwrap().sqr().unwrap().mean_all().unwrap();
            let n = b.sqr().unwrap().mean_all().unwrap();
            (d.to_scalar::<f32>().unwrap() / n.to_scalar::<f32>().unwrap()).sqrt()
        };
        // (input, weight, stride, padding, bound): stem, strided 3x3, 1x1 shortcuts, Winograd
        for (x, w, stride, pad, bound) in [
            ([2, 3, 9, 9], [8, 3, 3, 3], 1, 1, 1e-2),
            ([2, 8, 10, 10], [16, 8, 3, 3], 2, 1, 1e-2),
            ([2, 8, 6, 6], [16, 8, 1, 1], 1, 0, 1e-2),
            ([2, 8, 6, 6], [16, 8, 1, 1], 2, 0, 1e-2),
            // several images per product (small maps, more images than workers)
            ([7, 8, 8, 8], [16, 8, 3, 3], 2, 1, 1e-2),
            ([2, 9, 13, 10], [12, 9, 3, 3], 1, 1, 5e-2),
        ] {
            let xv = Var::from_tensor(&rand(&x, 3)).unwrap();
            let wv = Var::from_tensor(&rand(&w, 4)).unwrap();
            let params = ConvParams {
                stride,
                padding: pad,
            };
            let ours = conv2d(&xv, &wv, params, true, Math::Bf16).unwrap();
            let theirs = xv.conv2d(&wv, pad, stride, 1, 1).unwrap();
            let dy = rand(ours.dims(), 5);
            let g1 = (&ours * &dy)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&theirs * &dy)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, a, b) in [
                ("y", &ours, &theirs),
                ("dx", g1.get(&xv).unwrap(), g2.get(&xv).unwrap()),
                ("dw", g1.get(&wv).unwrap(), g2.get(&wv).unwrap()),
            ] {
                let err = rms_rel(a, b);
                let what = format!("conv {x:?} * {w:?} s{stride} p{pad} {name}");
                assert!(err < bound, "{what}: bf16 error {err}");
                assert!(err > 1e-5, "{what}: no bf16 rounding ({err})");
            }
        }
    }

    #[test]
    fn residual_outputs_and_prior_gradients_are_added_in_the_writing_pass() {
        // Winograd (two chunks), patch columns of several images per product (7x7 output),
        // one image per product, and a 1x1 convolution, each over more than one task
        let cases: [(&[usize], &[usize], usize, usize); 4] = [
            (&[3, 8, 12, 12], &[8, 8, 3, 3], 1, 1),
            (&[5, 4, 14, 14], &[6, 4, 3, 3], 2, 1),
            (&[3, 3, 10, 10], &[5, 3, 3, 3], 1, 1),
            (&[3, 6, 9, 9], &[10, 6, 1, 1], 1, 0),
        ];
        for (i, (x, w, stride, padding)) in cases.into_iter().enumerate() {
            let seed = 40 + 10 * i as u64;
            let (xt, wt) = (rand(x, seed), rand(w, seed + 1));
            let params = ConvParams { stride, padding };
            let plain = conv2d(&xt, &wt, params, true, winograd::Math::F32).unwrap();
            let r = rand(plain.dims(), seed + 2);
            let onto =
                conv2d_detached(&xt, &wt, params, Some(&r), None, winograd::Math::F32).unwrap();
            let what = format!("conv {x:?} * {w:?} s{stride}");
            assert_close(&onto, &(&plain + &r).unwrap(), 1e-6, &format!("{what} + r"));

            let dy = rand(plain.dims(), seed + 3);
            let prior = rand(x, seed + 4);
            let grads = |p: Option<Tensor>| {
                let (dx, dw, _) = conv2d_backward(
                    (&xt, None),
                    &wt,
                    &dy,
                    params,
                    true,
                    p,
                    None,
                    winograd::Math::F32,
                )
                .unwrap();
                (dx.unwrap(), dw)
            };
            let (dx, dw) = grads(None);
            let (dx_onto, dw_onto) = grads(Some(prior.clone()));
            let want = (&dx + &prior).unwrap();
            assert_close(&dx_onto, &want, 1e-6, &format!("{what} prior + dx"));
            assert_close(&dw_onto, &dw, 0.0, &format!("{what} dw"));
        }
        let (x, w) = (rand(&[2, 8, 6, 6], 1), rand(&[8, 8, 3, 3], 2));
        let wrong = rand(&[2, 8, 6, 5], 3);
        assert!(conv2d_detached(&x, &w, ONE, Some(&wrong), None, winograd::Math::F32).is_err());
    }

    /// A batch norm + ReLU of the input handed to the convolution gives its written output's
    /// convolution and weight gradient bit for bit: applied in Winograd's padded copy, and
    /// per task into a buffer for the patch-matrix and 1x1 kernels (grouped images, several
    /// tasks); the input gradient is the normalised input's.
    #[test]
    fn a_batch_norm_left_to_the_convolution_gives_its_written_outputs_results() {
        let cases: [(&[usize], &[usize], usize, usize); 6] = [
            (&[3, 8, 7, 9], &[8, 8, 3, 3], 1, 1),
            (&[5, 4, 14, 14], &[6, 4, 3, 3], 2, 1),
            (&[3, 3, 10, 10], &[5, 3, 3, 3], 1, 1),
            (&[3, 6, 9, 9], &[10, 6, 1, 1], 1, 0),
            // 6x6 outputs: several images per product
            (&[7, 8, 12, 12], &[16, 8, 3, 3], 2, 1),
            // a WRN's stride-2 shortcut
            (&[4, 6, 10, 10], &[10, 6, 1, 1], 2, 0),
        ];
        for (i, (x, w, stride, padding)) in cases.into_iter().enumerate() {
            let seed = 70 + 10 * i as u64;
            let (xt, wt) = (rand(x, seed), rand(w, seed + 1));
            let params = ConvParams { stride, padding };
            let what = format!("conv {x:?} * {w:?} s{stride}");
            let coef = (0..x[1]).map(|c| (0.7 + 0.2 * c as f32, 0.1 - 0.05 * c as f32));
            let bn = Arc::new(BnReluInput::new(coef.collect()));
            let xs: Vec<f32> = xt.flatten_all().unwrap().to_vec1().unwrap();
            let yt = Tensor::from_vec(bn.apply(&xs, x[2] * x[3]), x, xt.device()).unwrap();
            let f32 = winograd::Math::F32;
            let read = conv2d_detached(&xt, &wt, params, None, Some(Arc::clone(&bn)), f32).unwrap();
            let written = conv2d_detached(&yt, &wt, params, None, None, f32).unwrap();
            assert_close(&read, &written, 0.0, &format!("{what}: forward"));
            let dy = rand(written.dims(), seed + 2);
            let grads = |x: (&Tensor, Option<Arc<BnReluInput>>)| {
                let (dx, dw, _) =
                    conv2d_backward(x, &wt, &dy, params, true, None, None, f32).unwrap();
                (dx.unwrap(), dw)
            };
            let (dx_read, dw_read) = grads((&xt, Some(Arc::clone(&bn))));
            let (dx, dw) = grads((&yt, None));
            assert_close(&dw_read, &dw, 0.0, &format!("{what}: dw"));
            assert_close(&dx_read, &dx, 0.0, &format!("{what}: dx"));
        }
        let (x, w) = (rand(&[2, 8, 6, 6], 1), rand(&[8, 8, 3, 3], 2));
        let three = Arc::new(BnReluInput::new(vec![(1.0, 0.0); 3]));
        let e = conv2d_detached(&x, &w, ONE, None, Some(three), winograd::Math::F32).unwrap_err();
        assert!(e.to_string().contains("3 channels"), "{e}");
    }

    #[test]
    fn skips_the_input_gradient_when_told() {
        let x = Var::from_tensor(&rand(&[1, 2, 4, 4], 7)).unwrap();
        let w = Var::from_tensor(&rand(&[2, 2, 3, 3], 8)).unwrap();
        let y = conv2d(&x, &w, ONE, false, winograd::Math::F32).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_none());
        assert!(g.get(&w).is_some());
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let x = rand(&[1, 2, 4, 4], 9);
        let w = rand(&[2, 3, 3, 3], 10);
        assert!(conv2d(&x, &w, ONE, true, winograd::Math::F32).is_err());
        let w = rand(&[2, 2, 7, 7], 10);
        assert!(conv2d(&x, &w, ONE, true, winograd::Math::F32).is_err());
    }
}
