//! Training-mode batch normalisation over `[N, C, H, W]` (PyTorch semantics: batch mean and
//! biased variance normalise, the caller updates the running statistics with the unbiased
//! one), optionally followed by a fused ReLU.
//!
//! Forward: one parallel pass over channels for the statistics, one parallel pass over
//! `(n, c)` planes to normalise. Backward: one pass for `Σ dy'` and `Σ dy'·x̂` per channel
//! (`dy'` is `dy` masked by the ReLU), one pass for
//! `dx = γ/σ/m · (m·dy' − Σ dy' − x̂ · Σ dy'·x̂)`.
//!
//! A dropout that follows the fused ReLU can be fused as well: the normalise pass multiplies
//! by the mask it draws ([`Dropout`]), and the backward keeps the gradient where the output is
//! positive (kept and rectified), scaled by `1 / (1 - p)` — exactly dropout's and the ReLU's
//! backward, read off the stored output instead of a stored mask.

use super::dropout::{Dropout, GROUP};
use super::simd::multiversion;
use super::{f32_slice, tensor, with_f32, written_vec};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// Per-channel batch statistics of one forward pass.
#[derive(Debug, Clone)]
struct Stats {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

/// The fused op `(x, gamma, beta) -> y`; it carries the batch statistics to its backward.
#[derive(Debug, Clone)]
pub(crate) struct BnRelu {
    dims: [usize; 4],
    stats: Arc<Stats>,
    relu: bool,
    /// A dropout fused after the ReLU (training with `p > 0`).
    dropout: Option<Dropout>,
}

/// Result of [`batch_norm_train`].
#[derive(Debug)]
pub struct BnTrain {
    /// The normalised (and rectified, when asked) output, differentiable.
    pub y: Tensor,
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// Biased batch variance per channel.
    pub var: Vec<f32>,
    /// The op with its batch statistics, for a backward pass run outside Candle's autograd.
    pub(crate) op: BnRelu,
}

/// Planes of `hw` values one parallel task handles: at least 16 Ki values, so that small
/// planes (8x8 maps) do not drown in scheduling overhead.
fn planes_per_task(hw: usize) -> usize {
    (16 * 1024 / hw.max(1)).max(1)
}

/// Lanes of the vectorised per-plane sums (partial sums in f32, combined in f64).
const LANES: usize = 64;

/// Runs `$body` for each lane `$l` of the blocks `$b` (one per slice `$s`, all as long as the
/// first): blocks of [`LANES`] values while whole ones remain, then blocks of 16 (so that small
/// planes such as 7x7 = 49 values are not left to the scalar tail); evaluates to the number of
/// values consumed. Fixed-size blocks let the lane loops compile to vector code.
macro_rules! lane_blocks {
    (($($s:expr),+), |$l:ident, $($b:ident),+| $body:block) => {{
        let len = [$($s.len()),+][0];
        let mut at = 0;
        while at + LANES <= len {
            $(let $b: &[f32; LANES] = $s[at..at + LANES].try_into().unwrap();)+
            for $l in 0..LANES $body
            at += LANES;
        }
        while at + 16 <= len {
            $(let $b: &[f32; 16] = $s[at..at + 16].try_into().unwrap();)+
            for $l in 0..16 $body
            at += 16;
        }
        at
    }};
}

/// Adds the partial sums in f64.
#[inline(always)]
fn total(acc: &[f32; LANES]) -> f64 {
    acc.iter().map(|&v| f64::from(v)).sum()
}

multiversion! {
    /// `(Σ x, Σ (x - shift)²)` over one plane; `shift` only matters for the second sum.
    fn plane_moments(x: &[f32], shift: f32) -> (f64, f64) {
        let (mut s, mut q) = ([0f32; LANES], [0f32; LANES]);
        let at = lane_blocks!((x), |l, xs| {
            let d = xs[l] - shift;
            s[l] += xs[l];
            q[l] += d * d;
        });
        let (mut s, mut q) = (total(&s), total(&q));
        for &v in &x[at..] {
            s += f64::from(v);
            q += f64::from(v - shift).powi(2);
        }
        (s, q)
    }
}

multiversion! {
    /// `y = x · scale + shift` over one plane, then `max(0, ·)` when `relu`.
    fn plane_affine(x: &[f32], y: &mut [MaybeUninit<f32>], scale: f32, shift: f32, relu: bool) {
        assert_eq!(x.len(), y.len());
        if relu {
            for (o, &v) in y.iter_mut().zip(x) {
                o.write((v * scale + shift).max(0.0));
            }
        } else {
            for (o, &v) in y.iter_mut().zip(x) {
                o.write(v * scale + shift);
            }
        }
    }
}

multiversion! {
    /// `y = max(0, x · scale + shift) · m` over one plane (`m` the dropout mask).
    fn plane_affine_dropout(x: &[f32], m: &[f32], y: &mut [MaybeUninit<f32>], scale: f32, shift: f32) {
        assert!(x.len() == y.len() && m.len() == y.len());
        for ((o, &v), &m) in y.iter_mut().zip(x).zip(m) {
            o.write((v * scale + shift).max(0.0) * m);
        }
    }
}

multiversion! {
    /// [`plane_grad_sums`] behind a fused ReLU and dropout: `g' = g · dscale` where the output
    /// `y` is positive, else 0.
    fn plane_grad_sums_dropout(x: &[f32], y: &[f32], g: &[f32], mean: f32, dscale: f32) -> (f64, f64) {
        assert!(y.len() == x.len() && g.len() == x.len());
        let (mut sg, mut sgx) = ([0f32; LANES], [0f32; LANES]);
        let keep = |y: f32, g: f32| if y > 0.0 { g * dscale } else { 0.0 };
        let at = lane_blocks!((x, y, g), |l, xs, ys, gs| {
            let gm = keep(ys[l], gs[l]);
            sg[l] += gm;
            sgx[l] += gm * (xs[l] - mean);
        });
        let (mut sg, mut sgx) = (total(&sg), total(&sgx));
        for ((&x, &y), &g) in x[at..].iter().zip(&y[at..]).zip(&g[at..]) {
            let gm = f64::from(keep(y, g));
            sg += gm;
            sgx += gm * f64::from(x - mean);
        }
        (sg, sgx)
    }
}

multiversion! {
    /// `(Σ g', Σ g'·(x - mean))` over one plane, `g'` the gradient masked by the fused ReLU
    /// (zero where `x · scale + shift <= 0`).
    fn plane_grad_sums(x: &[f32], g: &[f32], mean: f32, scale: f32, shift: f32, relu: bool) -> (f64, f64) {
        assert_eq!(g.len(), x.len());
        let (mut sg, mut sgx) = ([0f32; LANES], [0f32; LANES]);
        let keep = |x: f32, g: f32| if relu && x * scale + shift <= 0.0 { 0.0 } else { g };
        let at = lane_blocks!((x, g), |l, xs, gs| {
            let gm = keep(xs[l], gs[l]);
            sg[l] += gm;
            sgx[l] += gm * (xs[l] - mean);
        });
        let (mut sg, mut sgx) = (total(&sg), total(&sgx));
        for (&x, &g) in x[at..].iter().zip(&g[at..]) {
            let gm = f64::from(keep(x, g));
            sg += gm;
            sgx += gm * f64::from(x - mean);
        }
        (sg, sgx)
    }
}

/// The per-channel constants of the backward pass.
#[derive(Debug, Clone, Copy)]
struct GradCoef {
    /// ReLU mask: `x · scale + shift <= 0` is cut.
    scale: f32,
    shift: f32,
    mean: f32,
    inv_std: f32,
    /// `γ / σ / m`.
    k: f32,
    /// Element count `m`.
    m: f32,
    /// `Σ g'`.
    sg: f32,
    /// `Σ g'·x̂`.
    sgx: f32,
}

multiversion! {
    /// `dx = k (m g' − Σ g' − x̂ Σ g'·x̂)` over one plane, plus `prior` (the gradient the
    /// input already has) when given.
    fn plane_input_grad(x: &[f32], g: &[f32], prior: Option<&[f32]>, dx: &mut [MaybeUninit<f32>], c: GradCoef, relu: bool) {
        assert!(x.len() == dx.len() && g.len() == dx.len());
        let grad = |x: f32, g: f32| {
            let gm = if relu && x * c.scale + c.shift <= 0.0 { 0.0 } else { g };
            let xhat = (x - c.mean) * c.inv_std;
            c.k * (c.m * gm - c.sg - xhat * c.sgx)
        };
        match prior {
            Some(p) => {
                assert_eq!(p.len(), dx.len());
                for (((o, &x), &g), &p) in dx.iter_mut().zip(x).zip(g).zip(p) {
                    o.write(p + grad(x, g));
                }
            }
            None => {
                for ((o, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                    o.write(grad(x, g));
                }
            }
        }
    }
}

multiversion! {
    /// [`plane_input_grad`] behind a fused ReLU and dropout (`g'` as in
    /// [`plane_grad_sums_dropout`]).
    fn plane_input_grad_dropout(x: &[f32], y: &[f32], g: &[f32], prior: Option<&[f32]>, dx: &mut [MaybeUninit<f32>], c: GradCoef, dscale: f32) {
        assert!(x.len() == dx.len() && y.len() == dx.len() && g.len() == dx.len());
        let grad = |x: f32, y: f32, g: f32| {
            let gm = if y > 0.0 { g * dscale } else { 0.0 };
            let xhat = (x - c.mean) * c.inv_std;
            c.k * (c.m * gm - c.sg - xhat * c.sgx)
        };
        match prior {
            Some(p) => {
                assert_eq!(p.len(), dx.len());
                for ((((o, &x), &y), &g), &p) in dx.iter_mut().zip(x).zip(y).zip(g).zip(p) {
                    o.write(p + grad(x, y, g));
                }
            }
            None => {
                for (((o, &x), &y), &g) in dx.iter_mut().zip(x).zip(y).zip(g) {
                    o.write(grad(x, y, g));
                }
            }
        }
    }
}

/// Batch norm (+ ReLU (+ dropout)) of `x` `[N, C, H, W]` with scale `gamma` and shift `beta`
/// (`[C]`), f32 on the CPU. A `dropout` needs `relu` (it is fused after the ReLU).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    dropout: Option<Dropout>,
) -> Result<BnTrain> {
    let (x, op, mean, var) = batch_statistics(x, gamma, beta, eps, relu, dropout)?;
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op.clone())?;
    Ok(BnTrain { y, mean, var, op })
}

/// Batch norm + ReLU of `x` (as [`batch_norm_train`], no dropout) whose output is left to
/// the one convolution that reads it: the statistics are taken, the normalised output is not
/// written. The returned [`BnTrain::y`] is `x` itself, and the [`BnReluInput`] is what the
/// convolution applies to it as it reads it (the same values the normalise pass writes).
pub fn batch_norm_train_for_reader(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(BnTrain, BnReluInput)> {
    let (x, op, mean, var) = batch_statistics(x, gamma, beta, eps, true, None)?;
    let input = op.reader_input(gamma, beta)?;
    Ok((
        BnTrain {
            y: x,
            mean,
            var,
            op,
        },
        input,
    ))
}

/// The batch statistics of `x` (made contiguous, and returned so) and the op that normalises
/// with them: [`batch_norm_train`] without its normalise pass.
fn batch_statistics(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    dropout: Option<Dropout>,
) -> Result<(Tensor, BnRelu, Vec<f32>, Vec<f32>)> {
    let (n, c, h, w) = x.dims4()?;
    let count = n * h * w;
    if count < 2 || gamma.dims() != [c] || beta.dims() != [c] {
        bail!(
            "batch norm: input {:?} with parameters {:?}/{:?}",
            x.dims(),
            gamma.dims(),
            beta.dims()
        )
    }
    if dropout.is_some() && !relu {
        bail!("batch norm: a fused dropout needs the fused ReLU")
    }
    let dims = [n, c, h, w];
    let x = x.contiguous()?;
    let (mean, var) = with_f32(&x, |d| {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let planes = (0..n).map(|i| &d[(i * c + ch) * h * w..][..h * w]);
                // a shifted first pass (first value) keeps the sum of squares well conditioned
                let shift = d[ch * h * w];
                let (s, q) = planes.fold((0f64, 0f64), |(s, q), p| {
                    let (a, b) = plane_moments(p, shift);
                    (s + a, q + b)
                });
                let m = s / count as f64;
                // Σ (x - k)² = Σ (x - m)² + count (m - k)²
                let v = (q / count as f64 - (m - f64::from(shift)).powi(2)).max(0.0);
                (m as f32, v as f32)
            })
            .unzip::<f32, f32, Vec<f32>, Vec<f32>>()
    })?;
    let inv_std = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let stats = Arc::new(Stats {
        mean: mean.clone(),
        inv_std,
    });
    let op = BnRelu {
        dims,
        stats,
        relu,
        dropout,
    };
    Ok((x, op, mean, var))
}

/// A batch norm + ReLU applied by the convolution that reads its output, as it copies its
/// input ([`batch_norm_train_for_reader`]): per channel `max(0, x · scale + shift)`, the
/// expression the normalise pass evaluates, so the convolution sees the same values bit for
/// bit without the normalised tensor ever being written.
#[derive(Debug, Clone, PartialEq)]
pub struct BnReluInput {
    /// Per channel: `(scale, shift)`.
    coef: Vec<(f32, f32)>,
}

impl BnReluInput {
    /// The input of per-channel `(scale, shift)`.
    pub fn new(coef: Vec<(f32, f32)>) -> Self {
        BnReluInput { coef }
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.coef.len()
    }

    /// `dst = max(0, src · scale + shift)` with channel `c`'s coefficients (equal lengths).
    #[inline(always)]
    pub(crate) fn row(&self, c: usize, src: &[f32], dst: &mut [f32]) {
        let (scale, shift) = self.coef[c];
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (v * scale + shift).max(0.0);
        }
    }

    /// The normalised, rectified values of `x` (whole images of `[N, C, H, W]`, planes of
    /// `hw` values), on the calling thread: what the batch norm would have written, for a
    /// convolution task that copies its part of the input before reading it.
    pub(crate) fn apply(&self, x: &[f32], hw: usize) -> Vec<f32> {
        let hw = hw.max(1);
        assert_eq!(x.len() % hw, 0, "whole planes");
        let fill = |y: &mut [MaybeUninit<f32>]| {
            for (p, (xp, yp)) in x.chunks_exact(hw).zip(y.chunks_exact_mut(hw)).enumerate() {
                let (scale, shift) = self.coef[p % self.channels()];
                plane_affine(xp, yp, scale, shift, true);
            }
        };
        // SAFETY: `x` is whole planes, so the planes cover `y`, and plane_affine writes all
        // of each (it checks lengths).
        unsafe { written_vec(x.len(), fill) }
    }
}

/// `y = x · scale + shift` (then `max(0, ·)` when `relu`) over the `hw`-value planes of a
/// contiguous `[N, C, H, W]` buffer, `(scale, shift) = coef(channel)`; multithreaded.
fn affine_planes(
    x: &[f32],
    c: usize,
    hw: usize,
    relu: bool,
    coef: impl Fn(usize) -> (f32, f32) + Sync,
) -> Vec<f32> {
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(hw.max(1))
            .zip(x.par_chunks(hw.max(1)))
            .enumerate()
            .with_min_len(planes_per_task(hw))
            .for_each(|(p, (yo, xi))| {
                let (scale, shift) = coef(p % c);
                plane_affine(xi, yo, scale, shift, relu);
            })
    };
    // SAFETY: the planes cover `y` and plane_affine writes all of each (it checks lengths).
    unsafe { written_vec(x.len(), fill) }
}

/// [`affine_planes`] with the ReLU and then `dropout`'s mask (element `i` of the buffer is
/// element `i` of the mask).
fn affine_planes_dropout(
    x: &[f32],
    c: usize,
    hw: usize,
    dropout: &Dropout,
    coef: impl Fn(usize) -> (f32, f32) + Sync,
) -> Vec<f32> {
    let hw = hw.max(1);
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .enumerate()
            .with_min_len(planes_per_task(hw))
            .for_each_init(
                || vec![0f32; hw.min(64 * GROUP)],
                |mask, (p, (yo, xi))| {
                    let (scale, shift) = coef(p % c);
                    // planes of any size, through a mask buffer that stays in L1
                    let len = mask.len();
                    for (j, (ys, xs)) in yo.chunks_mut(len).zip(xi.chunks(len)).enumerate() {
                        let m = &mut mask[..xs.len()];
                        dropout.fill(p * hw + j * len, m);
                        plane_affine_dropout(xs, m, ys, scale, shift);
                    }
                },
            )
    };
    // SAFETY: the planes cover `y`; each chunk of each is written by plane_affine_dropout.
    unsafe { written_vec(x.len(), fill) }
}

/// Inference-mode batch norm (+ ReLU) of `x` `[N, C, H, W]` from the running statistics:
/// `y = x · scale + shift` per channel, `scale = γ / √(var + eps)`, `shift = β − mean · scale`
/// (then `max(0, ·)` when `relu`). One multithreaded pass; not differentiable.
pub fn batch_norm_eval(x: &Tensor, stats: [&Tensor; 4], eps: f64, relu: bool) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let coef = eval_coefficients(stats, eps, c)?;
    let x = x.contiguous()?;
    let y = with_f32(&x, |xd| affine_planes(xd, c, h * w, relu, |ch| coef[ch]))?;
    tensor(y, &[n, c, h, w])
}

/// [`batch_norm_eval`] + ReLU left to the convolution that reads its output (see
/// [`BnReluInput`]): its per-channel coefficients, nothing computed over `x` (`[N, C, H,
/// W]`, whose shape is checked).
pub fn batch_norm_eval_for_reader(
    x: &Tensor,
    stats: [&Tensor; 4],
    eps: f64,
) -> Result<BnReluInput> {
    let (_, c, _, _) = x.dims4()?;
    Ok(BnReluInput::new(eval_coefficients(stats, eps, c)?))
}

/// Per channel `(scale, shift)` of inference-mode batch norm from `[γ, β, mean, var]`.
fn eval_coefficients(
    [gamma, beta, mean, var]: [&Tensor; 4],
    eps: f64,
    c: usize,
) -> Result<Vec<(f32, f32)>> {
    let host = |t: &Tensor| -> Result<Vec<f32>> {
        let v: Vec<f32> = t.to_vec1()?;
        if v.len() != c {
            bail!("batch norm: {c} channels, a statistic has {}", v.len())
        }
        Ok(v)
    };
    let (g, b, m, v) = (host(gamma)?, host(beta)?, host(mean)?, host(var)?);
    Ok((0..c)
        .map(|i| {
            let scale = g[i] * (1.0 / (f64::from(v[i]) + eps).sqrt()) as f32;
            (scale, b[i] - m[i] * scale)
        })
        .collect())
}

impl BnRelu {
    /// `(dx, dgamma, dbeta)` for the output gradient `grad`, given the forward's input,
    /// parameters and output `out` (read only with a fused dropout, see
    /// [`BnRelu::needs_output`]).
    ///
    /// `prior`, the gradient the input already has from its other readers, comes back summed
    /// into `dx` (added in the pass that writes it).
    ///
    /// `sums`, when the convolution that wrote `grad` took them ([`GradSumsFor`]), are the
    /// per-plane sums of the first backward pass, which is then skipped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        out: &Tensor,
        grad: &Tensor,
        prior: Option<&Tensor>,
        sums: Option<&[(f64, f64)]>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        match self.backward_onto(x, gamma, beta, out, grad, prior, sums)? {
            (Some(dx), Some(dg), Some(db)) => Ok((dx, dg, db)),
            _ => bail!("batch norm: incomplete backward"),
        }
    }

    /// Whether [`BnRelu::backward`] reads the forward's output (a fused dropout: the kept
    /// elements are where it is positive).
    pub(crate) fn needs_output(&self) -> bool {
        self.dropout.is_some()
    }

    /// The batch norm + ReLU as its reader applies it ([`BnReluInput`]): the normalise
    /// pass's per-channel coefficients for these parameters (a ReLU and no dropout).
    pub(crate) fn reader_input(&self, gamma: &Tensor, beta: &Tensor) -> Result<BnReluInput> {
        if !self.relu || self.dropout.is_some() {
            bail!("batch norm: only a batch norm + ReLU without dropout is applied by its reader")
        }
        let (g, b): (Vec<f32>, Vec<f32>) = (gamma.to_vec1()?, beta.to_vec1()?);
        let c = self.dims[1];
        if g.len() != c || b.len() != c {
            bail!(
                "batch norm: {c} channels, parameters of {} and {}",
                g.len(),
                b.len()
            )
        }
        Ok(BnReluInput::new(
            (0..c).map(|ch| self.affine(&g, &b, ch)).collect(),
        ))
    }

    /// `(scale, shift)` of channel `c`: `y = x * scale + shift`.
    fn affine(&self, gamma: &[f32], beta: &[f32], c: usize) -> (f32, f32) {
        let s = gamma[c] * self.stats.inv_std[c];
        (s, beta[c] - self.stats.mean[c] * s)
    }

    /// `(Σ g', Σ g'·(x - mean))` of plane `p` (`image · C + channel`) of the output gradient,
    /// `g` its values: the first backward pass's sums, `g'` masked by the fused ReLU (read off
    /// `x`) or by the dropout and ReLU (read off the output `y`).
    fn plane_grad(
        &self,
        x: &[f32],
        y: Option<&[f32]>,
        coef: (&[f32], &[f32]),
        p: usize,
        g: &[f32],
    ) -> (f64, f64) {
        let [_, c, h, w] = self.dims;
        let (hw, ch) = (h * w, p % c);
        let xp = &x[p * hw..][..hw];
        match (&self.dropout, y) {
            (Some(d), Some(y)) => {
                plane_grad_sums_dropout(xp, &y[p * hw..][..hw], g, self.stats.mean[ch], d.scale())
            }
            _ => {
                let (scale, shift) = self.affine(coef.0, coef.1, ch);
                plane_grad_sums(xp, g, self.stats.mean[ch], scale, shift, self.relu)
            }
        }
    }
}

/// What the convolution whose input gradient is a batch norm's output gradient needs to take
/// the batch norm's per-plane backward sums ([`BnRelu::backward`]'s `sums`) while each chunk
/// of that gradient is in cache.
#[derive(Debug, Clone)]
pub(crate) struct GradSumsFor {
    /// The batch norm of the forward pass (statistics, ReLU, dropout).
    pub bn: BnRelu,
    /// Its input.
    pub x: Tensor,
    /// Its scale and shift parameters.
    pub gamma: Tensor,
    pub beta: Tensor,
    /// Its output, needed with a fused dropout.
    pub out: Option<Tensor>,
}

impl GradSumsFor {
    /// Runs `f` with the function that gives plane `p`'s sums from its gradient values.
    pub(crate) fn with_plane_fn<R>(
        &self,
        f: impl FnOnce(&(dyn Fn(usize, &[f32]) -> (f64, f64) + Sync)) -> R,
    ) -> Result<R> {
        let out = match (&self.bn.dropout, &self.out) {
            (Some(_), Some(o)) if o.dims() == self.bn.dims => Some(o.contiguous()?),
            (Some(_), _) => bail!("batch norm: a fused dropout's sums need its output"),
            (None, _) => None,
        };
        if self.x.dims() != self.bn.dims {
            bail!(
                "batch norm: input {:?} for {:?}",
                self.x.dims(),
                self.bn.dims
            )
        }
        let gamma: Vec<f32> = self.gamma.to_vec1()?;
        let beta: Vec<f32> = self.beta.to_vec1()?;
        let x = self.x.contiguous()?;
        let mut f = Some(f);
        with_f32(&x, |xd| {
            let mut go = |y: Option<&[f32]>| {
                let plane = |p: usize, g: &[f32]| self.bn.plane_grad(xd, y, (&gamma, &beta), p, g);
                f.take().map(|f| f(&plane))
            };
            match &out {
                Some(o) => with_f32(o, |yd| go(Some(yd))),
                None => Ok(go(None)),
            }
        })??
        .ok_or_else(|| candle_core::Error::Msg("batch norm: sums taken twice".into()))
    }
}

impl CustomOp3 for BnRelu {
    fn name(&self) -> &'static str {
        "wrnc-batch-norm-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, c, h, w] = self.dims;
        let (x, gamma, beta) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        if x.len() != n * c * h * w || gamma.len() != c || beta.len() != c {
            bail!("batch norm: storage does not match {:?}", self.dims)
        }
        let coef = |ch| self.affine(gamma, beta, ch);
        let y = match &self.dropout {
            Some(d) => affine_planes_dropout(x, c, h * w, d, coef),
            None => affine_planes(x, c, h * w, self.relu, coef),
        };
        Ok((CpuStorage::F32(y), Shape::from(self.dims.to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward_onto(x, gamma, beta, res, grad, None, None)
    }
}

/// The gradients `(dx, dγ, dβ)` of [`BnRelu`].
type BnGrads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

impl BnRelu {
    /// The backward pass for the output `res` and its gradient `grad`, `dx` summed onto
    /// `prior` when given, the first pass's per-plane `sums` taken as given when given.
    #[allow(clippy::too_many_arguments)]
    fn backward_onto(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
        prior: Option<&Tensor>,
        sums: Option<&[(f64, f64)]>,
    ) -> Result<BnGrads> {
        let [n, c, _, _] = self.dims;
        if let Some(s) = sums.filter(|s| s.len() != n * c) {
            bail!("batch norm: {} plane sums for {n} x {c} planes", s.len())
        }
        let grad = grad.contiguous()?;
        let prior = match prior {
            Some(p) if p.dims() != self.dims => {
                bail!(
                    "batch norm: prior gradient {:?} for {:?}",
                    p.dims(),
                    self.dims
                )
            }
            p => p.map(|p| p.contiguous()).transpose()?,
        };
        let with_prior = |f: &dyn Fn(Option<&[f32]>) -> Result<BnGrads>| match &prior {
            Some(p) => with_f32(p, |pd| f(Some(pd)))?,
            None => f(None),
        };
        if let Some(d) = &self.dropout {
            if res.dims() != self.dims {
                bail!("batch norm: output {:?} for {:?}", res.dims(), self.dims)
            }
            let res = res.contiguous()?;
            return with_f32(&res, |yd| {
                with_prior(&|p| {
                    self.backward_impl(x, gamma, beta, &grad, Some((yd, d.scale())), p, sums)
                })
            })?;
        }
        with_prior(&|p| self.backward_impl(x, gamma, beta, &grad, None, p, sums))
    }

    /// The backward pass; `dropout` is the forward's output with the mask's scale when a
    /// dropout is fused, `prior` the gradient `dx` is summed onto, `given` the first pass's
    /// per-plane sums when the gradient's writer took them.
    #[allow(clippy::too_many_arguments)]
    fn backward_impl(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        grad: &Tensor,
        dropout: Option<(&[f32], f32)>,
        prior: Option<&[f32]>,
        given: Option<&[(f64, f64)]>,
    ) -> Result<BnGrads> {
        let [n, c, h, w] = self.dims;
        let hw = h * w;
        let count = (n * hw) as f64;
        let gamma_v: Vec<f32> = gamma.to_vec1()?;
        let beta_v: Vec<f32> = beta.to_vec1()?;
        let st = &self.stats;
        let (dx, dgamma, dbeta) = with_f32(x, |xd| {
            with_f32(grad, |gd| {
                let y = dropout.map(|(yd, _)| yd);
                let sums: Vec<(f64, f64)> = (0..c)
                    .into_par_iter()
                    .map(|ch| {
                        let (mut sg, mut sgx) = (0f64, 0f64);
                        // image by image, whoever computed the planes' sums
                        for p in (0..n).map(|i| i * c + ch) {
                            let (a, b) = match given {
                                Some(s) => s[p],
                                None => {
                                    let g = &gd[p * hw..][..hw];
                                    self.plane_grad(xd, y, (&gamma_v, &beta_v), p, g)
                                }
                            };
                            sg += a;
                            sgx += b;
                        }
                        (sg, sgx * f64::from(st.inv_std[ch]))
                    })
                    .collect();
                let fill = |dx: &mut [MaybeUninit<f32>]| {
                    dx.par_chunks_mut(hw.max(1))
                        .enumerate()
                        .with_min_len(planes_per_task(hw))
                        .for_each(|(p, out)| {
                            let ch = p % c;
                            let (scale, shift) = self.affine(&gamma_v, &beta_v, ch);
                            let (sg, sgx) = sums[ch];
                            let coef = GradCoef {
                                scale,
                                shift,
                                mean: st.mean[ch],
                                inv_std: st.inv_std[ch],
                                k: gamma_v[ch] * st.inv_std[ch] / count as f32,
                                m: count as f32,
                                sg: sg as f32,
                                sgx: sgx as f32,
                            };
                            let at = p * hw;
                            let (xp, gp) = (&xd[at..at + hw], &gd[at..at + hw]);
                            let pp = prior.map(|pd| &pd[at..at + hw]);
                            match dropout {
                                Some((yd, dscale)) => plane_input_grad_dropout(
                                    xp,
                                    &yd[at..at + hw],
                                    gp,
                                    pp,
                                    out,
                                    coef,
                                    dscale,
                                ),
                                None => plane_input_grad(xp, gp, pp, out, coef, self.relu),
                            }
                        });
                };
                // SAFETY: the planes cover `dx` and plane_input_grad writes all of each.
                let dx = unsafe { written_vec(xd.len(), fill) };
                let dgamma = sums.iter().map(|s| s.1 as f32).collect::<Vec<_>>();
                let dbeta = sums.iter().map(|s| s.0 as f32).collect::<Vec<_>>();
                (dx, dgamma, dbeta)
            })
        })??;
        Ok((
            Some(tensor(dx, &self.dims)?),
            Some(tensor(dgamma, &[c])?),
            Some(tensor(dbeta, &[c])?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, rand};
    use crate::ops;
    use candle_core::{Device, Var};

    fn check(dims: &[usize], relu: bool, seed: u64) {
        check_with(dims, relu, None, seed)
    }

    /// The fused op (BN, ReLU when `relu`, then `dropout` `(node, p)`) against Candle's ops
    /// and [`ops::dropout_mask`]: output, statistics and gradients.
    fn check_with(dims: &[usize], relu: bool, dropout: Option<(usize, f64)>, seed: u64) {
        let x =
            Var::from_tensor(&(rand(dims, seed) * 3.0).unwrap().affine(1.0, 0.5).unwrap()).unwrap();
        let c = dims[1];
        let g = Var::from_tensor(&rand(&[c], seed + 1)).unwrap();
        let b = Var::from_tensor(&rand(&[c], seed + 2)).unwrap();
        let zeros = Tensor::zeros(c, candle_core::DType::F32, &Device::Cpu).unwrap();
        let ones = Tensor::ones(c, candle_core::DType::F32, &Device::Cpu).unwrap();
        let drop = dropout.map(|(node, p)| Dropout::new(seed, 3, node, p));
        let ours = batch_norm_train(&x, &g, &b, 1e-5, relu, drop).unwrap();
        let r = ops::batch_norm_train(&x, [&g, &b, &zeros, &ones], 1e-5, 1.0).unwrap();
        let theirs = if relu { r.y.relu().unwrap() } else { r.y };
        let theirs = match dropout {
            Some((node, p)) => {
                let dt = candle_core::DType::F32;
                let mask = ops::dropout_mask(seed, 3, node, dims, p, dt, &Device::Cpu).unwrap();
                (theirs * mask).unwrap()
            }
            None => theirs,
        };
        let what = format!("bn {dims:?} relu={relu} dropout={dropout:?}");
        assert_close(&ours.y, &theirs, 1e-5, &format!("{what} y"));
        let count = (dims[0] * dims[2] * dims[3]) as f64;
        let unbiased = Tensor::new(ours.var.as_slice(), &Device::Cpu)
            .unwrap()
            .affine(count / (count - 1.0), 0.0)
            .unwrap();
        let mean = Tensor::new(ours.mean.as_slice(), &Device::Cpu).unwrap();
        assert_close(&mean, &r.running_mean, 1e-5, &format!("{what} mean"));
        assert_close(&unbiased, &r.running_var, 1e-5, &format!("{what} var"));
        let dy = rand(dims, seed + 3);
        // the tape's entry point, outside Candle's autograd
        let taped = |prior: Option<&Tensor>, sums: Option<&[(f64, f64)]>| {
            let (x, g, b, y) = (
                x.as_tensor().detach(),
                g.detach(),
                b.detach(),
                ours.y.detach(),
            );
            ours.op.backward(&x, &g, &b, &y, &dy, prior, sums)
        };
        let (tdx, tdg, tdb) = taped(None, None).unwrap();
        // a gradient the input already has comes back summed into dx
        let prior = rand(dims, seed + 4);
        let (pdx, _, _) = taped(Some(&prior), None).unwrap();
        let want = (&prior + &tdx).unwrap();
        assert_close(&pdx, &want, 1e-6, &format!("bn {dims:?} dx onto a prior"));
        // the first pass's sums taken plane by plane by the gradient's writer give the same
        // gradients, bit for bit
        let request = GradSumsFor {
            bn: ours.op.clone(),
            x: x.as_tensor().detach(),
            gamma: g.detach(),
            beta: b.detach(),
            out: Some(ours.y.detach()),
        };
        let hw = dims[2] * dims[3];
        let dyv: Vec<f32> = dy.flatten_all().unwrap().to_vec1().unwrap();
        let sums: Vec<(f64, f64)> = request
            .with_plane_fn(|f| dyv.chunks(hw).enumerate().map(|(p, gp)| f(p, gp)).collect())
            .unwrap();
        let (sdx, sdg, sdb) = taped(None, Some(&sums)).unwrap();
        for (a, b, name) in [
            (&sdx, &tdx, "dx"),
            (&sdg, &tdg, "dgamma"),
            (&sdb, &tdb, "dbeta"),
        ] {
            let (a, b) = (a.flatten_all().unwrap(), b.flatten_all().unwrap());
            let (a, b): (Vec<f32>, Vec<f32>) = (a.to_vec1().unwrap(), b.to_vec1().unwrap());
            assert_eq!(a, b, "bn {dims:?} {name} from given sums");
        }
        assert!(taped(None, Some(&sums[1..])).is_err());
        let g1 = (&ours.y * &dy)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (theirs * &dy)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (v, name) in [(&x, "dx"), (&g, "dgamma"), (&b, "dbeta")] {
            let tol = 1e-4;
            assert_close(
                g1.get(v).unwrap(),
                g2.get(v).unwrap(),
                tol,
                &format!("{what} {name}"),
            );
        }
        for (t, v, name) in [(&tdx, &x, "dx"), (&tdg, &g, "dgamma"), (&tdb, &b, "dbeta")] {
            assert_close(t, g2.get(v).unwrap(), 1e-4, &format!("{what} taped {name}"));
        }
    }

    #[test]
    fn a_fused_dropout_matches_candle_and_the_scheme() {
        // planes of 25 (unaligned mask blocks), 64 and 4,900 (several mask buffers)
        check_with(&[4, 3, 5, 5], true, Some((7, 0.3)), 5);
        check_with(&[2, 5, 8, 8], true, Some((2, 0.5)), 6);
        check_with(&[2, 2, 70, 70], true, Some((11, 0.3)), 7);
        let x = rand(&[2, 2, 3, 3], 5);
        let g = rand(&[2], 6);
        let d = Some(Dropout::new(1, 0, 0, 0.3));
        assert!(
            batch_norm_train(&x, &g, &g, 1e-5, false, d).is_err(),
            "dropout without the ReLU"
        );
    }

    #[test]
    fn matches_candle_with_and_without_relu() {
        check(&[4, 3, 5, 5], false, 1);
        check(&[4, 3, 5, 5], true, 2);
        check(&[2, 5, 1, 1], true, 3);
        check(&[3, 2, 8, 4], true, 4);
        // planes of 49 (three 16-lane blocks and a tail) and 196 (64- and 16-lane blocks)
        check(&[3, 4, 7, 7], true, 5);
        check(&[2, 3, 14, 14], false, 6);
    }

    #[test]
    fn eval_mode_matches_the_reference() {
        for (dims, relu) in [([3, 4, 5, 5], false), ([2, 3, 4, 4], true)] {
            let c = dims[1];
            let x = rand(&dims, 11);
            let g = rand(&[c], 12);
            let b = rand(&[c], 13);
            let m = rand(&[c], 14);
            let v = (rand(&[c], 15).abs().unwrap() + 0.5).unwrap();
            let ours = batch_norm_eval(&x, [&g, &b, &m, &v], 1e-5, relu).unwrap();
            let theirs = ops::batch_norm_eval(&x, [&g, &b, &m, &v], 1e-5).unwrap();
            let theirs = if relu { theirs.relu().unwrap() } else { theirs };
            assert_close(
                &ours,
                &theirs,
                1e-6,
                &format!("eval bn {dims:?} relu={relu}"),
            );
        }
    }

    /// What a reader applies ([`batch_norm_train_for_reader`]) is what the batch norm + ReLU
    /// writes, bit for bit, with the same statistics; the "output" handed on is the input.
    #[test]
    fn the_readers_input_is_the_written_output_bit_for_bit() {
        for (dims, seed) in [([4, 3, 5, 7], 1), ([2, 16, 8, 8], 2), ([3, 5, 1, 9], 3)] {
            let x = (rand(&dims, seed) * 3.0).unwrap().affine(1.0, 0.5).unwrap();
            let gamma = rand(&dims[1..2], seed + 10);
            let beta = rand(&dims[1..2], seed + 20);
            let written = batch_norm_train(&x, &gamma, &beta, 1e-5, true, None).unwrap();
            let (left, input) = batch_norm_train_for_reader(&x, &gamma, &beta, 1e-5).unwrap();
            assert_eq!((&left.mean, &left.var), (&written.mean, &written.var));
            let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let ys: Vec<f32> = written.y.flatten_all().unwrap().to_vec1().unwrap();
            let kept: Vec<f32> = left.y.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(kept, xs, "{dims:?}: the input is handed on");
            let hw = dims[2] * dims[3];
            assert_eq!(input.apply(&xs, hw), ys, "{dims:?}");
            // row by row, as a convolution's padded copy applies it
            for (p, (xp, yp)) in xs.chunks(hw).zip(ys.chunks(hw)).enumerate() {
                let mut row = vec![f32::NAN; hw];
                input.row(p % dims[1], xp, &mut row);
                assert_eq!(row, yp, "{dims:?} plane {p}");
            }
            assert!(ys.contains(&0.0) && ys.iter().any(|&v| v > 0.0));
        }
    }

    /// In inference too: the reader applies what the inference pass writes, bit for bit.
    #[test]
    fn the_readers_input_in_inference_is_the_written_output_bit_for_bit() {
        let dims = [3, 6, 5, 5];
        let x = (rand(&dims, 31) * 2.0).unwrap();
        let [g, b, m] = [32, 33, 34].map(|s| rand(&[6], s));
        let v = rand(&[6], 35).abs().unwrap().affine(1.0, 0.1).unwrap();
        let stats = [&g, &b, &m, &v];
        let written = batch_norm_eval(&x, stats, 1e-5, true).unwrap();
        let input = batch_norm_eval_for_reader(&x, stats, 1e-5).unwrap();
        let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let ys: Vec<f32> = written.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(input.apply(&xs, 25), ys);
        assert!(batch_norm_eval_for_reader(&rand(&[3, 5, 5, 5], 1), stats, 1e-5).is_err());
    }

    #[test]
    fn only_a_batch_norm_with_relu_and_no_dropout_is_left_to_its_reader() {
        let x = rand(&[2, 3, 4, 4], 7);
        let g = rand(&[3], 8);
        let plain = batch_norm_train(&x, &g, &g, 1e-5, false, None).unwrap();
        assert!(plain.op.reader_input(&g, &g).is_err());
        let dropped = Dropout::new(1, 2, 3, 0.5);
        let with_dropout = batch_norm_train(&x, &g, &g, 1e-5, true, Some(dropped)).unwrap();
        assert!(with_dropout.op.reader_input(&g, &g).is_err());
        let relu = batch_norm_train(&x, &g, &g, 1e-5, true, None).unwrap();
        assert_eq!(relu.op.reader_input(&g, &g).unwrap().channels(), 3);
        assert!(relu.op.reader_input(&rand(&[4], 9), &g).is_err());
    }

    #[test]
    fn rejects_bad_shapes() {
        let x = rand(&[1, 2, 1, 1], 5);
        let g = rand(&[2], 6);
        assert!(batch_norm_train(&x, &g, &g, 1e-5, false, None).is_err());
        let x = rand(&[2, 3, 2, 2], 5);
        assert!(batch_norm_train(&x, &g, &g, 1e-5, false, None).is_err());
    }
}
