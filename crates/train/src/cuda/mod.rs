//! CUDA-only pieces of the Candle back end (compiled with the `cuda` feature).
//!
//! - [`set_tf32`]: the `train.tf32` switch, for cuBLAS matmuls (Candle's reduced-precision
//!   f32 GEMM) and for the cuDNN convolutions of [`conv`].
//! - [`conv`] (with the `cudnn` feature): convolution forward, backward-data and
//!   backward-filter through cuDNN as Candle custom ops, so that on CUDA every convolution of
//!   a training step runs in cuDNN (Candle's own CUDA path computes the input gradient with a
//!   naive `conv_transpose2d` kernel).

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "cudnn")]
pub mod conv;

static TF32: AtomicBool = AtomicBool::new(false);

/// Allows (or forbids) TF32 tensor-core arithmetic for f32 matmuls (cuBLAS) and f32
/// convolutions (cuDNN). Off by default: f32 means IEEE f32 products.
pub fn set_tf32(enabled: bool) {
    TF32.store(enabled, Ordering::SeqCst);
    candle_core::cuda::set_gemm_reduced_precision_f32(enabled);
}

/// Whether TF32 is allowed (see [`set_tf32`]).
pub fn tf32() -> bool {
    TF32.load(Ordering::SeqCst)
}
