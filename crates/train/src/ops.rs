//! Layer functions built from Candle primitives so that autograd differentiates them:
//! batch normalisation, dropout masks, average and max pooling and the loss.

use crate::error::{Result, TrainError};
use candle_core::{DType, Device, Tensor, D};

/// Output of a training-mode batch norm: the normalised tensor (differentiable through the
/// batch statistics) and the updated running statistics (detached).
#[derive(Debug)]
pub struct BnTrainOutput {
    /// `gamma * (x - mean) / sqrt(var + eps) + beta` with the biased batch variance.
    pub y: Tensor,
    /// `(1 - m) * running_mean + m * batch_mean`.
    pub running_mean: Tensor,
    /// `(1 - m) * running_var + m * batch_var * n / (n - 1)`.
    pub running_var: Tensor,
}

/// The reduction axes and broadcast shape of a BN over `x` (`[N, C]` or `[N, C, H, W]`).
fn bn_axes(x: &Tensor) -> Result<(Vec<usize>, Vec<usize>, usize)> {
    match x.dims() {
        &[n, c] => Ok((vec![0], vec![1, c], n)),
        &[n, c, h, w] => Ok((vec![0, 2, 3], vec![1, c, 1, 1], n * h * w)),
        d => Err(TrainError::Internal(format!(
            "batch norm needs a [N, C] or [N, C, H, W] input, got {d:?}"
        ))),
    }
}

/// Sum over every axis but the channel axis, keeping dimensions. Candle reduces trailing
/// contiguous axes much faster than a strided set, so the spatial axes go first.
fn channel_sum(x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    Ok(if axes.len() == 3 {
        x.sum_keepdim((2, 3))?.sum_keepdim(0)?
    } else {
        x.sum_keepdim(0)?
    })
}

/// Expands a `[1, C, 1, 1]` statistic to `[N, C, 1, 1]` before it is broadcast over the
/// spatial axes: the backward pass then reduces the batch axis and the trailing spatial axes
/// separately, both fast paths in Candle, instead of one slow strided reduction.
fn per_sample(stat: &Tensor, x: &Tensor) -> Result<Tensor> {
    Ok(if x.rank() == 4 {
        let (n, c, _, _) = x.dims4()?;
        stat.broadcast_as((n, c, 1, 1))?
    } else {
        stat.clone()
    })
}

/// PyTorch training-mode batch norm: statistics over every axis but the channel axis,
/// normalisation with the biased variance, running statistics updated with the unbiased one.
///
/// `stats` is `[gamma, beta, running_mean, running_var]`, the order of the op's parameters.
pub fn batch_norm_train(
    x: &Tensor,
    stats: [&Tensor; 4],
    eps: f64,
    momentum: f64,
) -> Result<BnTrainOutput> {
    let [gamma, beta, running_mean, running_var] = stats;
    let (axes, bshape, count) = bn_axes(x)?;
    if count < 2 {
        return Err(TrainError::Invalid(format!(
            "batch norm in training needs more than one value per channel, got input {:?}; \
             use a larger batch (or drop_last)",
            x.dims()
        )));
    }
    let mean = channel_sum(x, &axes)?.affine(1.0 / count as f64, 0.0)?;
    let xc = x.broadcast_sub(&per_sample(&mean, x)?)?;
    let var = channel_sum(&xc.sqr()?, &axes)?.affine(1.0 / count as f64, 0.0)?;
    let inv_std = (&var + eps)?.sqrt()?.recip()?;
    let scale = inv_std.broadcast_mul(&gamma.reshape(bshape.as_slice())?)?;
    let shift = beta.reshape(bshape.as_slice())?;
    let y = xc
        .broadcast_mul(&per_sample(&scale, x)?)?
        .broadcast_add(&per_sample(&shift, x)?)?;
    let c = gamma.dim(0)?;
    let batch_mean = mean.detach().reshape(c)?;
    let unbiased = var
        .detach()
        .reshape(c)?
        .affine(count as f64 / (count - 1) as f64, 0.0)?;
    let (running_mean, running_var) = updated_running_stats(
        [running_mean, running_var],
        [&batch_mean, &unbiased],
        momentum,
    )?;
    Ok(BnTrainOutput {
        y,
        running_mean,
        running_var,
    })
}

/// PyTorch's running-statistics update: `(1 - m) * running + m * batch` for the mean and the
/// unbiased variance.
pub fn updated_running_stats(
    [running_mean, running_var]: [&Tensor; 2],
    [batch_mean, unbiased_var]: [&Tensor; 2],
    momentum: f64,
) -> Result<(Tensor, Tensor)> {
    let blend = |running: &Tensor, batch: &Tensor| -> Result<Tensor> {
        Ok((running.affine(1.0 - momentum, 0.0)? + batch.affine(momentum, 0.0)?)?)
    };
    Ok((
        blend(running_mean, batch_mean)?,
        blend(running_var, unbiased_var)?,
    ))
}

/// Inference-mode batch norm with the running statistics; `stats` is `[gamma, beta,
/// running_mean, running_var]`.
pub fn batch_norm_eval(x: &Tensor, stats: [&Tensor; 4], eps: f64) -> Result<Tensor> {
    let [gamma, beta, running_mean, running_var] = stats;
    let (_, bshape, _) = bn_axes(x)?;
    let scale = ((running_var + eps)?.sqrt()?.recip()? * gamma)?;
    let shift = (beta - (running_mean * &scale)?)?;
    Ok(x.broadcast_mul(&scale.reshape(bshape.as_slice())?)?
        .broadcast_add(&shift.reshape(bshape.as_slice())?)?)
}

/// The inverted-dropout mask of dropout node `node` at `step` under `seed`, shaped `shape`:
/// each element is 0 with probability `p`, else `1 / (1 - p)`, drawn with the counter-based
/// scheme of [`crate::philox`] (the same masks whatever the thread count, on resume, and on
/// every back end that follows the scheme). Filled in parallel chunks on the CPU, by a
/// kernel on a CUDA device ([`crate::dropout_device`]).
pub fn dropout_mask(
    seed: u64,
    step: u64,
    node: usize,
    shape: &[usize],
    p: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    use rayon::prelude::*;
    /// Elements per parallel chunk (a multiple of Philox's four words).
    const CHUNK: usize = 1 << 14;
    let n: usize = shape.iter().product();
    // On a GPU the same masks are drawn by a kernel, with no host draw or upload.
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        let launch = crate::dropout_device::DropoutLaunch::new(seed, step, node, p, n);
        return Ok(crate::cuda::dropout::dropout_mask(&launch, shape, dev)?.to_dtype(dtype)?);
    }
    let mut data = vec![0f32; n];
    data.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            crate::philox::fill_dropout_mask(seed, step, node, p, i * CHUNK, chunk)
        });
    Ok(Tensor::from_vec(data, shape, device)?.to_dtype(dtype)?)
}

/// Average pooling with zero padding counted out of the divisor (PyTorch
/// `count_include_pad=False`). Without padding and with stride == kernel it is Candle's
/// pooling; otherwise a ones-kernel convolution divided by the number of real inputs.
pub fn avg_pool(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if padding == 0 && stride == kernel && h % kernel == 0 && w % kernel == 0 {
        return Ok(x.avg_pool2d(kernel)?);
    }
    let ones = Tensor::ones((1, 1, kernel, kernel), x.dtype(), x.device())?;
    let sums = x
        .reshape((n * c, 1, h, w))?
        .conv2d(&ones, padding, stride, 1, 1)?;
    let (_, _, oh, ow) = sums.dims4()?;
    let count_1d = |len: usize, out: usize| -> Vec<f32> {
        (0..out)
            .map(|o| {
                let start = (o * stride) as isize - padding as isize;
                let end = start + kernel as isize;
                (end.min(len as isize) - start.max(0)) as f32
            })
            .collect()
    };
    let ch = count_1d(h, oh);
    let cw = count_1d(w, ow);
    let counts: Vec<f32> = ch
        .iter()
        .flat_map(|a| cw.iter().map(move |b| 1.0 / (a * b)))
        .collect();
    let inv = Tensor::from_vec(counts, (1, 1, oh, ow), x.device())?.to_dtype(x.dtype())?;
    Ok(sums.broadcast_mul(&inv)?.reshape((n, c, oh, ow))?)
}

/// The windows of a max pooling over one `[N, C, H, W]` input: the input padded with -inf
/// and, per window offset, the rows and columns it reads (stride apart).
struct PoolWindows {
    padded: Tensor,
    /// `rows[a]`: the padded rows `a, a + s, ..` read at window row `a`.
    rows: Vec<Tensor>,
    /// `cols[b]`: the padded columns `b, b + s, ..` read at window column `b`.
    cols: Vec<Tensor>,
    /// Input height and width.
    hw: (usize, usize),
    padding: usize,
}

impl PoolWindows {
    fn new(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<PoolWindows> {
        let (n, c, h, w) = x.dims4()?;
        let (hp, wp) = (h + 2 * padding, w + 2 * padding);
        if kernel == 0 || stride == 0 || hp < kernel || wp < kernel {
            return Err(TrainError::Internal(format!(
                "max pool {kernel}/{stride} p{padding} does not fit input {:?}",
                x.dims()
            )));
        }
        let (oh, ow) = ((hp - kernel) / stride + 1, (wp - kernel) / stride + 1);
        let padded = if padding == 0 {
            x.clone()
        } else {
            let fill = |shape: (usize, usize, usize, usize)| -> Result<Tensor> {
                Ok(Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())?)
            };
            let side = fill((n, c, h, padding))?;
            let x = Tensor::cat(&[&side, x, &side], 3)?;
            let band = fill((n, c, padding, wp))?;
            Tensor::cat(&[&band, &x, &band], 2)?
        };
        let offsets = |out: usize| -> Result<Vec<Tensor>> {
            (0..kernel)
                .map(|a| {
                    let idx: Vec<u32> = (0..out).map(|i| (a + i * stride) as u32).collect();
                    Ok(Tensor::from_vec(idx, out, x.device())?)
                })
                .collect()
        };
        Ok(PoolWindows {
            padded,
            rows: offsets(oh)?,
            cols: offsets(ow)?,
            hw: (h, w),
            padding,
        })
    }

    /// The input rows of window row `a` (`[N, C, OH, W + 2p]`).
    fn window_rows(&self, a: usize) -> Result<Tensor> {
        Ok(self.padded.index_select(&self.rows[a], 2)?)
    }

    /// The maximum of every window and, with `with_index`, the index `a * k + b` of the first
    /// maximum in row-major window order (strictly greater values replace the best so far).
    fn maxima(&self, with_index: bool) -> Result<(Tensor, Option<Tensor>)> {
        let k = self.rows.len();
        let mut best: Option<Tensor> = None;
        let mut which: Option<Tensor> = None;
        for a in 0..k {
            let rows = self.window_rows(a)?;
            for b in 0..k {
                let cand = rows.index_select(&self.cols[b], 3)?;
                let Some(prev) = best.take() else {
                    if with_index {
                        which = Some(Tensor::zeros(cand.shape(), DType::U32, cand.device())?);
                    }
                    best = Some(cand);
                    continue;
                };
                let wins = cand.gt(&prev)?;
                if let Some(w) = which.take() {
                    let here = Tensor::full((a * k + b) as u32, cand.shape(), cand.device())?;
                    which = Some(wins.where_cond(&here, &w)?);
                }
                best = Some(wins.where_cond(&cand, &prev)?);
            }
        }
        let best = best.ok_or_else(|| TrainError::Internal("max pool without window".into()))?;
        Ok((best, which))
    }
}

/// Max pooling with PyTorch's semantics: padding is -inf (never the maximum), the output size
/// rounds down, and each window's output is its first maximum in row-major window order, which
/// is where autograd sends the gradient (as PyTorch's CPU kernel does). Built from Candle ops
/// (select, compare, where), so it runs on every device and autograd differentiates it.
pub fn max_pool(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    Ok(PoolWindows::new(x, kernel, stride, padding)?
        .maxima(false)?
        .0)
}

/// The gradient of [`max_pool`] with respect to its input `x`, given the gradient `dy` of its
/// output: each output's gradient goes to its window's first maximum (the taped backward).
pub fn max_pool_backward(
    x: &Tensor,
    dy: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let windows = PoolWindows::new(x, kernel, stride, padding)?;
    let (_, which) = windows.maxima(true)?;
    let which = which.ok_or_else(|| TrainError::Internal("max pool without index".into()))?;
    let zeros = dy.zeros_like()?;
    let mut dx = windows.padded.zeros_like()?;
    for a in 0..kernel {
        let mut rows = windows.window_rows(a)?.zeros_like()?;
        for b in 0..kernel {
            let here = which.eq((a * kernel + b) as u32)?;
            let g = here.where_cond(dy, &zeros)?;
            rows = rows.index_add(&windows.cols[b], &g, 3)?;
        }
        dx = dx.index_add(&windows.rows[a], &rows, 2)?;
    }
    let (h, w) = windows.hw;
    let p = windows.padding;
    Ok(dx.narrow(2, p, h)?.narrow(3, p, w)?)
}

/// Mean cross-entropy of `logits` `[N, K]` against class indices `labels` `[N]` (u32),
/// through `log_softmax`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    Ok(candle_nn::loss::nll(&logp, labels)?)
}

/// Mean cross-entropy with label smoothing `eps` (PyTorch's
/// `cross_entropy(label_smoothing=eps)`): `(1 - eps) * nll + eps * mean over rows and classes
/// of -log_softmax`. `eps` 0 is [`cross_entropy`].
pub fn cross_entropy_smoothed(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    if eps == 0.0 {
        return cross_entropy(logits, labels);
    }
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = candle_nn::loss::nll(&logp, labels)?;
    let uniform = logp.mean_all()?.neg()?;
    Ok((nll.affine(1.0 - eps, 0.0)? + uniform.affine(eps, 0.0)?)?)
}

/// Mean soft-target cross-entropy of `logits` `[N, K]` against target distributions
/// `targets` `[N, K]` (timm's `SoftTargetCrossEntropy`, the loss of mixup and CutMix):
/// `mean over rows of -sum_j t_j log_softmax(x)_j`.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let targets = targets.to_dtype(logp.dtype())?;
    Ok((logp * targets)?.sum(D::Minus1)?.mean_all()?.neg()?)
}

/// Number of rows of `logits` whose arg-max equals the label.
pub fn count_correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    Ok(pred.iter().zip(labels).filter(|(p, l)| p == l).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    fn v(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn bn_train_forward_backward_and_running_stats() {
        // N=2, C=2, H=1, W=2. Channel 0 values: 1,3,5,7 ; channel 1: 2,2,4,8.
        let x = candle_core::Var::from_tensor(&t(&[1., 3., 2., 2., 5., 7., 4., 8.], &[2, 2, 1, 2]))
            .unwrap();
        let gamma = candle_core::Var::from_tensor(&t(&[2.0, 0.5], &[2])).unwrap();
        let beta = candle_core::Var::from_tensor(&t(&[0.1, -1.0], &[2])).unwrap();
        let rm = t(&[0.0, 1.0], &[2]);
        let rv = t(&[1.0, 2.0], &[2]);
        let out = batch_norm_train(&x, [&gamma, &beta, &rm, &rv], 1e-5, 0.1).unwrap();
        // channel 0: mean 4, biased var (9+1+1+9)/4 = 5; channel 1: mean 4, var (4+4+0+16)/4=6
        let s0 = 1.0 / (5.0f32 + 1e-5).sqrt();
        let s1 = 1.0 / (6.0f32 + 1e-5).sqrt();
        let want = [
            2.0 * -3.0 * s0 + 0.1,
            -2.0 * s0 + 0.1,
            0.5 * -2.0 * s1 - 1.0,
            0.5 * -2.0 * s1 - 1.0,
            2.0 * 1.0 * s0 + 0.1,
            2.0 * 3.0 * s0 + 0.1,
            0.5 * 0.0 * s1 - 1.0,
            0.5 * 4.0 * s1 - 1.0,
        ];
        close(&v(&out.y), &want, 1e-5);
        // running: mean 0.9*[0,1] + 0.1*[4,4]; var 0.9*[1,2] + 0.1*[20/3, 8]
        close(&v(&out.running_mean), &[0.4, 1.3], 1e-6);
        close(&v(&out.running_var), &[0.9 + 2.0 / 3.0, 1.8 + 0.8], 1e-6);

        // Backward of sum(y * w) with w = [1..8]: analytic BN gradient per channel:
        // dx = gamma * s / n * (n*g - sum(g) - xhat * sum(g * xhat)), g = upstream grad.
        let w = t(&[1., 2., 3., 4., 5., 6., 7., 8.], &[2, 2, 1, 2]);
        let loss = (out.y * &w).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let dx = v(grads.get(&x).unwrap());
        let xs = [[1.0f32, 3., 5., 7.], [2., 2., 4., 8.]];
        let gs = [[1.0f32, 2., 5., 6.], [3., 4., 7., 8.]];
        let gam = [2.0f32, 0.5];
        let ss = [s0, s1];
        let mut want = [0f32; 8];
        let pos = [[0usize, 1, 4, 5], [2, 3, 6, 7]];
        let mut dgamma = [0f32; 2];
        for c in 0..2 {
            let mean = xs[c].iter().sum::<f32>() / 4.0;
            let xhat: Vec<f32> = xs[c].iter().map(|x| (x - mean) * ss[c]).collect();
            let sg: f32 = gs[c].iter().sum();
            let sgx: f32 = gs[c].iter().zip(&xhat).map(|(g, h)| g * h).sum();
            dgamma[c] = sgx;
            for i in 0..4 {
                want[pos[c][i]] = gam[c] * ss[c] / 4.0 * (4.0 * gs[c][i] - sg - xhat[i] * sgx);
            }
        }
        close(&dx, &want, 1e-5);
        close(&v(grads.get(&gamma).unwrap()), &dgamma, 1e-4);
        close(&v(grads.get(&beta).unwrap()), &[14.0, 22.0], 1e-5);
    }

    #[test]
    fn bn_eval_uses_running_stats() {
        let x = t(&[1., 2., 3., 4.], &[2, 2]);
        let stats = [
            t(&[2.0, 1.0], &[2]),
            t(&[0.5, 0.0], &[2]),
            t(&[1.0, 2.0], &[2]),
            t(&[4.0, 0.25], &[2]),
        ];
        let y = batch_norm_eval(&x, stats.each_ref(), 0.0).unwrap();
        close(&v(&y), &[0.5, 0.0, 2.5, 4.0], 1e-6);
    }

    #[test]
    fn avg_pool_excludes_padding() {
        let x = t(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1, 1, 3, 3]);
        // kernel 2 stride 1 padding 1 -> 4x4 output; corner = x[0,0] alone.
        let y = v(&avg_pool(&x, 2, 1, 1).unwrap());
        assert_eq!(y.len(), 16);
        close(&y[..4], &[1.0, 1.5, 2.5, 3.0], 1e-6);
        close(&y[5..7], &[3.0, 4.0], 1e-6);
        let z = v(&avg_pool(&t(&[1., 2., 3., 4.], &[1, 1, 2, 2]), 2, 2, 0).unwrap());
        close(&z, &[2.5], 1e-6);
    }

    #[test]
    fn max_pool_pads_with_minus_infinity_and_rounds_down() {
        // Every value negative: zero padding would win the border windows, -inf never does.
        let x: Vec<f32> = (1..=16).map(|v| -(v as f32)).collect();
        let y = max_pool(&t(&x, &[1, 1, 4, 4]), 3, 2, 1).unwrap();
        assert_eq!(y.dims(), [1, 1, 2, 2]);
        close(&v(&y), &[-1.0, -2.0, -5.0, -6.0], 0.0);
        // floor mode: a 5-wide input with kernel 2 / stride 2 gives 2 columns, not 3
        let x: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let y = max_pool(&t(&x, &[1, 1, 2, 5]), 2, 2, 0).unwrap();
        close(&v(&y), &[6.0, 8.0], 0.0);
    }

    #[test]
    fn max_pool_gradient_goes_to_the_first_maximum() {
        // All equal: every window's first element (row-major) takes its gradient. Overlapping
        // 3x3/2 windows with padding 1 over 4x4: window origins at -1 and 1 on each axis, so
        // the first real element of each window is (0,0), (0,1), (1,0), (1,1).
        let x = candle_core::Var::from_tensor(&t(&[1.0; 16], &[1, 1, 4, 4])).unwrap();
        let y = max_pool(&x, 3, 2, 1).unwrap();
        let dy = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
        let grads = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let mut want = [0f32; 16];
        want[0] = 1.0;
        want[1] = 2.0;
        want[4] = 3.0;
        want[5] = 4.0;
        close(&v(grads.get(&x).unwrap()), &want, 0.0);
        let taped = max_pool_backward(&x, &dy, 3, 2, 1).unwrap();
        close(&v(&taped), &want, 0.0);

        // Distinct values, stride 1: a maximum shared by overlapping windows collects the
        // gradient of each; the explicit backward agrees with autograd.
        let data: Vec<f32> = [
            3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5., 8., 9., 7., 9., 3.,
        ]
        .to_vec();
        let x = candle_core::Var::from_tensor(&t(&data, &[1, 1, 4, 4])).unwrap();
        let y = max_pool(&x, 2, 1, 0).unwrap();
        close(&v(&y), &[9., 9., 6., 9., 9., 8., 9., 9., 9.], 0.0);
        let dy = t(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1, 1, 3, 3]);
        let grads = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let auto = v(grads.get(&x).unwrap());
        // the 9 at (1,1) wins windows 0, 1, 3, 4; the 6 at (1,3) window 2; the 8 at (2,3)
        // window 5; the 9 at (3,0) window 6; the 9 at (3,2) windows 7 and 8
        let mut want = [0f32; 16];
        want[5] = 1. + 2. + 4. + 5.;
        want[7] = 3.;
        want[11] = 6.;
        want[12] = 7.;
        want[14] = 8. + 9.;
        close(&auto, &want, 0.0);
        close(
            &v(&max_pool_backward(&x, &dy, 2, 1, 0).unwrap()),
            &want,
            0.0,
        );
    }

    #[test]
    fn dropout_masks_are_reproducible_and_scaled() {
        let mask =
            |step| v(&dropout_mask(1, step, 3, &[40_000], 0.3, DType::F32, &Device::Cpu).unwrap());
        let (a, b, c) = (mask(5), mask(5), mask(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let zeros = a.iter().filter(|&&x| x == 0.0).count();
        assert!((11_700..12_300).contains(&zeros), "{zeros}");
        // Chunked in parallel, the mask is the one the scheme defines element by element.
        let mut serial = vec![0f32; 40_000];
        crate::philox::fill_dropout_mask(1, 5, 3, 0.3, 0, &mut serial);
        assert_eq!(a, serial);
        assert!(a.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.7).abs() < 1e-6));
    }

    #[test]
    fn cross_entropy_matches_hand_value() {
        let logits = t(&[0.0, 0.0, 1.0, 2.0], &[2, 2]);
        let labels = Tensor::from_slice(&[0u32, 1], 2, &Device::Cpu).unwrap();
        let l: f32 = cross_entropy(&logits, &labels)
            .unwrap()
            .to_scalar()
            .unwrap();
        let want = (2f32.ln() + (1.0 + (-1f32).exp()).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6);
        assert_eq!(count_correct(&logits, &[0, 1]).unwrap(), 2);
        assert_eq!(count_correct(&logits, &[1, 0]).unwrap(), 0);
    }
}
