//! Epoch iterators yielding normalised (and optionally augmented) `f32` batches,
//! prepared on a background thread.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use wrnc_recipe::Augment;

use crate::augment;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::mix::{self, Mixed};
use crate::normalize::Normalizer;

/// One mini-batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `len x C x H x W` normalised pixels.
    pub images: Vec<f32>,
    /// `len` labels.
    pub labels: Vec<u32>,
    /// Number of images in the batch (the last batch may be smaller).
    pub len: usize,
    /// How the batch was mixed with itself reversed, when mixup or CutMix is on
    /// ([`crate::mix`]; `lam` 1 for a batch the draw left unmixed); `None` otherwise.
    pub mix: Option<Mixed>,
}

/// How an epoch is cut into batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// Images per batch (must be > 0).
    pub batch_size: usize,
    /// Visit records in a seeded random order (otherwise file order).
    pub shuffle: bool,
    /// Skip a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Augmentation applied to each image: crop, flip and the policy before normalisation,
    /// cutout and random erasing after.
    pub augment: Augment,
    /// Number of batches prepared ahead by the background thread (at least 1 is used).
    pub prefetch: usize,
}

impl BatchConfig {
    /// Default prefetch depth.
    pub const DEFAULT_PREFETCH: usize = 3;

    /// `batch_size` images per batch, no shuffle, keep the last partial
    /// batch, no augmentation, default prefetch depth.
    pub fn new(batch_size: usize) -> Self {
        BatchConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            augment: Augment::NONE,
            prefetch: Self::DEFAULT_PREFETCH,
        }
    }

    /// Training defaults: shuffle, keep the last partial batch, the given augmentation.
    pub fn train(batch_size: usize, augment: Augment) -> Self {
        BatchConfig {
            shuffle: true,
            augment,
            ..Self::new(batch_size)
        }
    }
}

/// The RNG of one epoch: a [`ChaCha8Rng`] seeded with `seed` on stream `epoch`.
/// It first drives the shuffle, then the augmentation draws of every record
/// in visiting order, so an epoch's batches depend only on `(seed, epoch)`.
pub fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    rng
}

/// Number of batches an epoch of `n` records yields.
pub fn num_batches(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if batch_size == 0 {
        0
    } else if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// Iterator over the batches of one epoch. Batches are produced by a
/// background thread through a bounded channel; dropping the iterator early
/// stops and joins that thread.
#[derive(Debug)]
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl BatchIter {
    /// Number of batches not yet returned.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl Iterator for BatchIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let batch = self.rx.as_ref()?.recv().ok();
        match batch {
            Some(b) => {
                self.remaining = self.remaining.saturating_sub(1);
                Some(b)
            }
            None => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for BatchIter {}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the receiver makes the producer's next `send` fail, so it exits.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            // A panicking producer is ignored here; never propagate from Drop.
            let _ = h.join();
        }
    }
}

/// Builds one batch from `indices`, drawing augmentation parameters from `rng`
/// for each record in order (when `aug` is not the identity).
fn build_batch(
    data: &Dataset,
    norm: &Normalizer,
    aug: &Augment,
    indices: &[usize],
    rng: &mut ChaCha8Rng,
) -> Result<Batch> {
    let (c, h, w) = (data.channels(), data.height(), data.width());
    let size = data.image_size();
    let mut images = vec![0f32; indices.len() * size];
    let mut labels = Vec::with_capacity(indices.len());
    let mut scratch = vec![0u8; size];
    for (&i, out) in indices.iter().zip(images.chunks_exact_mut(size)) {
        let src = data
            .image(i)
            .ok_or_else(|| DataError::invalid("batch", format!("index {i} out of range")))?;
        let label = data
            .label(i)
            .ok_or_else(|| DataError::invalid("batch", format!("index {i} out of range")))?;
        if aug.is_identity() {
            norm.apply_into(src, out)?;
        } else {
            let params = augment::sample(aug, h, w, rng);
            augment::apply(aug, params, src, c, h, w, &mut scratch)?;
            norm.apply_into(&scratch, out)?;
            if aug.masks() {
                augment::apply_masks(aug, &params, out, c, h, w, rng)?;
            }
        }
        labels.push(label);
    }
    Ok(Batch {
        images,
        len: labels.len(),
        labels,
        mix: None,
    })
}

/// The batches of epoch `epoch` of `data` (see [`epoch_rng`] for determinism):
/// a resumed run asking for epoch `e` gets exactly the batches an
/// uninterrupted run got. With mixup or CutMix on, batch `b` is mixed with the draws of
/// [`mix::mix_rng`]`(seed, epoch * batches per epoch + b)` (the run's global step).
///
/// Fails if the batch size is 0, the normaliser's shape differs from the
/// dataset's, or the augmentation does not fit the image size.
pub fn epoch_batches(
    data: Arc<Dataset>,
    norm: Arc<Normalizer>,
    cfg: &BatchConfig,
    epoch: u64,
    seed: u64,
) -> Result<BatchIter> {
    if cfg.batch_size == 0 {
        return Err(DataError::invalid("batch config", "batch_size must be > 0"));
    }
    let shape = (data.channels(), data.height(), data.width());
    if norm.shape() != shape {
        return Err(DataError::invalid(
            "batch config",
            format!(
                "normaliser shape {:?} differs from dataset shape {:?}",
                norm.shape(),
                shape
            ),
        ));
    }
    augment::check_fits(&cfg.augment, data.height(), data.width())?;
    crate::policy::check_channels(&cfg.augment, data.channels())?;
    let cfg = *cfg;
    let total = num_batches(data.len(), cfg.batch_size, cfg.drop_last);
    let mixing = cfg.augment.mixing();
    let (tx, rx) = sync_channel(cfg.prefetch.max(1));
    let handle = std::thread::Builder::new()
        .name(format!("wrnc-data-epoch-{epoch}"))
        .spawn(move || {
            let mut rng = epoch_rng(seed, epoch);
            let mut order: Vec<usize> = (0..data.len()).collect();
            if cfg.shuffle {
                order.shuffle(&mut rng);
            }
            for (b, chunk) in order.chunks(cfg.batch_size).take(total).enumerate() {
                // Inputs were validated above, so this cannot fail; stop quietly if it does.
                let Ok(mut batch) = build_batch(&data, &norm, &cfg.augment, chunk, &mut rng) else {
                    return;
                };
                if let Some(m) = &mixing {
                    let step = epoch * total as u64 + b as u64;
                    let (c, h, w) = (data.channels(), data.height(), data.width());
                    let mixed = mix::draw(m, h, w, &mut mix::mix_rng(seed, step));
                    mix::apply(&mut batch.images, batch.len, c, h, w, &mixed);
                    batch.mix = Some(mixed);
                }
                if tx.send(batch).is_err() {
                    return; // consumer dropped the iterator
                }
            }
        })
        .map_err(|e| DataError::io("spawning batch thread for", "<epoch iterator>", e))?;
    Ok(BatchIter {
        rx: Some(rx),
        handle: Some(handle),
        remaining: total,
    })
}

/// Evaluation batches: file order, no augmentation, last partial batch kept.
pub fn eval_batches(
    data: Arc<Dataset>,
    norm: Arc<Normalizer>,
    batch_size: usize,
) -> Result<BatchIter> {
    epoch_batches(data, norm, &BatchConfig::new(batch_size), 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrnc_recipe::{Crop, CropKind, Normalize, PadMode, Toggle};

    /// `n` single-pixel images whose pixel value is the index, label = index % 3.
    fn ramp(n: usize) -> Arc<Dataset> {
        Arc::new(
            Dataset::new(
                (0..n).map(|i| i as u8).collect(),
                (0..n as u32).map(|i| i % 3).collect(),
                [1, 1, 1],
                vec!["a".into(), "b".into(), "c".into()],
            )
            .unwrap(),
        )
    }

    fn identity_norm(d: &Dataset) -> Arc<Normalizer> {
        Arc::new(Normalizer::fit(Normalize::None, d).unwrap())
    }

    /// Recovers the record indices from pixel values (`value * 255`).
    fn ids(b: &Batch) -> Vec<usize> {
        b.images
            .iter()
            .map(|v| (v * 255.0).round() as usize)
            .collect()
    }

    #[test]
    fn file_order_and_sizes() {
        let d = ramp(10);
        let n = identity_norm(&d);
        let it = epoch_batches(d.clone(), n.clone(), &BatchConfig::new(4), 0, 0).unwrap();
        assert_eq!(it.len(), 3);
        let batches: Vec<Batch> = it.collect();
        assert_eq!(
            batches.iter().map(|b| b.len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(ids(&batches[0]), vec![0, 1, 2, 3]);
        assert_eq!(ids(&batches[2]), vec![8, 9]);
        assert_eq!(batches[2].labels, vec![2, 0]);
        assert!((batches[0].images[1] - 1.0 / 255.0).abs() < 1e-7);

        let cfg = BatchConfig {
            drop_last: true,
            ..BatchConfig::new(4)
        };
        let sizes: Vec<usize> = epoch_batches(d.clone(), n.clone(), &cfg, 0, 0)
            .unwrap()
            .map(|b| b.len)
            .collect();
        assert_eq!(sizes, vec![4, 4]);
        let eval: Vec<usize> = eval_batches(d, n, 3).unwrap().map(|b| b.len).collect();
        assert_eq!(eval, vec![3, 3, 3, 1]);
    }

    #[test]
    fn shuffle_is_deterministic_per_seed_and_epoch() {
        let d = ramp(50);
        let n = identity_norm(&d);
        let cfg = BatchConfig::train(8, Augment::NONE);
        let order = |epoch, seed| -> Vec<usize> {
            epoch_batches(d.clone(), n.clone(), &cfg, epoch, seed)
                .unwrap()
                .flat_map(|b| ids(&b))
                .collect()
        };
        let e3 = order(3, 11);
        let mut sorted = e3.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(e3, (0..50).collect::<Vec<_>>());
        // A "resumed" run (fresh iterator for epoch 3) equals the uninterrupted one.
        let uninterrupted: Vec<Vec<usize>> = (0..5).map(|e| order(e, 11)).collect();
        assert_eq!(uninterrupted[3], e3);
        assert_ne!(uninterrupted[2], e3);
        assert_ne!(order(3, 12), e3);
        // Labels follow their images.
        for b in epoch_batches(d.clone(), n.clone(), &cfg, 1, 11).unwrap() {
            for (i, l) in ids(&b).iter().zip(&b.labels) {
                assert_eq!(*i as u32 % 3, *l);
            }
        }
    }

    #[test]
    fn augmentation_applied_and_reproducible() {
        // One 1x1x2 image [0, 255]: a flip gives [1, 0] instead of [0, 1].
        let d = Arc::new(
            Dataset::new(
                [0u8, 255].repeat(64),
                vec![0; 64],
                [1, 1, 2],
                vec!["x".into()],
            )
            .unwrap(),
        );
        let n = identity_norm(&d);
        let aug = Augment {
            crop: Toggle::On(Crop {
                padding: 0,
                mode: PadMode::Zero,
                kind: CropKind::Padded,
            }),
            flip: true,
            ..Augment::NONE
        };
        let cfg = BatchConfig::train(16, aug);
        let run = || -> Vec<f32> {
            epoch_batches(d.clone(), n.clone(), &cfg, 2, 5)
                .unwrap()
                .flat_map(|b| b.images)
                .collect()
        };
        let a = run();
        assert_eq!(a.len(), 128);
        let flipped = a.chunks(2).filter(|p| p == &[1.0, 0.0]).count();
        let kept = a.chunks(2).filter(|p| p == &[0.0, 1.0]).count();
        assert_eq!(flipped + kept, 64);
        assert!(flipped > 10 && kept > 10, "flipped {flipped}");
        assert_eq!(run(), a);
        // Evaluation never augments.
        let e: Vec<f32> = eval_batches(d.clone(), n, 16)
            .unwrap()
            .flat_map(|b| b.images)
            .collect();
        assert!(e.chunks(2).all(|p| p == [0.0, 1.0]));
    }

    #[test]
    fn policy_batches_depend_only_on_seed_and_epoch() {
        // 32 random-looking 3x6x5 RGB images: a policy changes them, the same (seed, epoch)
        // repeats them exactly (as a resumed run asks), and a 2-channel dataset is refused.
        let (c, h, w) = (3usize, 6usize, 5usize);
        let pixels: Vec<u8> = (0..32 * c * h * w)
            .map(|i| ((i * 7919) % 251) as u8)
            .collect();
        let d = Arc::new(Dataset::new(pixels, vec![0; 32], [c, h, w], vec!["x".into()]).unwrap());
        let n = identity_norm(&d);
        let run = |aug: Augment, epoch: u64| -> Vec<f32> {
            epoch_batches(d.clone(), n.clone(), &BatchConfig::train(8, aug), epoch, 9)
                .unwrap()
                .flat_map(|b| b.images)
                .collect()
        };
        let plain = run(Augment::NONE, 1);
        for p in wrnc_recipe::AugmentPolicy::ALL {
            let aug = Augment {
                policy: Some(p),
                ..Augment::NONE
            };
            let a = run(aug, 1);
            assert_ne!(a, plain, "{p}");
            assert_eq!(run(aug, 1), a, "{p}");
            assert_ne!(run(aug, 2), a, "{p}");
        }
        let grey2 =
            Arc::new(Dataset::new(vec![0; 2 * 4], vec![0], [2, 2, 2], vec!["x".into()]).unwrap());
        let aug = Augment {
            policy: Some(wrnc_recipe::AugmentPolicy::RandAugment),
            ..Augment::NONE
        };
        let e = epoch_batches(
            grey2.clone(),
            identity_norm(&grey2),
            &BatchConfig::train(1, aug),
            0,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1- or 3-channel"), "{e}");
    }

    #[test]
    fn early_drop_stops_thread() {
        let d = ramp(200);
        let n = identity_norm(&d);
        let cfg = BatchConfig {
            prefetch: 1,
            ..BatchConfig::new(1)
        };
        let mut it = epoch_batches(d.clone(), n.clone(), &cfg, 0, 0).unwrap();
        assert_eq!(it.next().map(|b| b.len), Some(1));
        drop(it); // must not hang
        let it = epoch_batches(d, n, &cfg, 0, 0).unwrap();
        drop(it); // dropped before reading anything
    }

    #[test]
    fn rejects_bad_config() {
        let d = ramp(4);
        let n = identity_norm(&d);
        assert!(epoch_batches(d.clone(), n.clone(), &BatchConfig::new(0), 0, 0).is_err());
        let cfg = BatchConfig::train(2, Augment::standard(PadMode::Reflect));
        // Reflect padding 4 on a 1x1 image is impossible.
        assert!(epoch_batches(d.clone(), n, &cfg, 0, 0).is_err());
        let other = Dataset::new(vec![0; 4], vec![0], [1, 2, 2], vec!["a".into()]).unwrap();
        let n2 = identity_norm(&other);
        assert!(epoch_batches(d, n2, &BatchConfig::new(1), 0, 0).is_err());
        assert_eq!(num_batches(10, 4, false), 3);
        assert_eq!(num_batches(10, 4, true), 2);
        assert_eq!(num_batches(0, 4, false), 0);
    }

    #[test]
    fn masks_act_after_normalisation() {
        // 32 constant 6x6 images of value 255; mean_std normalisation of a constant set gives
        // 0 everywhere, so use `none` (1.0) and look for the zeros cutout writes.
        let d = Arc::new(
            Dataset::new(
                vec![255u8; 32 * 36],
                vec![0; 32],
                [1, 6, 6],
                vec!["x".into()],
            )
            .unwrap(),
        );
        let n = identity_norm(&d);
        let cut = Augment {
            cutout: Some(wrnc_recipe::Cutout { size: 2 }),
            ..Augment::NONE
        };
        let run = |aug: Augment| -> Vec<f32> {
            epoch_batches(d.clone(), n.clone(), &BatchConfig::train(8, aug), 1, 3)
                .unwrap()
                .flat_map(|b| b.images)
                .collect()
        };
        let a = run(cut);
        assert_eq!(a, run(cut), "deterministic per seed and epoch");
        let mut centres = std::collections::BTreeSet::new();
        for img in a.chunks(36) {
            // A 2x2 square, clipped to 1 or 2 pixels at the top and left borders.
            let zeros: Vec<usize> = (0..36).filter(|&i| img[i] == 0.0).collect();
            assert!([1, 2, 4].contains(&zeros.len()), "{zeros:?}");
            assert!(img.iter().all(|&v| v == 0.0 || v == 1.0));
            centres.insert(zeros[zeros.len() - 1]);
        }
        assert!(centres.len() > 5, "{centres:?}");
        // Random erasing with p = 0 leaves every image as it was; with `random` values the
        // erased pixels are normal draws, not 0 or 1.
        let off = Augment {
            random_erasing: Some(wrnc_recipe::RandomErasing {
                p: 0.0,
                ..Default::default()
            }),
            ..Augment::NONE
        };
        assert!(run(off).iter().all(|&v| v == 1.0));
        let noisy = Augment {
            random_erasing: Some(wrnc_recipe::RandomErasing {
                p: 1.0,
                value: wrnc_recipe::EraseValue::Random,
                ..Default::default()
            }),
            ..Augment::NONE
        };
        let b = run(noisy);
        let changed = b
            .chunks(36)
            .filter(|img| img.iter().any(|&v| v != 1.0))
            .count();
        assert!(changed > 25, "{changed}");
    }

    #[test]
    fn mixing_acts_on_the_batches_the_run_would_see_otherwise() {
        // Flips and cutout as usual; adding mixup or CutMix keeps the shuffle and the
        // per-image draws (the labels and the unmixed images are those without mixing), and
        // each mixed image is the f64 mix of the plain batch with itself reversed.
        let d = Arc::new(
            Dataset::new(
                (0..40 * 12).map(|i| (i * 37 % 251) as u8).collect(),
                (0..40).map(|i| i % 4).collect(),
                [1, 3, 4],
                vec!["a".into(), "b".into(), "c".into(), "d".into()],
            )
            .unwrap(),
        );
        let n = identity_norm(&d);
        let plain = Augment {
            flip: true,
            cutout: Some(wrnc_recipe::Cutout { size: 2 }),
            ..Augment::NONE
        };
        let batches = |aug: Augment| -> Vec<Batch> {
            epoch_batches(d.clone(), n.clone(), &BatchConfig::train(7, aug), 2, 9)
                .unwrap()
                .collect()
        };
        let before = batches(plain);
        assert!(before.iter().all(|b| b.mix.is_none()));
        let on = wrnc_recipe::Mixing {
            alpha: 1.0,
            prob: None,
            switch_prob: None,
        };
        for (mixup, cutmix) in [(Some(on), None), (None, Some(on)), (Some(on), Some(on))] {
            let after = batches(Augment {
                mixup,
                cutmix,
                ..plain
            });
            let mut windows = 0;
            for (bi, (a, b)) in before.iter().zip(&after).enumerate() {
                assert_eq!(a.labels, b.labels);
                let m = b.mix.unwrap();
                // The draw is that of the global step (6 batches per epoch, epoch 2).
                let want = crate::mix::draw(
                    &Augment {
                        mixup,
                        cutmix,
                        ..plain
                    }
                    .mixing()
                    .unwrap(),
                    3,
                    4,
                    &mut crate::mix::mix_rng(9, 12 + bi as u64),
                );
                assert_eq!(m, want);
                windows += usize::from(m.window.is_some());
                let len = a.len;
                for i in 0..len {
                    let j = len - 1 - i;
                    for p in 0..12 {
                        let (own, other) = (a.images[i * 12 + p], a.images[j * 12 + p]);
                        let want = match m.window {
                            None => m.lam * f64::from(own) + (1.0 - m.lam) * f64::from(other),
                            Some(w) => {
                                let (y, x) = (p / 4, p % 4);
                                let inside = (w.top..w.top + w.height).contains(&y)
                                    && (w.left..w.left + w.width).contains(&x);
                                f64::from(if inside { other } else { own })
                            }
                        };
                        assert!((f64::from(b.images[i * 12 + p]) - want).abs() < 1e-6);
                    }
                }
            }
            if cutmix.is_some() && mixup.is_none() {
                assert!(windows > 0);
            }
        }
    }
}
