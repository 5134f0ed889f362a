//! Helpers shared by the end-to-end tests: run the `wrnc` binary and inspect its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The result of one `wrnc` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `wrnc` with `args` in `dir` (the repository root by default).
pub fn wrnc_in(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_wrnc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("failed to start wrnc");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `wrnc` from the repository root.
pub fn wrnc(args: &[&str]) -> Run {
    wrnc_in(&root(), args)
}

/// Runs `wrnc init SPEC -o OUT EXTRA...`, which must succeed.
pub fn init(spec: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["init", spec, "-o", utf8(out)];
    args.extend_from_slice(extra);
    let r = wrnc(&args);
    assert_eq!(r.code, 0, "wrnc init {spec}: {}", r.stderr);
}

/// Runs `wrnc train SPEC --out RUN EXTRA...`.
pub fn train(spec: &str, run: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["train", spec, "--out", utf8(run)];
    args.extend_from_slice(extra);
    wrnc(&args)
}

/// Runs `wrnc export SPEC --weights WEIGHTS -o OUT EXTRA...`.
pub fn export(spec: &str, weights: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["export", spec, "--weights", utf8(weights), "-o", utf8(out)];
    args.extend_from_slice(extra);
    wrnc(&args)
}

/// Runs `wrnc verify ONNX --spec SPEC --weights WEIGHTS EXTRA...`.
pub fn verify(onnx: &Path, spec: &str, weights: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "verify",
        utf8(onnx),
        "--spec",
        spec,
        "--weights",
        utf8(weights),
    ];
    args.extend_from_slice(extra);
    wrnc(&args)
}

/// `path` as text (test paths are UTF-8).
pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub use wrnc_testkit::tempdir;

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Asserts a usage/spec error: exit 2, no panic, and every needle in stderr.
pub fn assert_usage_error(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, 2, "exit code; stderr:\n{}", r.stderr);
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"),
        "panic: {}",
        r.stderr
    );
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "missing `{n}` in stderr:\n{}",
            r.stderr
        );
    }
}

/// Runs `wrnc` in `dir` with its address space limited to `max_vm_kib` KiB (`ulimit -v`, so an
/// unbounded allocation fails instead of swapping) and returns the run and its wall time.
pub fn wrnc_limited(dir: &Path, args: &[&str], max_vm_kib: u64) -> (Run, std::time::Duration) {
    let script = format!("ulimit -v {max_vm_kib} && exec \"$0\" \"$@\"");
    let t = std::time::Instant::now();
    let out: Output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_wrnc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("failed to start sh");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, t.elapsed())
}

/// Writes a synthetic CIFAR-10 folder (`per_file` records in each of the five training files,
/// `test` test records) under `dir/cifar` and a WRN-10-1 spec `dir/NAME.yaml` reading it with
/// `data_extra` appended to its `data:` section and `train_extra` as its `train:` section;
/// returns the spec's path and the data folder.
pub fn synthetic_cifar_spec(
    dir: &Path,
    name: &str,
    (per_file, test): (usize, usize),
    data_extra: &str,
    train_extra: &str,
) -> (String, PathBuf) {
    let data = dir.join("cifar");
    wrnc_data::testutil::write_cifar_like(
        &data,
        wrnc_recipe::DatasetKind::Cifar10,
        per_file,
        test,
        7,
    )
    .unwrap();
    let spec = write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nmodel:\n  wrn: {{depth: 10, width: 1}}\ndata:\n  dataset: cifar10\n  \
             root: {}\n{data_extra}train:\n{train_extra}",
            data.display()
        ),
    );
    (spec, data)
}
