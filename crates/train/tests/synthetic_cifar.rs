//! Training on a small synthetic CIFAR-10-format dataset: the run learns, saves last/best,
//! and evaluating best.safetensors reproduces the best accuracy recorded in metrics.csv.

use wrnc_ir::{Graph, Op, Weights};
use wrnc_recipe::{DatasetKind, DeviceKind, Recipe, Schedule, Toggle};
use wrnc_testkit::graphs::conv_bias;
use wrnc_testkit::Net;
use wrnc_train::{
    evaluate, predict_logits, train, CheckpointMeta, NormalizerSource, RunStatus, Split,
    TrainOptions,
};

fn small_cnn() -> Graph {
    let mut b = Net::new("cnn", [3, 32, 32]);
    let x = b.then("conv0", conv_bias(8, 3, 2), b.input());
    let x = b.bn_relu("bn", "relu", x);
    let x = b.then("avg", Op::avg_pool(4, 4, 0), x);
    let x = b.then("flatten", Op::Flatten, x);
    let x = b.then("fc", Op::linear(10, true), x);
    b.then("softmax", Op::Softmax, x);
    b.finish()
}

#[test]
fn synthetic_cifar_trains_and_best_weights_reproduce_recorded_accuracy() {
    let root = wrnc_testkit::tempdir();
    let data_dir = root.path().join("cifar");
    wrnc_data::testutil::write_cifar_like(&data_dir, wrnc_recipe::DatasetKind::Cifar10, 60, 100, 3)
        .unwrap();
    let mut r = Recipe::default();
    r.data.dataset = DatasetKind::Cifar10;
    r.data.root = Some(data_dir.display().to_string());
    r.data.val_size = 100;
    r.data.augment = Toggle::Off;
    r.train.epochs = 4;
    r.train.batch_size = 50;
    r.train.eval_batch_size = 64;
    r.train.device = DeviceKind::Cpu;
    r.train.schedule = Schedule::Constant;
    r.train.optimizer.lr = 0.05;
    let g = small_cnn();
    let dir = root.path().join("run");
    let out = train(&g, &r, &TrainOptions::new(&dir)).unwrap();
    assert_eq!(out.status, RunStatus::Finished);
    assert_eq!(out.eval_split, Split::Val);
    let (best_acc, best_epoch) = out.best.unwrap();
    assert!(
        best_acc > 0.5,
        "synthetic data should be learnable, got {best_acc}"
    );

    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 4);
    let csv_best = rows[best_epoch - 1][5].parse::<f64>().unwrap();
    assert!(rows
        .iter()
        .all(|row| row[5].parse::<f64>().unwrap() <= csv_best));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["epoch_eval_split"], "val");

    let best = Weights::load(&dir.join("best.safetensors")).unwrap();
    let meta = CheckpointMeta::from_metadata(&best.metadata).unwrap();
    assert_eq!(meta.epoch, Some(best_epoch));
    assert_eq!(meta.val_split, Some(Split::Val));
    let ev = evaluate(&g, &best, &r, Split::Val, DeviceKind::Cpu).unwrap();
    assert_eq!(ev.normalizer.source, NormalizerSource::Recorded);
    let ev = ev.result;
    assert_eq!(ev.count, 100);
    assert!(
        (ev.accuracy - csv_best).abs() < 1e-6,
        "{} vs {csv_best}",
        ev.accuracy
    );
    assert!((ev.loss - rows[best_epoch - 1][4].parse::<f64>().unwrap()).abs() < 1e-5);
    assert!(dir.join("last.safetensors").exists());

    // predict_logits agrees with the eval-mode forward used by evaluate.
    let images = vec![0.25f32; 2 * 3 * 32 * 32];
    let logits = predict_logits(&g, &best, &images, 2).unwrap();
    assert_eq!(logits.len(), 20);
    assert_eq!(logits[..10], logits[10..]);
    assert!(predict_logits(&g, &best, &images, 3).is_err());
}
