//! End-to-end tests of `wrnc train` / `wrnc eval` on real and generated data.

mod common;
use common::*;
use std::path::Path;

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn eval_json(args: &[&str]) -> serde_json::Value {
    let r = wrnc(args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn cifar_format_run_trains_saves_best_and_eval_reproduces_it() {
    let dir = tempdir();
    let (spec, data) = synthetic_cifar_spec(
        dir.path(),
        "synth",
        (60, 100),
        "  val_size: 100\n",
        "  epochs: 2\n  batch_size: 50\n  optimizer: {lr: 0.05}\n  schedule: {kind: constant}\n",
    );
    let run = dir.path().join("run");
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in [
        "spec.resolved.yaml",
        "metrics.csv",
        "steps.csv",
        "last.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
        "model.onnx",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let header = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        header.starts_with("epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_sec")
    );
    let metrics = csv_rows(&run.join("metrics.csv"));
    assert_eq!(metrics.len(), 2);
    // 5 files x 60 = 300 training records, 100 held out for validation: 200 train.
    let steps = csv_rows(&run.join("steps.csv"));
    assert_eq!(steps.len(), 2 * 200 / 50);
    let best: f64 = metrics
        .iter()
        .map(|r| r[5].parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    let v = eval_json(&[
        "eval",
        &spec,
        "--weights",
        run.join("best.safetensors").to_str().unwrap(),
        "--split",
        "val",
        "--json",
    ]);
    assert_eq!(v["split"], "val");
    assert_eq!(v["count"], 100);
    assert!(
        (v["accuracy"].as_f64().unwrap() - best).abs() < 1e-9,
        "{v} vs {best}"
    );
    // The export at the end of training used best.safetensors (there is a val split).
    let best_weights = run.join("best.safetensors");
    let r = verify(&run.join("model.onnx"), &spec, &best_weights, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("test images of cifar10"), "{}", r.stdout);
    // Without --spec and --weights, verify takes the run directory's: its resolved spec and
    // the weights file the ONNX metadata names (best.safetensors here, not last).
    let r = wrnc(&["verify", run.join("model.onnx").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("spec.resolved.yaml (the run directory's)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("best.safetensors (named in the file's metadata)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("verified:"), "{}", r.stdout);
    // The run directory stands for its model.onnx; a folder without one is a usage error.
    let r = wrnc(&["verify", run.to_str().unwrap(), "--batch", "2"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("model.onnx computes what"),
        "{}",
        r.stdout
    );
    let r = wrnc(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("without a model.onnx"), "{}", r.stderr);
    // A run whose spec exports another file name: the directory stands for that file.
    let renamed = dir.path().join("renamed-run");
    std::fs::create_dir(&renamed).unwrap();
    let resolved = std::fs::read_to_string(run.join("spec.resolved.yaml")).unwrap();
    assert!(resolved.contains("file: model.onnx"), "{resolved}");
    let resolved = resolved.replace("file: model.onnx", "file: net.onnx");
    std::fs::write(renamed.join("spec.resolved.yaml"), resolved).unwrap();
    std::fs::copy(run.join("model.onnx"), renamed.join("net.onnx")).unwrap();
    let r = wrnc(&[
        "verify",
        renamed.to_str().unwrap(),
        "--weights",
        utf8(&best_weights),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("net.onnx computes what"), "{}", r.stdout);
    run_directory_stands_for_its_spec_and_exported_weights(&spec, &run, best);
    // The weights carry the normalisation they were trained with: an export on a machine
    // without the dataset still records it.
    std::fs::remove_dir_all(&data).unwrap();
    let out = dir.path().join("again.onnx");
    let r = export(&spec, &best_weights, &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let m = wrnc_onnx::read_model(&std::fs::read(&out).unwrap()).unwrap();
    let info = wrnc_onnx::ModelInfo::from_model(&m).unwrap();
    let norm = info.normalization.expect("normalization metadata");
    assert_eq!(norm.mode, wrnc_recipe::Normalize::MeanStd);
    assert_eq!(norm.mean.len(), 3);
    assert!(norm.std.iter().all(|s| *s > 0.0));
    let trained = wrnc_onnx::read_model(&std::fs::read(run.join("model.onnx")).unwrap()).unwrap();
    let trained = wrnc_onnx::ModelInfo::from_model(&trained).unwrap();
    assert_eq!(trained.normalization.unwrap().mean, norm.mean);
    // `wrnc export` records no weights file and its folder holds no run spec: verify asks
    // for the flags (exit 2), one at a time.
    let again = out.to_str().unwrap();
    let r = wrnc(&["verify", again]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--spec is needed"), "{}", r.stderr);
    let r = wrnc(&["verify", again, "--spec", &spec]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--weights is needed"), "{}", r.stderr);
    assert!(r.stderr.contains("weights_file"), "{}", r.stderr);
    // --spec may name the run directory (its spec.resolved.yaml), as SPEC may elsewhere
    let r = wrnc(&[
        "verify",
        again,
        "--spec",
        utf8(&run),
        "--weights",
        utf8(&best_weights),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Training again into the same directory without --resume is refused.
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // Resuming the finished run says so and succeeds.
    let r = train(&spec, &run, &["--quiet", "--resume"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("already finished"), "{}", r.stderr);
}

/// `wrnc eval`, `export` and `train` given a run directory (`run`, trained from `spec` with a
/// validation split, so that it exported best.safetensors, of validation accuracy `best`).
fn run_directory_stands_for_its_spec_and_exported_weights(spec: &str, run: &Path, best: f64) {
    let dir = utf8(run);
    let v = eval_json(&["eval", dir, "--split", "val", "--json"]);
    assert!(
        (v["accuracy"].as_f64().unwrap() - best).abs() < 1e-9,
        "{v} vs {best}"
    );
    let r = wrnc(&["eval", dir, "--split", "val"]);
    assert!(
        r.stderr
            .contains("best.safetensors (the run's exported weights)"),
        "{}",
        r.stderr
    );
    // The export of the run directory is the export of its spec and best weights.
    let from_dir = run.with_file_name("from-dir.onnx");
    let r = wrnc(&["export", dir, "-o", utf8(&from_dir)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let from_spec = run.with_file_name("from-spec.onnx");
    let r = export(spec, &run.join("best.safetensors"), &from_spec, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read(&from_dir).unwrap() == std::fs::read(&from_spec).unwrap(),
        "the run directory's export differs from the spec's with best.safetensors"
    );
    // predict: the run directory stands for the file it exported.
    let png = run.with_file_name("pixel-noise.png");
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 99])
    })
    .save(&png)
    .unwrap();
    let by_dir = wrnc(&["predict", dir, utf8(&png), "--json"]);
    assert_eq!(by_dir.code, 0, "{}", by_dir.stderr);
    let by_file = wrnc(&[
        "predict",
        utf8(&run.join("model.onnx")),
        utf8(&png),
        "--json",
    ]);
    assert_eq!(by_dir.stdout, by_file.stdout);
    // A spec file has no default weights; a folder that is no run is neither spec nor run.
    let r = wrnc(&["eval", spec]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--weights is needed"), "{}", r.stderr);
    let empty = run.with_file_name("not-a-run");
    std::fs::create_dir_all(&empty).unwrap();
    let r = wrnc(&["export", utf8(&empty)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("without spec.resolved.yaml"),
        "{}",
        r.stderr
    );
    // `wrnc train RUN_DIR` asks for --resume or --out; `--resume RUN_DIR` continues that run.
    let r = wrnc(&["train", dir, "--quiet"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is a run directory"), "{}", r.stderr);
    let r = wrnc(&["train", "--resume", dir, "--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("the run in {dir} already finished")),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_dataset_and_bad_device_are_clear_errors() {
    let dir = tempdir();
    let run = dir.path().join("run");
    let data_root = format!("data.root={}", dir.path().join("nothing").display());
    let r = train(
        "specs/wrn-16-4.yaml",
        &run,
        &["--set", &data_root, "--quiet"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("wrnc data fetch cifar10"), "{}", r.stderr);
    if !cfg!(feature = "cuda") {
        let r = train("specs/quickstart.yaml", &run, &["--device", "cuda"]);
        assert_usage_error(&r, &["cuda"]);
    }
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--weights",
        "nope.safetensors",
        "--split",
        "val",
    ]);
    assert_usage_error(&r, &["--split val", "data.val_size"]);
}

#[test]
fn quickstart_reaches_97_percent_and_its_onnx_predicts_like_candle() {
    let dir = tempdir();
    let run = dir.path().join("qs");
    let r = train("specs/quickstart.yaml", &run, &["--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let last = run.join("last.safetensors");
    let v = eval_json(&[
        "eval",
        "specs/quickstart.yaml",
        "--weights",
        last.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["count"], 360);
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.97, "quickstart test accuracy {acc}");
    let onnx = run.join("model.onnx");
    let r = verify(&onnx, "specs/quickstart.yaml", &last, &["--batch", "8"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // A PNG made from digits test images: `wrnc predict` gives Candle's label.
    let spec = wrnc_spec::load(&root().join("specs/quickstart.yaml"), &[]).unwrap();
    let weights = wrnc_ir::Weights::load(&last).unwrap();
    let splits =
        wrnc_data::load_splits(wrnc_recipe::DatasetKind::Digits, Path::new("."), 0, 456).unwrap();
    let norm = wrnc_data::Normalizer::fit(wrnc_recipe::Normalize::MeanStd, &splits.train).unwrap();
    let mut pngs = Vec::new();
    let mut want = Vec::new();
    for i in [0usize, 17, 123, 359] {
        let img = splits.test.image(i).unwrap();
        let png = dir.path().join(format!("digit{i}.png"));
        image::GrayImage::from_raw(8, 8, img.to_vec())
            .unwrap()
            .save(&png)
            .unwrap();
        pngs.push(png.display().to_string());
        let logits =
            wrnc_train::predict_logits(&spec.graph, &weights, &norm.apply(img).unwrap(), 1)
                .unwrap();
        want.push(wrnc_verify::argmax(&logits).unwrap());
    }
    let mut args = vec!["predict", onnx.to_str().unwrap(), "--top", "3", "--json"];
    args.extend(pngs.iter().map(String::as_str));
    let r = wrnc(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for (i, w) in want.iter().enumerate() {
        let top = &v[i]["predictions"][0];
        assert_eq!(top["class"].as_u64().unwrap() as usize, *w, "{}", r.stdout);
        assert_eq!(top["label"], w.to_string());
        assert_eq!(v[i]["predictions"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn eval_and_export_use_the_normalisation_recorded_in_the_weights() {
    // Weights trained with `normalize: none`, evaluated with the spec as written
    // (`normalize: mean_std`): the recorded normalisation must win, so eval reproduces the
    // accuracy the trainer measured on the same split.
    let dir = tempdir();
    let run = dir.path().join("none");
    let r = wrnc(&[
        "train",
        "specs/quickstart.yaml",
        "--set",
        "data.normalize=none",
        "--set",
        "train.epochs=2",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let trained: f64 = csv_rows(&run.join("metrics.csv"))[1][5].parse().unwrap();
    assert!(trained > 0.5, "2 epochs reach {trained}");
    let last = run.join("last.safetensors");
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--weights",
        last.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let acc = v["accuracy"].as_f64().unwrap();
    // metrics.csv keeps 6 decimals; one image of 360 is 0.0028.
    assert!(
        (acc - trained).abs() < 1e-5,
        "eval {acc} vs trained {trained}"
    );
    let out = dir.path().join("none.onnx");
    let r = wrnc(&[
        "export",
        "specs/quickstart.yaml",
        "--weights",
        last.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = wrnc_onnx::read_model(&std::fs::read(&out).unwrap()).unwrap();
    let info = wrnc_onnx::ModelInfo::from_model(&m).unwrap();
    assert_eq!(
        info.normalization.unwrap().mode,
        wrnc_recipe::Normalize::None
    );

    // Weights that record no normalisation get one fitted on the training split, with a
    // warning.
    let fresh = dir.path().join("fresh.safetensors");
    let r = wrnc(&[
        "init",
        "specs/quickstart.yaml",
        "-o",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--weights",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("record no input normalisation"),
        "{}",
        r.stderr
    );
}

#[test]
fn ema_is_evaluated_each_epoch_saved_and_exported() {
    let dir = tempdir();
    let run = dir.path().join("ema");
    let r = wrnc(&[
        "train",
        "specs/quickstart.yaml",
        "--set",
        "train.epochs=2",
        "--set",
        "train.ema={decay: 0.9, warmup: true}",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ema loss"), "{}", r.stderr);
    assert!(r.stderr.contains("(from ema.safetensors)"), "{}", r.stderr);
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(text
        .lines()
        .next()
        .unwrap()
        .ends_with(",ema_val_loss,ema_val_acc"));
    let rows = csv_rows(&run.join("metrics.csv"));
    let recorded: f64 = rows.last().unwrap()[9].parse().unwrap();
    // The saved average scores what the trainer measured for it.
    let ema = run.join("ema.safetensors");
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--weights",
        ema.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(
        (acc - recorded).abs() < 1e-5,
        "eval {acc} vs recorded {recorded}"
    );
}
