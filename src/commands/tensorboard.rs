//! `--tensorboard` / `train.tensorboard`: an observer that forwards everything to the terminal
//! observer and also writes the run's scalars as a TensorBoard event file in `RUN_DIR/tb/`
//! (one new file per process; steps are the run's global steps, epochs count from 1; a
//! `SessionLog` `START` before the first step a process logs).
//!
//! | tag | step | value |
//! |---|---|---|
//! | `step/loss`, `step/lr` | global step | the batch loss and learning rate of each step |
//! | `epoch/train_loss`, `epoch/train_acc` | epoch | as `metrics.csv` |
//! | `epoch/<split>_loss`, `epoch/<split>_acc` | epoch | `val_loss`, `val_acc` of `metrics.csv` (split `val`, or `test` without a validation split) |
//! | `epoch/lr`, `epoch/images_per_sec`, `epoch/seconds` | epoch | as `metrics.csv` |

use std::path::PathBuf;
use wrnc_report::tensorboard::EventWriter;
use wrnc_train::{
    rundir::TB_DIR, DecodeProgress, EpochEnd, EpochStart, FolderReport, MemoryEstimate, Notice,
    StepProgress, TrainObserver,
};

/// Forwards to `inner` and, when enabled, logs scalars to an event file. (Every method of
/// [`TrainObserver`] must be forwarded: the trait's methods have empty defaults.)
pub struct TensorBoard<'a> {
    inner: &'a mut dyn TrainObserver,
    /// The folder of the event files; None when disabled or after a write failed.
    dir: Option<PathBuf>,
    /// Opened on the first event, so a refused run leaves no folder behind.
    writer: Option<EventWriter>,
    /// Whether this process has logged a step (the first one is preceded by a session start).
    started: bool,
}

impl<'a> TensorBoard<'a> {
    /// Logs into `run_dir/tb/` when `enabled`; forwards to `inner` in every case.
    pub fn new(run_dir: &std::path::Path, enabled: bool, inner: &'a mut dyn TrainObserver) -> Self {
        TensorBoard {
            inner,
            dir: enabled.then(|| run_dir.join(TB_DIR)),
            writer: None,
            started: false,
        }
    }

    /// Runs `f` on the writer (created on first use); a failure is reported once as a
    /// warning and turns logging off, training goes on.
    fn with(&mut self, f: impl FnOnce(&mut EventWriter) -> wrnc_report::Result<()>) {
        let Some(dir) = &self.dir else { return };
        if self.writer.is_none() {
            match EventWriter::create(dir) {
                Ok(w) => self.writer = Some(w),
                Err(e) => return self.fail(e),
            }
        }
        if let Some(w) = &mut self.writer {
            if let Err(e) = f(w) {
                self.fail(e);
            }
        }
    }

    fn fail(&mut self, e: wrnc_report::ReportError) {
        self.dir = None;
        self.writer = None;
        self.inner.notice(&Notice::Warning(format!(
            "TensorBoard logging stopped: {e}; training goes on"
        )));
    }
}

impl TrainObserver for TensorBoard<'_> {
    fn epoch_started(&mut self, e: &EpochStart) {
        self.inner.epoch_started(e);
    }

    fn step_done(&mut self, p: &StepProgress) {
        self.inner.step_done(p);
        let (step, loss, lr) = (p.global_step as i64, p.batch_loss, p.lr);
        // A resumed run logs the steps after its checkpoint again: TensorBoard drops what a
        // killed process had logged from there on.
        let start = !std::mem::replace(&mut self.started, true);
        self.with(|w| {
            if start {
                w.session_start(step)?;
            }
            w.scalars(step, &[("step/loss", loss), ("step/lr", lr)])
        });
    }

    fn steps_finished(&mut self) {
        self.inner.steps_finished();
        self.with(|w| w.flush());
    }

    fn epoch_finished(&mut self, e: &EpochEnd) {
        self.inner.epoch_finished(e);
        let m = e.metrics;
        let split = e.split.name();
        let (loss_tag, acc_tag) = (format!("epoch/{split}_loss"), format!("epoch/{split}_acc"));
        self.with(|w| {
            w.scalars(
                m.epoch as i64,
                &[
                    ("epoch/train_loss", m.train_loss),
                    ("epoch/train_acc", m.train_acc),
                    (&loss_tag, m.val_loss),
                    (&acc_tag, m.val_acc),
                    ("epoch/lr", m.lr),
                    ("epoch/images_per_sec", m.images_per_sec),
                    ("epoch/seconds", m.seconds),
                ],
            )?;
            w.flush()
        });
    }

    fn notice(&mut self, n: &Notice) {
        self.inner.notice(n);
    }

    fn memory_estimate(&mut self, estimate: &MemoryEstimate) {
        self.inner.memory_estimate(estimate);
    }

    fn decode_progress(&mut self, progress: &DecodeProgress) {
        self.inner.decode_progress(progress);
    }

    fn data_loaded(&mut self, report: &FolderReport) {
        self.inner.data_loaded(report);
    }
}
