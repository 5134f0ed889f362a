//! `wrnc export --quantize int8 / --dtype fp16`, `export.quantize` in a spec, and `wrnc verify`
//! of the int8 and float16 files, on the embedded digits.

mod common;
use common::*;
use std::path::Path;

const QS: &str = "specs/quickstart.yaml";

fn quantization(path: &Path) -> serde_json::Value {
    let m = wrnc_onnx::read_model(&std::fs::read(path).unwrap()).unwrap();
    let q = m
        .metadata("quantization")
        .expect("no quantization metadata");
    serde_json::from_str(q).unwrap()
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn a_trained_quick_start_exports_int8_and_fp16_that_verify() {
    let dir = tempdir();
    let run = dir.path().join("run");
    // export.quantize in the spec: the run writes model.int8.onnx next to model.onnx. The
    // whole quick start (30 epochs), as a user runs it: shortened runs (4, then 8 epochs) end
    // so close to their decision boundaries that a change of f32 summation order in training
    // moved 2-4 of the 360 test images across them under int8, beyond the default criteria
    // (12, 20 and 30 epochs keep at least 99.7% agreement with either calibration).
    let first = [
        "--set",
        "export.quantize=int8",
        "--set",
        "export.calibration=128",
        "--no-report",
    ];
    let r = train(QS, &run, &first);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (f32_file, int8_file) = (run.join("model.onnx"), run.join("model.int8.onnx"));
    assert!(r.stderr.contains("model.int8.onnx"), "{}", r.stderr);
    let q = quantization(&int8_file);
    assert_eq!(q["dtype"], "int8");
    assert_eq!(q["calibration"]["images"], 128);
    assert_eq!(q["calibration"]["method"], "minmax");
    assert_eq!(q["accuracy"]["images"], 360);
    assert!(size(&int8_file) * 10 <= size(&f32_file) * 3);
    // Resuming the finished run writes a missing int8 copy again, and only that.
    let int8_bytes = std::fs::read(&int8_file).unwrap();
    std::fs::remove_file(&int8_file).unwrap();
    let f32_bytes = std::fs::read(&f32_file).unwrap();
    let again = [&first[..], &["--resume"]].concat();
    let r = train(QS, &run, &again);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("is missing or older than"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&int8_file).unwrap(), int8_bytes);
    assert_eq!(std::fs::read(&f32_file).unwrap(), f32_bytes);
    let r = train(QS, &run, &again);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);

    let w = run.join("last.safetensors");
    let out = dir.path().join("m.onnx");
    let r = export(
        QS,
        &w,
        &out,
        &[
            "--quantize",
            "int8",
            "--calibrate",
            "percentile",
            "--dtype",
            "fp16",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("calibration: percentile on 512 images"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("accuracy on 360 digits test images (tract)"),
        "{}",
        r.stdout
    );
    let (i8f, f16f) = (
        dir.path().join("m.int8.onnx"),
        dir.path().join("m.fp16.onnx"),
    );
    assert_eq!(quantization(&f16f)["dtype"], "float16");
    for (file, word) in [(&i8f, "int8"), (&f16f, "float16")] {
        let v = verify(file, QS, &w, &[]);
        assert_eq!(v.code, 0, "{word}: {}{}", v.stdout, v.stderr);
        assert!(v.stdout.contains("top-1 agreement"), "{}", v.stdout);
        assert!(v.stdout.contains("360 digits test images"), "{}", v.stdout);
        assert!(v
            .stdout
            .contains(&format!("{word} (tract) vs float32 (Candle)")));
    }
    // Against other weights the int8 file fails the criteria (exit 1); the float file keeps
    // the atol check.
    let other = dir.path().join("other.safetensors");
    init(QS, &other, &["--seed", "9"]);
    let v = verify(&i8f, QS, &other, &[]);
    assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("MISMATCH"), "{}", v.stdout);
    let v = verify(&out, QS, &w, &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("batch 4:"), "{}", v.stdout);
}

#[test]
fn bad_quantization_requests_are_usage_errors_and_write_nothing() {
    let dir = tempdir();
    let w = dir.path().join("w.safetensors");
    init(QS, &w, &[]);
    let out = dir.path().join("m.onnx");
    let r = export(QS, &w, &out, &["--quantize", "int8", "--calibrate", "kl"]);
    assert_usage_error(&r, &["kl", "minmax", "percentile", "entropy"]);
    let r = export(QS, &w, &out, &["--quantize", "int4"]);
    assert_usage_error(&r, &["int4", "int8"]);
    let r = export(QS, &w, &out, &["--calibrate", "minmax"]);
    assert_usage_error(&r, &["--quantize int8"]);
    let r = export(QS, &w, &out, &["--quantize", "int8", "--calibration", "0"]);
    assert_usage_error(&r, &["at least 1"]);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = export(
        QS,
        &w,
        &out,
        &["--quantize", "int8", "--calibration-dir", utf8(&empty)],
    );
    assert_usage_error(&r, &["no .png"]);
    // A dataset that is not on the machine: say which images are needed and the way out.
    let spec = write(
        dir.path(),
        "s.yaml",
        &format!(
            "name: s\nmodel:\n  wrn: {{depth: 10, width: 1}}\ndata:\n  dataset: cifar10\n  root: {}\n",
            utf8(&empty)
        ),
    );
    let w2 = dir.path().join("w2.safetensors");
    init(&spec, &w2, &[]);
    let r = export(&spec, &w2, &out, &["--quantize", "int8"]);
    assert_usage_error(
        &r,
        &[
            "512 images of the cifar10 training split",
            "--calibration-dir",
        ],
    );
    assert!(!out.exists() && !dir.path().join("m.int8.onnx").exists());
    // The spec keys are checked too.
    let r = wrnc(&["check", QS, "--set", "export.calibration=0"]);
    assert_usage_error(&r, &["export.calibration"]);
    let r = wrnc(&["check", QS, "--set", "export.calibrate=minmax"]);
    assert_usage_error(&r, &["export.quantize"]);
    // Test-time augmentation files output probabilities: not quantized (yet).
    let r = wrnc(&[
        "check",
        QS,
        "--set",
        "export.quantize=int8",
        "--set",
        "export.tta=flip",
    ]);
    assert_usage_error(&r, &["export.quantize", "export.tta: flip"]);
    for flags in [["--quantize", "int8"], ["--dtype", "fp16"]] {
        let mut args = flags.to_vec();
        args.extend(["--set", "export.tta=flip"]);
        let r = export(QS, &w, &out, &args);
        assert_usage_error(&r, &["export.tta: flip", "--quantize or --dtype"]);
    }
    assert!(!out.exists());
}

#[test]
fn calibration_dir_images_calibrate_a_model_without_its_dataset() {
    let dir = tempdir();
    let imgs = dir.path().join("imgs");
    digits_folder(&imgs, 8);
    let spec = write(
        dir.path(),
        "s.yaml",
        &format!(
            "name: s\nmodel:\n  wrn: {{depth: 10, width: 1}}\ndata:\n  dataset: cifar10\n  root: {}\n",
            utf8(&dir.path().join("nowhere"))
        ),
    );
    let w = dir.path().join("w.safetensors");
    init(&spec, &w, &[]);
    let out = dir.path().join("m.onnx");
    let r = export(
        &spec,
        &w,
        &out,
        &[
            "--quantize",
            "int8",
            "--calibration-dir",
            utf8(&imgs),
            "--calibration",
            "16",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("on 16 images (images of"), "{}", r.stdout);
    assert!(r.stdout.contains("accuracy: not measured"), "{}", r.stdout);
    let q = quantization(&dir.path().join("m.int8.onnx"));
    assert_eq!(q["calibration"]["images"], 16);
    assert!(q.get("accuracy").is_none());
}

#[test]
fn bench_times_the_int8_and_fp16_forms_in_tract() {
    let r = wrnc(&[
        "bench",
        QS,
        "--batch",
        "2",
        "--steps",
        "1",
        "--quantize",
        "int8",
        "--fp16",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for k in ["tract", "tract_int8", "tract_fp16"] {
        assert!(v[k]["images_per_sec"].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    let r = wrnc(&["bench", QS, "--batch", "2", "--steps", "1", "--no-tract"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("t-int8"));
}
