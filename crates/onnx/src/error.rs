//! Errors of export and reading.

use std::path::PathBuf;
use thiserror::Error;
use wrnc_ir::WeightsError;

/// Result with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

/// Everything that can go wrong exporting or reading an ONNX file.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// The requested opset is outside the supported range.
    #[error(
        "opset {opset} is not supported: wrnc exports opsets {min}..={max} \
         (default {default})"
    )]
    UnsupportedOpset {
        /// What was asked for.
        opset: i64,
        /// Lowest supported.
        min: i64,
        /// Highest supported.
        max: i64,
        /// The default.
        default: i64,
    },
    /// The weights do not match the graph.
    #[error("cannot export: {0}")]
    Weights(#[from] WeightsError),
    /// A tensor's data is inconsistent or unusable (wrong length, NaN, ...).
    #[error("cannot export: tensor `{name}`: {message}")]
    BadTensor {
        /// Parameter name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The graph cannot be lowered to ONNX.
    #[error("cannot export model `{model}`: {message}")]
    Graph {
        /// Model name.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// The export metadata is inconsistent with the model.
    #[error("invalid export metadata: {0}")]
    Metadata(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The bytes are not a valid ONNX protobuf.
    #[error("not a valid ONNX file: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A size limit was exceeded while reading.
    #[error("refusing ONNX file: {0}")]
    TooLarge(String),
    /// The model cannot be quantized or converted to float16.
    #[error("cannot quantize: {0}")]
    Quantize(String),
    /// The model is structurally invalid; one line per problem.
    #[error("invalid ONNX model:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}
