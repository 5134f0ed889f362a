//! Errors of loading, running and comparing models.

use std::path::PathBuf;
use thiserror::Error;
use wrnc_onnx::OnnxError;

/// Result with [`VerifyError`].
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;

/// Everything that can go wrong verifying or predicting.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The ONNX file failed the wrnc reader (limits, structure, metadata).
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// tract could not load, optimise or run the model.
    #[error("tract: {0}")]
    Tract(String),
    /// The input given to a model or helper does not fit.
    #[error("{0}")]
    Input(String),
    /// An image could not be read or decoded.
    #[error("{}: {message}", path.display())]
    Image {
        /// Image file (or `<memory>`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl VerifyError {
    pub(crate) fn tract(e: impl std::fmt::Display) -> Self {
        // `{:#}` prints anyhow's whole context chain on one line.
        VerifyError::Tract(format!("{e:#}"))
    }
}
