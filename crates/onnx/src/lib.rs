//! # wrnc-onnx: ONNX export of wrnc graphs
//!
//! Lowers a [`wrnc_ir::Graph`] and its [`wrnc_ir::Weights`] to an inference-form ONNX model
//! ([`export`]), serialises it with hand-written `prost` messages ([`proto`]), and reads
//! models back with size limits and a structural check ([`read_model`],
//! [`check_structure`]). Deployment metadata (class labels, input shape, normalisation,
//! spec, training result) travels in `metadata_props`; see [`metadata`] and `docs/onnx.md`.
//!
//! ```no_run
//! # fn demo(graph: &wrnc_ir::Graph, weights: &wrnc_ir::Weights) -> wrnc_onnx::Result<()> {
//! use wrnc_onnx::{ExportMetadata, ExportOptions};
//! let opts = ExportOptions { opset: 17, fold_bn: true };
//! wrnc_onnx::write(std::path::Path::new("model.onnx"), graph, weights, &opts,
//!                  &ExportMetadata::default())?;
//! # Ok(()) }
//! ```

pub mod error;
pub mod export;
pub mod metadata;
pub mod proto;
pub mod quantize;
pub mod read;
pub mod tta;

pub use error::{OnnxError, Result};
pub use export::{
    export, ir_version_for_opset, to_bytes, write, write_model, ExportOptions, BATCH_DIM,
    DEFAULT_OPSET, INPUT_NAME, LOGITS_NAME, MAX_OPSET, MIN_OPSET, PROBABILITIES_NAME,
    PRODUCER_VERSION,
};
pub use metadata::{
    EvalSplit, ExportMetadata, MetaKey, ModelInfo, Normalization, ResizeInfo, SelectedOn,
    TrainingSummary,
};
pub use proto::ModelProto;
pub use quantize::{AccuracyInfo, CalibrationInfo, QuantizationInfo};
pub use read::{
    check_structure, read_model, read_model_file, read_model_with, ReadLimits, MAX_NODES,
};
