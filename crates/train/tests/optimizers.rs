//! Label smoothing, gradient clipping, AdamW, SAM/ASAM and EMA in whole training runs: each
//! changes the run as it should, and a stopped-and-resumed run reproduces an uninterrupted
//! one bit for bit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use wrnc_ir::Weights;
use wrnc_recipe::{Ema, ExportWeights, OptimizerKind, Recipe};
use wrnc_train::{train, RunStatus, TrainOptions};

/// 1200 training images in batches of 100 (12 steps per epoch), 2 epochs, a validation split.
fn recipe() -> Recipe {
    let mut r = common::digits_recipe(2, 100, 3);
    r.data.val_size = 237;
    r.export.onnx = false;
    r
}

fn opts(dir: &Path, stop: Option<u64>, resume: bool) -> TrainOptions {
    TrainOptions {
        resolved_spec_yaml: "name: tiny\n".into(),
        spec_name: "tiny".into(),
        stop_after_steps: stop,
        resume,
        ..TrainOptions::new(dir)
    }
}

fn bits(path: &Path) -> BTreeMap<String, Vec<u32>> {
    Weights::load(path)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn losses(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("steps.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect()
}

fn metrics(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            // without the timing columns (7 and 8)
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != 6 && *i != 7)
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Trains `r` uninterrupted, and again stopped after step 17 (inside epoch 2) and resumed;
/// asserts both agree bit for bit (weights, optimiser state, EMA, steps, metrics) and
/// returns the uninterrupted run's directory.
fn run_and_resume(r: &Recipe, root: &Path, name: &str) -> std::path::PathBuf {
    let g = common::tiny_net();
    let full = root.join(format!("{name}-full"));
    assert_eq!(
        train(&g, r, &opts(&full, None, false)).unwrap().status,
        RunStatus::Finished
    );
    let cut = root.join(format!("{name}-cut"));
    let o = train(&g, r, &opts(&cut, Some(17), false)).unwrap();
    assert_eq!((o.status, o.global_step), (RunStatus::Interrupted, 17));
    let o = train(&g, r, &opts(&cut, None, true)).unwrap();
    assert_eq!(o.status, RunStatus::Finished);
    let mut files = vec![
        "last.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
    ];
    if r.train.ema.is_some() {
        files.push("ema.safetensors");
    }
    for f in files {
        assert!(
            bits(&full.join(f)) == bits(&cut.join(f)),
            "{name}: {f} differs after resume"
        );
    }
    assert_eq!(losses(&full), losses(&cut), "{name}: steps.csv");
    assert_eq!(metrics(&full), metrics(&cut), "{name}: metrics.csv");
    full
}

#[test]
fn each_option_changes_the_run_and_resumes_exactly() {
    let root = wrnc_testkit::tempdir();
    let root = root.path();
    let base = run_and_resume(&recipe(), root, "sgd");
    let base_last = bits(&base.join("last.safetensors"));
    let base_losses = losses(&base);

    // Label smoothing: a different loss from the first step on.
    let mut r = recipe();
    r.train.label_smoothing = 0.1;
    let d = run_and_resume(&r, root, "smooth");
    assert_ne!(losses(&d)[0], base_losses[0]);
    assert!(bits(&d.join("last.safetensors")) != base_last);

    // Gradient clipping: a bound far above every norm changes nothing; a tight one does.
    let g = common::tiny_net();
    let mut r = recipe();
    r.train.grad_clip = Some(1e9);
    let loose = root.join("loose");
    train(&g, &r, &opts(&loose, None, false)).unwrap();
    assert!(bits(&loose.join("last.safetensors")) == base_last);
    r.train.grad_clip = Some(0.05);
    let d = run_and_resume(&r, root, "clip");
    assert_eq!(
        losses(&d)[0],
        base_losses[0],
        "clipping acts after the first loss"
    );
    assert_ne!(losses(&d)[1], base_losses[1]);

    // AdamW (moments and step count restored on resume).
    let mut r = recipe();
    r.train.optimizer.kind = OptimizerKind::Adamw;
    r.train.optimizer.lr = 1e-3;
    r.train.optimizer.weight_decay = 5e-2;
    let d = run_and_resume(&r, root, "adamw");
    assert!(bits(&d.join("last.safetensors")) != base_last);
    let st = Weights::load(&d.join("optimizer.safetensors")).unwrap();
    assert!(st.tensors.keys().any(|k| k.starts_with("exp_avg_sq.")));

    // SAM and ASAM: the first pass's loss is logged, and the running statistics follow
    // the first pass only (after one step they equal SGD's).
    for adaptive in [false, true] {
        let mut r = recipe();
        r.train.optimizer.kind = OptimizerKind::Sam;
        r.train.optimizer.adaptive = adaptive;
        if adaptive {
            r.train.optimizer.rho = Some(0.5);
        }
        let name = if adaptive { "asam" } else { "sam" };
        let d = run_and_resume(&r, root, name);
        assert_eq!(losses(&d)[0], base_losses[0]);
        assert_ne!(losses(&d)[1], base_losses[1]);
        let (one, sgd_one) = (
            root.join(format!("{name}-1")),
            root.join(format!("{name}-sgd-1")),
        );
        train(&g, &r, &opts(&one, Some(1), false)).unwrap();
        train(&g, &recipe(), &opts(&sgd_one, Some(1), false)).unwrap();
        let (a, b) = (
            bits(&one.join("last.safetensors")),
            bits(&sgd_one.join("last.safetensors")),
        );
        for (k, v) in &a {
            if k.contains("running") {
                assert!(v == &b[k], "{name}: {k} differs from SGD's after one step");
            } else if k.ends_with("weight") {
                assert!(v != &b[k], "{name}: {k} equals SGD's after one step");
            }
        }
    }

    // EMA: raw weights unchanged, the average saved, evaluated and selected.
    let mut r = recipe();
    r.train.ema = Some(Ema {
        decay: 0.9,
        warmup: false,
    });
    let d = run_and_resume(&r, root, "ema");
    assert!(
        bits(&d.join("last.safetensors")) == base_last,
        "the EMA leaves training alone"
    );
    let ema = bits(&d.join("ema.safetensors"));
    assert!(ema != base_last);
    assert!(bits(&d.join("best.safetensors")) != base_last);
    let header = std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    assert!(header
        .lines()
        .next()
        .unwrap()
        .ends_with(",ema_val_loss,ema_val_acc"));
    r.export.weights = Some(ExportWeights::Raw);
    let raw = root.join("ema-raw");
    train(&g, &r, &opts(&raw, None, false)).unwrap();
    assert!(bits(&raw.join("ema.safetensors")) == ema);
    let best_raw = bits(&raw.join("best.safetensors"));
    let base_best = bits(&base.join("best.safetensors"));
    assert!(
        best_raw == base_best,
        "export.weights raw selects and saves the raw weights"
    );
}

/// Mixup and CutMix (`data.augment.mixup` / `cutmix`) and `train.freeze` in whole runs: each
/// changes the run, resumes bit for bit (the mixing is keyed by seed and global step), and
/// frozen tensors end bit-identical to their init without optimiser state.
#[test]
fn mixing_and_freezing_change_the_run_and_resume_exactly() {
    let root = wrnc_testkit::tempdir();
    let root = root.path();
    let g = common::tiny_net();
    let base = root.join("plain");
    train(&g, &recipe(), &opts(&base, None, false)).unwrap();
    let base_losses = losses(&base);
    let on = |alpha| wrnc_recipe::Mixing {
        alpha,
        prob: None,
        switch_prob: None,
    };
    let cases = [
        ("mixup", Some(on(0.4)), None),
        ("cutmix", None, Some(on(1.0))),
        ("both", Some(on(0.4)), Some(on(1.0))),
    ];
    for (name, mixup, cutmix) in cases {
        let mut r = recipe();
        let mut a = r.data.augmentation();
        a.mixup = mixup;
        a.cutmix = cutmix;
        r.data.augment = wrnc_recipe::Toggle::On(a);
        let d = run_and_resume(&r, root, name);
        assert_ne!(losses(&d)[0], base_losses[0], "{name}");
    }
    // prob 0: every batch unmixed, so the soft-target loss of the plain one-hot targets
    // gives the plain run up to rounding.
    let mut r = recipe();
    let mut a = r.data.augmentation();
    a.mixup = Some(wrnc_recipe::Mixing {
        prob: Some(0.0),
        ..on(1.0)
    });
    r.data.augment = wrnc_recipe::Toggle::On(a);
    let d = root.join("prob0");
    train(&g, &r, &opts(&d, None, false)).unwrap();
    for (x, y) in losses(&d).iter().zip(&base_losses) {
        let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
        assert!((x - y).abs() < 1e-3 * y.abs().max(1.0), "{x} vs {y}");
    }

    let mut r = recipe();
    r.train.freeze = vec!["conv0.*".into(), "bn1.weight".into()];
    let d = run_and_resume(&r, root, "freeze");
    let init = wrnc_train::init_weights(&g, r.train.seed);
    let last = bits(&d.join("last.safetensors"));
    let state = Weights::load(&d.join("optimizer.safetensors")).unwrap();
    for (name, t) in &init.tensors {
        let frozen = name.starts_with("conv0.") || name == "bn1.weight";
        let init_bits: Vec<u32> = t.data.iter().map(|v| v.to_bits()).collect();
        assert_eq!(last[name] == init_bits, frozen, "{name}");
        let has_state = state
            .tensors
            .keys()
            .any(|k| k == name || k.ends_with(&format!(".{name}")));
        if frozen {
            assert!(!has_state, "{name} has optimiser state");
        }
    }
}
