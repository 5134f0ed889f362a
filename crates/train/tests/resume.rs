//! A stopped-and-resumed run reproduces an uninterrupted one exactly.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wrnc_ir::{Graph, Op, Weights};
use wrnc_recipe::Recipe;
use wrnc_testkit::graphs::conv;
use wrnc_testkit::Net;
use wrnc_train::{
    train, train_with, EpochEnd, EpochStart, RunStatus, StepProgress, TrainObserver, TrainOptions,
};

fn tiny() -> Graph {
    tiny_classes(10)
}

/// [`tiny`] with another number of classes (only `fc.*` differs).
fn tiny_classes(classes: usize) -> Graph {
    let mut b = Net::new("tiny", [1, 8, 8]);
    let x = b.then("conv0", conv(8, 3, 1), b.input());
    let x = b.bn_relu("bn0", "relu0", x);
    let x = b.then("drop", Op::dropout(0.2), x);
    let x = b.then("conv1", conv(16, 3, 2), x);
    let x = b.bn_relu("bn1", "relu1", x);
    let x = b.classifier(x, classes, true);
    b.then("softmax", Op::Softmax, x);
    b.finish()
}

fn recipe(epochs: usize) -> Recipe {
    // 1200 training images in batches of 100: 12 steps per epoch.
    let mut r = common::digits_recipe(epochs, 100, 11);
    r.data.val_size = 237;
    r.train.warmup_epochs = 1;
    r
}

fn opts(dir: &Path) -> TrainOptions {
    TrainOptions {
        resolved_spec_yaml: "name: tiny\n".into(),
        spec_name: "tiny".into(),
        ..TrainOptions::new(dir)
    }
}

/// [`opts`] resuming the run in `dir`.
fn resuming(dir: &Path) -> TrainOptions {
    TrainOptions {
        resume: true,
        ..opts(dir)
    }
}

/// [`opts`] stopping after `steps` steps in all.
fn stopping_after(steps: u64, dir: &Path) -> TrainOptions {
    TrainOptions {
        stop_after_steps: Some(steps),
        ..opts(dir)
    }
}

/// metrics.csv without the timing columns.
fn metrics(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect()
}

fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u32>> {
    Weights::load(path)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn assert_same_run(a: &Path, b: &Path) {
    assert_eq!(metrics(a), metrics(b));
    assert_eq!(
        std::fs::read_to_string(a.join("steps.csv")).unwrap(),
        std::fs::read_to_string(b.join("steps.csv")).unwrap()
    );
    for f in [
        "last.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
    ] {
        assert!(tensors(&a.join(f)) == tensors(&b.join(f)), "{f} differs");
    }
}

#[test]
fn a_cpu_bf16_run_stopped_mid_epoch_resumes_bit_identically() {
    if !wrnc_train::cpu_bf16_available() {
        eprintln!("skipped: no AVX-512 BF16 on this CPU");
        return;
    }
    // bf16 products (with dropout in the graph), stopped inside epoch 2, then resumed
    let g = tiny();
    let mut r = recipe(2);
    r.train.precision = wrnc_recipe::Precision::Bf16;
    let root = wrnc_testkit::tempdir();
    let full = root.path().join("full");
    let out = train(&g, &r, &opts(&full)).unwrap();
    assert_eq!(out.status, RunStatus::Finished);
    let b = root.path().join("mid-stop");
    let o = train(&g, &r, &stopping_after(17, &b)).unwrap();
    assert_eq!((o.status, o.global_step), (RunStatus::Interrupted, 17));
    let o = train(&g, &r, &resuming(&b)).unwrap();
    assert_eq!(o.status, RunStatus::Finished);
    assert_same_run(&full, &b);
    // and the products were bf16: an f32 run ends elsewhere
    let f32_run = root.path().join("f32");
    train(&g, &recipe(2), &opts(&f32_run)).unwrap();
    assert!(
        tensors(&full.join("last.safetensors")) != tensors(&f32_run.join("last.safetensors")),
        "bf16 and f32 runs ended with the same weights"
    );
}

#[test]
fn stopped_and_resumed_runs_match_an_uninterrupted_run() {
    let (g, r) = (tiny(), recipe(2));
    let root = wrnc_testkit::tempdir();
    let full = root.path().join("full");
    let out = train(&g, &r, &opts(&full)).unwrap();
    assert_eq!(out.status, RunStatus::Finished);
    assert_eq!(out.epochs_done, 2);
    assert_eq!(out.global_step, 24);
    assert_eq!(metrics(&full).len(), 3);
    assert_eq!(
        std::fs::read_to_string(full.join("steps.csv"))
            .unwrap()
            .lines()
            .count(),
        25
    );

    // Stopped at the epoch boundary, then resumed.
    let a = root.path().join("epoch-stop");
    let o = train(&g, &r, &stopping_after(12, &a)).unwrap();
    assert_eq!((o.status, o.epochs_done), (RunStatus::Interrupted, 1));
    assert_eq!(metrics(&a).len(), 2);
    let o = train(&g, &r, &resuming(&a)).unwrap();
    assert_eq!((o.status, o.epochs_done), (RunStatus::Finished, 2));
    assert_same_run(&full, &a);

    // Stopped in the middle of epoch 2, then resumed.
    let b = root.path().join("mid-stop");
    let o = train(&g, &r, &stopping_after(17, &b)).unwrap();
    assert_eq!(
        (o.status, o.epochs_done, o.global_step),
        (RunStatus::Interrupted, 1, 17)
    );
    let o = train(&g, &r, &resuming(&b)).unwrap();
    assert_eq!(o.status, RunStatus::Finished);
    assert_same_run(&full, &b);

    // Resuming a finished run does nothing and says so.
    let o = train(&g, &r, &resuming(&b)).unwrap();
    assert_eq!(o.status, RunStatus::AlreadyFinished);
    assert_same_run(&full, &b);

    // A fresh run into a used directory, or a resume with other settings, is refused.
    let e = train(&g, &r, &opts(&b)).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let mut other = recipe(3);
    other.train.batch_size = 50;
    let e = train(&g, &other, &resuming(&b)).unwrap_err().to_string();
    assert!(e.contains("train.batch_size: was 100, now 50"), "{e}");
    assert!(!e.contains("train.epochs: was"), "{e}");
}

/// [`recipe`] with a constant rate and no warm-up, whose rate does not depend on the epoch
/// count.
fn constant(epochs: usize) -> Recipe {
    let mut r = recipe(epochs);
    r.train.warmup_epochs = 0;
    r.train.schedule = wrnc_recipe::Schedule::Constant;
    r
}

fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap()
}

#[test]
fn a_finished_run_extended_to_more_epochs_continues_it() {
    let g = tiny();
    let root = wrnc_testkit::tempdir();
    // With a constant rate, training 1 epoch and extending to 2 is the 2-epoch run.
    let straight = root.path().join("straight");
    train(&g, &constant(2), &opts(&straight)).unwrap();
    let ext = root.path().join("extended");
    train(&g, &constant(1), &opts(&ext)).unwrap();
    let o = train(&g, &constant(2), &resuming(&ext)).unwrap();
    assert_eq!((o.status, o.epochs_done), (RunStatus::Finished, 2));
    assert_same_run(&straight, &ext);
    let ext_state = state(&ext);
    assert_eq!(
        ext_state["extended"],
        serde_json::json!([{"from": 1, "to": 2, "at_epoch": 1, "at_step": 12}])
    );
    assert_eq!(ext_state["settings"]["train"]["epochs"], 2);
    assert!(state(&straight).get("extended").is_none());
    assert_eq!(
        std::fs::read_to_string(ext.join("spec.resolved.yaml")).unwrap(),
        "name: tiny\n"
    );
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ext.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["epochs"], 2);
    assert_eq!(run_json["extended"][0]["to"], 2);

    // Fewer epochs than already trained (or started) is refused; so is any other change.
    let e = train(&g, &constant(1), &resuming(&ext))
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.epochs cannot become 1"), "{e}");
    assert!(e.contains("has completed 2 epochs"), "{e}");
    let mut other = constant(3);
    other.train.optimizer.lr = 0.5;
    let e = train(&g, &other, &resuming(&ext)).unwrap_err().to_string();
    assert!(e.contains("train.optimizer"), "{e}");
    let stopped = root.path().join("stopped");
    train(&g, &constant(2), &stopping_after(15, &stopped)).unwrap();
    let e = train(&g, &constant(1), &resuming(&stopped))
        .unwrap_err()
        .to_string();
    assert!(e.contains("started epoch 2"), "{e}");
}

#[test]
fn an_extension_stopped_and_resumed_ends_like_an_uninterrupted_extension() {
    // Cosine with warm-up: the rate of the remaining epochs follows the new epoch count.
    let g = tiny();
    let root = wrnc_testkit::tempdir();
    let base = root.path().join("base");
    train(&g, &recipe(2), &opts(&base)).unwrap();
    let copy = |name: &str| {
        let d = root.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for f in std::fs::read_dir(&base).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), d.join(f.file_name())).unwrap();
        }
        d
    };
    let whole = copy("whole");
    let o = train(&g, &recipe(4), &resuming(&whole)).unwrap();
    assert_eq!((o.status, o.epochs_done), (RunStatus::Finished, 4));
    let split = copy("split");
    let o = train(
        &g,
        &recipe(4),
        &TrainOptions {
            stop_after_steps: Some(30),
            ..resuming(&split)
        },
    )
    .unwrap();
    assert_eq!((o.status, o.global_step), (RunStatus::Interrupted, 30));
    train(&g, &recipe(4), &resuming(&split)).unwrap();
    assert_same_run(&whole, &split);
    assert_eq!(state(&whole)["extended"], state(&split)["extended"]);
    // The epochs after the extension train at the 4-epoch schedule's rates.
    let lrs = step_lrs(&whole);
    let r4 = recipe(4);
    let want =
        |e: f64| r4.train.optimizer.lr * (1.0 + (std::f64::consts::PI * e / 3.0).cos()) / 2.0;
    assert!((lrs[24] - want(1.0)).abs() < 1e-15, "{}", lrs[24]);
    assert!((lrs[47] - want(2.0)).abs() < 1e-15, "{}", lrs[47]);
}

#[test]
fn uncommitted_next_files_are_discarded_and_committed_ones_rolled_forward() {
    let (g, r) = (tiny(), recipe(2));
    let root = wrnc_testkit::tempdir();
    let full = root.path().join("full");
    train(&g, &r, &opts(&full)).unwrap();

    let a = root.path().join("a");
    train(&g, &r, &stopping_after(12, &a)).unwrap();
    // A crash after writing the next epoch's files but before the commit: garbage .next
    // files that must be ignored.
    std::fs::copy(
        full.join("last.safetensors"),
        a.join("last.safetensors.next"),
    )
    .unwrap();
    std::fs::write(a.join("optimizer.safetensors.next"), b"partial").unwrap();
    // A crash after the commit but before the rename: the committed file only exists as .next.
    std::fs::rename(a.join("best.safetensors"), a.join("best.safetensors.next")).unwrap();
    let o = train(&g, &r, &resuming(&a)).unwrap();
    assert_eq!(o.status, RunStatus::Finished);
    assert_same_run(&full, &a);
    assert!(!a.join("last.safetensors.next").exists());
}

#[test]
fn init_weights_are_checked_and_used() {
    let g = tiny();
    let mut r = recipe(1);
    r.train.optimizer.lr = 0.0; // weights stay as given (BN running stats still move)
    let root = wrnc_testkit::tempdir();
    let mut w = wrnc_train::init_weights(&g, 99);
    let init = root.path().join("init.safetensors");
    w.save(&init).unwrap();
    let dir = root.path().join("run");
    let o = train(
        &g,
        &r,
        &TrainOptions {
            init_weights: Some(init.clone()),
            ..opts(&dir)
        },
    )
    .unwrap();
    assert_eq!(o.status, RunStatus::Finished);
    let last = Weights::load(&dir.join("last.safetensors")).unwrap();
    assert_eq!(last.get("conv0.weight"), w.get("conv0.weight"));

    w.tensors.remove("fc.bias");
    w.save(&init).unwrap();
    let e = train(
        &g,
        &r,
        &TrainOptions {
            init_weights: Some(init),
            ..opts(&root.path().join("run2"))
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("missing tensor `fc.bias`"), "{e}");
}

#[test]
fn init_skip_takes_the_rest_and_inits_the_skipped_fresh() {
    // Weights of the same network with 7 classes: every tensor but the classifier fits.
    let g = tiny();
    let mut r = recipe(1);
    r.train.optimizer.lr = 0.0; // the trainable weights stay as they start
    let root = wrnc_testkit::tempdir();
    let src = wrnc_train::init_weights(&tiny_classes(7), 99);
    let init = root.path().join("c7.safetensors");
    src.save(&init).unwrap();
    let with = |skip: &[&str], run: &str| TrainOptions {
        init_weights: Some(init.clone()),
        init_skip: skip.iter().map(|s| s.to_string()).collect(),
        ..opts(&root.path().join(run))
    };

    let e = train(&g, &r, &with(&[], "plain")).unwrap_err().to_string();
    assert!(
        e.contains("tensor `fc.weight` has shape [7, 16] in the file, the model needs [10, 16]")
            && e.contains("--init-skip"),
        "{e}"
    );
    assert!(!root.path().join("plain").exists());
    let e = train(&g, &r, &with(&["fx.*"], "typo"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--init-skip `fx.*` matches no parameter"), "{e}");

    let o = train(&g, &r, &with(&["fc.*"], "skip")).unwrap();
    assert_eq!(o.status, RunStatus::Finished);
    let last = Weights::load(&root.path().join("skip/last.safetensors")).unwrap();
    let fresh = wrnc_train::init_weights(&g, r.train.seed);
    let mut loaded = 0;
    for p in &g.params {
        let got = last.get(&p.name);
        if p.name.starts_with("fc.") {
            assert_eq!(got, fresh.get(&p.name), "{}", p.name);
        } else if p.name.ends_with(".weight") || p.name.ends_with(".bias") {
            assert_eq!(got, src.get(&p.name), "{}", p.name);
            loaded += 1;
        }
    }
    assert!(loaded >= 4, "{loaded}");
    let l = wrnc_train::load_init(&init, &g, &["fc.*".into()], 3).unwrap();
    assert_eq!(l.skipped, 2);
    assert_eq!(l.loaded + l.skipped, g.params.len());
}

/// What a run reported, one line per event.
#[derive(Default)]
struct Log(Vec<String>);

impl TrainObserver for Log {
    fn epoch_started(&mut self, e: &EpochStart) {
        self.0.push(format!(
            "start {}/{} of {} from {}",
            e.epoch, e.epochs, e.steps, e.done
        ));
    }
    fn step_done(&mut self, p: &StepProgress) {
        assert!(p.loss.is_finite() && (0.0..=1.0).contains(&p.accuracy));
        self.0.push(format!("step {}", p.step));
    }
    fn steps_finished(&mut self) {
        self.0.push("steps finished".into());
    }
    fn epoch_finished(&mut self, e: &EpochEnd) {
        self.0.push(format!("end {}/{}", e.metrics.epoch, e.epochs));
    }
}

#[test]
fn the_run_reports_to_its_observer_and_stops_on_the_interrupt_flag() {
    let (g, r) = (tiny(), recipe(2));
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    // The flag is already set: the run stops after its first step, with a checkpoint.
    let flag = Arc::new(AtomicBool::new(true));
    let interrupted = TrainOptions {
        interrupt: Some(Arc::clone(&flag)),
        ..opts(&dir)
    };
    let mut log = Log::default();
    let o = train_with(&g, &r, &interrupted, &mut log).unwrap();
    assert_eq!((o.status, o.global_step), (RunStatus::Interrupted, 1));
    assert_eq!(
        log.0,
        ["start 1/2 of 12 from 0", "step 1", "steps finished"]
    );
    flag.store(false, Ordering::SeqCst);
    let resume = TrainOptions {
        resume: true,
        ..interrupted
    };
    let mut log = Log::default();
    let o = train_with(&g, &r, &resume, &mut log).unwrap();
    assert_eq!((o.status, o.global_step), (RunStatus::Finished, 24));
    assert_eq!(log.0[0], "start 1/2 of 12 from 1");
    assert_eq!(log.0[1], "step 2");
    assert_eq!(log.0.iter().filter(|l| l.starts_with("step ")).count(), 23);
    let ends: Vec<&String> = log.0.iter().filter(|l| l.starts_with("end")).collect();
    assert_eq!(ends, ["end 1/2", "end 2/2"]);
    // A finished run has nothing to report.
    let mut log = Log::default();
    let o = train_with(&g, &r, &resume, &mut log).unwrap();
    assert_eq!(o.status, RunStatus::AlreadyFinished);
    assert!(log.0.is_empty(), "{:?}", log.0);
}

/// The `lr` column of steps.csv, one value per step.
fn step_lrs(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("steps.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn warmup_rises_per_step_and_a_run_resumed_inside_it_is_exact() {
    // One warm-up epoch of 12 steps: step s (from 1) trains at lr0 * (s / 12).
    let (g, r) = (tiny(), recipe(2));
    let lr0 = r.train.optimizer.lr;
    let root = wrnc_testkit::tempdir();
    let full = root.path().join("full");
    train(&g, &r, &opts(&full)).unwrap();
    let lrs = step_lrs(&full);
    assert_eq!(lrs.len(), 24);
    for (i, lr) in lrs[..12].iter().enumerate() {
        assert_eq!(*lr, lr0 * ((i + 1) as f64 / 12.0), "step {}", i + 1);
    }
    // After the warm-up: cosine over T = 1 epoch, so epoch 2 (e = 0) trains at lr0.
    assert!(lrs[12..].iter().all(|&lr| lr == lr0), "{lrs:?}");
    // metrics.csv records the rate of each epoch's last step.
    let rows = metrics(&full);
    assert_eq!(
        rows[1].split(',').nth(1).unwrap().parse::<f64>().unwrap(),
        lr0
    );

    // Stopped in the middle of the warm-up and resumed: the same run.
    let mid = root.path().join("mid-warmup");
    let o = train(&g, &r, &stopping_after(5, &mid)).unwrap();
    assert_eq!((o.status, o.global_step), (RunStatus::Interrupted, 5));
    train(&g, &r, &resuming(&mid)).unwrap();
    assert_same_run(&full, &mid);

    // A one-epoch warm-up changes the training (it used to be a no-op: the per-epoch rule
    // gave epoch 0 the full rate).
    let mut no_warmup = r.clone();
    no_warmup.train.warmup_epochs = 0;
    let plain = root.path().join("no-warmup");
    train(&g, &no_warmup, &opts(&plain)).unwrap();
    assert!(step_lrs(&plain)[..12].iter().all(|&lr| lr == lr0));
    assert!(
        tensors(&plain.join("last.safetensors")) != tensors(&full.join("last.safetensors")),
        "warmup_epochs: 1 did not change the weights"
    );
}
