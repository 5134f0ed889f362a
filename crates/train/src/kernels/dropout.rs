//! Dropout on the fast CPU path: the masks of [`crate::philox`]'s scheme drawn sixteen Philox
//! blocks (64 elements) at a time in vector registers, multithreaded, and applied in the same
//! pass, without a mask tensor.
//!
//! - [`Dropout::apply`] multiplies a tensor by its mask (forward) and, since inverted dropout
//!   is linear, a gradient by the same mask (backward: the mask is drawn again, which costs
//!   less than storing and reading it);
//! - [`crate::kernels::bn`] draws the mask inside its normalise-and-rectify pass when a
//!   dropout follows a fused BN+ReLU (the WRN block's `bn1 -> relu1 -> dropout`), and its
//!   backward reads the kept elements off the stored output.
//!
//! Every mask value equals [`crate::philox::fill_dropout_mask`]'s (tests below), whatever
//! the chunking, thread count or instruction set.

use super::simd::multiversion;
use super::{f32_slice, written_vec};
use crate::philox::{fill_dropout_mask, keep_threshold};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Philox blocks drawn together (one vector of 32-bit lanes per counter word on AVX-512).
const BLOCKS: usize = 16;
/// Elements per vector group: four per block.
pub(crate) const GROUP: usize = 4 * BLOCKS;

/// Philox's multipliers and key increments (the constants of [`crate::philox`]).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The mask stream of one dropout node at one training step: the key and counter words of
/// [`crate::philox`]'s scheme, with the rate's threshold and scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    seed: u64,
    step: u64,
    node: usize,
    p: f64,
    threshold: u32,
    scale: f32,
}

impl Dropout {
    /// The mask of dropout node `node` (its index in the graph) with rate `p` at global step
    /// `step` of a run seeded `seed`.
    pub fn new(seed: u64, step: u64, node: usize, p: f64) -> Dropout {
        Dropout {
            seed,
            step,
            node,
            p,
            threshold: keep_threshold(p),
            scale: (1.0 / (1.0 - p)) as f32,
        }
    }

    /// The value a kept element is multiplied by, `1 / (1 - p)` in f32.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The key and the fixed counter words (`node`, step low, step high).
    fn words(&self) -> ([u32; 2], [u32; 3]) {
        (
            [self.seed as u32, (self.seed >> 32) as u32],
            [self.node as u32, self.step as u32, (self.step >> 32) as u32],
        )
    }

    /// Writes the mask values of elements `start .. start + out.len()` into `out`: the
    /// scalar generator up to the first whole block, then vector groups of [`GROUP`]
    /// elements, then the scalar generator for the rest.
    pub fn fill(&self, start: usize, out: &mut [f32]) {
        let head = ((4 - start % 4) % 4).min(out.len());
        let (first, rest) = out.split_at_mut(head);
        fill_dropout_mask(self.seed, self.step, self.node, self.p, start, first);
        let at = start + head;
        let groups = rest.len() / GROUP;
        let (body, tail) = rest.split_at_mut(groups * GROUP);
        let (key, ctr) = self.words();
        for (g, chunk) in body.chunks_exact_mut(GROUP).enumerate() {
            let block = ((at + g * GROUP) / 4) as u32;
            let chunk: &mut [f32; GROUP] = chunk.try_into().expect("a whole group");
            mask_group(block, ctr, key, self.threshold, self.scale, chunk);
        }
        fill_dropout_mask(
            self.seed,
            self.step,
            self.node,
            self.p,
            at + groups * GROUP,
            tail,
        );
    }

    /// `x` times its mask: the forward pass of dropout, and, applied to the output gradient,
    /// its backward pass. Multithreaded; f32, contiguous, on the CPU.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }

    /// [`Dropout::apply`] as a differentiable op (Candle's autograd multiplies the gradient
    /// by the same mask).
    pub fn apply_differentiable(&self, x: &Tensor) -> Result<Tensor> {
        x.apply_op1(*self)
    }

    /// `y = x · mask` over a slice holding elements `start ..` of the mask.
    fn apply_slice(&self, start: usize, x: &[f32], y: &mut [MaybeUninit<f32>]) {
        let mut mask = [0f32; CHUNK_BUF];
        for (i, (xs, ys)) in x.chunks(CHUNK_BUF).zip(y.chunks_mut(CHUNK_BUF)).enumerate() {
            let m = &mut mask[..xs.len()];
            self.fill(start + i * CHUNK_BUF, m);
            multiply(xs, m, ys);
        }
    }
}

/// Mask values computed ahead of each multiplication (on the stack, in L1).
const CHUNK_BUF: usize = 16 * GROUP;
/// Elements per parallel task (a multiple of [`GROUP`], so tasks start on whole blocks).
const TASK: usize = 1 << 15;

multiversion! {
    /// Sixteen Philox4x32-10 blocks from counter `(block + l, ctr)` under `key`, `l` in
    /// `0..16`, each lane's four words compared with `threshold` (after dropping the low 8
    /// bits) as the mask values of elements `4 l .. 4 l + 4`: `scale` (kept) or 0.
    fn mask_group(block: u32, ctr: [u32; 3], key: [u32; 2], threshold: u32, scale: f32, out: &mut [f32; GROUP]) {
        let mut c0 = [0u32; BLOCKS];
        for (l, c) in c0.iter_mut().enumerate() {
            *c = block.wrapping_add(l as u32);
        }
        let mut c1 = [ctr[0]; BLOCKS];
        let mut c2 = [ctr[1]; BLOCKS];
        let mut c3 = [ctr[2]; BLOCKS];
        let (mut k0, mut k1) = (key[0], key[1]);
        for round in 0..10 {
            if round > 0 {
                k0 = k0.wrapping_add(W0);
                k1 = k1.wrapping_add(W1);
            }
            for l in 0..BLOCKS {
                let p0 = u64::from(M0) * u64::from(c0[l]);
                let p1 = u64::from(M1) * u64::from(c2[l]);
                let n0 = ((p1 >> 32) as u32) ^ c1[l] ^ k0;
                let n2 = ((p0 >> 32) as u32) ^ c3[l] ^ k1;
                c0[l] = n0;
                c1[l] = p1 as u32;
                c2[l] = n2;
                c3[l] = p0 as u32;
            }
        }
        let keep = |w: u32| if (w >> 8) < threshold { scale } else { 0.0 };
        for l in 0..BLOCKS {
            out[4 * l] = keep(c0[l]);
            out[4 * l + 1] = keep(c1[l]);
            out[4 * l + 2] = keep(c2[l]);
            out[4 * l + 3] = keep(c3[l]);
        }
    }
}

multiversion! {
    /// `y = x · m`, element-wise.
    fn multiply(x: &[f32], m: &[f32], y: &mut [MaybeUninit<f32>]) {
        assert!(x.len() == y.len() && m.len() == y.len());
        for ((o, &x), &m) in y.iter_mut().zip(x).zip(m) {
            o.write(x * m);
        }
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "wrnc-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        let fill = |y: &mut [MaybeUninit<f32>]| {
            y.par_chunks_mut(TASK)
                .zip(x.par_chunks(TASK))
                .enumerate()
                .for_each(|(t, (ys, xs))| self.apply_slice(t * TASK, xs, ys));
        };
        // SAFETY: the tasks cover `y` and apply_slice writes all of each.
        let y = unsafe { written_vec(x.len(), fill) };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !grad.is_contiguous() {
            return Ok(Some(self.apply(&grad.contiguous()?)?));
        }
        Ok(Some(self.apply(grad)?))
    }
}

/// One Philox block, for tests of the vector generator against the scalar one.
#[cfg(test)]
fn block_words(d: &Dropout, block: u32) -> [u32; 4] {
    let (key, [a, b, c]) = d.words();
    crate::philox::philox4x32_10([block, a, b, c], key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn reference(d: &Dropout, start: usize, len: usize) -> Vec<f32> {
        let mut m = vec![0f32; len];
        fill_dropout_mask(d.seed, d.step, d.node, d.p, start, &mut m);
        m
    }

    #[test]
    fn vector_groups_draw_the_scalar_masks() {
        for (seed, step, node, p) in [
            (1, 0, 5, 0.3),
            (u64::MAX, 1 << 33, 70_000, 0.5),
            (7, 3, 0, 0.9),
        ] {
            let d = Dropout::new(seed, step, node, p);
            // every alignment of the start and ragged lengths around whole groups
            for start in [0, 1, 2, 3, 4, 61, 64, 4093] {
                for len in [0, 1, 3, 63, 64, 65, 200, 1000] {
                    let mut ours = vec![f32::NAN; len];
                    d.fill(start, &mut ours);
                    assert_eq!(ours, reference(&d, start, len), "start {start} len {len}");
                }
            }
            assert_eq!(
                block_words(&d, 9),
                crate::philox::philox4x32_10([9, node as u32, step as u32, (step >> 32) as u32], {
                    [seed as u32, (seed >> 32) as u32]
                })
            );
        }
    }

    #[test]
    fn apply_multiplies_by_the_mask_across_tasks() {
        let n = 2 * TASK + 37;
        let x: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
        let t = Tensor::from_vec(x.clone(), (n,), &Device::Cpu).unwrap();
        let d = Dropout::new(3, 11, 2, 0.3);
        let y: Vec<f32> = d.apply(&t).unwrap().to_vec1().unwrap();
        let m = reference(&d, 0, n);
        let want: Vec<f32> = x.iter().zip(&m).map(|(a, b)| a * b).collect();
        assert_eq!(y, want);
        let via_ops: Vec<f32> =
            crate::ops::dropout_mask(3, 11, 2, &[n], 0.3, candle_core::DType::F32, &Device::Cpu)
                .unwrap()
                .to_vec1()
                .unwrap();
        assert_eq!(m, via_ops);
    }

    #[test]
    fn the_gradient_is_masked_the_same_way() {
        let x = candle_core::Var::from_tensor(
            &Tensor::arange(0f32, 300.0, &Device::Cpu)
                .unwrap()
                .reshape((3, 100))
                .unwrap(),
        )
        .unwrap();
        let d = Dropout::new(5, 1, 4, 0.5);
        let y = d.apply_differentiable(&x).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(g, reference(&d, 0, 300));
    }
}
