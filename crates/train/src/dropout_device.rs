//! Dropout masks drawn on the GPU, host side (compiled in every build, so that it is
//! unit-tested without a GPU): the CUDA kernel's source and the parameters of one launch,
//! computed from the scheme of [`crate::philox`] so that the device draws exactly the masks
//! [`crate::philox::fill_dropout_mask`] draws on the CPU.
//!
//! One kernel thread computes one Philox block (four consecutive elements): counter
//! `(block, node, step_lo, step_hi)`, key `(seed_lo, seed_hi)`, word `element % 4` for each
//! element, kept (`scale`) when `(word >> 8) < threshold`, else 0. The kernel is compiled at
//! run time with NVRTC (`cuda::dropout`).

use crate::philox::keep_threshold;

/// The CUDA source of the mask kernel: `wrnc_dropout_mask(out, n, key0, key1, node, step_lo,
/// step_hi, threshold, scale)` writes `n` f32 mask values.
pub const KERNEL_SOURCE: &str = r#"
#define W0 0x9E3779B9u
#define W1 0xBB67AE85u
#define M0 0xD2511F53u
#define M1 0xCD9E8D57u

extern "C" __global__ void wrnc_dropout_mask(
    float *out, unsigned long long n,
    unsigned int key0, unsigned int key1,
    unsigned int node, unsigned int step_lo, unsigned int step_hi,
    unsigned int threshold, float scale)
{
    unsigned long long block = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long first = block * 4ull;
    if (first >= n) return;
    unsigned int c0 = (unsigned int)block, c1 = node, c2 = step_lo, c3 = step_hi;
    unsigned int k0 = key0, k1 = key1;
    for (int round = 0; round < 10; ++round) {
        if (round > 0) { k0 += W0; k1 += W1; }
        unsigned int hi0 = __umulhi(M0, c0), lo0 = M0 * c0;
        unsigned int hi1 = __umulhi(M1, c2), lo1 = M1 * c2;
        unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    }
    unsigned int words[4] = {c0, c1, c2, c3};
    for (int lane = 0; lane < 4; ++lane) {
        unsigned long long e = first + lane;
        if (e < n) out[e] = (words[lane] >> 8) < threshold ? scale : 0.0f;
    }
}
"#;

/// The kernel's entry point in [`KERNEL_SOURCE`].
pub const KERNEL_NAME: &str = "wrnc_dropout_mask";

/// Threads per CUDA block of a launch.
pub const THREADS_PER_BLOCK: u32 = 256;

/// The arguments of one launch of [`KERNEL_SOURCE`] for dropout node `node` at `step` under
/// `seed` with rate `p`, `n` elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutLaunch {
    /// Number of mask elements.
    pub n: u64,
    /// Philox key: the seed's low and high words.
    pub key: [u32; 2],
    /// Counter words 1..4: the node and the step's low and high words.
    pub counter: [u32; 3],
    /// Keep when the draw's top 24 bits are below this ([`keep_threshold`]).
    pub threshold: u32,
    /// The value of a kept element, `1 / (1 - p)`.
    pub scale: f32,
}

impl DropoutLaunch {
    /// The launch for one mask of the scheme in [`crate::philox`].
    pub fn new(seed: u64, step: u64, node: usize, p: f64, n: usize) -> DropoutLaunch {
        DropoutLaunch {
            n: n as u64,
            key: [seed as u32, (seed >> 32) as u32],
            counter: [node as u32, step as u32, (step >> 32) as u32],
            threshold: keep_threshold(p),
            scale: (1.0 / (1.0 - p)) as f32,
        }
    }

    /// Number of Philox blocks (kernel threads): one per four elements.
    pub fn blocks(&self) -> u64 {
        self.n.div_ceil(4)
    }

    /// The launch grid: `(grid, threads per block)`.
    pub fn grid(&self) -> (u32, u32) {
        let grid = self.blocks().div_ceil(u64::from(THREADS_PER_BLOCK)).max(1);
        (grid as u32, THREADS_PER_BLOCK)
    }

    /// What the kernel computes, on the host: element `e`'s mask value (the reference the
    /// tests compare with [`crate::philox::fill_dropout_mask`]).
    pub fn value(&self, e: u64) -> f32 {
        let block = (e / 4) as u32;
        let [c1, c2, c3] = self.counter;
        let words = crate::philox::philox4x32_10([block, c1, c2, c3], self.key);
        if (words[(e % 4) as usize] >> 8) < self.threshold {
            self.scale
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::philox::fill_dropout_mask;

    #[test]
    fn launch_parameters_reproduce_the_cpu_masks() {
        for (seed, step, node, p, n) in [
            (0u64, 0u64, 0usize, 0.3, 103usize),
            (7, 12, 3, 0.5, 1000),
            (u64::MAX - 5, (1 << 33) + 9, 41, 0.1, 257),
            (1 << 40, 3, 2, 0.0, 16),
            (5, 6, 7, 1.0 - 1e-7, 9),
        ] {
            let launch = DropoutLaunch::new(seed, step, node, p, n);
            let mut cpu = vec![0f32; n];
            fill_dropout_mask(seed, step, node, p, 0, &mut cpu);
            let device: Vec<f32> = (0..n as u64).map(|e| launch.value(e)).collect();
            assert_eq!(device, cpu, "seed {seed} step {step} node {node} p {p}");
        }
    }

    #[test]
    fn launch_parameters_split_the_words_of_seed_and_step() {
        let l = DropoutLaunch::new(0x0123_4567_89ab_cdef, 0x0000_0002_0000_0003, 9, 0.25, 10);
        assert_eq!(l.key, [0x89ab_cdef, 0x0123_4567]);
        assert_eq!(l.counter, [9, 3, 2]);
        assert_eq!(l.threshold, 12_582_912);
        assert_eq!(l.scale, 1.0 / 0.75);
        assert_eq!(l.blocks(), 3);
        assert_eq!(l.grid(), (1, THREADS_PER_BLOCK));
        let big = DropoutLaunch::new(0, 0, 0, 0.5, 4 * 256 * 1000 + 1);
        assert_eq!(big.grid().0, 1001);
    }

    #[test]
    fn the_kernel_source_uses_the_philox_constants_of_the_cpu() {
        // The multipliers and Weyl increments in the CUDA source are philox.rs's.
        for c in ["0xD2511F53u", "0xCD9E8D57u", "0x9E3779B9u", "0xBB67AE85u"] {
            assert!(KERNEL_SOURCE.contains(c), "{c}");
        }
        assert!(KERNEL_SOURCE.contains(KERNEL_NAME));
    }
}
