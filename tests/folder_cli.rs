//! End-to-end tests of image-folder datasets (`data.dataset: folder`): training on PNG and
//! JPEG files of several modes and sizes, bad files, the decode cache, and `wrnc predict`
//! agreeing with `wrnc eval` on the exported model.

mod common;
use common::*;
use std::path::Path;

/// A WRN-10-2 spec (the quick start's recipe, fewer epochs) on the folder `root`, with
/// `data_extra` appended to its `data:` section; 16x16 files are resized to the 8x8 input.
fn folder_spec(dir: &Path, name: &str, root: &Path, data_extra: &str) -> String {
    write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nmodel:\n  input: [1, 8, 8]\n  classes: 10\n  wrn: {{depth: 10, \
             width: 2}}\ndata:\n  dataset: folder\n  root: {}\n  augment:\n    crop: \
             {{padding: 1, mode: zero}}\n    flip: false\n{data_extra}train:\n  epochs: 12\n  \
             batch_size: 64\n  optimizer: {{lr: 0.1, momentum: 0.9, nesterov: true, \
             weight_decay: 0.0005}}\n  schedule: {{kind: cosine, min_lr: 0.0}}\n",
            root.display()
        ),
    )
}

/// Sets the modification time of `path` to `secs` seconds after the Unix epoch.
fn touch(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn folder_of_pngs_and_jpegs_trains_exports_and_predicts_like_eval() {
    let dir = tempdir();
    let root = dir.path().join("digits");
    let files = digits_folder(&root, 16);
    assert_eq!(files.len(), 1797);
    // A non-image file, a hidden file and a corrupt image.
    std::fs::write(root.join("train/d5_five/notes.txt"), "not an image").unwrap();
    std::fs::write(root.join("train/d2_two/.DS_Store"), "hidden").unwrap();
    let corrupt = root.join("train/d3_three/corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n truncated").unwrap();

    // Without `bad_images: skip`, the corrupt file is a clear error naming it (exit 2).
    let strict = folder_spec(dir.path(), "strict", &root, "");
    let r = train(&strict, &dir.path().join("strict-run"), &["--quiet"]);
    assert_usage_error(
        &r,
        &["corrupt.png", "data.bad_images: skip", "cannot decode"],
    );
    assert!(!dir.path().join("strict-run").exists());

    // With skip: the images decoded by the failed run come from the cache (no decoding).
    let spec = folder_spec(dir.path(), "folder", &root, "  bad_images: skip\n");
    let run = dir.path().join("run");
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let err = &r.stderr;
    assert!(
        err.contains("10 classes; 1437 train, 0 val, 360 test images"),
        "{err}"
    );
    assert!(err.contains("read the decode cache"), "{err}");
    assert!(!err.contains("data: decoded"), "{err}");
    assert!(
        err.contains("skipped 1 images") && err.contains("corrupt.png"),
        "{err}"
    );
    assert!(
        err.contains("ignored 2 entries") && err.contains("notes.txt"),
        "{err}"
    );

    // Test accuracy of the exported (last) weights.
    let last = run.join("last.safetensors");
    let r = wrnc(&["eval", &spec, "--weights", utf8(&last), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["count"], 360);
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "test accuracy {acc}");

    // `wrnc predict` on the held-out folder prints the class names and scores as eval does.
    let onnx = run.join("model.onnx");
    let test_dir = root.join("test");
    let r = wrnc(&[
        "predict",
        utf8(&onnx),
        utf8(&test_dir),
        "--top",
        "1",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 360);
    let mut correct = 0;
    for row in rows {
        let image = Path::new(row["image"].as_str().unwrap());
        let truth = image
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let label = row["predictions"][0]["label"].as_str().unwrap();
        assert!(DIGIT_NAMES.contains(&label), "{label}");
        correct += usize::from(label == truth);
    }
    let predict_acc = correct as f64 / 360.0;
    assert!(
        (predict_acc - acc).abs() <= 1.0 / 360.0 + 1e-12,
        "predict {predict_acc} vs eval {acc}"
    );
    let r = wrnc(&["predict", utf8(&onnx), utf8(&files[1437])]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("d"), "{}", r.stdout);
    assert!(
        DIGIT_NAMES.iter().any(|n| r.stdout.contains(n)),
        "{}",
        r.stdout
    );

    // Touching one file invalidates the cache: the next run decodes everything again.
    touch(&files[0], 1_000_000);
    let r = train(
        &spec,
        &dir.path().join("run2"),
        &[
            "--quiet",
            "--set",
            "train.epochs=1",
            "--set",
            "export.onnx=false",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("data: decoded 1798 images"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("images/s"), "{}", r.stderr);
}

#[test]
fn folder_layout_errors_are_usage_errors() {
    let dir = tempdir();
    let root = dir.path().join("imgs");
    let spec = folder_spec(dir.path(), "f", &root, "");
    let run = dir.path().join("run");
    // Missing folder.
    let r = train(&spec, &run, &["--quiet"]);
    assert_usage_error(&r, &["imgs", "does not exist", "train/<class>"]);
    // Classes that differ between train/ and test/, and a class count that differs from the
    // model's.
    let png = |p: &str| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(8, 8, image::Luma([9]))
            .save(path)
            .unwrap();
    };
    png("train/cat/1.png");
    png("train/dog/1.png");
    png("test/cat/1.png");
    png("test/dgo/1.png");
    let r = train(&spec, &run, &["--quiet"]);
    assert_usage_error(&r, &["missing `dog`", "extra `dgo`"]);
    std::fs::rename(root.join("test/dgo"), root.join("test/dog")).unwrap();
    let r = train(&spec, &run, &["--quiet"]);
    assert_usage_error(&r, &["model.classes", "2 class folders", "cat, dog"]);
    // The spec must name the folder and the input shape.
    let bad = write(
        dir.path(),
        "noroot.yaml",
        "model:\n  input: [1, 8, 8]\n  classes: 2\n  wrn: {depth: 10, width: 1}\ndata:\n  \
         dataset: folder\n",
    );
    assert_usage_error(&wrnc(&["check", &bad]), &["data.root", "is required"]);
    let bad = write(
        dir.path(),
        "noinput.yaml",
        "model:\n  classes: 2\n  wrn: {depth: 10, width: 1}\ndata:\n  dataset: folder\n  \
         root: x\n",
    );
    assert_usage_error(&wrnc(&["check", &bad]), &["model.input", "is required"]);
    let bad = write(
        dir.path(),
        "resize.yaml",
        "model:\n  wrn: {depth: 10, width: 1}\ndata:\n  dataset: digits\n  resize: {mode: pad}\n",
    );
    assert_usage_error(&wrnc(&["check", &bad]), &["data.resize", "folder"]);
}

#[test]
fn folder_with_val_and_no_test_evaluates_and_exports_on_val() {
    let dir = tempdir();
    let root = dir.path().join("two");
    // 2 classes of flat 12x10 images (resized to 8x8): dark and bright.
    for (split, n) in [("train", 20), ("val", 6)] {
        for (class, v) in [("bright", 200u8), ("dark", 30u8)] {
            let folder = root.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..n {
                image::GrayImage::from_pixel(12, 10, image::Luma([v + i as u8]))
                    .save(folder.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
    let spec = write(
        dir.path(),
        "two.yaml",
        &format!(
            "name: two\nmodel:\n  input: [1, 8, 8]\n  classes: 2\n  wrn: {{depth: 10, width: \
             1}}\ndata:\n  dataset: folder\n  root: {}\n  resize: {{mode: pad}}\n  augment: \
             {{crop: random_resized, flip: true}}\ntrain:\n  epochs: 1\n  batch_size: 8\n",
            root.display()
        ),
    );
    let run = dir.path().join("run");
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no test/ folder"), "{}", r.stderr);
    assert!(r.stderr.contains("val loss"), "{}", r.stderr);
    assert!(r.stderr.contains("(from best.safetensors)"), "{}", r.stderr);
    // `eval --split val` works without data.val_size: the val/ folder is the split.
    let best = run.join("best.safetensors");
    let r = wrnc(&[
        "eval",
        &spec,
        "--weights",
        utf8(&best),
        "--split",
        "val",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["count"], 12);
    // A finished run resumed without its ONNX file exports the weights chosen on val again.
    let r = wrnc(&["train", "--resume", "--out", utf8(&run)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
    std::fs::remove_file(run.join("model.onnx")).unwrap();
    let r = wrnc(&["train", "--resume", "--out", utf8(&run)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("already finished"), "{}", r.stderr);
    assert!(r.stderr.contains("(from best.safetensors)"), "{}", r.stderr);
    // The ONNX file records the resize and the class names.
    let onnx = run.join("model.onnx");
    let img = root.join("val/dark/0.png");
    let r = wrnc(&["predict", utf8(&onnx), utf8(&img), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("\"dark\"") && r.stdout.contains("\"bright\""),
        "{}",
        r.stdout
    );
}
