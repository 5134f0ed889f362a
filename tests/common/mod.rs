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

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

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
