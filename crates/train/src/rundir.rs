//! The run directory's files and its crash-safe commit protocol.
//!
//! Each checkpoint writes `last.safetensors`, `optimizer.safetensors` and, when the
//! validation accuracy improved, `best.safetensors` first as `NAME.next` files (atomically),
//! then `state.json` (the commit point), then renames the `.next` files into place. Every
//! safetensors file carries the commit tag of the state it belongs to in its metadata
//! (`wrnc.commit`). On resume, [`recover`] finishes an interrupted rename (roll forward) or
//! discards uncommitted `.next` files, so a kill at any point leaves a consistent state.
//! `metrics.csv` is rewritten from the committed state; `steps.csv` is appended before the
//! commit and truncated to the committed step on resume.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use wrnc_ir::atomic::write_atomic;
use wrnc_ir::Weights;

/// The commit point.
pub const STATE_FILE: &str = "state.json";
/// Weights after the last committed step.
pub const LAST_FILE: &str = "last.safetensors";
/// Weights of the epoch with the best evaluation accuracy.
pub const BEST_FILE: &str = "best.safetensors";
/// Momentum buffers and the JSON training state.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The exponential moving average of the weights after the last committed step (with
/// `train.ema` only).
pub const EMA_FILE: &str = "ema.safetensors";
/// One row per completed epoch.
pub const METRICS_FILE: &str = "metrics.csv";
/// One row per step.
pub const STEPS_FILE: &str = "steps.csv";
/// The resolved spec the run was started with.
pub const SPEC_FILE: &str = "spec.resolved.yaml";
/// Facts about the run (splits, device, ...).
pub const RUN_FILE: &str = "run.json";
/// The run's HTML report (written by the CLI at the end of a run).
pub const REPORT_FILE: &str = "report.html";
/// The folder of the TensorBoard event files.
pub const TB_DIR: &str = "tb";
/// Metadata key of the commit tag (in every safetensors file of the run directory).
pub const COMMIT_KEY: &str = "wrnc.commit";
/// Metadata key of the JSON training state in [`OPTIMIZER_FILE`].
pub const OPTIMIZER_STATE_KEY: &str = "wrnc.state";
/// Every file name wrnc itself writes in a run directory (a user-chosen file there, such as
/// `export.file`, must not be one of these, nor one of them with `.next` appended).
pub const RESERVED_NAMES: &[&str] = &[
    STATE_FILE,
    LAST_FILE,
    BEST_FILE,
    OPTIMIZER_FILE,
    EMA_FILE,
    METRICS_FILE,
    STEPS_FILE,
    SPEC_FILE,
    RUN_FILE,
    REPORT_FILE,
    TB_DIR,
    crate::lock::LOCK_FILE,
];

/// Checks that `name` (the spec's `export.file`) is a plain file name inside the run
/// directory that names none of the run's own files ([`RESERVED_NAMES`]).
pub fn check_export_file(name: &str) -> Result<()> {
    let invalid = |why: String| {
        TrainError::Invalid(format!(
            "export.file `{name}` {why}; choose another file name, e.g. `model.onnx`"
        ))
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid("is not a file name".into()));
    }
    if name.contains('/') || name.contains('\\') || name.contains('\0') {
        return Err(invalid(
            "is not a plain file name: it names a file inside the run directory, without a \
             path separator"
                .into(),
        ));
    }
    let base = name.strip_suffix(".next").unwrap_or(name);
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(base)) {
        return Err(invalid(format!(
            "would overwrite a file of the run directory (reserved names: {})",
            RESERVED_NAMES.join(", ")
        )));
    }
    Ok(())
}

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str =
    "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_sec";
/// Columns appended to [`METRICS_HEADER`] when the run keeps an EMA (`train.ema`).
pub const METRICS_EMA_COLUMNS: &str = ",ema_val_loss,ema_val_acc";
/// Header of `steps.csv`.
pub const STEPS_HEADER: &str = "step,epoch,lr,loss";

/// One row of `metrics.csv` (accuracies as fractions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's steps (weighted by batch size).
    pub train_loss: f64,
    /// Training accuracy (train mode, augmented batches).
    pub train_acc: f64,
    /// Loss on the evaluation split.
    pub val_loss: f64,
    /// Accuracy on the evaluation split.
    pub val_acc: f64,
    /// Wall time of the epoch (training and evaluation).
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Loss of the EMA weights on the evaluation split (with `train.ema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_val_loss: Option<f64>,
    /// Accuracy of the EMA weights on the evaluation split (with `train.ema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_val_acc: Option<f64>,
}

/// Running sums of the epoch in progress (kept across a mid-epoch interruption).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Sum of batch loss times batch size.
    pub loss_sum: f64,
    /// Correct training predictions.
    pub correct: u64,
    /// Training images seen.
    pub seen: u64,
    /// Seconds spent training so far in this epoch.
    pub train_seconds: f64,
}

/// The committed training state (`state.json`, also stored in `optimizer.safetensors`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub format: u32,
    /// Model name.
    pub model: String,
    /// Completed epochs.
    pub epochs_done: usize,
    /// Batches of the next epoch already trained (non-zero after a mid-epoch stop).
    pub batches_done: usize,
    /// Optimiser steps taken.
    pub global_step: u64,
    /// Sums of the epoch in progress.
    pub partial: PartialEpoch,
    /// Best evaluation accuracy so far and its epoch (from 1).
    pub best: Option<(f64, usize)>,
    /// Commit tag of `best.safetensors`.
    pub best_commit: Option<String>,
    /// The training seed (init, shuffling, augmentation and dropout derive from it; no other
    /// RNG state exists: epoch `e` uses the data stream `(seed, e)`, step `s` of layer `i` the
    /// dropout stream `(seed, s, i)`).
    pub seed: u64,
    /// The settings that must not change on resume.
    pub settings: serde_json::Value,
    /// All completed epochs.
    pub metrics: Vec<EpochMetrics>,
    /// Every change of `train.epochs` on `--resume`, oldest first (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extended: Vec<EpochsChange>,
}

/// A resumed run whose `train.epochs` changed: the run then trains up to `to` epochs (see
/// docs/training.md for how the schedule continues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochsChange {
    /// `train.epochs` before.
    pub from: usize,
    /// `train.epochs` after.
    pub to: usize,
    /// Epochs completed when it changed.
    pub at_epoch: usize,
    /// Optimiser steps taken when it changed.
    pub at_step: u64,
}

impl RunState {
    /// The commit tag of this state.
    pub fn commit(&self) -> String {
        format!(
            "epoch{}-batch{}-step{}",
            self.epochs_done, self.batches_done, self.global_step
        )
    }
}

fn next_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.next"))
}

fn tag_of(w: &Weights) -> Option<&str> {
    w.metadata.get(COMMIT_KEY).map(String::as_str)
}

/// A file to be committed: its name in the run directory and its weights (tagged here).
#[derive(Debug)]
pub struct Staged {
    /// File name, e.g. [`LAST_FILE`].
    pub name: &'static str,
    /// Contents.
    pub weights: Weights,
}

/// Commits `files` and `state` with the journaled protocol described in the module docs.
///
/// When a write fails before the commit point (a `.next` file or `state.json`: disk full,
/// I/O error), the `.next` files written so far are removed before the error is returned:
/// they belong to no committed state, and the directory keeps its previous commit as it was.
pub fn commit(dir: &Path, files: Vec<Staged>, state: &RunState) -> Result<()> {
    let tag = state.commit();
    let mut names = Vec::new();
    let discard = |names: &[&str]| {
        for name in names {
            let _ = std::fs::remove_file(next_path(dir, name));
        }
    };
    for mut f in files {
        f.weights.metadata.insert(COMMIT_KEY.into(), tag.clone());
        // A failed write is an I/O error of the run directory (exit 1), not a bad weights file.
        if let Err(e) = f.weights.save(&next_path(dir, f.name)) {
            discard(&names);
            return Err(match e {
                wrnc_ir::WeightsError::Io { path, source } => TrainError::io(path, source),
                other => other.into(),
            });
        }
        names.push(f.name);
    }
    if let Err(e) = write_state(dir, state) {
        // The write can fail after its rename (syncing the directory): then the new state is
        // committed and its `.next` files are rolled forward on resume, so they stay.
        let committed = read_state(dir)
            .ok()
            .flatten()
            .is_some_and(|s| s.commit() == tag);
        if !committed {
            discard(&names);
        }
        return Err(e);
    }
    for name in names {
        let from = next_path(dir, name);
        std::fs::rename(&from, dir.join(name)).map_err(|e| TrainError::io(&from, e))?;
    }
    write_metrics(dir, &state.metrics)
}

/// Rewrites `state.json` with `state`, whose commit tag must be that of the files on disk
/// (a change of bookkeeping only, such as [`RunState::extended`]; the weights are untouched).
pub fn write_state(dir: &Path, state: &RunState) -> Result<()> {
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| TrainError::Invalid(format!("cannot serialise the run state: {e}")))?;
    let path = dir.join(STATE_FILE);
    write_atomic(&path, &json).map_err(|e| TrainError::io(&path, e))
}

/// Reads `state.json` (None when absent).
pub fn read_state(dir: &Path) -> Result<Option<RunState>> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::io(&path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TrainError::RunDir {
            dir: dir.to_path_buf(),
            message: format!("{STATE_FILE} is not a wrnc run state: {e}"),
        })
}

/// Brings the directory to the committed `state` (rolling forward or discarding `.next`
/// files) and returns the committed last weights and optimizer file.
pub fn recover(dir: &Path, state: &RunState) -> Result<(Weights, Weights)> {
    let tag = state.commit();
    for (name, want) in [
        (LAST_FILE, Some(tag.clone())),
        (OPTIMIZER_FILE, Some(tag.clone())),
        (EMA_FILE, Some(tag.clone())),
        (BEST_FILE, state.best_commit.clone()),
    ] {
        let next = next_path(dir, name);
        if next.exists() {
            let keep = Weights::load(&next)
                .ok()
                .is_some_and(|w| tag_of(&w).map(str::to_string) == want);
            if keep {
                std::fs::rename(&next, dir.join(name)).map_err(|e| TrainError::io(&next, e))?;
            } else {
                std::fs::remove_file(&next).map_err(|e| TrainError::io(&next, e))?;
            }
        }
    }
    let load_tagged = |name: &str| -> Result<Weights> {
        let w = Weights::load(&dir.join(name))?;
        if tag_of(&w) != Some(tag.as_str()) {
            return Err(TrainError::RunDir {
                dir: dir.to_path_buf(),
                message: format!(
                    "{name} {}, but {STATE_FILE} records commit `{tag}`; the directory was \
                     modified outside wrnc",
                    match tag_of(&w) {
                        Some(t) => format!("belongs to commit `{t}`"),
                        None => "records no commit".into(),
                    }
                ),
            });
        }
        Ok(w)
    };
    let last = load_tagged(LAST_FILE)?;
    let opt = load_tagged(OPTIMIZER_FILE)?;
    write_metrics(dir, &state.metrics)?;
    truncate_steps(dir, state.global_step)?;
    Ok((last, opt))
}

/// Rewrites `metrics.csv` from `rows`.
pub fn write_metrics(dir: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let ema = rows.iter().any(|r| r.ema_val_acc.is_some());
    let mut s = String::from(METRICS_HEADER);
    if ema {
        s.push_str(METRICS_EMA_COLUMNS);
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.3},{:.1}",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_acc,
            r.val_loss,
            r.val_acc,
            r.seconds,
            r.images_per_sec
        ));
        if ema {
            let (l, a) = (
                r.ema_val_loss.unwrap_or(f64::NAN),
                r.ema_val_acc.unwrap_or(f64::NAN),
            );
            s.push_str(&format!(",{l:.6},{a:.6}"));
        }
        s.push('\n');
    }
    let path = dir.join(METRICS_FILE);
    write_atomic(&path, s.as_bytes()).map_err(|e| TrainError::io(&path, e))
}

/// Keeps the header and the rows of `steps.csv` with `step <= last_step`.
pub fn truncate_steps(dir: &Path, last_step: u64) -> Result<()> {
    let path = dir.join(STEPS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(TrainError::io(&path, e)),
    };
    let mut out = String::from(STEPS_HEADER);
    out.push('\n');
    for line in text.lines().skip(1) {
        let step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
        match step {
            Some(s) if s <= last_step && line.split(',').count() == 4 => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    write_atomic(&path, out.as_bytes()).map_err(|e| TrainError::io(&path, e))
}

/// Appends rows to `steps.csv`; [`StepLog::sync`] makes them durable before a commit.
#[derive(Debug)]
pub struct StepLog {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl StepLog {
    /// Opens `steps.csv` for appending, writing the header to a new file.
    pub fn open(dir: &Path) -> Result<StepLog> {
        let path = dir.join(STEPS_FILE);
        let new = !path.exists();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        let mut log = StepLog {
            path,
            file: std::io::BufWriter::new(f),
        };
        if new {
            log.write_line(STEPS_HEADER)?;
        }
        Ok(log)
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))
    }

    /// Appends one step.
    pub fn row(&mut self, step: u64, epoch: usize, lr: f64, loss: f64) -> Result<()> {
        self.write_line(&format!("{step},{epoch},{lr},{loss:.6}"))
    }

    /// Flushes and syncs the file.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .flush()
            .and_then(|_| self.file.get_ref().sync_data())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::LrSchedule;
    use wrnc_recipe::Schedule;

    /// `state.json` keeps the metrics rows that `metrics.csv` is rewritten from on every
    /// commit and resume: each value must read back bit for bit, or a resumed run's
    /// `metrics.csv` differs from an uninterrupted one in a last digit (`{lr}` prints the
    /// shortest text that round-trips, so one ULP shows).
    #[test]
    fn metrics_rows_survive_the_state_file_bit_for_bit() {
        let schedules = [
            Schedule::Cosine { min_lr: 0.0 },
            Schedule::Cosine { min_lr: 1e-4 },
            Schedule::default(),
            Schedule::Constant,
        ];
        let mut rows = Vec::new();
        for s in &schedules {
            for lr0 in [0.1, 0.05, 0.02, 0.4, 0.3, 0.01] {
                for warmup in [0, 1, 5] {
                    let sched = LrSchedule {
                        schedule: s,
                        lr0,
                        epochs: 200,
                        warmup_epochs: warmup,
                        steps_per_epoch: 7,
                    };
                    for epoch in 0..200 {
                        let lr = sched.lr(epoch, epoch % 7);
                        rows.push(EpochMetrics {
                            epoch: epoch + 1,
                            lr,
                            train_loss: lr * 3.1,
                            train_acc: 1.0 / (epoch + 3) as f64,
                            val_loss: lr.sqrt(),
                            val_acc: (epoch as f64 / 7.0).fract(),
                            seconds: lr * 1234.5678,
                            images_per_sec: 1e5 / (epoch + 1) as f64,
                            ema_val_loss: None,
                            ema_val_acc: None,
                        });
                    }
                }
            }
        }
        let text = serde_json::to_string(&rows).unwrap();
        let back: Vec<EpochMetrics> = serde_json::from_str(&text).unwrap();
        for (a, b) in rows.iter().zip(&back) {
            assert_eq!(
                a.lr.to_bits(),
                b.lr.to_bits(),
                "{} read back as {}",
                a.lr,
                b.lr
            );
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }

    fn state(epochs_done: usize) -> RunState {
        RunState {
            format: 1,
            model: "m".into(),
            epochs_done,
            batches_done: 0,
            global_step: 10 * epochs_done as u64,
            partial: PartialEpoch::default(),
            best: None,
            best_commit: None,
            seed: 0,
            settings: serde_json::Value::Null,
            metrics: Vec::new(),
            extended: Vec::new(),
        }
    }

    fn staged(value: f32, best: bool) -> Vec<Staged> {
        let w = || {
            let mut w = Weights::default();
            w.tensors.insert(
                "x".into(),
                wrnc_ir::weights::Tensor {
                    shape: vec![2],
                    data: vec![value, value],
                },
            );
            w
        };
        let mut files = vec![
            Staged {
                name: LAST_FILE,
                weights: w(),
            },
            Staged {
                name: OPTIMIZER_FILE,
                weights: w(),
            },
        ];
        if best {
            files.push(Staged {
                name: BEST_FILE,
                weights: w(),
            });
        }
        files
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".next") || n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn a_commit_that_fails_midway_removes_its_next_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        commit(dir, staged(1.0, true), &state(1)).unwrap();
        assert!(leftovers(dir).is_empty());
        // The second `.next` file cannot be written (a directory stands in its way): the
        // first one, already written, must not stay behind.
        let blocker = dir.join(format!("{OPTIMIZER_FILE}.next"));
        std::fs::create_dir(&blocker).unwrap();
        assert!(commit(dir, staged(2.0, true), &state(2)).is_err());
        std::fs::remove_dir(&blocker).unwrap();
        assert_eq!(leftovers(dir), Vec::<String>::new());
        // The last commit is intact and recovers.
        let committed = read_state(dir).unwrap().unwrap();
        assert_eq!(committed, state(1));
        let (last, _) = recover(dir, &committed).unwrap();
        assert_eq!(last.tensors["x"].data, vec![1.0, 1.0]);
        assert_eq!(last.metadata.get(COMMIT_KEY), Some(&state(1).commit()));
        let best = Weights::load(&dir.join(BEST_FILE)).unwrap();
        assert_eq!(best.tensors["x"].data, vec![1.0, 1.0]);
    }

    #[test]
    fn a_commit_whose_state_file_fails_removes_its_next_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // `state.json` cannot be replaced (a directory): every `.next` file was written, and
        // none may stay, since nothing was committed.
        std::fs::create_dir(dir.join(STATE_FILE)).unwrap();
        assert!(commit(dir, staged(1.0, true), &state(1)).is_err());
        assert_eq!(leftovers(dir), Vec::<String>::new());
        assert!(!dir.join(LAST_FILE).exists());
    }

    #[test]
    fn export_file_must_not_name_a_run_file_or_leave_the_directory() {
        assert!(check_export_file("model.onnx").is_ok());
        assert!(check_export_file("my.model.onnx").is_ok());
        for bad in [
            "last.safetensors",
            "state.json",
            "run.lock",
            "report.html",
            "best.safetensors.next",
            "METRICS.CSV",
            "../x.onnx",
            "sub/x.onnx",
            "",
            "..",
        ] {
            let e = check_export_file(bad).unwrap_err().to_string();
            assert!(e.contains("export.file"), "{bad}: {e}");
        }
    }
}
