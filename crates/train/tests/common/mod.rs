//! Test support of the train crate (and its quick-start example): the recipe its runs share
//! and the Candle tensor helpers ([`tensors`]). Graphs, seeded values and weights come from
//! `wrnc-testkit`.
#![allow(dead_code)]

pub mod tensors;

use wrnc_ir::Graph;
use wrnc_recipe::{Augment, Crop, DatasetKind, DeviceKind, PadMode, Recipe, Schedule, Toggle};
use wrnc_testkit::graphs::conv;
use wrnc_testkit::Net;

/// A small network for 1x8x8 images (the digits): conv-BN-ReLU twice (the second strided)
/// and a 10-class classifier.
pub fn tiny_net() -> Graph {
    let mut b = Net::new("tiny", [1, 8, 8]);
    let x = b.then("conv0", conv(8, 3, 1), b.input());
    let x = b.bn_relu("bn0", "relu0", x);
    let x = b.then("conv1", conv(16, 3, 2), x);
    let x = b.bn_relu("bn1", "relu1", x);
    b.classifier(x, 10, true);
    b.finish()
}

/// Training on the embedded digits on the CPU: random crops with 1 pixel of zero padding (no
/// flips), a cosine schedule down to 0, `epochs` epochs of batches of `batch_size`, `seed`.
pub fn digits_recipe(epochs: usize, batch_size: usize, seed: u64) -> Recipe {
    let mut r = Recipe::default();
    r.data.dataset = DatasetKind::Digits;
    r.data.augment = Toggle::On(Augment {
        crop: Toggle::On(Crop {
            padding: 1,
            mode: PadMode::Zero,
            ..Crop::default()
        }),
        flip: false,
        ..Augment::NONE
    });
    r.train.epochs = epochs;
    r.train.batch_size = batch_size;
    r.train.seed = seed;
    r.train.device = DeviceKind::Cpu;
    r.train.schedule = Schedule::Cosine { min_lr: 0.0 };
    r
}
