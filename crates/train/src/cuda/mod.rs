//! CUDA-only pieces of the Candle back end (compiled with the `cuda` feature).
//!
//! - [`set_tf32`]: the `train.tf32` switch, for cuBLAS matmuls (Candle's reduced-precision
//!   f32 GEMM) and for the cuDNN convolutions of [`conv`].
//! - [`conv`] (with the `cudnn` feature): convolution forward, backward-data and
//!   backward-filter through cuDNN as Candle custom ops, so that on CUDA every convolution of
//!   a training step runs in cuDNN (Candle's own CUDA path computes the input gradient with a
//!   naive `conv_transpose2d` kernel).
//! - [`dropout`]: dropout masks drawn on the GPU (Philox, the scheme of [`crate::philox`]).
//! - [`keep_freed_memory`]: the memory-pool setting applied when the device opens.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "cudnn")]
pub mod conv;
pub mod dropout;

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

/// Keeps freed device memory in the stream-ordered allocator's pool instead of returning it
/// to the driver at every synchronisation: sets the release threshold of GPU `device`'s
/// current memory pool (the one `cuMemAllocAsync` draws from) to the maximum. Called when
/// the device opens; without it every step would re-map its activations from the driver.
pub fn keep_freed_memory(device: &candle_core::CudaDevice) -> candle_core::Result<()> {
    use candle_core::cuda::cudarc::driver::{result, sys};
    let stream = device.cuda_stream();
    let ctx = stream.context();
    ctx.bind_to_thread()
        .map_err(|e| candle_core::Error::Msg(format!("CUDA: {e:?}")))?;
    let mut threshold: u64 = u64::MAX;
    // SAFETY: the device handle comes from the live context; the attribute's value is a
    // cuuint64_t, as `CU_MEMPOOL_ATTR_RELEASE_THRESHOLD` requires.
    unsafe {
        let pool = result::device::get_mem_pool(ctx.cu_device())
            .map_err(|e| candle_core::Error::Msg(format!("CUDA memory pool: {e:?}")))?;
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .map_err(|e| candle_core::Error::Msg(format!("CUDA memory pool: {e:?}")))?;
    }
    Ok(())
}
