//! Errors of the training back end.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong while building, training or evaluating a model.
///
/// Each variant says whose fault it is ([`TrainError::is_user_error`]): the user's (the spec,
/// recipe, flags or a file the user named: the CLI exits with 2) or a runtime failure (Candle,
/// I/O, the device at run time, a broken internal invariant: exit 1).
#[derive(Debug, Error)]
pub enum TrainError {
    /// A tensor operation failed inside Candle (runtime).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A tensor operation failed inside Candle while running a layer (runtime).
    #[error("layer `{layer}`: {source}")]
    Layer {
        /// The layer (node name).
        layer: String,
        /// Candle's error.
        source: candle_core::Error,
    },
    /// A weights file could not be read, written or matched to the model (user: the file).
    #[error(transparent)]
    Weights(#[from] wrnc_ir::WeightsError),
    /// The dataset could not be loaded or batched (runtime).
    #[error("data: {0}")]
    Data(String),
    /// A file of the run directory could not be read or written (runtime).
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The requested device cannot be used (user: the device asked for).
    #[error("device: {0}")]
    Device(String),
    /// The graph, weights, recipe or options cannot be executed as asked (user: the spec,
    /// the recipe, the flags or a file the user named).
    #[error("{0}")]
    Invalid(String),
    /// An internal invariant does not hold: a bug in wrnc or a caller of this library, not
    /// the user's input (runtime).
    #[error("internal error: {0}")]
    Internal(String),
    /// Another process trains into the same run directory (runtime).
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
    /// The run directory cannot be resumed or reused as asked (user: the directory named).
    #[error("run directory {dir}: {message}")]
    RunDir {
        /// Run directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The loss became NaN or infinite; the last committed checkpoint is kept (runtime).
    #[error(
        "the training loss became {value} at epoch {epoch}, step {step} (global step \
         {global_step}); training stopped{}. Try a lower learning rate or check the data",
        kept_checkpoint(*last_good_epoch)
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
        /// Completed epochs of the last committed checkpoint on disk (None: no checkpoint was
        /// committed, so nothing can be resumed).
        last_good_epoch: Option<usize>,
    },
}

/// The end of the [`TrainError::NonFinite`] message: what is left on disk.
fn kept_checkpoint(last_good_epoch: Option<usize>) -> String {
    match last_good_epoch {
        Some(e) => format!(
            " and the last committed checkpoint ({e} epochs complete) is kept; it can be \
             resumed with --resume"
        ),
        None => " before any checkpoint was committed, so nothing was saved to resume".into(),
    }
}

/// Whose fault an error is, and so how the CLI exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input: the spec, recipe, flags or a file the user named (exit 2).
    User,
    /// A failure at run time: Candle, I/O, data, the device, an internal invariant (exit 1).
    Runtime,
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whose fault the error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TrainError::Weights(_)
            | TrainError::Device(_)
            | TrainError::Invalid(_)
            | TrainError::RunDir { .. } => ErrorKind::User,
            TrainError::Candle(_)
            | TrainError::Layer { .. }
            | TrainError::Data(_)
            | TrainError::Io { .. }
            | TrainError::Internal(_)
            | TrainError::Locked { .. }
            | TrainError::NonFinite { .. } => ErrorKind::Runtime,
        }
    }

    /// Whether the user can fix it by changing their input (the CLI exits with 2, else 1).
    pub fn is_user_error(&self) -> bool {
        self.kind() == ErrorKind::User
    }

    /// A Candle failure while running `layer` (anything else passes through unchanged).
    pub(crate) fn in_layer(self, layer: &str) -> Self {
        match self {
            TrainError::Candle(source) => TrainError::Layer {
                layer: layer.to_string(),
                source,
            },
            other => other,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
