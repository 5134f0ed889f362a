//! Throughput measurement of the Candle back end: warm training steps (forward, backward,
//! SGD) and inference forwards on a fixed synthetic batch, with FLOP rates from the IR's
//! count ([`wrnc_ir::GraphStats::forward_flops`]; a training step counts as three forwards)
//! and the process's peak resident memory. `wrnc bench` adds tract inference on top.

use crate::error::{Result, TrainError};
use crate::model::{Mode, Model};
use crate::optim::SgdOptimizer;
use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;
use wrnc_ir::{Graph, Weights};
use wrnc_recipe::{Precision, Sgd};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Images per batch.
    pub batch: usize,
    /// Timed steps (after the warm-up).
    pub steps: usize,
    /// Untimed warm-up steps (allocations, caches, momentum buffers).
    pub warmup: usize,
    /// Seed of the weights and the synthetic data.
    pub seed: u64,
    /// The optimiser.
    pub sgd: Sgd,
    /// Compute precision (bf16 needs CUDA).
    pub precision: Precision,
    /// Allow TF32 on CUDA.
    pub tf32: bool,
    /// Only deterministic cuDNN algorithms (`train.deterministic`).
    pub deterministic: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            batch: 128,
            steps: 5,
            warmup: 2,
            seed: 0,
            sgd: Sgd::default(),
            precision: Precision::F32,
            tf32: false,
            deterministic: true,
        }
    }
}

/// One measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    /// Images processed per second.
    pub images_per_sec: f64,
    /// Useful FLOP/s in units of 10^9 (from the IR's FLOP count).
    pub gflops: f64,
    /// Seconds per step.
    pub seconds_per_step: f64,
}

impl Throughput {
    /// The rates of `steps` steps of `batch` images that took `seconds`, each image costing
    /// `flops_per_image`.
    pub fn new(batch: usize, steps: usize, seconds: f64, flops_per_image: f64) -> Throughput {
        let images = (batch * steps) as f64;
        let secs = seconds.max(1e-9);
        Throughput {
            images_per_sec: images / secs,
            gflops: images * flops_per_image / secs / 1e9,
            seconds_per_step: secs / steps.max(1) as f64,
        }
    }
}

/// A deterministic synthetic batch: standard-normal-ish images and uniform labels.
pub fn synthetic_batch(graph: &Graph, batch: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per: usize = graph.input_shape().iter().product();
    let images = (0..batch * per)
        .map(|_| (rng.random::<f32>() + rng.random::<f32>() + rng.random::<f32>() - 1.5) * 2.0)
        .collect();
    let classes = graph.classes().max(1) as u32;
    let labels = (0..batch).map(|_| rng.random_range(0..classes)).collect();
    (images, labels)
}

/// One training step (forward, cross-entropy, backward, SGD with `lr`); returns the loss.
pub fn train_step(
    model: &mut Model,
    opt: &mut SgdOptimizer,
    images: &[f32],
    labels: &[u32],
    mode: Mode,
    lr: f64,
) -> Result<f32> {
    let x = model.input_tensor(images, labels.len())?;
    let step = model.loss_and_grads(&x, labels, mode)?;
    opt.step_with(model, |t| step.grads.get(t), lr)?;
    Ok(step.loss)
}

/// The model a benchmark runs: f32 master weights computing in the requested precision, with
/// TF32 set as asked.
fn bench_model(
    graph: &Graph,
    weights: &Weights,
    device: &Device,
    opts: &BenchOptions,
) -> Result<Model> {
    crate::device::set_tf32(device, opts.tf32);
    crate::device::set_deterministic(device, opts.deterministic);
    let compute = crate::trainer::compute_dtype(opts.precision, device)?;
    Model::with_precision(graph, weights, device, DType::F32, compute)
}

/// Times warm training steps of `graph` with `weights` on `device` (one synthetic batch,
/// reused; the learning rate is the optimiser's initial one).
pub fn bench_train(
    graph: &Graph,
    weights: &Weights,
    device: &Device,
    opts: &BenchOptions,
) -> Result<Throughput> {
    check(opts)?;
    let mut model = bench_model(graph, weights, device, opts)?;
    let mut opt = SgdOptimizer::new(&opts.sgd, graph);
    let (images, labels) = synthetic_batch(graph, opts.batch, opts.seed);
    let seconds = timed(device, opts, |step| {
        let mode = Mode::Train {
            seed: opts.seed,
            step: step as u64,
        };
        train_step(&mut model, &mut opt, &images, &labels, mode, opts.sgd.lr).map(drop)
    })?;
    let flops = 3.0 * graph.stats().forward_flops as f64;
    Ok(Throughput::new(opts.batch, opts.steps, seconds, flops))
}

/// Times inference forwards (running statistics, no dropout) of one synthetic batch.
pub fn bench_eval(
    graph: &Graph,
    weights: &Weights,
    device: &Device,
    opts: &BenchOptions,
) -> Result<Throughput> {
    check(opts)?;
    let mut model = bench_model(graph, weights, device, opts)?;
    let (images, _) = synthetic_batch(graph, opts.batch, opts.seed);
    let x = model.input_tensor(&images, opts.batch)?;
    let seconds = timed(device, opts, |_| {
        let logits = model.logits(&x, Mode::Eval)?;
        // Force the computation to finish (asynchronous devices).
        let _: Vec<f32> = logits.flatten_all()?.narrow(0, 0, 1)?.to_vec1()?;
        Ok(())
    })?;
    let flops = graph.stats().forward_flops as f64;
    Ok(Throughput::new(opts.batch, opts.steps, seconds, flops))
}

/// Runs `step(0..)` for `opts.warmup` untimed then `opts.steps` timed steps; returns the
/// seconds the timed ones took. The device is synchronised before both clock reads, so that
/// on a GPU the time covers exactly the timed steps' work (none of the warm-up's, all of
/// theirs).
fn timed(
    device: &Device,
    opts: &BenchOptions,
    mut step: impl FnMut(usize) -> Result<()>,
) -> Result<f64> {
    device.synchronize()?;
    let mut started = Instant::now();
    for i in 0..opts.warmup + opts.steps {
        if i == opts.warmup {
            device.synchronize()?;
            started = Instant::now();
        }
        step(i)?;
    }
    device.synchronize()?;
    Ok(started.elapsed().as_secs_f64())
}

fn check(opts: &BenchOptions) -> Result<()> {
    if opts.batch < 2 || opts.steps == 0 {
        return Err(TrainError::Invalid(format!(
            "benchmark needs a batch of at least 2 and at least one step (got batch {}, \
             {} steps)",
            opts.batch, opts.steps
        )));
    }
    Ok(())
}

/// Whether a model on `device` trains with the fast CPU kernels (`kernels`).
pub fn fast_kernels(device: &Device) -> bool {
    crate::backend::Kernels::default_for(device, DType::F32).is_cpu_fast()
}

/// The peak resident set size of this process (`VmHWM` of `/proc/self/status`), where the
/// platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_weights;
    use wrnc_ir::Op;
    use wrnc_testkit::graphs::conv;
    use wrnc_testkit::Net;

    /// A small pre-activation residual network: stem conv, BN-ReLU shared by a strided
    /// 3x3 conv and a 1x1 shortcut, a second BN-ReLU-conv, the add, a final BN-ReLU,
    /// pooling and a linear classifier (every op the fast kernels touch, the fusion and the
    /// shared ReLU output included). On 12x12 inputs the stride-1 8->8 conv runs on 6x6 maps:
    /// Winograd with partial tiles, im2col for the others.
    fn tiny_wrn() -> Graph {
        let mut b = Net::new("tiny", [3, 12, 12]);
        let c0 = b.then("stem", conv(4, 3, 1), b.input());
        let r1 = b.bn_relu("bn1", "relu1", c0);
        let c1 = b.then("conv1", conv(8, 3, 2), r1);
        let sc = b.then("short", conv(8, 1, 2), r1);
        let r2 = b.bn_relu("bn2", "relu2", c1);
        let c2 = b.then("conv2", conv(8, 3, 1), r2);
        let a = b.layer("add", &Op::Add, &[c2, sc]);
        let r3 = b.bn_relu("bn3", "relu3", a);
        b.classifier(r3, 5, true);
        b.finish()
    }

    /// The losses of 20 fixed-seed steps (a fresh batch each step) and the final weights.
    fn run(reference: bool) -> (Vec<f32>, Weights) {
        let g = tiny_wrn();
        let mut model = Model::new(&g, &init_weights(&g, 7), &Device::Cpu, DType::F32).unwrap();
        model.set_reference_ops(reference);
        assert_eq!(model.uses_fast_kernels(), !reference);
        let mut opt = SgdOptimizer::new(&Sgd::default(), &g);
        let losses = (0..20)
            .map(|step| {
                let (images, labels) = synthetic_batch(&g, 6, 100 + step);
                let mode = Mode::Train { seed: 1, step };
                train_step(&mut model, &mut opt, &images, &labels, mode, 0.05).unwrap()
            })
            .collect();
        (losses, model.to_weights().unwrap())
    }

    #[test]
    fn fast_kernels_follow_the_reference_loss_curve() {
        let (fast, wf) = run(false);
        let (reference, wr) = run(true);
        for (step, (a, b)) in fast.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "step {step}: {a} vs {b}\n{fast:?}\n{reference:?}"
            );
        }
        // The BN running statistics, updated outside autograd, agree as well.
        for (name, t) in &wr.tensors {
            for (a, b) in wf.tensors[name].data.iter().zip(&t.data) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1e-2),
                    "{name}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn throughput_and_memory_are_reported() {
        let g = tiny_wrn();
        let w = init_weights(&g, 0);
        let opts = BenchOptions {
            batch: 4,
            steps: 1,
            warmup: 1,
            ..BenchOptions::default()
        };
        let t = bench_train(&g, &w, &Device::Cpu, &opts).unwrap();
        assert!(t.images_per_sec > 0.0 && t.gflops > 0.0);
        let e = bench_eval(&g, &w, &Device::Cpu, &opts).unwrap();
        assert!(e.images_per_sec > 0.0);
        let bad = BenchOptions { batch: 1, ..opts };
        assert!(bench_train(&g, &w, &Device::Cpu, &bad).is_err());
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
