//! Issue 14: `wrnc eval --json` per-class results and `--predictions`, the HTML report written
//! at the end of `wrnc train` and by `wrnc report`, and TensorBoard event files.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The quick start's network trained for two epochs with a validation split and TensorBoard
/// logging, shared by the tests of this file: (temporary folder, run directory).
fn val_run() -> &'static (tempfile::TempDir, PathBuf) {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempdir();
        let run = dir.path().join("run");
        let r = train(
            "specs/quickstart.yaml",
            &run,
            &[
                "--set",
                "train.epochs=2",
                "--set",
                "data.val_size=300",
                "--quiet",
                "--tensorboard",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("report: {}", run.join("report.html").display())),
            "the report's path is printed: {}",
            r.stderr
        );
        (dir, run)
    })
}

/// `metrics.csv` as numbers, one row per epoch.
fn metrics(run: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

/// `wrnc eval --json` of the run's exported weights (best: there is a validation split) on
/// the test split, writing the predictions to `csv`.
fn eval_test(run: &Path, csv: &Path) -> Value {
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--set",
        "data.val_size=300",
        "--weights",
        utf8(&run.join("best.safetensors")),
        "--split",
        "test",
        "--json",
        "--predictions",
        utf8(csv),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn eval_tta_flip_scores_the_averaged_softmax() {
    let (dir, run) = val_run();
    let plain = eval_test(run, &dir.path().join("pred-plain.csv"));
    assert!(plain.get("tta").is_none(), "{plain}");
    let csv = dir.path().join("pred-tta.csv");
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--set",
        "data.val_size=300",
        "--weights",
        utf8(&run.join("best.safetensors")),
        "--split",
        "test",
        "--tta",
        "flip",
        "--json",
        "--predictions",
        utf8(&csv),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["tta"], "flip", "{v}");
    assert_eq!(v["count"], plain["count"]);
    // Other scores than without TTA (the digits are not mirror-symmetric) ...
    assert_ne!(v["loss"], plain["loss"], "{v}");
    // ... and the predictions file agrees with them: accuracy from its rows.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let right = rows.iter().filter(|r| r[1] == r[2]).count();
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(
        (right as f64 / rows.len() as f64 - acc).abs() < 1e-12,
        "{v}"
    );
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--set",
        "data.val_size=300",
        "--weights",
        utf8(&run.join("best.safetensors")),
        "--tta",
        "flip",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("test split (tta: flip): 360 images"),
        "{}",
        r.stdout
    );
}

#[test]
fn eval_json_has_the_confusion_matrix_per_class_scores_top5_and_predictions() {
    let (dir, run) = val_run();
    let csv = dir.path().join("pred-a.csv");
    let v = eval_test(run, &csv);
    let count = v["count"].as_u64().unwrap();
    assert_eq!(count, 360, "{v}");
    let m: Vec<Vec<u64>> = serde_json::from_value(v["confusion_matrix"].clone()).unwrap();
    assert_eq!(m.len(), 10);
    assert_eq!(m.iter().flatten().sum::<u64>(), count);
    let diag: u64 = (0..10).map(|i| m[i][i]).sum();
    let acc = v["accuracy"].as_f64().unwrap();
    assert!((diag as f64 / count as f64 - acc).abs() < 1e-12, "{v}");
    // Per class: scikit-learn's definitions on the matrix, names from the dataset.
    let per = v["per_class"].as_array().unwrap();
    assert_eq!(per.len(), 10);
    for (c, p) in per.iter().enumerate() {
        assert_eq!(p["name"], c.to_string(), "{p}");
        let support: u64 = m[c].iter().sum();
        let predicted: u64 = m.iter().map(|r| r[c]).sum();
        assert_eq!(p["support"].as_u64().unwrap(), support);
        let recall = m[c][c] as f64 / support as f64;
        assert!(
            (p["recall"].as_f64().unwrap() - recall).abs() < 1e-12,
            "{p}"
        );
        if predicted > 0 {
            let precision = m[c][c] as f64 / predicted as f64;
            assert!((p["precision"].as_f64().unwrap() - precision).abs() < 1e-12);
        }
    }
    // Ten classes: top-5 is reported and is at least the top-1 accuracy.
    let top5 = v["top5"].as_f64().expect("top5 with 10 classes");
    assert!(top5 >= acc && top5 <= 1.0, "{v}");
    // One CSV row per image whose (true, predicted) pairs make the same matrix.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("index,true,predicted,probability,true_name,predicted_name")
    );
    let mut from_csv = vec![vec![0u64; 10]; 10];
    let mut rows = 0;
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], i.to_string());
        let (t, p): (usize, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let prob: f64 = f[3].parse().unwrap();
        assert!(prob > 0.1 && prob <= 1.0, "{line}");
        assert_eq!((f[4], f[5]), (f[1], f[2]), "digit names are the digits");
        from_csv[t][p] += 1;
        rows += 1;
    }
    assert_eq!(rows, count);
    assert_eq!(from_csv, m);
}

/// The elements named `name` under `node` (any namespace).
fn elements<'a>(doc: &'a roxmltree::Document, name: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == name)
        .collect()
}

/// The JSON copy of the plotted numbers in a report.
fn report_data(html: &str) -> Value {
    let doc = roxmltree::Document::parse_with_options(
        html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the report is well-formed (X)HTML");
    assert_eq!(doc.root_element().tag_name().name(), "html");
    assert!(
        elements(&doc, "svg").len() >= 5,
        "at least five charts, found {}",
        elements(&doc, "svg").len()
    );
    for forbidden in ["script", "link", "iframe", "object"] {
        assert!(elements(&doc, forbidden).is_empty(), "no <{forbidden}>");
    }
    for img in elements(&doc, "img") {
        let src = img.attribute("src").unwrap();
        assert!(
            src.starts_with("data:image/png;base64,"),
            "inline images only"
        );
    }
    let pre = elements(&doc, "pre")
        .into_iter()
        .find(|n| n.attribute("id") == Some("wrnc-report-data"))
        .expect("the JSON copy");
    serde_json::from_str(pre.text().unwrap()).unwrap()
}

#[test]
fn the_report_is_well_formed_and_shows_metrics_csv_and_evals_confusion_matrix() {
    let (dir, run) = val_run();
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let data = report_data(&html);
    // The plotted epochs are metrics.csv's rows.
    let rows = metrics(run);
    let epochs = data["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), rows.len());
    let cols = [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "seconds",
        "images_per_sec",
    ];
    for (e, row) in epochs.iter().zip(&rows) {
        for (c, want) in cols.iter().zip(row) {
            assert_eq!(e[c].as_f64().unwrap(), *want, "{c} of {e}");
        }
    }
    // The plotted steps are steps.csv's (a short run: none thinned out).
    let steps: Vec<f64> = std::fs::read_to_string(run.join("steps.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    let plotted: Vec<f64> = serde_json::from_value(data["steps"]["loss"].clone()).unwrap();
    assert_eq!(plotted, steps);
    // The confusion matrix is eval --json's on the same weights and split.
    let v = eval_test(run, &dir.path().join("pred-b.csv"));
    let c = &data["classes"];
    assert_eq!(c["weights_file"], "best.safetensors");
    assert_eq!(c["split"], "test");
    assert_eq!(c["confusion_matrix"], v["confusion_matrix"]);
    assert_eq!(c["accuracy"], v["accuracy"]);
    assert_eq!(c["top5"], v["top5"]);
    // With a validation split the test accuracy of the exported weights is shown, and it is
    // the one recorded in the ONNX file.
    let pct = format!("{:.2}%", v["accuracy"].as_f64().unwrap() * 100.0);
    assert!(
        html.contains(&format!("records test accuracy {pct}")),
        "{pct}"
    );
    assert!(html.contains("ONNX verify</th><td style=\"text-align:left\">ok on 8 test images"));

    // `wrnc report -o` writes the same report elsewhere.
    let other = dir.path().join("again.html");
    let r = wrnc(&["report", utf8(run), "-o", utf8(&other)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("again.html"), "{}", r.stdout);
    assert_eq!(report_data(&std::fs::read_to_string(&other).unwrap()), data);
}

/// The event files of a run, oldest first.
fn event_files(run: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run.join("tb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Asserts that the scalar series equal `metrics.csv` and `steps.csv`.
fn assert_scalars_equal_csv(run: &Path, s: &std::collections::BTreeMap<String, Vec<(i64, f32)>>) {
    let rows = metrics(run);
    for (tag, col) in [
        ("epoch/lr", 1),
        ("epoch/train_loss", 2),
        ("epoch/train_acc", 3),
        ("epoch/val_loss", 4),
        ("epoch/val_acc", 5),
        ("epoch/images_per_sec", 7),
    ] {
        let series = &s[tag];
        assert_eq!(series.len(), rows.len(), "{tag}");
        for ((step, value), row) in series.iter().zip(&rows) {
            assert_eq!(*step as f64, row[0], "{tag}: steps are epochs");
            // f32 in the event file, 6 decimals (images/s: 1) in metrics.csv.
            let tol = if col == 7 { 0.06 } else { 1e-5 };
            assert!(
                (*value as f64 - row[col]).abs() <= tol + row[col].abs() * 1e-6,
                "{tag}: {value} vs {}",
                row[col]
            );
        }
    }
    let steps = std::fs::read_to_string(run.join("steps.csv")).unwrap();
    let losses: Vec<(i64, f64)> = steps
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    let logged = &s["step/loss"];
    assert_eq!(logged.len(), losses.len());
    for ((step, v), (want_step, want)) in logged.iter().zip(&losses) {
        assert_eq!(step, want_step);
        assert!((*v as f64 - want).abs() < 1e-5, "{v} vs {want}");
    }
}

#[test]
fn tensorboard_events_read_back_with_checked_framing_equal_metrics_csv() {
    use wrnc_report::tensorboard::{read_events, scalars, What, FILE_VERSION};
    let (_, run) = val_run();
    let files = event_files(run);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let events = read_events(&files[0]).unwrap();
    assert_eq!(events[0].what, Some(What::FileVersion(FILE_VERSION.into())));
    assert_scalars_equal_csv(run, &scalars(&events));
}

#[test]
fn a_resumed_run_adds_an_event_file_and_the_restart_drops_the_killed_steps() {
    use wrnc_report::tensorboard::{read_events, scalars};
    let dir = tempdir();
    let run = dir.path().join("run");
    let sets = [
        "train.epochs=2",
        "data.val_size=300",
        "train.batch_size=128",
    ];
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wrnc"));
    c.current_dir(root())
        .args([
            "train",
            "specs/quickstart.yaml",
            "--quiet",
            "--tensorboard",
            "--out",
        ])
        .arg(&run);
    for s in sets {
        c.args(["--set", s]);
    }
    // Killed while committing epoch 2: its steps are logged, its checkpoint is not.
    let out = c
        .env(wrnc_ir::atomic::FAULT_ENV, "kill:state.json:2:torn")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault killed the run");
    let first = event_files(&run);
    assert_eq!(first.len(), 1);
    let killed_steps = scalars(&read_events(&first[0]).unwrap())["step/loss"].len();
    let r = wrnc(&[
        "train",
        "--resume",
        "--out",
        utf8(&run),
        "--quiet",
        "--tensorboard",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let files = event_files(&run);
    assert_eq!(files.len(), 2, "one file per process: {files:?}");
    let mut events = Vec::new();
    for f in &files {
        events.extend(read_events(f).unwrap());
    }
    let s = scalars(&events);
    let steps_per_epoch = s["step/loss"].len() / 2;
    assert_eq!(
        killed_steps,
        2 * steps_per_epoch,
        "the killed process had logged epoch 2's steps"
    );
    // Read as TensorBoard reads them, the two files hold each step and epoch once.
    assert_scalars_equal_csv(&run, &s);
}

#[test]
fn without_a_val_split_the_report_says_best_was_chosen_on_the_test_set() {
    let dir = tempdir();
    let run = dir.path().join("run");
    let r = train(
        "specs/quickstart.yaml",
        &run,
        &["--set", "train.epochs=1", "--quiet", "--no-report"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!run.join("report.html").exists(), "--no-report");
    assert!(
        !run.join("tb").exists(),
        "no TensorBoard files unless asked"
    );
    let r = wrnc(&["report", utf8(&run)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let data = report_data(&html);
    assert_eq!(data["eval_split"], "test");
    assert_eq!(data["classes"]["weights_file"], "last.safetensors");
    assert!(
        html.contains("was chosen on the test set"),
        "the report says how best was chosen"
    );
    // Not a run directory: a usage error naming the missing file.
    let r = wrnc(&["report", utf8(dir.path())]);
    assert_usage_error(&r, &["not a wrnc run directory", "spec.resolved.yaml"]);
}

#[test]
fn an_ema_run_reports_its_extra_metrics_columns_and_the_exported_ema_weights() {
    let dir = tempdir();
    let run = dir.path().join("run");
    let r = train(
        "specs/quickstart.yaml",
        &run,
        &[
            "--set",
            "train.epochs=1",
            "--set",
            "train.ema.decay=0.9",
            "--quiet",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let header = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        header
            .lines()
            .next()
            .unwrap()
            .ends_with(",ema_val_loss,ema_val_acc"),
        "{header}"
    );
    let html = std::fs::read_to_string(run.join("report.html"))
        .unwrap_or_else(|e| panic!("no report ({e}): {}", r.stderr));
    let data = report_data(&html);
    assert_eq!(data["classes"]["weights_file"], "ema.safetensors");
    assert_eq!(data["epochs"].as_array().unwrap().len(), 1);
}
