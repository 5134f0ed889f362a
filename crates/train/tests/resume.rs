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
    let mut b = Net::new("tiny", [1, 8, 8]);
    let x = b.then("conv0", conv(8, 3, 1), b.input());
    let x = b.bn_relu("bn0", "relu0", x);
    let x = b.then("drop", Op::dropout(0.2), x);
    let x = b.then("conv1", conv(16, 3, 2), x);
    let x = b.bn_relu("bn1", "relu1", x);
    let x = b.classifier(x, 10, true);
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
    let e = train(&g, &recipe(3), &resuming(&b))
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.epochs"), "{e}");
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
