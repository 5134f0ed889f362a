//! The digits quick start: trains a WRN on the embedded 8x8 digits and reports test accuracy.
//!
//! `cargo run --release -p wrnc-train --example quickstart -- [DEPTH WIDTH EPOCHS BATCH LR SEED]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;
use wrnc_ir::Weights;
use wrnc_recipe::DeviceKind;
use wrnc_train::{evaluate, train, Split, TrainOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let depth: usize = arg(0, "10").parse()?;
    let width: usize = arg(1, "2").parse()?;
    let epochs: usize = arg(2, "15").parse()?;
    let batch: usize = arg(3, "64").parse()?;
    let lr: f64 = arg(4, "0.1").parse()?;
    let seed: u64 = arg(5, "0").parse()?;
    let mut r = common::digits_recipe(epochs, batch, seed);
    r.data.val_size = 0;
    r.train.optimizer.lr = lr;
    let g = wrnc_testkit::wrn([1, 8, 8], depth, width, 10, 0.0);
    let dir = std::env::temp_dir().join(format!("wrnc-quickstart-{}", std::process::id()));
    let t = Instant::now();
    let out = train(&g, &r, &TrainOptions::new(&dir))?;
    let secs = t.elapsed().as_secs_f64();
    let last = Weights::load(&dir.join("last.safetensors"))?;
    let test = evaluate(&g, &last, &r, Split::Test, DeviceKind::Cpu)?.result;
    println!(
        "wrn-{depth}-{width} epochs {epochs} batch {batch} lr {lr} seed {seed}: {secs:.1} s, final test acc \
         {:.2}% (best epoch {:?})",
        test.accuracy * 100.0,
        out.best
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
