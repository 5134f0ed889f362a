//! Measures the decode cache of a folder dataset: writes `N` (default 10,000) 32x32 RGB PNGs
//! in 10 class folders (90% under `train/`, 10% under `test/`) into a temporary folder, then
//! loads the folder twice: the first load decodes every image (in parallel) and writes the
//! cache, the second reads the cache.
//!
//! `cargo run --release -p wrnc-data --example decode_cache [N]`

use std::time::Instant;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wrnc_data::{load_folder, FolderOptions};
use wrnc_recipe::{BadImages, Resize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let t = Instant::now();
    let mut bytes = 0u64;
    for i in 0..n {
        let split = if (i / 10) % 10 == 9 { "test" } else { "train" };
        let class = i % 10;
        let folder = root.join(split).join(format!("class{class}"));
        std::fs::create_dir_all(&folder)?;
        // A smooth colour gradient per class plus noise, like a small photo.
        let base: [u8; 3] = [rng.random(), rng.random(), rng.random()];
        let img = RgbImage::from_fn(32, 32, |x, y| {
            let mut p = [0u8; 3];
            for (c, v) in p.iter_mut().enumerate() {
                let g = (x * 4 + y * 3 + class as u32 * 20) as u8;
                *v = base[c]
                    .wrapping_add(g)
                    .saturating_add(rng.random_range(0..24));
            }
            Rgb(p)
        });
        let path = folder.join(format!("{i:05}.png"));
        img.save(&path)?;
        bytes += std::fs::metadata(&path)?.len();
    }
    println!(
        "wrote {n} 32x32 RGB PNGs ({:.1} MB) in {:.2} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let opts = FolderOptions {
        root: root.to_path_buf(),
        shape: [3, 32, 32],
        resize: Resize::default(),
        bad_images: BadImages::Error,
        val_size: 0,
        split_seed: 0,
    };
    for run in ["first (decode)", "second (cache)"] {
        let t = Instant::now();
        let (splits, report) = load_folder(&opts, &mut |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let c = &report.cache;
        println!(
            "{run}: {:.3} s for {} images ({:.0} images/s overall); decoded {} at {:.0} \
             images/s; cache {:.1} MB",
            secs,
            splits.train.len() + splits.test.len(),
            n as f64 / secs,
            c.decoded,
            c.images_per_sec(),
            c.bytes as f64 / 1e6
        );
    }
    println!("threads: {}", rayon::current_num_threads());
    Ok(())
}
