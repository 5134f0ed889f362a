//! `wrnc train --resume` on finished and interrupted runs (issue 12, items 15, 19 and 20):
//! extending a run to more epochs, a finished run that has nothing to do, the Ctrl-C message,
//! and the per-step warm-up.

mod common;
use common::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wrnc_onnx::MetaKey;

fn quickstart() -> String {
    root().join("specs/quickstart.yaml").display().to_string()
}

/// The quick start with a WRN-10-1 for `epochs` epochs into `run`, with `extra` arguments.
fn quick(run: &Path, epochs: usize, extra: &[&str]) -> Run {
    let e = format!("train.epochs={epochs}");
    let mut args = vec!["--quiet", "--set", &e, "--set", "model.wrn.width=1"];
    args.extend_from_slice(extra);
    train(&quickstart(), run, &args)
}

/// `wrnc train --resume --out RUN EXTRA...` (no spec: the run's own).
fn resume(run: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["train", "--resume", "--out", utf8(run), "--quiet"];
    args.extend_from_slice(extra);
    wrnc(&args)
}

/// The data rows of metrics.csv.
fn metric_rows(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn training(onnx: &Path) -> serde_json::Value {
    let m = wrnc_onnx::read_model(&std::fs::read(onnx).unwrap()).unwrap();
    serde_json::from_str(m.metadata(MetaKey::Training.as_str()).unwrap()).unwrap()
}

fn state(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("state.json")).unwrap()).unwrap()
}

#[test]
fn a_finished_run_is_extended_with_resume_and_a_new_epoch_count() {
    let dir = tempdir();
    let run = dir.path().join("run");
    let r = quick(&run, 1, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(training(&run.join("model.onnx"))["epochs_completed"], 1);

    let r = resume(&run, &["--set", "train.epochs=2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("train.epochs changed from 1 to 2"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("epoch 2/2"), "{}", r.stderr);
    let rows = metric_rows(&run);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].starts_with("1,") && rows[1].starts_with("2,"));
    // The export is redone with the new training state.
    let t = training(&run.join("model.onnx"));
    assert_eq!(t["epochs_completed"], 2, "{t}");
    assert_eq!(t["epoch"], 2, "{t}");
    // The run directory records the extension; its spec now says 2 epochs, so a plain
    // `--resume` finds the run finished.
    assert_eq!(
        state(&run)["extended"],
        serde_json::json!([{"from": 1, "to": 2, "at_epoch": 1, "at_step": 23}])
    );
    let resolved = std::fs::read_to_string(run.join("spec.resolved.yaml")).unwrap();
    let spec = wrnc_spec::load_str(&resolved, "spec.resolved.yaml", "x", &[]).unwrap();
    assert_eq!(spec.resolved.train.epochs, 2);
    let r = resume(&run, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to do"), "{}", r.stderr);

    // With the spec file, its overrides repeated: the same.
    let r = train(
        &quickstart(),
        &run,
        &[
            "--quiet",
            "--resume",
            "--set",
            "train.epochs=3",
            "--set",
            "model.wrn.width=1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(metric_rows(&run).len(), 3);
    assert_eq!(state(&run)["extended"][1]["to"], 3);

    // Fewer epochs than done, or another setting changed with it, is refused (exit 2).
    let r = resume(&run, &["--set", "train.epochs=2"]);
    assert_usage_error(
        &r,
        &["train.epochs cannot become 2", "has completed 3 epochs"],
    );
    let r = resume(
        &run,
        &["--set", "train.epochs=5", "--set", "train.batch_size=32"],
    );
    assert_usage_error(
        &r,
        &[
            "train.batch_size: was 64, now 32",
            "only train.epochs may change",
        ],
    );
    assert_eq!(metric_rows(&run).len(), 3);
}

#[test]
fn with_a_constant_rate_an_extended_run_equals_a_straight_run() {
    let dir = tempdir();
    let constant = ["--set", "train.schedule={kind: constant}"];
    let straight = dir.path().join("straight");
    let r = quick(&straight, 2, &constant);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ext = dir.path().join("extended");
    let r = quick(&ext, 1, &constant);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = resume(&ext, &["--set", "train.epochs=2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in ["last.safetensors", "best.safetensors", "steps.csv"] {
        assert!(
            std::fs::read(straight.join(f)).unwrap() == std::fs::read(ext.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let no_timing = |run: &Path| -> Vec<String> {
        metric_rows(run)
            .iter()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(no_timing(&straight), no_timing(&ext));
}

#[test]
fn resuming_a_finished_run_says_so_once_and_keeps_its_export() {
    let dir = tempdir();
    let run = dir.path().join("run");
    // With a validation split the export also records a test accuracy.
    let r = quick(&run, 1, &["--set", "data.val_size=200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let onnx = run.join("model.onnx");
    let bytes = std::fs::read(&onnx).unwrap();
    let mtime = std::fs::metadata(&onnx).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    for _ in 0..2 {
        let r = resume(&run, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stderr.matches("nothing to do").count(), 1, "{}", r.stderr);
        assert!(!r.stderr.contains("exported"), "{}", r.stderr);
        assert!(!r.stderr.contains("test accuracy"), "{}", r.stderr);
        assert_eq!(std::fs::read(&onnx).unwrap(), bytes);
        assert_eq!(std::fs::metadata(&onnx).unwrap().modified().unwrap(), mtime);
    }
    // A missing or foreign export is written again.
    for damage in [None, Some(b"not onnx".as_slice())] {
        match damage {
            None => std::fs::remove_file(&onnx).unwrap(),
            Some(b) => std::fs::write(&onnx, b).unwrap(),
        }
        let r = resume(&run, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(!r.stderr.contains("nothing to do"), "{}", r.stderr);
        assert!(r.stderr.contains("exported"), "{}", r.stderr);
        assert_eq!(std::fs::read(&onnx).unwrap(), bytes);
    }
}

/// Starts `wrnc train` for many epochs, sends SIGINT after the first epoch line, and returns
/// the exit code and the whole stderr.
fn interrupted_run(run: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wrnc"))
        .args([
            "train",
            &quickstart(),
            "--out",
            utf8(run),
            "--quiet",
            "--set",
            "train.epochs=50",
            "--set",
            "model.wrn.width=1",
            "--set",
            "export.onnx=false",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no epoch: {text}");
        text.push_str(&line);
        if line.starts_with("epoch 1/50") {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    text.push_str(&rest);
    (child.wait().unwrap().code().unwrap_or(-1), text)
}

#[test]
fn ctrl_c_reports_one_coherent_stop_and_the_run_continues() {
    let dir = tempdir();
    let run: PathBuf = dir.path().join("run");
    let (code, stderr) = interrupted_run(&run);
    assert_eq!(code, 130, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("interrupted "))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let s = state(&run);
    let (done, batches) = (
        s["epochs_done"].as_u64().unwrap(),
        s["batches_done"].as_u64().unwrap(),
    );
    let want = if batches > 0 {
        let complete = if done == 1 {
            "1 epoch".to_string()
        } else {
            format!("{done} epochs")
        };
        format!(
            "interrupted during epoch {} of 50: saved a resumable checkpoint after {batches} of \
             its steps ({complete} complete",
            done + 1
        )
    } else {
        format!("interrupted after epoch {done} of 50: saved a resumable checkpoint at its end")
    };
    assert!(lines[0].starts_with(&want), "{stderr}");
    assert!(
        lines[0].ends_with(&format!(
            "continue with: wrnc train --resume --out {}",
            run.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("complete)"), "{stderr}");
    // The run continues, here shortened to the epoch it stopped in.
    let target = (done + 1).max(2).to_string();
    let set = format!("train.epochs={target}");
    let r = resume(&run, &["--set", &set]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(metric_rows(&run).len().to_string(), target);
}

#[test]
fn a_one_epoch_warmup_rises_per_step() {
    let dir = tempdir();
    let run = dir.path().join("warm");
    let extra = [
        "--set",
        "train.warmup_epochs=1",
        "--set",
        "export.onnx=false",
    ];
    let r = quick(&run, 2, &extra);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lrs: Vec<f64> = std::fs::read_to_string(run.join("steps.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    // 1,437 training digits in batches of 64: 23 steps per epoch, lr 0.1.
    assert_eq!(lrs.len(), 46);
    assert_eq!(lrs[0], 0.1 * (1.0 / 23.0));
    assert_eq!(lrs[11], 0.1 * (12.0 / 23.0));
    assert_eq!(lrs[22], 0.1);
    assert_eq!(
        lrs[23], 0.1,
        "cosine over the one epoch after the warm-up starts at lr0"
    );
    let plain = dir.path().join("plain");
    let r = quick(&plain, 2, &["--set", "export.onnx=false"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read(run.join("last.safetensors")).unwrap()
            != std::fs::read(plain.join("last.safetensors")).unwrap(),
        "warmup_epochs: 1 did not change training"
    );
}

#[test]
fn resume_without_a_spec_in_a_folder_that_is_no_run_says_there_is_nothing_to_resume() {
    let dir = tempdir();
    let r = resume(&dir.path().join("not-a-run"), &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not a wrnc run directory")
            && r.stderr.contains("nothing to resume")
            && r.stderr.contains("wrnc train SPEC --out"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("not-a-run").exists());
}
