//! What a training run reports while it runs. The library prints nothing: [`crate::train`]
//! calls a [`TrainObserver`], and the caller decides how to show it (the CLI draws a progress
//! bar and one line per epoch on stderr; tests and libraries pass [`Silent`]).

use crate::data::Split;
use crate::memory::MemoryEstimate;
use crate::rundir::EpochMetrics;
use wrnc_data::{DecodeProgress, FolderReport};

/// The training steps of an epoch are about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Epochs of the whole run.
    pub epochs: usize,
    /// Training steps (batches) per epoch.
    pub steps: usize,
    /// Steps of this epoch already done (a run resumed inside the epoch), 0 otherwise.
    pub done: usize,
}

/// The running figures of an epoch after one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepProgress {
    /// Steps of the epoch done, from 1.
    pub step: usize,
    /// Optimiser steps of the run done, from 1 (continues across a resume).
    pub global_step: u64,
    /// Loss of this step's batch.
    pub batch_loss: f64,
    /// Mean training loss of the epoch so far.
    pub loss: f64,
    /// Training accuracy of the epoch so far, in [0, 1].
    pub accuracy: f64,
    /// The learning rate.
    pub lr: f64,
    /// Training images per second of the epoch so far.
    pub images_per_sec: f64,
}

/// An epoch is complete: trained, evaluated and committed to the run directory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochEnd {
    /// Epochs of the whole run.
    pub epochs: usize,
    /// Its row of `metrics.csv`.
    pub metrics: EpochMetrics,
    /// The split it was evaluated on (`val`, or `test` when `data.val_size` is 0).
    pub split: Split,
    /// Whether it is the best epoch so far (its weights are `best.safetensors`).
    pub improved: bool,
}

/// Something the user should know that is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A degraded but working situation, e.g. a run directory whose file system cannot lock.
    Warning(String),
    /// A fact about the run worth one line, e.g. that `--resume` extends it to more epochs.
    Info(String),
}

/// Receives the progress of a training run. Every method has an empty default.
pub trait TrainObserver {
    /// The training steps of an epoch start.
    fn epoch_started(&mut self, _start: &EpochStart) {}
    /// One training step is done.
    fn step_done(&mut self, _progress: &StepProgress) {}
    /// The training steps of the epoch are over (finished, interrupted or failed); the
    /// evaluation follows when the epoch is complete.
    fn steps_finished(&mut self) {}
    /// An epoch is complete.
    fn epoch_finished(&mut self, _end: &EpochEnd) {}
    /// A notice for the user.
    fn notice(&mut self, _notice: &Notice) {}
    /// The run's memory estimate, which fits the limits of the process (before the run
    /// directory is created).
    fn memory_estimate(&mut self, _estimate: &MemoryEstimate) {}
    /// The images of a folder dataset are being decoded (before the first epoch; not called
    /// when they come from the decode cache): first with `done` 0, then after each chunk.
    fn decode_progress(&mut self, _progress: &DecodeProgress) {}
    /// A folder dataset was loaded: its classes, counts, ignored and skipped files, and how
    /// the decode cache was used.
    fn data_loaded(&mut self, _report: &FolderReport) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl TrainObserver for Silent {}
