//! Reproducible pseudo-random numbers for tests: the same on every platform, from one seed.

use wrnc_ir::weights::Tensor;
use wrnc_ir::{Graph, ParamRole, Weights};

/// A 64-bit linear congruential generator (Knuth's MMIX constants); each draw keeps the top 24
/// bits, so values are exact in f32.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    /// The next value, uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    /// The next value, uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f32 {
        2.0 * self.uniform() - 1.0
    }
}

/// `n` values uniform in [-1, 1), drawn from `seed`.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Lcg::new(seed);
    (0..n).map(|_| r.symmetric()).collect()
}

/// Weights for every parameter of `g`, drawn from `seed`: positive running variances and BN
/// scales, non-zero running means, everything else in [-0.5, 0.5) — so BN folding and every
/// path of the graph are really exercised.
pub fn weights(g: &Graph, seed: u64) -> Weights {
    let mut r = Lcg::new(seed);
    let mut w = Weights::default();
    for p in &g.params {
        let data = (0..p.numel())
            .map(|_| {
                let u = r.uniform();
                match p.role {
                    ParamRole::RunningVar => 0.3 + 1.5 * u,
                    ParamRole::BnWeight => 0.5 + u,
                    _ => u - 0.5,
                }
            })
            .collect();
        let shape = p.shape.clone();
        w.tensors.insert(p.name.clone(), Tensor { shape, data });
    }
    w
}

/// `n` input images for `g`, uniform in [-1, 1), drawn from `seed`.
pub fn input(g: &Graph, n: usize, seed: u64) -> Vec<f32> {
    values(n * g.input_shape().iter().product::<usize>(), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_reproducible_and_in_range() {
        let a = values(1000, 3);
        assert_eq!(a, values(1000, 3));
        assert_ne!(a, values(1000, 4));
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        assert!(a.iter().any(|&v| v < -0.5) && a.iter().any(|&v| v > 0.5));
    }
}
