//! Crash safety of `wrnc train` (issue 6): SIGKILL at random moments and inside every kind of
//! checkpoint write, `--resume` after each kill, the run-directory lock, and write failures.
//!
//! Every scenario trains the same tiny run (WRN-10-1 with dropout 0.3 on the embedded digits,
//! 3 epochs of 11 steps) and must end bit-identical to one uninterrupted run of it. Kills
//! inside writes use the test-only fault hook of `wrnc_ir::atomic`
//! (`WRNC_FAULT=kill:FILE:N:PHASE`); random kills are timed from outside (`WRNC_CRASH_SEED`
//! replays a sequence, `WRNC_CRASH_KILLS` sets how many).

mod common;

use common::{root, tempdir};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wrnc_ir::Weights;
use wrnc_train::rundir::RunState;

const EPOCHS: usize = 3;
// Dropout on: its masks (drawn from seed, step and node) must come out the same after a kill.
const SETS: [&str; 7] = [
    "model.wrn.depth=10",
    "model.wrn.width=1",
    "model.wrn.dropout=0.3",
    "train.epochs=3",
    "train.batch_size=32",
    "data.val_size=1100",
    "name=crash",
];
const WEIGHT_FILES: [&str; 3] = [
    "last.safetensors",
    "best.safetensors",
    "optimizer.safetensors",
];

/// `wrnc train` of the tiny run into `out`, optionally resuming and with a fault injected.
fn train(out: &Path, resume: bool, fault: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wrnc"));
    c.arg("train").arg(root().join("specs/quickstart.yaml"));
    for s in SETS {
        c.args(["--set", s]);
    }
    c.args(["--quiet", "--device", "cpu", "--out"]).arg(out);
    if resume {
        c.arg("--resume");
    }
    c.env_remove(wrnc_ir::atomic::FAULT_ENV);
    if let Some(f) = fault {
        c.env(wrnc_ir::atomic::FAULT_ENV, f);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("failed to start wrnc")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn killed(s: &ExitStatus) -> bool {
    s.signal() == Some(9)
}

type Tensors = BTreeMap<String, Vec<u32>>;

fn tensors(path: &Path) -> Tensors {
    Weights::load(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

/// What an uninterrupted run leaves behind.
struct Reference {
    weights: BTreeMap<&'static str, Tensors>,
    steps: Vec<String>,
    metrics: Vec<String>,
    onnx: Vec<u8>,
    spec: String,
    seconds: f64,
}

/// metrics.csv rows without the timing columns.
fn metric_rows(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect()
}

fn reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| {
        let tmp = tempdir();
        let dir = tmp.path().join("run");
        let t = Instant::now();
        let o = run(train(&dir, false, None));
        let seconds = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "reference run failed:\n{}", stderr(&o));
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        Reference {
            weights: WEIGHT_FILES
                .iter()
                .map(|f| (*f, tensors(&dir.join(f))))
                .collect(),
            steps: read("steps.csv").lines().map(str::to_string).collect(),
            metrics: metric_rows(&read("metrics.csv")),
            onnx: std::fs::read(dir.join("model.onnx")).unwrap(),
            spec: read("spec.resolved.yaml"),
            seconds,
        }
    })
}

fn commit_tag(path: &Path) -> Option<String> {
    Weights::load(path)
        .ok()?
        .metadata
        .remove(wrnc_train::rundir::COMMIT_KEY)
}

/// Checks everything a kill may leave in `dir`: each file parses and agrees with the
/// reference as far as the run got; returns the committed state.
fn check_dir(dir: &Path, r: &Reference, ctx: &str) -> Option<RunState> {
    if !dir.exists() {
        return None;
    }
    let state: Option<RunState> = std::fs::read(dir.join("state.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{ctx}: state.json: {e}")));
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let text = || std::fs::read_to_string(&path).unwrap();
        match name.as_str() {
            "state.json" => {}
            n if n.ends_with(".safetensors") || n.ends_with(".safetensors.next") => {
                Weights::load(&path).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            }
            "metrics.csv" => {
                let t = text();
                assert!(t.ends_with('\n'), "{ctx}: metrics.csv torn: {t:?}");
                for l in t.lines().skip(1) {
                    let fields: Vec<&str> = l.split(',').collect();
                    assert_eq!(fields.len(), 8, "{ctx}: metrics.csv row {l:?}");
                    assert!(fields.iter().all(|f| f.parse::<f64>().is_ok()), "{l:?}");
                }
                let rows = metric_rows(&t);
                assert_eq!(rows[..], r.metrics[..rows.len()], "{ctx}: metrics.csv");
                let done = state.as_ref().map_or(0, |s| s.epochs_done);
                assert!(
                    rows.len() == done || rows.len() + 1 == done,
                    "{ctx}: metrics.csv has {} rows, state.json {done} epochs",
                    rows.len()
                );
            }
            "steps.csv" => {
                // Appended before each commit: complete rows match the reference; only the
                // uncommitted tail may be torn (it is dropped on resume).
                let t = text();
                let mut lines: Vec<&str> = t.split('\n').collect();
                let tail = lines.pop().unwrap_or("");
                for (i, l) in lines.iter().enumerate() {
                    assert_eq!(Some(*l), r.steps.get(i).map(String::as_str), "{ctx}: steps");
                }
                let committed = state.as_ref().map_or(0, |s| s.global_step as usize);
                assert!(
                    lines.len() > committed || tail.is_empty() && lines.is_empty(),
                    "{ctx}: steps.csv lost committed rows ({} lines, step {committed})",
                    lines.len()
                );
                if !tail.is_empty() {
                    assert!(lines.len() > committed, "{ctx}: committed step row torn");
                    assert!(r.steps[lines.len()].starts_with(tail), "{ctx}: {tail:?}");
                }
            }
            "model.onnx" => assert!(
                std::fs::read(&path).unwrap() == r.onnx,
                "{ctx}: model.onnx differs from the reference (half-written?)"
            ),
            "spec.resolved.yaml" => assert_eq!(text(), r.spec, "{ctx}"),
            "run.json" => {
                serde_json::from_str::<serde_json::Value>(&text())
                    .unwrap_or_else(|e| panic!("{ctx}: run.json: {e}"));
            }
            "run.lock" => {
                let t = text();
                assert!(t.is_empty() || t.trim().parse::<u32>().is_ok(), "{t:?}");
            }
            // Written atomically at the end of a run: whole or absent.
            "report.html" => {
                let t = text();
                assert!(
                    t.starts_with("<!DOCTYPE html>") && t.ends_with("</html>\n"),
                    "{ctx}: report.html is not whole"
                );
            }
            n if n.starts_with('.') && n.contains(".tmp-") => {} // a write cut short
            other => panic!("{ctx}: unexpected file {other}"),
        }
    }
    let s = state?;
    assert!(s.epochs_done <= EPOCHS, "{ctx}");
    // The committed weights are on disk (in place or still as `.next`, rolled forward on resume).
    let tag = s.commit();
    for (f, want) in [
        ("last.safetensors", Some(tag.clone())),
        ("optimizer.safetensors", Some(tag.clone())),
        ("best.safetensors", s.best_commit.clone()),
    ] {
        let Some(want) = want else { continue };
        let p = dir.join(f);
        let next = dir.join(format!("{f}.next"));
        let found = [&p, &next]
            .into_iter()
            .find(|p| commit_tag(p).as_deref() == Some(want.as_str()));
        let found = found.unwrap_or_else(|| panic!("{ctx}: no {f} of commit {want}"));
        if s.epochs_done == EPOCHS && f != "optimizer.safetensors" {
            assert!(
                tensors(found) == r.weights[f],
                "{ctx}: committed {f} differs"
            );
        }
    }
    Some(s)
}

/// The finished run equals the reference, bit for bit, and nothing is left over.
fn check_final(dir: &Path, r: &Reference, ctx: &str) {
    let s = check_dir(dir, r, ctx).expect("finished run has a state");
    assert_eq!(s.epochs_done, EPOCHS, "{ctx}");
    for f in WEIGHT_FILES {
        assert!(tensors(&dir.join(f)) == r.weights[f], "{ctx}: {f} differs");
    }
    let steps = std::fs::read_to_string(dir.join("steps.csv")).unwrap();
    assert_eq!(
        steps.lines().collect::<Vec<_>>(),
        r.steps,
        "{ctx}: steps.csv"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(metric_rows(&metrics), r.metrics, "{ctx}: metrics.csv");
    assert!(dir.join("model.onnx").exists(), "{ctx}: no model.onnx");
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.ends_with(".next") || n == "run.lock")
        .collect();
    assert!(leftovers.is_empty(), "{ctx}: left over: {leftovers:?}");
}

/// Runs to completion (resuming when there is a commit) and checks the result.
fn complete(dir: &Path, r: &Reference, ctx: &str) {
    let resume = dir.join("state.json").exists();
    let o = run(train(dir, resume, None));
    assert!(
        o.status.success(),
        "{ctx}: final run failed:\n{}",
        stderr(&o)
    );
    check_final(dir, r, ctx);
}

/// Committed progress never goes back.
fn advance(prev: &mut u64, s: Option<&RunState>, ctx: &str) {
    let step = s.map_or(0, |s| s.global_step);
    assert!(
        step >= *prev,
        "{ctx}: committed step went back from {prev} to {step}"
    );
    *prev = step;
}

#[test]
fn sigkill_anywhere_then_resume_ends_bit_identical() {
    let r = reference();
    let tmp = tempdir();
    let mut kills = 0;

    // 1. Kills inside checkpoint writes, at each phase of the atomic write and commit
    //    protocol (`fresh` processes start over, the others resume).
    let dir = tmp.path().join("faults");
    let plan: [(&str, bool); 12] = [
        ("kill:spec.resolved.yaml:1:torn", false),
        ("kill:last.safetensors.next:1:torn", false), // epoch 1 commit
        ("kill:state.json:1:written", false),         // epoch 1 commit, before the commit point
        ("kill:state.json:1:renamed", false), // epoch 1 committed, `.next` files not renamed
        ("kill:metrics.csv:1:torn", true),    // recovery rewriting metrics.csv
        ("kill:optimizer.safetensors.next:1:written", true), // epoch 2 commit
        ("kill:metrics.csv:2:renamed", true), // epoch 2 committed, just after metrics.csv
        ("kill:steps.csv:1:torn", true),      // recovery truncating steps.csv
        ("kill:run.json:1:written", true),
        ("kill:state.json:1:torn", true), // epoch 3 commit, commit point half written
        ("kill:model.onnx:1:torn", true), // epoch 3 committed, ONNX export half written
        ("kill:model.onnx:1:renamed", true), // resumed finished run: export again
    ];
    let mut prev = 0;
    for (i, (fault, resume)) in plan.into_iter().enumerate() {
        let ctx = format!("fault {i} ({fault})");
        let o = run(train(&dir, resume, Some(fault)));
        assert!(
            killed(&o.status),
            "{ctx}: the fault did not strike ({:?}):\n{}",
            o.status,
            stderr(&o)
        );
        kills += 1;
        let s = check_dir(&dir, r, &ctx);
        advance(&mut prev, s.as_ref(), &ctx);
        match fault {
            "kill:spec.resolved.yaml:1:torn" => {
                // Nothing committed: --resume refuses clearly (and the lock left by the kill
                // does not block it).
                assert!(s.is_none());
                let o = run(train(&dir, true, None));
                assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
                assert!(
                    stderr(&o).contains("no committed checkpoint"),
                    "{}",
                    stderr(&o)
                );
            }
            "kill:state.json:1:written" => assert!(s.is_none(), "{ctx}"),
            "kill:state.json:1:renamed" => {
                assert_eq!(s.as_ref().map(|s| s.epochs_done), Some(1), "{ctx}");
                assert!(
                    !dir.join("last.safetensors").exists(),
                    "{ctx}: renamed early"
                );
            }
            "kill:model.onnx:1:torn" => {
                assert_eq!(s.as_ref().map(|s| s.epochs_done), Some(EPOCHS), "{ctx}");
                assert!(
                    !dir.join("model.onnx").exists(),
                    "{ctx}: half-written model.onnx"
                );
            }
            _ => {}
        }
    }
    complete(&dir, r, "after the fault kills");

    // 2. Kills at random moments (startup, training, evaluation, commits, export). Each
    //    process is killed after a random delay of up to 60% of an uninterrupted run, so most
    //    processes commit an epoch or two first; a run that completes is checked and a new
    //    one started until enough kills have happened.
    let seed: u64 = std::env::var("WRNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let target: usize = std::env::var("WRNC_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!("random kills: seed {seed} (WRNC_CRASH_SEED={seed} replays it), {target} kills");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let max_delay = (r.seconds * 0.6).max(0.5);
    let mut random_kills = 0;
    for cycle in 0.. {
        if random_kills >= target {
            break;
        }
        let dir = tmp.path().join(format!("random{cycle}"));
        let mut prev = 0;
        while random_kills < target {
            let resume = dir.join("state.json").exists();
            let mut child = train(&dir, resume, None).spawn().unwrap();
            let delay = Duration::from_secs_f64(rng.random_range(0.02..max_delay));
            let start = Instant::now();
            while start.elapsed() < delay && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill(); // SIGKILL
            let o = child.wait_with_output().unwrap();
            let ctx = format!(
                "seed {seed}, cycle {cycle}, kill {random_kills} after {:.3}s",
                delay.as_secs_f64()
            );
            if !killed(&o.status) {
                assert!(o.status.success(), "{ctx}: {:?}\n{}", o.status, stderr(&o));
                break; // finished before the kill
            }
            random_kills += 1;
            let s = check_dir(&dir, r, &ctx);
            advance(&mut prev, s.as_ref(), &ctx);
        }
        complete(&dir, r, &format!("seed {seed}, cycle {cycle}"));
    }
    eprintln!(
        "{kills} kills inside writes, {random_kills} at random moments; every run resumed to \
         a bit-identical end"
    );
    kills += random_kills;
    assert!(kills >= 20, "only {kills} kills");
}

#[test]
fn a_second_process_is_locked_out_and_a_killed_owner_does_not_block() {
    reference(); // keep the timing of the other tests' reference run honest
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    // Two processes start together on one run directory: exactly one gets in.
    let mut a = train(&dir, false, None).spawn().unwrap();
    let mut b = train(&dir, false, None).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (loser, winner) = loop {
        if a.try_wait().unwrap().is_some() {
            break (a, b);
        }
        if b.try_wait().unwrap().is_some() {
            break (b, a);
        }
        assert!(Instant::now() < deadline, "neither process stopped");
        std::thread::sleep(Duration::from_millis(10));
    };
    let winner_pid = winner.id();
    let lo = loser.wait_with_output().unwrap();
    let msg = stderr(&lo);
    assert_eq!(lo.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!("locked by process {winner_pid}")) && msg.contains("run.lock"),
        "{msg}"
    );
    // The same with --resume while the owner runs.
    let o = run(train(&dir, true, None));
    assert!(
        stderr(&o).contains(&format!("locked by process {winner_pid}")),
        "{}",
        stderr(&o)
    );
    // SIGKILL leaves run.lock behind, but the kernel released the lock: the next run goes on.
    let mut winner = winner;
    winner.kill().unwrap();
    winner.wait().unwrap();
    assert!(dir.join("run.lock").exists());
    let resume = dir.join("state.json").exists();
    let o = run(train(&dir, resume, None));
    assert!(!stderr(&o).contains("locked"), "{}", stderr(&o));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.join("run.lock").exists());
}

#[test]
fn failed_writes_stop_the_run_and_keep_the_last_checkpoint() {
    let r = reference();
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let no_temps = |ctx: &str| {
        let t: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(t.is_empty(), "{ctx}: temporary files left: {t:?}");
    };
    let cases = [
        // (fault, resume, epochs committed afterwards, what the message names)
        ("fail:state.json:2", false, 1, "state.json"),
        (
            "fail:last.safetensors.next:1",
            true,
            1,
            "last.safetensors.next",
        ),
        ("fail:metrics.csv:1", true, 1, "metrics.csv"), // recovery rewriting metrics.csv
        ("fail:model.onnx:1", true, EPOCHS, "model.onnx"),
    ];
    for (fault, resume, epochs, file) in cases {
        let o = run(train(&dir, resume, Some(fault)));
        let msg = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{fault}: {msg}");
        assert!(
            msg.contains("No space left on device") && msg.contains(file),
            "{fault}: {msg}"
        );
        assert!(msg.contains("--resume"), "{fault}: {msg}");
        assert!(!msg.contains("panicked"), "{fault}: {msg}");
        let s = check_dir(&dir, r, fault).expect("a committed state");
        assert_eq!(s.epochs_done, epochs, "{fault}");
        no_temps(fault);
        if fault.contains("model.onnx") {
            assert!(msg.contains("export failed"), "{msg}");
            assert!(!dir.join("model.onnx").exists());
        }
    }
    // The kept checkpoint is the true one: resuming ends exactly like an uninterrupted run.
    complete(&dir, r, "after the write failures");
}

#[test]
fn a_read_only_run_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(dir.join("probe"), b"x").is_ok() {
        // Root ignores permissions; the injected failures above cover this case.
        eprintln!("skipped: running as root, a read-only directory is writable");
        return;
    }
    let o = run(train(&dir, false, None));
    let msg = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("Permission denied") && msg.contains("run.lock"),
        "{msg}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}
