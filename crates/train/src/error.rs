//! Errors of the training back end.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong while building, training or evaluating a model.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A tensor operation failed inside Candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A weights file could not be read, written or matched to the model.
    #[error(transparent)]
    Weights(#[from] wrnc_ir::WeightsError),
    /// The dataset could not be loaded or batched.
    #[error("data: {0}")]
    Data(String),
    /// A file of the run directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The requested device cannot be used.
    #[error("device: {0}")]
    Device(String),
    /// The graph, weights or recipe cannot be executed as asked.
    #[error("{0}")]
    Invalid(String),
    /// Another process trains into the same run directory.
    #[error(
        "run directory {dir} is locked by process {pid} (lock file {lock}); wait for it to \
         finish or choose another output directory"
    )]
    Locked {
        /// Run directory.
        dir: PathBuf,
        /// PID written in the lock file.
        pid: u32,
        /// The lock file.
        lock: PathBuf,
    },
    /// The run directory cannot be resumed or reused as asked.
    #[error("run directory {dir}: {message}")]
    RunDir {
        /// Run directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The loss became NaN or infinite; the last committed checkpoint is kept.
    #[error(
        "the training loss became {value} at epoch {epoch}, step {step} (global step \
         {global_step}); training stopped and the last good checkpoint (epoch {last_good_epoch}) \
         is kept. Try a lower learning rate or check the data"
    )]
    NonFinite {
        /// Epoch (from 1) in which it happened.
        epoch: usize,
        /// Step within the epoch (from 1).
        step: usize,
        /// Global step (from 1).
        global_step: u64,
        /// The offending value, e.g. `NaN`.
        value: String,
        /// Last completed epoch whose checkpoint is on disk (0: none).
        last_good_epoch: usize,
    },
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
