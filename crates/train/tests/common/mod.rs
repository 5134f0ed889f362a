//! Test support of the train crate (and its quick-start example): the recipe its runs share
//! and the Candle tensor helpers ([`tensors`]). Graphs, seeded values and weights come from
//! `wrnc-testkit`.
#![allow(dead_code)]

pub mod tensors;

use wrnc_recipe::{Augment, Crop, DatasetKind, DeviceKind, PadMode, Recipe, Schedule, Toggle};

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
