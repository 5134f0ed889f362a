//! The ONNX `training` metadata names what it holds (issue 12, item 4): the exported weights'
//! epoch, how they were chosen, on which split their accuracy was measured.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use wrnc_onnx::MetaKey;

fn meta(onnx: &Path, key: MetaKey) -> Option<String> {
    let m = wrnc_onnx::read_model(&std::fs::read(onnx).unwrap()).unwrap();
    m.metadata(key.as_str()).map(str::to_string)
}

fn training(onnx: &Path) -> Value {
    serde_json::from_str(&meta(onnx, MetaKey::Training).expect("training metadata")).unwrap()
}

/// The `val_acc` column of the last row of metrics.csv.
fn last_eval_acc(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let last = text.lines().last().unwrap();
    last.split(',').nth(5).unwrap().parse().unwrap()
}

/// Trains the quick start for two epochs into `DIR/run` with `val_size` held out; returns
/// the run directory and the command's stderr.
fn two_epoch_run(dir: &Path, val_size: usize) -> (std::path::PathBuf, String) {
    let run = dir.join("run");
    let val = format!("data.val_size={val_size}");
    let r = train(
        "specs/quickstart.yaml",
        &run,
        &["--set", "train.epochs=2", "--set", &val, "--quiet"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    (run, r.stderr)
}

#[test]
fn without_a_val_split_the_last_epoch_is_exported_and_labelled_so() {
    let dir = tempdir();
    let (run, _) = two_epoch_run(dir.path(), 0);
    let onnx = run.join("model.onnx");
    let t = training(&onnx);
    assert_eq!(t["epochs_completed"], 2, "{t}");
    assert_eq!(t["epoch"], 2, "{t}");
    assert_eq!(t["selected_on"], "last", "{t}");
    assert_eq!(t["eval_split"], "test", "{t}");
    assert!(t.get("best_val_accuracy").is_none(), "{t}");
    let acc = last_eval_acc(&run);
    assert!(
        (t["eval_accuracy"].as_f64().unwrap() - acc).abs() < 1e-6,
        "{t} vs {acc}"
    );
    assert_eq!(t["test_accuracy"], t["eval_accuracy"], "{t}");
    assert_eq!(
        meta(&onnx, MetaKey::WeightsFile).as_deref(),
        Some("last.safetensors")
    );

    // `wrnc export` of the best file says it was chosen on the test set; of the last file,
    // only its epoch (one file does not tell how many epochs the run completed).
    let best = dir.path().join("best.onnx");
    let r = export(
        "specs/quickstart.yaml",
        &run.join("best.safetensors"),
        &best,
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = training(&best);
    assert_eq!(t["selected_on"], "test", "{t}");
    assert_eq!(t["eval_split"], "test", "{t}");
    assert!(t.get("epochs_completed").is_none(), "{t}");
    let last = dir.path().join("last.onnx");
    let r = export(
        "specs/quickstart.yaml",
        &run.join("last.safetensors"),
        &last,
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = training(&last);
    assert_eq!(t["epoch"], 2, "{t}");
    assert!(
        t.get("selected_on").is_none() && t.get("epochs").is_none(),
        "{t}"
    );
}

#[test]
fn with_a_val_split_the_best_epoch_on_it_is_exported_and_labelled_so() {
    let dir = tempdir();
    let (run, stderr) = two_epoch_run(dir.path(), 200);
    let t = training(&run.join("model.onnx"));
    assert_eq!(t["epochs_completed"], 2, "{t}");
    assert_eq!(t["selected_on"], "val", "{t}");
    assert_eq!(t["eval_split"], "val", "{t}");
    assert!(t["eval_accuracy"].as_f64().unwrap() > 0.0, "{t}");
    // The exported weights were measured once on the test set at the end.
    let test = t["test_accuracy"].as_f64().expect("test_accuracy recorded");
    assert!(test > 0.5 && test <= 1.0, "{t}");
    assert!(
        stderr.contains("test accuracy of the exported weights (best.safetensors)"),
        "{stderr}"
    );
    assert_eq!(
        meta(&run.join("model.onnx"), MetaKey::WeightsFile).as_deref(),
        Some("best.safetensors")
    );
}
