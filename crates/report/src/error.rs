//! The errors of the report and TensorBoard writers.

use std::path::PathBuf;

/// A failure to draw a report or to write or read an event file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("cannot draw the chart `{chart}`: {message}")]
    Chart {
        /// The chart's title.
        chart: String,
        /// What plotters said.
        message: String,
    },
    /// A thumbnail could not be encoded.
    #[error("cannot encode a thumbnail: {0}")]
    Image(String),
    /// An event file is not valid TFRecord framing around `Event` messages.
    #[error("{}: {message}", path.display())]
    BadEventFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset.
        message: String,
    },
}

impl ReportError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, ReportError>;
