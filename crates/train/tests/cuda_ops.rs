//! GPU tests of the CUDA pieces: the cuDNN convolution custom op (values and both gradients)
//! against Candle's own convolution, the plan cache, and mixed-precision (bf16) training steps
//! of a small network against f32.
//!
//! Compiled only with the `cudnn` feature; each test skips with a message when no CUDA GPU can
//! be opened, unless `WRNC_REQUIRE_GPU=1` (tools/gpu-check.sh sets it), which turns a missing
//! GPU into a failure.
#![cfg(feature = "cudnn")]

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::tensors::rel_err;
use wrnc_ir::Graph;
use wrnc_testkit::graphs::conv;
use wrnc_testkit::Net;
use wrnc_train::cuda::conv::{cached_plans, conv2d, workspace_bytes};
use wrnc_train::{cross_entropy, ConvParams, Mode, Model};

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("WRNC_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("WRNC_REQUIRE_GPU=1 but no CUDA GPU: {e}");
            }
            eprintln!("SKIPPED: no CUDA GPU ({e})");
            None
        }
    }
}

fn tensor(dims: &[usize], seed: u64, dev: &Device, dtype: DType) -> Tensor {
    common::tensors::rand(dims, seed)
        .to_dtype(dtype)
        .unwrap()
        .to_device(dev)
        .unwrap()
}

/// (x dims, w dims, padding, stride): WRN's 3x3 convolutions, a strided one, a 1x1 strided
/// shortcut, and an odd-sized case.
const CASES: &[([usize; 4], [usize; 4], usize, usize)] = &[
    ([4, 3, 16, 16], [16, 3, 3, 3], 1, 1),
    ([4, 16, 16, 16], [32, 16, 3, 3], 1, 2),
    ([4, 16, 16, 16], [32, 16, 1, 1], 0, 2),
    ([3, 5, 9, 7], [6, 5, 3, 3], 1, 2),
    ([2, 8, 8, 8], [8, 8, 3, 3], 0, 1),
];

/// y, dx, dw of `sum(conv(x, w) * r)` with either the cuDNN op or Candle's conv.
fn conv_and_grads(
    xd: [usize; 4],
    wd: [usize; 4],
    pad: usize,
    stride: usize,
    dev: &Device,
    dtype: DType,
    cudnn: bool,
) -> (Tensor, Tensor, Tensor) {
    let x = Var::from_tensor(&tensor(&xd, 1, dev, dtype)).unwrap();
    let w = Var::from_tensor(&tensor(&wd, 2, dev, dtype)).unwrap();
    let y = if cudnn {
        conv2d(
            &x,
            &w,
            ConvParams {
                stride,
                padding: pad,
            },
        )
        .unwrap()
    } else {
        x.conv2d(&w, pad, stride, 1, 1).unwrap()
    };
    let r = tensor(y.dims(), 3, dev, dtype);
    let loss = (&y * &r).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let dx = g.get(&x).unwrap().clone();
    let dw = g.get(&w).unwrap().clone();
    (y, dx, dw)
}

/// Asserts that each of y, dx, dw of `ours` is within `tol` (relative error) of `want`.
fn assert_outputs_close(
    ours: &(Tensor, Tensor, Tensor),
    want: &(Tensor, Tensor, Tensor),
    tol: f64,
    what: &str,
) {
    for (name, a, b) in [
        ("y", &ours.0, &want.0),
        ("dx", &ours.1, &want.1),
        ("dw", &ours.2, &want.2),
    ] {
        let e = rel_err(a, b);
        assert!(e < tol, "{what}: {name} rel err {e}");
    }
}

#[test]
fn cudnn_conv_matches_candle_conv_f64_exactly() {
    let Some(dev) = gpu() else { return };
    for &(xd, wd, pad, stride) in CASES {
        // Reference: Candle's conv on the CPU in f64.
        let want = conv_and_grads(xd, wd, pad, stride, &Device::Cpu, DType::F64, false);
        let ours = conv_and_grads(xd, wd, pad, stride, &dev, DType::F64, true);
        assert_outputs_close(
            &ours,
            &want,
            1e-10,
            &format!("{xd:?} {wd:?} p{pad} s{stride}"),
        );
    }
}

#[test]
fn cudnn_conv_matches_candle_cuda_conv_f32() {
    let Some(dev) = gpu() else { return };
    wrnc_train::cuda::set_tf32(false);
    for &(xd, wd, pad, stride) in CASES {
        // Candle's own CUDA conv (cuDNN forward, its own backward kernels).
        let want = conv_and_grads(xd, wd, pad, stride, &dev, DType::F32, false);
        let ours = conv_and_grads(xd, wd, pad, stride, &dev, DType::F32, true);
        // Candle's cuDNN forward uses cuDNN's default math, which may be TF32 on Hopper.
        assert_outputs_close(
            &ours,
            &want,
            5e-3,
            &format!("{xd:?} {wd:?} p{pad} s{stride}"),
        );
        // Ours in FMA math against the exact f64 CPU reference.
        let exact = conv_and_grads(xd, wd, pad, stride, &Device::Cpu, DType::F64, false);
        assert_outputs_close(
            &ours,
            &exact,
            1e-5,
            &format!("{xd:?} {wd:?} p{pad} s{stride} f32"),
        );
    }
}

#[test]
fn cudnn_conv_bf16_is_close_to_f32() {
    let Some(dev) = gpu() else { return };
    for &(xd, wd, pad, stride) in CASES {
        let want = conv_and_grads(xd, wd, pad, stride, &Device::Cpu, DType::F64, false);
        let ours = conv_and_grads(xd, wd, pad, stride, &dev, DType::BF16, true);
        assert_eq!(ours.0.dtype(), DType::BF16);
        assert_outputs_close(
            &ours,
            &want,
            3e-2,
            &format!("{xd:?} {wd:?} p{pad} s{stride} bf16"),
        );
    }
}

#[test]
fn plans_are_cached_per_shape_and_workspace_reused() {
    let Some(dev) = gpu() else { return };
    let (xd, wd, pad, stride) = ([8, 16, 32, 32], [16, 16, 3, 3], 1, 1);
    let before = cached_plans();
    let _ = conv_and_grads(xd, wd, pad, stride, &dev, DType::F32, true);
    let after_one = cached_plans();
    assert_eq!(
        after_one,
        before + 3,
        "forward, backward-data, backward-filter plans"
    );
    let ws = workspace_bytes();
    for _ in 0..3 {
        let _ = conv_and_grads(xd, wd, pad, stride, &dev, DType::F32, true);
    }
    assert_eq!(cached_plans(), after_one, "same shape: no new plans");
    assert_eq!(workspace_bytes(), ws, "same shape: the workspace is reused");
    let _ = conv_and_grads([2, 16, 32, 32], wd, pad, stride, &dev, DType::F32, true);
    assert_eq!(cached_plans(), after_one + 3, "new batch size: new plans");
}

#[test]
fn cudnn_conv_rejects_cpu_tensors() {
    let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(conv2d(
        &x,
        &w,
        ConvParams {
            stride: 1,
            padding: 1
        }
    )
    .is_err());
}

/// conv3x3(3->8) -> bn -> relu -> conv3x3 stride 2 (8->16) -> bn -> relu -> gap -> flatten
/// -> linear(10).
fn small_net() -> Graph {
    let mut b = Net::new("small", [3, 16, 16]);
    let mut v = b.input();
    for (i, (out, stride)) in [(8usize, 1usize), (16, 2)].into_iter().enumerate() {
        v = b.then(&format!("conv{i}"), conv(out, 3, stride), v);
        v = b.bn_relu(&format!("bn{i}"), &format!("relu{i}"), v);
    }
    b.classifier(v, 10, true);
    b.finish()
}

/// One training-mode forward/backward: loss, logits and the gradients by parameter name.
fn step(model: &mut Model, images: &[f32], labels: &[u32]) -> (f32, Tensor, Vec<(String, Tensor)>) {
    let x = model.input_tensor(images, labels.len()).unwrap();
    let y = Tensor::from_slice(labels, labels.len(), model.device()).unwrap();
    let logits = model.logits(&x, Mode::Train { seed: 0, step: 0 }).unwrap();
    let loss = cross_entropy(&logits, &y).unwrap();
    let value: f32 = loss.to_scalar().unwrap();
    let grads = loss.backward().unwrap();
    let names: Vec<String> = model
        .graph()
        .params
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let g = model
        .trainable()
        .into_iter()
        .map(|(id, var)| {
            let g = grads.get(var.as_tensor()).expect("gradient").clone();
            (names[id.0].clone(), g)
        })
        .collect();
    (value, logits, g)
}

#[test]
fn model_step_on_cuda_f32_and_bf16_matches_cpu() {
    let Some(dev) = gpu() else { return };
    wrnc_train::cuda::set_tf32(false);
    let g = small_net();
    let w = wrnc_train::init_weights(&g, 7);
    let n = 16;
    let images = wrnc_testkit::values(n * 3 * 16 * 16, 11);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();

    let mut cpu = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
    let (l0, z0, g0) = step(&mut cpu, &images, &labels);

    let mut gf = Model::new(&g, &w, &dev, DType::F32).unwrap();
    let (l1, z1, g1) = step(&mut gf, &images, &labels);
    assert!((l0 - l1).abs() < 1e-4, "f32 loss {l0} vs {l1}");
    assert!(rel_err(&z1, &z0) < 1e-4);
    for ((name, a), (_, b)) in g1.iter().zip(&g0) {
        let e = rel_err(a, b);
        assert!(e < 1e-3, "f32 grad {name}: rel err {e}");
    }

    let mut gb = Model::with_precision(&g, &w, &dev, DType::F32, DType::BF16).unwrap();
    assert_eq!(gb.dtype(), DType::F32);
    assert_eq!(gb.compute_dtype(), DType::BF16);
    let (l2, z2, g2) = step(&mut gb, &images, &labels);
    assert_eq!(z2.dtype(), DType::F32, "logits come back in f32");
    assert!(
        (l0 - l2).abs() < 3e-2 * l0.abs().max(1.0),
        "bf16 loss {l0} vs {l2}"
    );
    for ((name, a), (_, b)) in g2.iter().zip(&g0) {
        assert_eq!(a.dtype(), DType::F32, "{name}: master gradient is f32");
        let e = rel_err(a, b);
        assert!(e < 1e-1, "bf16 grad {name}: rel err {e}");
    }
    // BN running statistics stay f32 and match the f32 run closely.
    let rm = |m: &Model| {
        let (id, _) = m.graph().param_by_name("bn0.running_mean").unwrap();
        m.param_tensor(id).unwrap().clone()
    };
    assert_eq!(rm(&gb).dtype(), DType::F32);
    assert!(rel_err(&rm(&gb), &rm(&cpu)) < 2e-2);
}

#[test]
fn deterministic_plans_give_bit_identical_gradients() {
    let Some(dev) = gpu() else { return };
    wrnc_train::cuda::set_tf32(false);
    wrnc_train::conv_plan::set_deterministic(true);
    let (xd, wd, pad, stride) = ([16, 32, 16, 16], [32, 32, 3, 3], 1, 1);
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let a = conv_and_grads(xd, wd, pad, stride, &dev, DType::F32, true);
    let b = conv_and_grads(xd, wd, pad, stride, &dev, DType::F32, true);
    assert_eq!(bits(&a.1), bits(&b.1), "dx");
    assert_eq!(bits(&a.2), bits(&b.2), "dw");
    let log = wrnc_train::conv_plan::plan_log();
    assert!(!log.is_empty(), "plans are logged");
    for choice in log.iter().filter(|c| c.key.deterministic) {
        assert!(choice.deterministic, "{choice}");
    }
    for choice in &log {
        eprintln!("{choice}");
    }
}

#[test]
fn device_dropout_masks_equal_the_cpu_masks() {
    let Some(dev) = gpu() else { return };
    let Device::Cuda(cuda) = &dev else {
        unreachable!("gpu() opens a CUDA device")
    };
    for (seed, step, node, p, shape) in [
        (0u64, 0u64, 3usize, 0.3, vec![7usize, 13]),
        (42, 1 << 33, 17, 0.5, vec![128, 160, 8, 8]),
        (u64::MAX, 5, 1, 0.1, vec![1]),
    ] {
        let n: usize = shape.iter().product();
        let launch = wrnc_train::dropout_device::DropoutLaunch::new(seed, step, node, p, n);
        let gpu_mask = wrnc_train::cuda::dropout::dropout_mask(&launch, &shape, cuda).unwrap();
        assert_eq!(gpu_mask.dims(), shape.as_slice());
        let got = gpu_mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut want = vec![0f32; n];
        wrnc_train::philox::fill_dropout_mask(seed, step, node, p, 0, &mut want);
        assert_eq!(got, want, "seed {seed} step {step} node {node}");
    }
}
