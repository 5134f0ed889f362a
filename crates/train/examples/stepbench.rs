//! Times training steps of a WRN on 8x8 inputs: `cargo run --release --example stepbench -- DEPTH WIDTH BATCH`.

#[path = "../tests/common/mod.rs"]
mod common;

use candle_core::{DType, Device, Tensor};
use std::time::Instant;
use wrnc_ir::recipe::Sgd;
use wrnc_train::ops::cross_entropy;
use wrnc_train::optim::SgdOptimizer;
use wrnc_train::{init_weights, Mode, Model};

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (depth, width, batch) = (
        a.first().copied().unwrap_or(10),
        a.get(1).copied().unwrap_or(2),
        a.get(2).copied().unwrap_or(128),
    );
    let g = common::wrn([1, 8, 8], depth, width, 10, 0.0);
    let w = init_weights(&g, 0);
    let mut m = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
    let mut opt = SgdOptimizer::new(&Sgd::default(), &g);
    let x: Vec<f32> = (0..batch * 64)
        .map(|i| ((i * 37) % 17) as f32 / 17.0)
        .collect();
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let lt = Tensor::from_slice(&labels, batch, &Device::Cpu).unwrap();
    let xt = m.input_tensor(&x, batch).unwrap();
    let steps = 10;
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    for s in 0..steps {
        let t0 = Instant::now();
        let logits = m.logits(&xt, Mode::Train { seed: 0, step: s }).unwrap();
        let loss = cross_entropy(&logits, &lt).unwrap();
        let _l: f32 = loss.to_scalar().unwrap();
        let t1 = Instant::now();
        let grads = loss.backward().unwrap();
        let t2 = Instant::now();
        opt.step(&mut m, &grads, 0.1).unwrap();
        let t3 = Instant::now();
        tf += (t1 - t0).as_secs_f64();
        tb += (t2 - t1).as_secs_f64();
        to += (t3 - t2).as_secs_f64();
    }
    let n = steps as f64;
    println!(
        "wrn-{depth}-{width} batch {batch}: fwd {:.1} ms, bwd {:.1} ms, opt {:.1} ms, {:.0} img/s",
        tf / n * 1e3,
        tb / n * 1e3,
        to / n * 1e3,
        batch as f64 * n / (tf + tb + to)
    );
    let t0 = Instant::now();
    for _ in 0..steps {
        let _ = m.logits(&xt, Mode::Eval).unwrap();
    }
    println!("eval fwd {:.1} ms", t0.elapsed().as_secs_f64() / n * 1e3);
}
