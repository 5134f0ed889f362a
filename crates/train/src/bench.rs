//! Throughput measurement of the Candle back end: warm training steps (the step `wrnc train`
//! runs: forward, loss with the spec's label smoothing, backward, clipping, SAM's second
//! pass, the spec's optimiser, the EMA update, the batch's accuracy) and inference forwards
//! on a fixed synthetic batch, with FLOP rates from the IR's
//! count ([`wrnc_ir::GraphStats::forward_flops`]; a training step counts as three forwards)
//! and the process's peak resident memory. `wrnc bench` adds tract inference on top.

use crate::ema::EmaState;
use crate::error::{Result, TrainError};
use crate::model::{Mode, Model};
use crate::optim::Optimizer;
use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;
use wrnc_ir::{Graph, Weights};
use wrnc_recipe::TrainConfig;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Images per batch.
    pub batch: usize,
    /// Timed steps (after the warm-up).
    pub steps: usize,
    /// Untimed warm-up steps (allocations, caches, momentum buffers).
    pub warmup: usize,
    /// Seed of the weights, the synthetic data and the dropout masks.
    pub seed: u64,
    /// What a training step does, as in `wrnc train`: the optimiser (its initial rate is
    /// used), label smoothing, gradient clipping, the EMA, the precision and TF32.
    pub train: TrainConfig,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            batch: 128,
            steps: 5,
            warmup: 2,
            seed: 0,
            train: TrainConfig::default(),
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
    /// CPU seconds (user and system, all threads) the process spent per step, where the
    /// platform reports it: on a shared machine it varies less with the load than the
    /// elapsed time.
    pub cpu_seconds_per_step: Option<f64>,
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
            cpu_seconds_per_step: None,
        }
    }

    /// The same rates with `cpu_seconds` of CPU time spent in the `steps` steps.
    pub fn with_cpu_seconds(self, steps: usize, cpu_seconds: Option<f64>) -> Throughput {
        Throughput {
            cpu_seconds_per_step: cpu_seconds.map(|c| c / steps.max(1) as f64),
            ..self
        }
    }
}

/// The CPU time (user and system, all threads) this process has used so far, in seconds.
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    Some(t(u.ru_utime) + t(u.ru_stime))
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

/// What one training step keeps between steps: the optimiser's state and the EMA.
pub(crate) struct StepState {
    opt: Optimizer,
    ema: Option<EmaState>,
}

impl StepState {
    /// A fresh optimiser (and EMA, when `tc` has one) for `model`.
    pub(crate) fn new(model: &Model, tc: &TrainConfig) -> Result<StepState> {
        Ok(StepState {
            opt: Optimizer::new(&tc.optimizer, model.graph()),
            ema: tc
                .ema
                .as_ref()
                .map(|e| EmaState::new(e, model))
                .transpose()?,
        })
    }
}

/// One training step as `wrnc train` runs it, at rate `lr`: the gradients of `tc`'s loss
/// (label smoothing, clipping, SAM's second pass), the optimiser's update, the EMA's update
/// (`update` counts from 1) and the batch's correct predictions. Returns the loss.
pub(crate) fn train_step(
    model: &mut Model,
    state: &mut StepState,
    (images, labels): (&[f32], &[u32]),
    mode: Mode,
    tc: &TrainConfig,
    lr: f64,
) -> Result<f32> {
    let x = model.input_tensor(images, labels.len())?;
    let computed = crate::sam::step_grads(model, &x, labels, mode, tc)?;
    state.opt.step_with(model, |t| computed.grads.get(t), lr)?;
    if let (Some(ema), Mode::Train { step, .. }) = (&mut state.ema, mode) {
        ema.update(model, step + 1)?;
    }
    crate::ops::count_correct(&computed.first.logits, labels)?;
    Ok(computed.first.loss)
}

/// The model a benchmark runs: f32 master weights computing in the requested precision, with
/// TF32 set as asked.
fn bench_model(
    graph: &Graph,
    weights: &Weights,
    device: &Device,
    opts: &BenchOptions,
) -> Result<Model> {
    crate::device::set_tf32(device, opts.train.tf32);
    crate::device::set_deterministic(device, opts.train.deterministic);
    let compute = crate::trainer::compute_dtype(opts.train.precision, device)?;
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
    let tc = &opts.train;
    let mut state = StepState::new(&model, tc)?;
    let (images, labels) = synthetic_batch(graph, opts.batch, opts.seed);
    let (seconds, cpu) = timed(device, opts, |step| {
        let mode = Mode::Train {
            seed: opts.seed,
            step: step as u64,
        };
        let batch = (images.as_slice(), labels.as_slice());
        train_step(&mut model, &mut state, batch, mode, tc, tc.optimizer.lr).map(drop)
    })?;
    let flops = 3.0 * graph.stats().forward_flops as f64;
    Ok(Throughput::new(opts.batch, opts.steps, seconds, flops).with_cpu_seconds(opts.steps, cpu))
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
    let (seconds, cpu) = timed(device, opts, |_| {
        let logits = model.logits(&x, Mode::Eval)?;
        // Force the computation to finish (asynchronous devices).
        let _: Vec<f32> = logits.flatten_all()?.narrow(0, 0, 1)?.to_vec1()?;
        Ok(())
    })?;
    let flops = graph.stats().forward_flops as f64;
    Ok(Throughput::new(opts.batch, opts.steps, seconds, flops).with_cpu_seconds(opts.steps, cpu))
}

/// Runs `step(0..)` for `opts.warmup` untimed then `opts.steps` timed steps; returns the
/// seconds the timed ones took and the CPU seconds they used. The device is synchronised
/// before both clock reads, so that on a GPU the time covers exactly the timed steps' work
/// (none of the warm-up's, all of theirs).
fn timed(
    device: &Device,
    opts: &BenchOptions,
    mut step: impl FnMut(usize) -> Result<()>,
) -> Result<(f64, Option<f64>)> {
    device.synchronize()?;
    let mut started = Instant::now();
    let mut cpu = cpu_seconds();
    for i in 0..opts.warmup + opts.steps {
        if i == opts.warmup {
            device.synchronize()?;
            started = Instant::now();
            cpu = cpu_seconds();
        }
        step(i)?;
    }
    device.synchronize()?;
    let used = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
    Ok((started.elapsed().as_secs_f64(), used))
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
    /// Winograd with partial tiles, im2col for the others. With `dropout`, the second
    /// BN-ReLU is followed by a dropout of that rate (the WRN block's, fused into the BN on
    /// the fast kernels) and the add's output by a standalone one.
    fn tiny_wrn(dropout: Option<f64>) -> Graph {
        let mut b = Net::new("tiny", [3, 12, 12]);
        let c0 = b.then("stem", conv(4, 3, 1), b.input());
        let r1 = b.bn_relu("bn1", "relu1", c0);
        let c1 = b.then("conv1", conv(8, 3, 2), r1);
        let sc = b.then("short", conv(8, 1, 2), r1);
        let mut r2 = b.bn_relu("bn2", "relu2", c1);
        if let Some(p) = dropout {
            r2 = b.then("drop2", Op::dropout(p), r2);
        }
        let c2 = b.then("conv2", conv(8, 3, 1), r2);
        let mut a = b.layer("add", &Op::Add, &[c2, sc]);
        if let Some(p) = dropout {
            a = b.then("drop3", Op::dropout(p), a);
        }
        let r3 = b.bn_relu("bn3", "relu3", a);
        b.classifier(r3, 5, true);
        b.finish()
    }

    /// The losses of 20 fixed-seed steps (a fresh batch each step) and the final weights.
    fn run(reference: bool, dropout: Option<f64>) -> (Vec<f32>, Weights) {
        run_in(DType::F32, reference, dropout)
    }

    /// [`run`] with the layers computing in `compute` (bf16: the kernels' bf16 products).
    fn run_in(compute: DType, reference: bool, dropout: Option<f64>) -> (Vec<f32>, Weights) {
        let g = tiny_wrn(dropout);
        let w = init_weights(&g, 7);
        let mut model = Model::with_precision(&g, &w, &Device::Cpu, DType::F32, compute).unwrap();
        model.set_reference_ops(reference);
        assert_eq!(model.uses_fast_kernels(), !reference);
        let tc = TrainConfig::default();
        let mut state = StepState::new(&model, &tc).unwrap();
        let losses = (0..20)
            .map(|step| {
                let (images, labels) = synthetic_batch(&g, 6, 100 + step);
                let mode = Mode::Train { seed: 1, step };
                let batch = (images.as_slice(), labels.as_slice());
                train_step(&mut model, &mut state, batch, mode, &tc, 0.05).unwrap()
            })
            .collect();
        (losses, model.to_weights().unwrap())
    }

    #[test]
    fn fast_kernels_follow_the_reference_loss_curve() {
        assert_same_curve(None);
    }

    #[test]
    fn fast_kernels_follow_the_reference_loss_curve_with_dropout() {
        assert_same_curve(Some(0.3));
    }

    #[test]
    fn bf16_products_follow_the_f32_loss_curve_closely() {
        if !crate::kernels::gemm_bf16::available() {
            eprintln!("skipped: no AVX-512 BF16 on this CPU");
            return;
        }
        let (bf16, _) = run_in(DType::BF16, false, Some(0.3));
        let (f32, _) = run(false, Some(0.3));
        for (step, (a, b)) in bf16.iter().zip(&f32).enumerate() {
            assert!(
                (a - b).abs() <= 0.03 * b.abs(),
                "step {step}: bf16 {a} vs f32 {b}\n{bf16:?}\n{f32:?}"
            );
        }
        assert_ne!(bf16, f32, "bf16 products gave the f32 curve bit for bit");
    }

    /// The fast kernels' 20-step run of [`tiny_wrn`] against Candle's reference ops: losses
    /// and every final tensor (BN running statistics included) within 1e-4 relative.
    fn assert_same_curve(dropout: Option<f64>) {
        let (fast, wf) = run(false, dropout);
        let (reference, wr) = run(true, dropout);
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
    fn the_benchmark_step_is_the_training_step_of_the_spec() {
        // SAM's second pass, label smoothing and clipping change the step's gradients, so
        // one step from the same weights ends elsewhere than plain SGD's; the EMA follows.
        let g = tiny_wrn(Some(0.3));
        let w = init_weights(&g, 2);
        let (images, labels) = synthetic_batch(&g, 6, 9);
        let after = |tc: &TrainConfig| {
            let mut model = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
            let mut state = StepState::new(&model, tc).unwrap();
            let mode = Mode::Train { seed: 1, step: 0 };
            let batch = (images.as_slice(), labels.as_slice());
            let loss = train_step(&mut model, &mut state, batch, mode, tc, 0.1).unwrap();
            (loss, model.to_weights().unwrap(), state.ema.is_some())
        };
        let plain = TrainConfig::default();
        let (loss0, w0, ema0) = after(&plain);
        let mut tc = plain.clone();
        tc.optimizer.kind = wrnc_recipe::OptimizerKind::Sam;
        tc.label_smoothing = 0.1;
        tc.grad_clip = Some(0.5);
        tc.ema = Some(wrnc_recipe::Ema {
            decay: 0.9,
            warmup: false,
        });
        let (loss1, w1, ema1) = after(&tc);
        assert!(!ema0 && ema1);
        assert_ne!(loss0, loss1, "label smoothing changes the loss");
        assert_ne!(
            w0.tensors["conv2.weight"].data,
            w1.tensors["conv2.weight"].data
        );
        let opts = BenchOptions {
            batch: 4,
            steps: 1,
            warmup: 1,
            train: tc,
            ..BenchOptions::default()
        };
        assert!(
            bench_train(&g, &w, &Device::Cpu, &opts)
                .unwrap()
                .images_per_sec
                > 0.0
        );
    }

    #[test]
    fn throughput_and_memory_are_reported() {
        let g = tiny_wrn(None);
        let w = init_weights(&g, 0);
        let opts = BenchOptions {
            batch: 4,
            steps: 1,
            warmup: 1,
            ..BenchOptions::default()
        };
        let t = bench_train(&g, &w, &Device::Cpu, &opts).unwrap();
        assert!(t.images_per_sec > 0.0 && t.gflops > 0.0);
        if cfg!(target_os = "linux") {
            assert!(t.cpu_seconds_per_step.unwrap() > 0.0);
        }
        let e = bench_eval(&g, &w, &Device::Cpu, &opts).unwrap();
        assert!(e.images_per_sec > 0.0);
        let bad = BenchOptions { batch: 1, ..opts };
        assert!(bench_train(&g, &w, &Device::Cpu, &bad).is_err());
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
    }
}
