//! Hostile and mistaken `wrnc train` / `wrnc export` invocations (issue 12): a run must never
//! overwrite its own files, resume a different network, leave a directory behind when it is
//! refused, or advise resuming when nothing was committed.

mod common;
use common::*;
use std::path::Path;

const QUICK: &[&str] = &[
    "--quiet",
    "--set",
    "train.epochs=1",
    "--set",
    "model.wrn.width=1",
    "--set",
    "export.onnx=false",
];

fn quickstart() -> String {
    root().join("specs/quickstart.yaml").display().to_string()
}

fn quick_train(run: &Path, extra: &[&str]) -> Run {
    let mut args = QUICK.to_vec();
    args.extend_from_slice(extra);
    train(&quickstart(), run, &args)
}

#[test]
fn export_file_naming_a_run_file_is_refused_before_anything_is_written() {
    let dir = tempdir();
    for name in [
        "last.safetensors",
        "state.json",
        "optimizer.safetensors",
        "steps.csv",
        "spec.resolved.yaml",
        "run.lock",
        "best.safetensors",
        "metrics.csv",
        "run.json",
        "../escape.onnx",
        "sub/model.onnx",
    ] {
        let run = dir.path().join("run");
        let set = format!("export.file={name}");
        let r = train(
            &quickstart(),
            &run,
            &["--quiet", "--set", "train.epochs=1", "--set", &set],
        );
        assert_usage_error(&r, &["export.file"]);
        assert!(!run.exists(), "{name}: the refused run left {run:?} behind");
        assert!(!dir.path().join("escape.onnx").exists());
    }
}

#[test]
fn export_refuses_to_overwrite_its_own_weights() {
    let dir = tempdir();
    let spec = quickstart();
    let w = dir.path().join("w.safetensors");
    init(&spec, &w, &[]);
    let before = std::fs::read(&w).unwrap();
    let same = dir.path().join("sub").join("..").join("w.safetensors");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let link = dir.path().join("link.safetensors");
    std::fs::hard_link(&w, &link).unwrap();
    for out in [&w, &same, &link] {
        let r = export(&spec, &w, out, &[]);
        assert_usage_error(&r, &["weights file", "own input"]);
        assert_eq!(
            std::fs::read(&w).unwrap(),
            before,
            "{out:?} overwrote the weights"
        );
    }
}

#[test]
fn resume_refuses_a_different_network_and_names_the_field() {
    let dir = tempdir();
    let run = dir.path().join("run");
    let r = quick_train(&run, &["--set", "model.wrn.dropout=0.1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = quick_train(&run, &["--resume", "--set", "model.wrn.dropout=0.5"]);
    assert_usage_error(&r, &["dropout", "was 0.1, now 0.5"]);
    let r = quick_train(
        &run,
        &[
            "--resume",
            "--set",
            "model.wrn.dropout=0.1",
            "--set",
            "model.wrn.bn_eps=0.001",
        ],
    );
    assert_usage_error(&r, &["bn0`].op.eps", "now 0.001"]);
    let r = quick_train(&run, &["--resume", "--set", "model.wrn.dropout=0.1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn refused_runs_leave_no_run_directory() {
    let dir = tempdir();
    let bad_init = dir.path().join("bad.safetensors");
    std::fs::write(&bad_init, b"not weights").unwrap();
    let bad_init = bad_init.display().to_string();
    let missing = dir.path().join("no-cifar").display().to_string();
    let root = format!("data.root={missing}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["--device", "cuda"],
        vec!["--init", &bad_init],
        vec!["--set", "data.dataset=cifar10", "--set", &root],
        vec!["--resume"],
    ];
    for (i, extra) in cases.iter().enumerate() {
        let run = dir.path().join(format!("run{i}"));
        let r = quick_train(&run, extra);
        assert_ne!(r.code, 0, "{extra:?} was accepted");
        if cfg!(feature = "cuda") && extra.contains(&"cuda") {
            continue;
        }
        assert!(
            !run.exists(),
            "{extra:?} left {run:?} behind:\n{}",
            r.stderr
        );
    }
}

#[test]
fn bf16_without_avx512_bf16_is_refused_before_the_run_directory() {
    // WRNC_SIMD=avx2 stands in for a CPU without AVX-512 BF16 on every machine
    let dir = tempdir();
    let run = dir.path().join("run");
    let spec = quickstart();
    let mut args = vec![
        "train",
        spec.as_str(),
        "--out",
        utf8(&run),
        "--device",
        "cpu",
    ];
    args.extend_from_slice(QUICK);
    args.extend_from_slice(&["--set", "train.precision=bf16"]);
    let r = wrnc_env(&args, &[("WRNC_SIMD", "avx2")]);
    assert_usage_error(
        &r,
        &[
            "train.precision bf16",
            "AVX-512 BF16",
            "train.precision=f32",
        ],
    );
    assert!(!run.exists(), "left {run:?} behind:\n{}", r.stderr);
}

#[test]
fn no_resume_advice_when_nothing_was_committed() {
    let dir = tempdir();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for out in [file.clone(), file.join("sub")] {
        let r = quick_train(&out, &[]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(!r.stderr.contains("--resume"), "{}", r.stderr);
        assert!(
            r.stderr.contains("no checkpoint was committed"),
            "{}",
            r.stderr
        );
    }
    let r = quick_train(
        &dir.path().join("nan"),
        &["--set", "train.optimizer.lr=1e30"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("became"), "{}", r.stderr);
    assert!(!r.stderr.contains("epoch 0"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was saved"), "{}", r.stderr);
}

#[test]
fn resume_needs_no_spec_and_keeps_the_overrides() {
    let dir = tempdir();
    let run = dir.path().join("run");
    let r = quick_train(&run, &["--set", "model.wrn.dropout=0.1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The run's spec.resolved.yaml holds every override: no spec and no --set to repeat.
    let r = wrnc(&["train", "--resume", "--out", utf8(&run), "--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);
    let r = wrnc(&["train", "--out", utf8(&run)]);
    assert_usage_error(&r, &["--resume --out DIR"]);
}

#[test]
fn resume_refuses_a_changed_generic_layer_stride() {
    let dir = tempdir();
    let spec = write(
        dir.path(),
        "g.yaml",
        "name: g\nmodel:\n  input: [1, 8, 8]\n  classes: 10\n  layers:\n    - {op: conv, out: 4, \
         kernel: 3, padding: 1}\n    - {op: relu}\n    - {op: global_avg_pool}\n    - {op: \
         flatten}\n    - {op: linear, out: 10}\ndata: {dataset: digits}\ntrain: {epochs: 1}\n\
         export: {onnx: false}\n",
    );
    let run = dir.path().join("run");
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = train(
        &spec,
        &run,
        &["--quiet", "--resume", "--set", "model.layers[0].stride=2"],
    );
    assert_usage_error(&r, &["conv0`].op.stride: was 1, now 2"]);
    let r = train(
        &spec,
        &run,
        &["--quiet", "--resume", "--set", "model.layers[0].padding=0"],
    );
    assert_usage_error(&r, &["op.padding"]);
}

/// A `val_size` larger than the user's CIFAR-format folder holds is the user's setting (exit
/// 2, as the same check against the official sizes is at spec time, and as for digits), not a
/// runtime failure, and nothing is created.
#[test]
fn a_val_size_larger_than_the_data_folder_is_a_usage_error() {
    let dir = tempdir();
    let (spec, _) = synthetic_cifar_spec(
        dir.path(),
        "small",
        (20, 10),
        "  val_size: 5000\n",
        "  epochs: 1\n",
    );
    let run = dir.path().join("run");
    let r = train(&spec, &run, &["--quiet"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("data.val_size"), "{}", r.stderr);
    assert!(!run.exists(), "a refused run left {}", run.display());
}
