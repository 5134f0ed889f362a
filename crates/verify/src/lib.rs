//! # wrnc-verify: running exported models with tract
//!
//! * [`TractModel`] loads an ONNX file written by `wrnc-onnx` (through its size-limited
//!   reader and structural check), optimises it with tract and runs batches, returning
//!   `logits` and `probabilities`.
//! * [`compare`] measures how far two executors' outputs are apart (max abs / rel
//!   difference, top-1 agreement).
//! * [`predict`] classifies PNG/JPEG images using the preprocessing recorded in the file's
//!   metadata, one image at a time.
//! * [`calibrate`] runs the float model on calibration images and returns the int8
//!   activation ranges (`wrnc export --quantize int8`).
//! * [`printable`] escapes control characters in text read from files before it is printed.

pub mod calibrate;
pub mod compare;
pub mod error;
pub mod model;
pub mod predict;
pub mod text;

pub use calibrate::{calibrate, TensorTap};
pub use compare::{
    argmax, compare, max_abs_diff, max_rel_diff, normalization_difference, top1_agreement,
    Comparison,
};
pub use error::{Result, VerifyError};
pub use model::{ModelSource, TractModel};
pub use predict::{
    collect_images, decode_image, image_limits, load_image, preprocess, preprocess_with, top_k,
    Prediction, Predictor,
};
pub use text::{about_file, printable, printable_path};
