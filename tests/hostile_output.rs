//! Hostile standard output (issue 12, items 6 and 7): a full disk is exit 1 with a message,
//! never truncated output with exit 0; a closed pipe ends quietly with exit 0, never a panic.

mod common;

use common::{root, tempdir, utf8};
use std::process::{Command, Stdio};

/// Runs `wrnc args` with `stdout` as its standard output; returns (exit code, stderr).
fn run_with_stdout(args: &[&str], stdout: Stdio) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wrnc"))
        .args(args)
        .current_dir(root())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("failed to start wrnc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Standard output on `/dev/full`: every write fails with ENOSPC.
fn full_disk() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
        .into()
}

/// Standard output on a pipe whose read end is already closed: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer.into()
}

fn assert_full_disk_error(args: &[&str]) {
    let (code, stderr) = run_with_stdout(args, full_disk());
    assert_eq!(code, 1, "{args:?} > /dev/full: stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot write to standard output") && stderr.contains("No space left"),
        "{args:?}: {stderr}"
    );
    assert!(!stderr.contains("internal error"), "{stderr}");
}

fn assert_quiet_on_closed_pipe(args: &[&str]) {
    let (code, stderr) = run_with_stdout(args, closed_pipe());
    assert_eq!(code, 0, "{args:?} | (closed): stderr:\n{stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{args:?} | (closed): stderr:\n{stderr}"
    );
}

#[test]
fn spec_commands_report_a_full_disk() {
    for cmd in ["check", "summary", "graph", "expand"] {
        assert_full_disk_error(&[cmd, "specs/quickstart.yaml"]);
    }
    assert_full_disk_error(&["summary", "specs/quickstart.yaml", "--json"]);
}

#[test]
fn spec_commands_end_quietly_on_a_closed_pipe() {
    for cmd in ["check", "summary", "graph", "expand"] {
        assert_quiet_on_closed_pipe(&[cmd, "specs/quickstart.yaml"]);
    }
}

#[test]
fn init_reports_a_full_disk_and_ends_quietly_on_a_closed_pipe() {
    let dir = tempdir();
    let out = dir.path().join("w.safetensors");
    let args = ["init", "specs/quickstart.yaml", "-o", utf8(&out)];
    assert_full_disk_error(&args);
    assert_quiet_on_closed_pipe(&args);
    assert!(out.is_file());
}

#[test]
fn export_reports_a_full_disk_and_ends_quietly_on_a_closed_pipe() {
    let dir = tempdir();
    let w = dir.path().join("w.safetensors");
    common::init("specs/quickstart.yaml", &w, &[]);
    let onnx = dir.path().join("m.onnx");
    let args = [
        "export",
        "specs/quickstart.yaml",
        "--weights",
        utf8(&w),
        "-o",
        utf8(&onnx),
    ];
    assert_full_disk_error(&args);
    assert_quiet_on_closed_pipe(&args);
}

#[test]
fn verify_and_bench_report_a_full_disk_and_end_quietly_on_a_closed_pipe() {
    let dir = tempdir();
    let w = dir.path().join("w.safetensors");
    common::init("specs/quickstart.yaml", &w, &[]);
    let onnx = dir.path().join("m.onnx");
    common::export("specs/quickstart.yaml", &w, &onnx, &[]);
    let verify = [
        "verify",
        utf8(&onnx),
        "--spec",
        "specs/quickstart.yaml",
        "--weights",
        utf8(&w),
    ];
    assert_full_disk_error(&verify);
    assert_quiet_on_closed_pipe(&verify);
    let bench = [
        "bench",
        "specs/quickstart.yaml",
        "--batch",
        "2",
        "--steps",
        "1",
        "--no-tract",
    ];
    assert_full_disk_error(&bench);
    assert_quiet_on_closed_pipe(&bench);
}
