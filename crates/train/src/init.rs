//! Parameter initialisation from the IR's [`Init`] rules with a seeded host RNG, so one seed
//! gives bit-identical weights on every machine and device.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use wrnc_ir::weights::Tensor as HostTensor;
use wrnc_ir::{Graph, Init, Weights};

/// Initialises every parameter and buffer of `graph`, in `graph.params` order, from one
/// `ChaCha8Rng::seed_from_u64(seed)` stream: `HeNormal{fan_in}` draws Normal(0, sqrt(2/fan_in)),
/// `Uniform01` draws U[0, 1), `Zeros` and `Ones` draw nothing.
pub fn init_weights(graph: &Graph, seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut weights = Weights::default();
    for p in &graph.params {
        let n = p.numel();
        let data: Vec<f32> = match p.init {
            Init::HeNormal { fan_in } => {
                let std = (2.0 / fan_in.max(1) as f64).sqrt();
                (0..n)
                    .map(|_| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        (z * std) as f32
                    })
                    .collect()
            }
            Init::Uniform01 => (0..n).map(|_| rng.random::<f32>()).collect(),
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
        };
        weights.tensors.insert(
            p.name.clone(),
            HostTensor {
                shape: p.shape.clone(),
                data,
            },
        );
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrnc_testkit::graphs::{conv, conv_bn_classifier};

    fn graph() -> Graph {
        conv_bn_classifier([16, 8, 8], conv(64, 3, 1), 10, true)
    }

    fn stats(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn he_normal_and_uniform_statistics() {
        let w = init_weights(&graph(), 7);
        let conv = &w.get("conv.weight").unwrap().data;
        assert_eq!(conv.len(), 64 * 16 * 9);
        let (m, s) = stats(conv);
        let want = (2.0f64 / (16.0 * 9.0)).sqrt();
        assert!(m.abs() < 0.01, "mean {m}");
        assert!((s / want - 1.0).abs() < 0.03, "std {s} want {want}");
        let gamma = &w.get("bn.weight").unwrap().data;
        assert!(gamma.iter().all(|&g| (0.0..1.0).contains(&g)));
        assert!(w.get("bn.bias").unwrap().data.iter().all(|&v| v == 0.0));
        assert!(w
            .get("bn.running_var")
            .unwrap()
            .data
            .iter()
            .all(|&v| v == 1.0));
        assert!(w.get("fc.bias").unwrap().data.iter().all(|&v| v == 0.0));
        let (_, fs) = stats(&w.get("fc.weight").unwrap().data);
        assert!(
            (fs / (2.0f64 / 64.0).sqrt() - 1.0).abs() < 0.15,
            "fc std {fs}"
        );
        w.check_against(&graph(), "init").unwrap();
    }

    #[test]
    fn same_seed_same_bytes_other_seed_differs() {
        let g = graph();
        let a = init_weights(&g, 3).to_bytes().unwrap();
        let b = init_weights(&g, 3).to_bytes().unwrap();
        let c = init_weights(&g, 4).to_bytes().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
