//! End-to-end tests of cutout and random erasing (`data.augment.cutout`,
//! `data.augment.random_erasing`): a short training run on the embedded digits with each, and
//! their validation messages.

mod common;
use common::*;
use std::path::Path;

/// Trains the quick start for one epoch with the extra `--set` overrides and returns the
/// bytes of the trained weights and the first data row of metrics.csv.
fn one_epoch(run: &Path, sets: &[&str]) -> (Vec<u8>, String) {
    let mut args = vec![
        "train",
        "specs/quickstart.yaml",
        "--set",
        "train.epochs=1",
        "--out",
        run.to_str().unwrap(),
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let r = wrnc(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let weights = std::fs::read(run.join("last.safetensors")).unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let row = metrics.lines().nth(1).unwrap().to_string();
    (weights, row)
}

/// The train loss (third column) of a metrics.csv row.
fn train_loss(row: &str) -> f64 {
    row.split(',').nth(2).unwrap().parse().unwrap()
}

#[test]
fn cutout_and_random_erasing_train_and_change_the_result() {
    let dir = tempdir();
    let (plain, plain_row) = one_epoch(&dir.path().join("plain"), &[]);
    let (cut, cut_row) = one_epoch(&dir.path().join("cut"), &["data.augment.cutout={size: 4}"]);
    let (re, re_row) = one_epoch(
        &dir.path().join("re"),
        &["data.augment.random_erasing={p: 1.0, value: random}"],
    );
    for row in [&plain_row, &cut_row, &re_row] {
        let loss = train_loss(row);
        assert!(loss.is_finite() && loss < 2.5, "{row}");
    }
    assert_ne!(cut, plain, "cutout changed nothing");
    assert_ne!(re, plain, "random erasing changed nothing");
    assert_ne!(cut, re);
    // Random erasing with p = 0 is the plain run exactly.
    let (off, _) = one_epoch(
        &dir.path().join("off"),
        &["data.augment.random_erasing={p: 0.0}"],
    );
    assert_eq!(off, plain);
}

#[test]
fn bad_cutout_and_erasing_settings_are_usage_errors() {
    let r = wrnc(&[
        "check",
        "specs/quickstart.yaml",
        "--set",
        "data.augment.cutout={size: 9}",
    ]);
    assert_usage_error(&r, &["data.augment.cutout.size", "image side 8", "got 9"]);
    let r = wrnc(&[
        "check",
        "specs/quickstart.yaml",
        "--set",
        "data.augment.random_erasing={scale: [0.5, 0.1]}",
    ]);
    assert_usage_error(
        &r,
        &["data.augment.random_erasing.scale", "0 < a <= b <= 1"],
    );
    let r = wrnc(&[
        "check",
        "specs/quickstart.yaml",
        "--set",
        "data.augment.random_erasing={value: rand}",
    ]);
    assert_usage_error(&r, &["data.augment.random_erasing.value", "`random`"]);
}

#[test]
fn data_preview_writes_a_grid_that_shows_cutout() {
    let dir = tempdir();
    let preview = |name: &str, sets: &[&str]| -> image::GrayImage {
        let out = dir.path().join(name);
        let mut args = vec![
            "data",
            "preview",
            "specs/quickstart.yaml",
            "-o",
            out.to_str().unwrap(),
            "--count",
            "12",
        ];
        for s in sets {
            args.push("--set");
            args.push(s);
        }
        let r = wrnc(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        image::open(&out).unwrap().to_luma8()
    };
    let plain = preview("plain.png", &[]);
    // 12 images: 4 columns x 3 rows of 8x8 digits shown 8x (64 px) with 2 px gaps.
    assert_eq!(plain.dimensions(), (4 * 66 + 2, 3 * 66 + 2));
    let cut = preview("cut.png", &["data.augment.cutout={size: 4}"]);
    assert_eq!(cut.dimensions(), plain.dimensions());
    assert_ne!(cut.as_raw(), plain.as_raw());
    // The same seed gives the same grid.
    assert_eq!(preview("again.png", &[]).as_raw(), plain.as_raw());
    // A missing dataset is a clear error, and no file is written.
    let out = dir.path().join("none.png");
    let r = wrnc(&[
        "data",
        "preview",
        "specs/wrn-16-4.yaml",
        "--set",
        "data.root=/nonexistent-wrnc-data",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("wrnc data fetch cifar10"), "{}", r.stderr);
    assert!(!out.exists());
}

#[test]
fn bad_policy_settings_are_usage_errors_with_their_line() {
    let dir = tempdir();
    let spec = |name: &str, augment: &str| {
        let path = dir.path().join(name);
        let text = format!(
            "name: t\nmodel:\n  wrn: {{depth: 10, width: 1}}\ndata:\n  dataset: digits\n  augment:\n{augment}"
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let check = |p: &Path| wrnc(&["check", p.to_str().unwrap()]);
    // An unknown policy lists the valid ones (and suggests the nearest) at its line.
    let p = spec("unknown.yaml", "    policy: rand_augment\n");
    let r = check(&p);
    assert_usage_error(
        &r,
        &[
            "unknown.yaml:7:",
            "data.augment.policy",
            "did you mean `randaugment`",
            "`autoaugment_cifar10`, `randaugment` or `trivialaugment`",
        ],
    );
    // RandAugment's settings need `policy: randaugment`.
    let p = spec(
        "orphan.yaml",
        "    policy: autoaugment_cifar10\n    randaugment: {n: 2, m: 9}\n",
    );
    assert_usage_error(
        &check(&p),
        &[
            "orphan.yaml:8:",
            "data.augment.randaugment",
            "only with `policy: randaugment`",
            "autoaugment_cifar10",
        ],
    );
    let p = spec("none.yaml", "    randaugment: {n: 2}\n");
    assert_usage_error(&check(&p), &["none.yaml:7:", "no policy"]);
    // Out-of-range n and m name their field, line and range.
    let p = spec(
        "n.yaml",
        "    policy: randaugment\n    randaugment: {n: 0, m: 9}\n",
    );
    assert_usage_error(
        &check(&p),
        &[
            "n.yaml:8:",
            "data.augment.randaugment.n",
            "between 1 and 10",
            "got 0",
        ],
    );
    let p = spec(
        "m.yaml",
        "    policy: randaugment\n    randaugment: {n: 2, m: 31}\n",
    );
    assert_usage_error(
        &check(&p),
        &[
            "m.yaml:8:",
            "data.augment.randaugment.m",
            "between 0 and 30",
            "got 31",
        ],
    );
    let p = spec(
        "fill.yaml",
        "    policy: trivialaugment\n    policy_fill: 256\n",
    );
    assert_usage_error(
        &check(&p),
        &["fill.yaml:8:", "data.augment.policy_fill", "0 and 255"],
    );
    // The published recipe is accepted.
    let r = wrnc(&["check", "specs/wrn-28-10-autoaugment.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("policy: autoaugment_cifar10"),
        "{}",
        r.stdout
    );
}

#[test]
fn data_preview_shows_each_policy_reproducibly() {
    let dir = tempdir();
    let preview = |name: &str, sets: &[&str]| -> Vec<u8> {
        let out = dir.path().join(name);
        let mut args = vec![
            "data",
            "preview",
            "specs/quickstart.yaml",
            "-o",
            out.to_str().unwrap(),
            "--count",
            "16",
        ];
        for s in sets {
            args.push("--set");
            args.push(s);
        }
        let r = wrnc(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        image::open(&out).unwrap().to_luma8().into_raw()
    };
    let plain = preview("plain.png", &[]);
    let mut grids = Vec::new();
    for p in ["autoaugment_cifar10", "randaugment", "trivialaugment"] {
        let set = format!("data.augment.policy={p}");
        let grid = preview(&format!("{p}.png"), &[&set]);
        assert_ne!(grid, plain, "{p} changed nothing");
        assert_eq!(
            preview(&format!("{p}-again.png"), &[&set]),
            grid,
            "{p}: the same seed gives the same grid"
        );
        grids.push(grid);
    }
    assert_ne!(grids[0], grids[1]);
    assert_ne!(grids[1], grids[2]);
    // RandAugment's settings change the result.
    let strong = preview(
        "ra-strong.png",
        &[
            "data.augment.policy=randaugment",
            "data.augment.randaugment={n: 4, m: 20}",
        ],
    );
    assert_ne!(strong, grids[1]);
}
